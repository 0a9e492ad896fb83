package httpapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/projections/caselist"
)

var (
	caseWriters = []string{"analyst", "admin"}
)

// caseRoutes are the case routes: the case itself, its tasks, comments, linked
// hosts and timeline.
func (s *Server) caseRoutes() []op {
	listQuery := append([]param{
		{Name: "status", In: "query", Desc: "open, investigating, contained or closed"},
		{Name: "severity", In: "query", Desc: "low, medium, high or critical"},
		{Name: "assignee", In: "query", Desc: "user id"},
		{Name: "tag", In: "query"},
		{Name: "technique", In: "query", Desc: "MITRE ATT&CK technique id, e.g. T1059.001"},
		{Name: "sort", In: "query", Desc: "created_at (default), updated_at, severity, title or status"},
		{Name: "order", In: "query", Desc: "asc or desc (default desc)"},
	}, pageParams...)
	ifMatch := []param{{Name: "If-Match", In: "header", Desc: `the case version you last saw, e.g. "3"; a stale one answers 412`}}
	return []op{
		{method: http.MethodGet, path: "/api/cases", summary: "List cases", tag: "cases", access: anyUser, query: listQuery, resp: []caseRead{}, handler: s.listCases},
		{method: http.MethodPost, path: "/api/cases", summary: "Open a case", tag: "cases", access: roleList, roles: caseWriters, req: createCaseRequest{}, resp: caseRead{}, status: http.StatusCreated, handler: s.createCase},
		{method: http.MethodGet, path: "/api/cases/:id", summary: "Get a case with its tasks (ETag is its version)", tag: "cases", access: anyUser, resp: caseRead{}, handler: s.getCase},
		{method: http.MethodPatch, path: "/api/cases/:id", summary: "Change a case: fields, status (closing needs a resolution), assignee, tags, techniques", tag: "cases", access: roleList, roles: caseWriters, query: ifMatch, req: updateCaseRequest{}, resp: caseRead{}, handler: s.updateCase},
		{method: http.MethodGet, path: "/api/cases/:id/timeline", summary: "The case's history, built from its events", tag: "cases", access: anyUser, resp: []timelineEntry{}, handler: s.caseTimeline},
		{method: http.MethodGet, path: "/api/cases/:id/tasks", summary: "List a case's tasks", tag: "cases", access: anyUser, resp: []taskRead{}, handler: s.listTasks},
		{method: http.MethodPost, path: "/api/cases/:id/tasks", summary: "Add a task", tag: "cases", access: roleList, roles: caseWriters, query: ifMatch, req: taskRequest{}, resp: taskRead{}, status: http.StatusCreated, handler: s.addTask},
		{method: http.MethodPatch, path: "/api/cases/:id/tasks/:task_id", summary: "Change a task", tag: "cases", access: roleList, roles: caseWriters, query: ifMatch, req: taskRequest{}, resp: taskRead{}, handler: s.updateTask},
		{method: http.MethodDelete, path: "/api/cases/:id/tasks/:task_id", summary: "Delete a task", tag: "cases", access: roleList, roles: caseWriters, query: ifMatch, status: http.StatusNoContent, handler: s.deleteTask},
		{method: http.MethodGet, path: "/api/cases/:id/comments", summary: "List a case's comments", tag: "cases", access: anyUser, resp: []commentRead{}, handler: s.listComments},
		{method: http.MethodPost, path: "/api/cases/:id/comments", summary: "Comment on a case", tag: "cases", access: roleList, roles: caseWriters, req: commentRequest{}, resp: commentRead{}, status: http.StatusCreated, handler: s.addComment},
		{method: http.MethodPatch, path: "/api/cases/:id/comments/:comment_id", summary: "Edit your comment", tag: "cases", access: roleList, roles: caseWriters, req: commentRequest{}, resp: commentRead{}, handler: s.editComment},
		{method: http.MethodDelete, path: "/api/cases/:id/comments/:comment_id", summary: "Delete a comment (yours, or any as an administrator)", tag: "cases", access: roleList, roles: caseWriters, status: http.StatusNoContent, handler: s.deleteComment},
		{method: http.MethodPost, path: "/api/cases/:id/hosts", summary: "Link a host to a case", tag: "cases", access: roleList, roles: caseWriters, query: ifMatch, req: linkHostRequest{}, resp: caseRead{}, handler: s.linkHost},
		{method: http.MethodDelete, path: "/api/cases/:id/hosts/:host_id", summary: "Unlink a host from a case", tag: "cases", access: roleList, roles: caseWriters, query: ifMatch, resp: caseRead{}, handler: s.unlinkHost},
	}
}

