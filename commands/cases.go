package commands

import (
	"context"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerCaseEvents) }

func registerCaseEvents(c *eventstore.Codec) {
	eventstore.Register[cases.Opened](c, 1)
	eventstore.Register[cases.Updated](c, 1)
	eventstore.Register[cases.StatusChanged](c, 1)
	eventstore.Register[cases.Assigned](c, 1)
	eventstore.Register[cases.Closed](c, 1)
	eventstore.Register[cases.Reopened](c, 1)
	eventstore.Register[cases.TagsChanged](c, 1)
	eventstore.Register[cases.TechniquesChanged](c, 1)
	eventstore.Register[cases.HostLinked](c, 1)
	eventstore.Register[cases.HostUnlinked](c, 1)
	eventstore.Register[cases.TaskAdded](c, 1)
	eventstore.Register[cases.TaskUpdated](c, 1)
	eventstore.Register[cases.TaskDeleted](c, 1)
	eventstore.Register[cases.CommentAdded](c, 1)
	eventstore.Register[cases.CommentEdited](c, 1)
	eventstore.Register[cases.CommentDeleted](c, 1)
}

// Errors of the case commands.
var (
	ErrAssigneeUnknown = domain.Unprocessable("assignee_unknown", "the assignee is not an active user of this tenant")
	ErrHostUnknown     = domain.Unprocessable("host_unknown", "the linked host does not exist in this tenant")
)

func caseKey(tenant domain.TenantID, id cases.ID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: "case", ID: string(id)}
}