// caseRead is a case as the API shows it.
type caseRead struct {
	ID                 cases.ID        `json:"id"`
	TenantID           domain.TenantID `json:"tenant_id"`
	Title              string          `json:"title"`
	Description        string          `json:"description,omitempty" doc:"absent in lists; GET the case for it"`
	Status             cases.Status    `json:"status"`
	AllowedTransitions []cases.Status  `json:"allowed_transitions" doc:"statuses the case may move to next"`
	Severity           cases.Severity  `json:"severity"`
	TLP                string          `json:"tlp" doc:"e.g. TLP:AMBER"`
	PAP                string          `json:"pap" doc:"e.g. PAP:AMBER"`
	Assignee           domain.UserID   `json:"assignee"`
	Tags               []string        `json:"tags"`
	Techniques         []string        `json:"techniques" doc:"MITRE ATT&CK technique ids"`
	HostIDs            []string        `json:"host_ids"`
	OpenTasks          int             `json:"open_tasks"`
	Tasks              []taskRead      `json:"tasks,omitempty" doc:"present when reading one case"`
	ResolutionType     string          `json:"resolution_type,omitempty"`
	Resolution         string          `json:"resolution,omitempty"`
	CreatedBy          domain.UserID   `json:"created_by,omitempty"`
	CreatedAt          time.Time       `json:"created_at"`
	UpdatedAt          time.Time       `json:"updated_at"`
	Version            int64           `json:"version"`
	Position           int64           `json:"position,omitempty" doc:"global position of the write; pass it as min_position to read your own write"`
}

type taskRead struct {
	ID          cases.TaskID     `json:"id"`
	Title       string           `json:"title"`
	Description string           `json:"description"`
	Status      cases.TaskStatus `json:"status"`
	Assignee    domain.UserID    `json:"assignee"`
	Version     int64            `json:"version,omitempty" doc:"the case version after the write"`
	Position    int64            `json:"position,omitempty"`
}

type commentRead struct {
	ID       cases.CommentID `json:"id"`
	Author   domain.UserID   `json:"author"`
	Body     string          `json:"body"`
	Version  int64           `json:"version,omitempty" doc:"the case version after the write"`
	Position int64           `json:"position,omitempty"`
}

type createCaseRequest struct {
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	Severity    string   `json:"severity,omitempty" doc:"low, medium (default), high or critical"`
	TLP         string   `json:"tlp,omitempty" doc:"TLP:CLEAR (or WHITE), GREEN, AMBER (default), AMBER+STRICT, RED"`
	PAP         string   `json:"pap,omitempty" doc:"PAP:CLEAR (or WHITE), GREEN, AMBER (default), RED"`
	Assignee    string   `json:"assignee,omitempty" doc:"user id of the tenant"`
	Tags        []string `json:"tags,omitempty"`
	Techniques  []string `json:"techniques,omitempty"`
	HostIDs     []string `json:"host_ids,omitempty"`
}

type updateCaseRequest struct {
	Title          *string   `json:"title,omitempty"`
	Description    *string   `json:"description,omitempty"`
	Severity       *string   `json:"severity,omitempty"`
	TLP            *string   `json:"tlp,omitempty"`
	PAP            *string   `json:"pap,omitempty"`
	Status         *string   `json:"status,omitempty" doc:"closing needs resolution; a closed case given another status is reopened"`
	Resolution     string    `json:"resolution,omitempty"`
	ResolutionType string    `json:"resolution_type,omitempty" doc:"true_positive, false_positive, benign, duplicate, indeterminate or other"`
	ReopenReason   string    `json:"reopen_reason,omitempty"`
	Assignee       *string   `json:"assignee,omitempty" doc:"user id, or empty to unassign"`
	Tags           *[]string `json:"tags,omitempty" doc:"the complete new set"`
	Techniques     *[]string `json:"techniques,omitempty" doc:"the complete new set"`
}

type taskRequest struct {
	Title       *string `json:"title,omitempty"`
	Description *string `json:"description,omitempty"`
	Status      *string `json:"status,omitempty" doc:"todo, in_progress, done or cancelled"`
	Assignee    *string `json:"assignee,omitempty"`
}

type commentRequest struct {
	Body string `json:"body"`
}

type linkHostRequest struct {
	HostID string `json:"host_id"`
}

type timelineEntry struct {
	Version int64           `json:"version"`
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"`
	Actor   string          `json:"actor"`
	Summary string          `json:"summary"`
	Data    json.RawMessage `json:"data"`
}

func caseFromView(v commands.View[cases.State], pos int64) caseRead {
	st := v.State
	c := caseRead{ID: st.ID, Title: st.Title, Description: st.Description, Status: st.Status,
		AllowedTransitions: transitions(st.Status), Severity: st.Severity, TLP: st.TLP.String(), PAP: st.PAP.String(),
		Assignee: st.Assignee, Tags: nonNilStrings(st.Tags), Techniques: nonNilStrings(st.Techniques),
		HostIDs: []string{}, ResolutionType: string(st.ResolutionType), Resolution: st.Resolution,
		CreatedAt: v.CreatedAt.UTC(), UpdatedAt: v.UpdatedAt.UTC(), Version: v.Version, Position: pos}
	for _, h := range st.Hosts {
		c.HostIDs = append(c.HostIDs, string(h))
	}
	c.Tasks = tasksOf(st)
	for _, t := range c.Tasks {
		if t.Status == cases.TaskTodo || t.Status == cases.TaskInProgress {
			c.OpenTasks++
		}
	}
	return c
}

func transitions(s cases.Status) []cases.Status {
	t := cases.Transitions(s)
	if t == nil {
		return []cases.Status{}
	}
	return t
}