// checkAssignee refuses a user who is not an active member of tenant. An empty
// user (unassigned) passes.
func (h *Handler) checkAssignee(ctx context.Context, tenant domain.TenantID, user domain.UserID) error {
	if user == "" {
		return nil
	}
	var ok bool
	err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM identities
		WHERE user_id = $1 AND tenant_id = $2 AND status = 'active')`, string(user), string(tenant)).Scan(&ok)
	if err != nil {
		return err
	}
	if !ok {
		return ErrAssigneeUnknown
	}
	return nil
}

// checkHosts refuses hosts that do not exist (or were deleted) in tenant.
func (h *Handler) checkHosts(ctx context.Context, tenant domain.TenantID, ids []hosts.ID) error {
	for _, id := range ids {
		s, _, err := load(ctx, h, hostKey(tenant, id), hosts.Evolve)
		if err != nil {
			return err
		}
		if !s.Exists || s.Deleted {
			return ErrHostUnknown
		}
	}
	return nil
}

// OpenCase asks to open an investigation case.
type OpenCase struct {
	Tenant domain.TenantID
	Case   cases.NewCase // ID is assigned by the handler
	By     domain.UserID
	Meta   eventstore.Metadata
}

// OpenCase opens a case with a new id.
func (h *Handler) OpenCase(ctx context.Context, cmd OpenCase) (Result, error) {
	n := cmd.Case
	n.ID = cases.ID(h.newID())
	if _, err := cases.Open(cases.State{}, n, cmd.By); err != nil {
		return Result{}, err
	}
	if err := h.checkAssignee(ctx, cmd.Tenant, n.Assignee); err != nil {
		return Result{}, err
	}
	if err := h.checkHosts(ctx, cmd.Tenant, n.Hosts); err != nil {
		return Result{}, err
	}
	return h.update(ctx, caseKey(cmd.Tenant, n.ID), cmd.Meta, 0, func(history []domain.Event) ([]domain.Event, error) {
		return cases.Open(domain.Fold(cases.Evolve, history), n, cmd.By)
	}, nil)
}

// UpdateCase changes a case; nil fields stay as they are. Moving Status to
// closed closes the case with the resolution; moving a closed case to another
// status reopens it first.
type UpdateCase struct {
	Tenant         domain.TenantID
	Case           cases.ID
	Changes        cases.Changes
	Status         *cases.Status
	Resolution     string
	ResolutionType cases.ResolutionType
	ReopenReason   string
	Assignee       *domain.UserID // "" unassigns
	Tags           *[]string
	Techniques     *[]string
	IfMatch        int64
	By             domain.UserID
	Meta           eventstore.Metadata
}

// UpdateCase decides every change of cmd on one state and appends them
// together: the request is applied whole or not at all.
func (h *Handler) UpdateCase(ctx context.Context, cmd UpdateCase) (Result, error) {
	if cmd.Assignee != nil {
		if err := h.caseExists(ctx, cmd.Tenant, cmd.Case); err != nil {
			return Result{}, err
		}
		if err := h.checkAssignee(ctx, cmd.Tenant, *cmd.Assignee); err != nil {
			return Result{}, err
		}
	}
	return h.update(ctx, caseKey(cmd.Tenant, cmd.Case), cmd.Meta, cmd.IfMatch, func(history []domain.Event) ([]domain.Event, error) {
		s := domain.Fold(cases.Evolve, history)
		if !s.Exists {
			return nil, domain.ErrNotFound
		}
		var st steps[cases.State]
		st.s = s
		closing := cmd.Status != nil && *cmd.Status == cases.StatusClosed
		if cmd.Status != nil && !closing && s.Status == cases.StatusClosed {
			st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) { return cases.Reopen(s, cmd.ReopenReason, cmd.By) })
		}
		st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) { return cases.Update(s, cmd.Changes, cmd.By) })
		if cmd.Assignee != nil {
			st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) { return cases.Assign(s, *cmd.Assignee, cmd.By) })
		}
		if cmd.Tags != nil {
			st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) { return cases.SetTags(s, *cmd.Tags, cmd.By) })
		}
		if cmd.Techniques != nil {
			st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) { return cases.SetTechniques(s, *cmd.Techniques, cmd.By) })
		}
		switch {
		case closing && s.Status != cases.StatusClosed:
			st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) {
				return cases.Close(s, cmd.ResolutionType, cmd.Resolution, cmd.By)
			})
		case cmd.Status != nil && !closing:
			st.do(cases.Evolve, func(s cases.State) ([]domain.Event, error) { return cases.ChangeStatus(s, *cmd.Status, cmd.By) })
		}
		return st.out, st.err
	}, nil)
}

// steps chains decisions on one state: each sees the state after the events
// of the ones before, and the first error stops the chain.
type steps[S any] struct {
	s   S
	out []domain.Event
	err error
}

func (st *steps[S]) do(evolve func(S, domain.Event) S, decide func(S) ([]domain.Event, error)) {
	if st.err != nil {
		return
	}
	events, err := decide(st.s)
	if err != nil {
		st.err = err
		return
	}
	for _, e := range events {
		st.s = evolve(st.s, e)
	}
	st.out = append(st.out, events...)
}

// CaseChange asks for one change to a case's sub-resources (tasks, comments,
// linked hosts); Decide gets the case's state.
type CaseChange struct {
	Tenant  domain.TenantID
	Case    cases.ID
	IfMatch int64
	Meta    eventstore.Metadata
}

// AddTask adds a task to a case and returns its new id in Result.ID.
func (h *Handler) AddTask(ctx context.Context, cc CaseChange, t cases.NewTask, by domain.UserID) (Result, error) {
	if err := h.caseExists(ctx, cc.Tenant, cc.Case); err != nil {
		return Result{}, err
	}
	if err := h.checkAssignee(ctx, cc.Tenant, t.Assignee); err != nil {
		return Result{}, err
	}
	t.ID = cases.TaskID(h.newID())
	res, err := h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.AddTask(s, t, by) })
	res.ID = string(t.ID)
	return res, err
}

// UpdateTask changes a task of a case.
func (h *Handler) UpdateTask(ctx context.Context, cc CaseChange, id cases.TaskID, ch cases.TaskChanges, by domain.UserID) (Result, error) {
	if ch.Assignee != nil {
		if err := h.caseExists(ctx, cc.Tenant, cc.Case); err != nil {
			return Result{}, err
		}
		if err := h.checkAssignee(ctx, cc.Tenant, *ch.Assignee); err != nil {
			return Result{}, err
		}
	}
	return h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.UpdateTask(s, id, ch, by) })
}

// DeleteTask removes a task from a case.
func (h *Handler) DeleteTask(ctx context.Context, cc CaseChange, id cases.TaskID, by domain.UserID) (Result, error) {
	return h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.DeleteTask(s, id, by) })
}

// AddComment adds a comment to a case and returns its new id in Result.ID.
func (h *Handler) AddComment(ctx context.Context, cc CaseChange, body string, by domain.UserID) (Result, error) {
	id := cases.CommentID(h.newID())
	res, err := h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.AddComment(s, id, body, by) })
	res.ID = string(id)
	return res, err
}

// EditComment changes the body of the author's own comment.
func (h *Handler) EditComment(ctx context.Context, cc CaseChange, id cases.CommentID, body string, by domain.UserID) (Result, error) {
	return h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.EditComment(s, id, body, by) })
}

// DeleteComment removes a comment; moderators (tenant administrators) may
// remove anyone's.
func (h *Handler) DeleteComment(ctx context.Context, cc CaseChange, id cases.CommentID, by domain.UserID, moderator bool) (Result, error) {
	return h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.DeleteComment(s, id, by, moderator) })
}

// LinkHost links a host of the tenant to a case.
func (h *Handler) LinkHost(ctx context.Context, cc CaseChange, host hosts.ID, by domain.UserID) (Result, error) {
	if err := h.caseExists(ctx, cc.Tenant, cc.Case); err != nil {
		return Result{}, err
	}
	if err := h.checkHosts(ctx, cc.Tenant, []hosts.ID{host}); err != nil {
		return Result{}, err
	}
	return h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.LinkHost(s, host, by) })
}

// UnlinkHost removes a host from a case.
func (h *Handler) UnlinkHost(ctx context.Context, cc CaseChange, host hosts.ID, by domain.UserID) (Result, error) {
	return h.changeCase(ctx, cc, func(s cases.State) ([]domain.Event, error) { return cases.UnlinkHost(s, host, by) })
}

func (h *Handler) changeCase(ctx context.Context, cc CaseChange, decide func(cases.State) ([]domain.Event, error)) (Result, error) {
	return h.update(ctx, caseKey(cc.Tenant, cc.Case), cc.Meta, cc.IfMatch, func(history []domain.Event) ([]domain.Event, error) {
		s := domain.Fold(cases.Evolve, history)
		if !s.Exists {
			return nil, domain.ErrNotFound
		}
		return decide(s)
	}, nil)
}

// caseExists answers domain.ErrNotFound for a case the tenant does not have,
// so that checks of other inputs never reveal anything about another
// tenant's cases.
func (h *Handler) caseExists(ctx context.Context, tenant domain.TenantID, id cases.ID) error {
	s, _, err := load(ctx, h, caseKey(tenant, id), cases.Evolve)
	if err != nil {
		return err
	}
	if !s.Exists {
		return domain.ErrNotFound
	}
	return nil
}

// CaseView returns case id's current state, or domain.ErrNotFound.
func (h *Handler) CaseView(ctx context.Context, tenant domain.TenantID, id cases.ID) (View[cases.State], error) {
	return view(ctx, h, caseKey(tenant, id), cases.Evolve)
}

// CaseHistory returns the events of case id, oldest first, or domain.ErrNotFound.
func (h *Handler) CaseHistory(ctx context.Context, tenant domain.TenantID, id cases.ID) ([]eventstore.Envelope, error) {
	envs, err := h.store.Load(ctx, caseKey(tenant, id))
	if err == nil && len(envs) == 0 {
		return nil, domain.ErrNotFound
	}
	return envs, err
}