func tasksOf(st cases.State) []taskRead {
	out := []taskRead{}
	for id, t := range st.Tasks {
		if !t.Deleted {
			out = append(out, taskRead{ID: id, Title: t.Title, Description: t.Description, Status: t.Status, Assignee: t.Assignee})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID }) // UUIDv7: creation order
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func caseFromRow(r caselist.Case) caseRead {
	return caseRead{ID: r.ID, TenantID: r.Tenant, Title: r.Title, Status: r.Status, AllowedTransitions: transitions(r.Status),
		Severity: r.Severity, TLP: r.TLP.String(), PAP: r.PAP.String(), Assignee: r.Assignee, Tags: nonNilStrings(r.Tags),
		Techniques: nonNilStrings(r.Techniques), HostIDs: nonNilStrings(r.Hosts), OpenTasks: r.OpenTasks,
		ResolutionType: string(r.ResolutionType), CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(), Version: r.Version}
}

// caseParams parses the path's case id; an id no case could have is not found.
func caseID(c *gin.Context) (cases.ID, bool) {
	id := c.Param("id")
	if !cases.IsRef(id) {
		fail(c, domain.ErrNotFound)
		return "", false
	}
	return cases.ID(id), true
}

// respondCase answers a write with the case as of that write.
func (s *Server) respondCase(c *gin.Context, status int, tenant domain.TenantID, id cases.ID, res commands.Result) {
	v, err := s.deps.Commands.CaseView(c.Request.Context(), tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := caseFromView(v, res.Position)
	out.TenantID = tenant
	c.Header("ETag", etag(v.Version))
	c.JSON(status, out)
}

// parseOptional parses *raw with parse when it is set.
func parseOptional[T any](raw *string, parse func(string) (T, error)) (*T, error) {
	if raw == nil {
		return nil, nil
	}
	v, err := parse(*raw)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// parseOr parses raw with parse, or returns def for an empty raw.
func parseOr[T any](raw string, def T, parse func(string) (T, error)) (T, error) {
	if raw == "" {
		return def, nil
	}
	return parse(raw)
}

func (s *Server) createCase(c *gin.Context) {
	var req createCaseRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	sev, err := parseOr(req.Severity, cases.DefaultSeverity, cases.ParseSeverity)
	if err != nil {
		fail(c, err)
		return
	}
	tlp, err := parseOr(req.TLP, cases.TLPAmber, cases.ParseTLP)
	if err != nil {
		fail(c, err)
		return
	}
	pap, err := parseOr(req.PAP, cases.PAPAmber, cases.ParsePAP)
	if err != nil {
		fail(c, err)
		return
	}
	n := cases.NewCase{Title: req.Title, Description: req.Description, Severity: sev, TLP: tlp, PAP: pap,
		Assignee: domain.UserID(req.Assignee), Tags: req.Tags, Techniques: req.Techniques}
	for _, h := range req.HostIDs {
		n.Hosts = append(n.Hosts, hosts.ID(h))
	}
	res, err := s.deps.Commands.OpenCase(c.Request.Context(), commands.OpenCase{Tenant: p.Tenant, Case: n, By: p.User, Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/cases/"+res.ID)
	s.respondCase(c, http.StatusCreated, p.Tenant, cases.ID(res.ID), res)
}

var errBadOrder = domain.Invalid("invalid_order", "order must be asc or desc")

func (s *Server) listCases(c *gin.Context) {
	p := mustPrincipal(c)
	var f caselist.Filter
	var err error
	if v := c.Query("status"); v != "" {
		if f.Status, err = cases.ParseStatus(v); err != nil {
			fail(c, err)
			return
		}
	}
	if v := c.Query("severity"); v != "" {
		if f.Severity, err = cases.ParseSeverity(v); err != nil {
			fail(c, err)
			return
		}
	}
	if v := c.Query("technique"); v != "" {
		if f.Technique, err = cases.CheckTechnique(v); err != nil {
			fail(c, err)
			return
		}
	}
	if v := c.Query("tag"); v != "" {
		tags, err := cases.NormalizeTags([]string{v})
		if err != nil {
			fail(c, err)
			return
		}
		f.Tag = tags[0]
	}
	f.Assignee = domain.UserID(c.Query("assignee"))
	sortSpec := caselist.Sort{Field: c.DefaultQuery("sort", "created_at"), Desc: true}
	if _, ok := caselist.Sorts[sortSpec.Field]; !ok {
		fail(c, caselist.ErrBadSort)
		return
	}
	switch c.DefaultQuery("order", "desc") {
	case "asc":
		sortSpec.Desc = false
	case "desc":
	default:
		fail(c, errBadOrder)
		return
	}
	page, ok := s.pageParams(c, caselist.Name)
	if !ok {
		return
	}
	rows, err := caselist.List(c.Request.Context(), s.deps.Reads, p.Tenant, f, sortSpec, page)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]caseRead, 0, len(rows))
	for _, r := range rows {
		out = append(out, caseFromRow(r))
	}
	if len(rows) == page.Limit {
		setNextCursor(c, caselist.Cursor(rows[len(rows)-1], sortSpec))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getCase(c *gin.Context) {
	p := mustPrincipal(c)
	id, ok := caseID(c)
	if !ok {
		return
	}
	v, err := s.deps.Commands.CaseView(c.Request.Context(), p.Tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := caseFromView(v, 0)
	out.TenantID = p.Tenant
	c.Header("ETag", etag(v.Version))
	c.JSON(http.StatusOK, out)
}

func (s *Server) updateCase(c *gin.Context) {
	var req updateCaseRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	id, ok := caseID(c)
	if !ok {
		return
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	cmd := commands.UpdateCase{Tenant: p.Tenant, Case: id, IfMatch: ifMatch, By: p.User, Meta: meta(c),
		Resolution: req.Resolution, ReopenReason: req.ReopenReason, Tags: req.Tags, Techniques: req.Techniques}
	var err error
	cmd.Changes.Title, cmd.Changes.Description = req.Title, req.Description
	if cmd.Changes.Severity, err = parseOptional(req.Severity, cases.ParseSeverity); err != nil {
		fail(c, err)
		return
	}
	if cmd.Changes.TLP, err = parseOptional(req.TLP, cases.ParseTLP); err != nil {
		fail(c, err)
		return
	}
	if cmd.Changes.PAP, err = parseOptional(req.PAP, cases.ParsePAP); err != nil {
		fail(c, err)
		return
	}
	if cmd.Status, err = parseOptional(req.Status, cases.ParseStatus); err != nil {
		fail(c, err)
		return
	}
	cmd.ResolutionType = cases.ResolutionType(req.ResolutionType)
	if req.Assignee != nil {
		a := domain.UserID(*req.Assignee)
		cmd.Assignee = &a
	}
	res, err := s.deps.Commands.UpdateCase(c.Request.Context(), cmd)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondCase(c, http.StatusOK, p.Tenant, id, res)
}

func (s *Server) caseTimeline(c *gin.Context) {
	p := mustPrincipal(c)
	id, ok := caseID(c)
	if !ok {
		return
	}
	envs, err := s.deps.Commands.CaseHistory(c.Request.Context(), p.Tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]timelineEntry, 0, len(envs))
	for _, e := range envs {
		out = append(out, timelineEntry{Version: int64(e.Version), Time: e.RecordedAt.UTC(), Type: e.Name,
			Actor: e.Metadata.Actor, Summary: summarize(e.Event), Data: e.Payload})
	}
	c.JSON(http.StatusOK, out)
}

// summarize says in a few words what a case event recorded.
func summarize(e domain.Event) string {
	switch e := e.(type) {
	case cases.Opened:
		return "opened the case: " + e.Title
	case cases.Updated:
		return "changed the case's details"
	case cases.StatusChanged:
		return "moved the case from " + string(e.From) + " to " + string(e.To)
	case cases.Assigned:
		if e.To == "" {
			return "unassigned the case"
		}
		return "assigned the case to " + string(e.To)
	case cases.Closed:
		return "closed the case as " + string(e.ResolutionType)
	case cases.Reopened:
		return "reopened the case"
	case cases.TagsChanged:
		return "changed the tags"
	case cases.TechniquesChanged:
		return "changed the ATT&CK techniques"
	case cases.HostLinked:
		return "linked host " + string(e.Host)
	case cases.HostUnlinked:
		return "unlinked host " + string(e.Host)
	case cases.TaskAdded:
		return "added task: " + e.Title
	case cases.TaskUpdated:
		return "changed a task"
	case cases.TaskDeleted:
		return "deleted a task"
	case cases.CommentAdded:
		return "commented"
	case cases.CommentEdited:
		return "edited a comment"
	case cases.CommentDeleted:
		return "deleted a comment"
	}
	return "recorded an event"
}

// caseChange reads the case id, If-Match and the principal for a
// sub-resource write.
func (s *Server) caseChange(c *gin.Context) (commands.CaseChange, Principal, bool) {
	p := mustPrincipal(c)
	id, ok := caseID(c)
	if !ok {
		return commands.CaseChange{}, p, false
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return commands.CaseChange{}, p, false
	}
	return commands.CaseChange{Tenant: p.Tenant, Case: id, IfMatch: ifMatch, Meta: meta(c)}, p, true
}

func (s *Server) listTasks(c *gin.Context) {
	p := mustPrincipal(c)
	id, ok := caseID(c)
	if !ok {
		return
	}
	v, err := s.deps.Commands.CaseView(c.Request.Context(), p.Tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(http.StatusOK, tasksOf(v.State))
}

var errTaskTitle = domain.Invalid("task_title_required", "a task needs a title")

func (s *Server) addTask(c *gin.Context) {
	var req taskRequest
	if !bindJSON(c, &req) {
		return
	}
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	if req.Title == nil {
		fail(c, errTaskTitle)
		return
	}
	t := cases.NewTask{Title: *req.Title, Status: cases.TaskTodo}
	if req.Description != nil {
		t.Description = *req.Description
	}
	if req.Status != nil {
		st, err := cases.ParseTaskStatus(*req.Status)
		if err != nil {
			fail(c, err)
			return
		}
		t.Status = st
	}
	if req.Assignee != nil {
		t.Assignee = domain.UserID(*req.Assignee)
	}
	res, err := s.deps.Commands.AddTask(c.Request.Context(), cc, t, p.User)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondTask(c, http.StatusCreated, cc, cases.TaskID(res.ID), res)
}

func (s *Server) respondTask(c *gin.Context, status int, cc commands.CaseChange, id cases.TaskID, res commands.Result) {
	v, err := s.deps.Commands.CaseView(c.Request.Context(), cc.Tenant, cc.Case)
	if err != nil {
		fail(c, err)
		return
	}
	t, ok := v.State.Tasks[id]
	if !ok || t.Deleted {
		fail(c, cases.ErrTaskNotFound)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(status, taskRead{ID: id, Title: t.Title, Description: t.Description, Status: t.Status, Assignee: t.Assignee,
		Version: v.Version, Position: res.Position})
}

func (s *Server) updateTask(c *gin.Context) {
	var req taskRequest
	if !bindJSON(c, &req) {
		return
	}
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	ch := cases.TaskChanges{Title: req.Title, Description: req.Description}
	var err error
	if ch.Status, err = parseOptional(req.Status, cases.ParseTaskStatus); err != nil {
		fail(c, err)
		return
	}
	if req.Assignee != nil {
		a := domain.UserID(*req.Assignee)
		ch.Assignee = &a
	}
	id := cases.TaskID(c.Param("task_id"))
	res, err := s.deps.Commands.UpdateTask(c.Request.Context(), cc, id, ch, p.User)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondTask(c, http.StatusOK, cc, id, res)
}

func (s *Server) deleteTask(c *gin.Context) {
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	if _, err := s.deps.Commands.DeleteTask(c.Request.Context(), cc, cases.TaskID(c.Param("task_id")), p.User); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listComments(c *gin.Context) {
	p := mustPrincipal(c)
	id, ok := caseID(c)
	if !ok {
		return
	}
	v, err := s.deps.Commands.CaseView(c.Request.Context(), p.Tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := []commentRead{}
	for cid, cm := range v.State.Comments {
		if !cm.Deleted {
			out = append(out, commentRead{ID: cid, Author: cm.Author, Body: cm.Body})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	c.Header("ETag", etag(v.Version))
	c.JSON(http.StatusOK, out)
}

func (s *Server) respondComment(c *gin.Context, status int, cc commands.CaseChange, id cases.CommentID, res commands.Result) {
	v, err := s.deps.Commands.CaseView(c.Request.Context(), cc.Tenant, cc.Case)
	if err != nil {
		fail(c, err)
		return
	}
	cm, ok := v.State.Comments[id]
	if !ok || cm.Deleted {
		fail(c, cases.ErrCommentNotFound)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(status, commentRead{ID: id, Author: cm.Author, Body: cm.Body, Version: v.Version, Position: res.Position})
}

func (s *Server) addComment(c *gin.Context) {
	var req commentRequest
	if !bindJSON(c, &req) {
		return
	}
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	res, err := s.deps.Commands.AddComment(c.Request.Context(), cc, req.Body, p.User)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondComment(c, http.StatusCreated, cc, cases.CommentID(res.ID), res)
}

func (s *Server) editComment(c *gin.Context) {
	var req commentRequest
	if !bindJSON(c, &req) {
		return
	}
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	id := cases.CommentID(c.Param("comment_id"))
	res, err := s.deps.Commands.EditComment(c.Request.Context(), cc, id, req.Body, p.User)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondComment(c, http.StatusOK, cc, id, res)
}

func (s *Server) deleteComment(c *gin.Context) {
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	moderator := p.Role == "admin"
	if _, err := s.deps.Commands.DeleteComment(c.Request.Context(), cc, cases.CommentID(c.Param("comment_id")), p.User, moderator); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) linkHost(c *gin.Context) {
	var req linkHostRequest
	if !bindJSON(c, &req) {
		return
	}
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	res, err := s.deps.Commands.LinkHost(c.Request.Context(), cc, hosts.ID(req.HostID), p.User)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondCase(c, http.StatusOK, p.Tenant, cc.Case, res)
}

func (s *Server) unlinkHost(c *gin.Context) {
	cc, p, ok := s.caseChange(c)
	if !ok {
		return
	}
	res, err := s.deps.Commands.UnlinkHost(c.Request.Context(), cc, hosts.ID(c.Param("host_id")), p.User)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondCase(c, http.StatusOK, p.Tenant, cc.Case, res)
}
