package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	"velocicompanion/projections/artifactlist"
)

// Who may do what with artifacts: every user of the tenant reads, analysts
// and administrators write, administrators delete.
var (
	artifactWriters  = []string{string(users.RoleAnalyst), string(users.RoleAdmin)}
	artifactDeleters = []string{string(users.RoleAdmin)}
)

const artifactKindsDoc = "md5, sha1, sha256, ipv4, ipv6, cidr, domain, url, email, filename, file_path, registry_key, user_agent or other"

// artifactRead is an artifact (observable) as the API shows it, with the
// original API's field names.
type artifactRead struct {
	ID               artifacts.ID    `json:"id"`
	ArtifactType     artifacts.Kind  `json:"artifact_type" doc:"the kind of value: md5, sha1, sha256, ipv4, ipv6, cidr, domain, url, email, filename, file_path, registry_key, user_agent or other"`
	Value            string          `json:"value" doc:"the value in its normalised form (lower-case hashes and domains, canonical IPs, punycode IDNs, masked CIDRs)"`
	Description      string          `json:"description"`
	CaseID           *cases.ID       `json:"case_id" doc:"the case the artifact is attached to, or null"`
	HostID           *hosts.ID       `json:"host_id" doc:"the host the artifact is attached to, or null"`
	Tags             []string        `json:"tags"`
	TLP              string          `json:"tlp" doc:"TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT or TLP:RED"`
	IsIOC            bool            `json:"is_ioc"`
	Source           string          `json:"source"`
	ArtifactMetadata json.RawMessage `json:"artifact_metadata" doc:"a JSON object; {} for none"`
	Sightings        int             `json:"sightings" doc:"how often the value was seen: adding it counts once, and so does every repeated add and sighting"`
	FirstSeen        time.Time       `json:"first_seen"`
	LastSeen         time.Time       `json:"last_seen"`
	CreatedAt        time.Time       `json:"created_at"`
	Version          int64           `json:"version"`
	Position         int64           `json:"position,omitempty" doc:"global position of the write; pass it as min_position to read your own write"`
}

type createArtifactRequest struct {
	ArtifactType     artifacts.Kind  `json:"artifact_type" doc:"md5, sha1, sha256, ipv4, ipv6, cidr, domain, url, email, filename, file_path, registry_key, user_agent or other"`
	Value            string          `json:"value" doc:"validated and normalised for artifact_type; a bad value is refused with 400 invalid_<kind>"`
	Description      string          `json:"description,omitempty"`
	CaseID           cases.ID        `json:"case_id,omitempty" doc:"a case of your tenant; case_id, host_id or both are required"`
	HostID           hosts.ID        `json:"host_id,omitempty" doc:"a host of your tenant"`
	Tags             []string        `json:"tags,omitempty"`
	TLP              cases.TLP       `json:"tlp,omitempty" doc:"TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT or TLP:RED (the prefix and case are optional; WHITE means CLEAR); default: the case's TLP, or TLP:AMBER"`
	IsIOC            bool            `json:"is_ioc,omitempty"`
	Source           string          `json:"source,omitempty" doc:"where the value came from, such as velociraptor or misp"`
	ArtifactMetadata json.RawMessage `json:"artifact_metadata,omitempty" doc:"a JSON object"`
}

type updateArtifactRequest struct {
	Description      *string         `json:"description,omitempty"`
	Tags             *[]string       `json:"tags,omitempty" doc:"the whole new set of tags"`
	TLP              *cases.TLP      `json:"tlp,omitempty"`
	IsIOC            *bool           `json:"is_ioc,omitempty"`
	Source           *string         `json:"source,omitempty"`
	ArtifactMetadata json.RawMessage `json:"artifact_metadata,omitempty" doc:"replaces the metadata; {} or null removes it"`
}

type sightArtifactRequest struct {
	HostID hosts.ID   `json:"host_id,omitempty" doc:"a host of your tenant the value was seen on"`
	Source string     `json:"source,omitempty"`
	SeenAt *time.Time `json:"seen_at,omitempty" doc:"when the value was seen (RFC 3339); default now; at most 5 minutes in the future"`
}

// artifactRoutes are the artifact (observable) routes.
func (s *Server) artifactRoutes() []op {
	page := pageParams
	sorting := []param{
		{Name: "sort", In: "query", Desc: "created_at (default), last_seen, first_seen, sightings or value"},
		{Name: "order", In: "query", Desc: "asc or desc (default desc, asc for value)"},
	}
	filters := []param{
		{Name: "case_id", In: "query", Desc: "only artifacts attached to this case"},
		{Name: "host_id", In: "query", Desc: "only artifacts attached to or sighted on this host"},
		{Name: "kind", In: "query", Desc: "only this kind: " + artifactKindsDoc + " (artifact_type is accepted too)"},
		{Name: "is_ioc", In: "query", Type: "boolean", Desc: "only indicators of compromise (true) or only other observables (false)"},
		{Name: "tag", In: "query", Desc: "only artifacts with this tag"},
		{Name: "value", In: "query", Desc: "only this value, normalised for kind, or for every kind when kind is not given"},
	}
	lookup := []param{
		{Name: "value", In: "query", Required: true, Desc: "the value to look up"},
		{Name: "kind", In: "query", Desc: "its kind; when not given, the value is normalised for every kind it fits and all of them are looked up"},
	}
	list := append(append(append([]param{}, filters...), sorting...), page...)
	return []op{
		{method: http.MethodGet, path: "/api/artifacts", summary: "List the tenant's artifacts (observables)", tag: "artifacts", access: anyUser, query: list, resp: []artifactRead{}, handler: s.listArtifacts},
		{method: http.MethodPost, path: "/api/artifacts", summary: "Add an artifact to a case and/or host; 201 when new, 200 with the existing artifact when its value is already one in that case (or on that host), whose sightings it counts", tag: "artifacts", access: roleList, roles: artifactWriters, req: createArtifactRequest{}, resp: artifactRead{}, status: http.StatusCreated, handler: s.createArtifact},
		{method: http.MethodGet, path: "/api/artifacts/lookup", summary: "Find every artifact of the tenant with a value, across cases and hosts", tag: "artifacts", access: anyUser, query: append(append(lookup, sorting...), page...), resp: []artifactRead{}, handler: s.lookupArtifacts},
		{method: http.MethodGet, path: "/api/artifacts/:id", summary: "Get an artifact", tag: "artifacts", access: anyUser, resp: artifactRead{}, handler: s.getArtifact},
		{method: http.MethodPatch, path: "/api/artifacts/:id", summary: "Change an artifact's description, tags, TLP, IOC flag, source or metadata (If-Match supported)", tag: "artifacts", access: roleList, roles: artifactWriters, req: updateArtifactRequest{}, resp: artifactRead{}, handler: s.updateArtifact},
		{method: http.MethodDelete, path: "/api/artifacts/:id", summary: "Delete an artifact (soft: history is kept; the value may be added again as a new artifact)", tag: "artifacts", access: roleList, roles: artifactDeleters, status: http.StatusNoContent, handler: s.deleteArtifact},
		{method: http.MethodPost, path: "/api/artifacts/:id/sightings", summary: "Record that an artifact's value was seen again", tag: "artifacts", access: roleList, roles: artifactWriters, req: sightArtifactRequest{}, resp: artifactRead{}, handler: s.sightArtifact},
	}
}

func artifactFromView(v commands.ArtifactView) artifactRead {
	st := v.State
	return artifactRead{
		ID: st.ID, ArtifactType: st.Kind, Value: st.Value, Description: st.Description,
		CaseID: optionalRef(st.Case), HostID: optionalRef(st.Host), Tags: nonNilTags(st.Tags), TLP: st.TLP.String(),
		IsIOC: st.IOC, Source: st.Source, ArtifactMetadata: metadataOrEmpty(st.Metadata), Sightings: st.Sightings,
		FirstSeen: v.FirstSeen.UTC(), LastSeen: v.LastSeen.UTC(), CreatedAt: v.CreatedAt.UTC(), Version: v.Version,
	}
}

func artifactFromRow(a artifactlist.Artifact) artifactRead {
	return artifactRead{
		ID: a.ID, ArtifactType: a.Kind, Value: a.Value, Description: a.Description,
		CaseID: optionalRef(a.Case), HostID: optionalRef(a.Host), Tags: nonNilTags(a.Tags), TLP: a.TLP.String(),
		IsIOC: a.IOC, Source: a.Source, ArtifactMetadata: metadataOrEmpty(a.Metadata), Sightings: a.Sightings,
		FirstSeen: a.FirstSeen.UTC(), LastSeen: a.LastSeen.UTC(), CreatedAt: a.CreatedAt.UTC(), Version: a.Version,
	}
}

// optionalRef returns a pointer to id, or nil (JSON null) when it is empty.
func optionalRef[T ~string](id T) *T {
	if id == "" {
		return nil
	}
	return &id
}

func nonNilTags(tags []string) []string {
	if tags == nil {
		return []string{}
	}
	return tags
}

func metadataOrEmpty(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage(`{}`)
	}
	return m
}

// respondArtifact answers a write with the artifact as of that write.
func (s *Server) respondArtifact(c *gin.Context, status int, tenant domain.TenantID, res commands.Result) {
	v, err := s.deps.Commands.ArtifactView(c.Request.Context(), tenant, artifacts.ID(res.ID))
	if err != nil {
		fail(c, err)
		return
	}
	out := artifactFromView(v)
	out.Position = res.Position
	c.Header("ETag", etag(v.Version))
	c.JSON(status, out)
}

func (s *Server) createArtifact(c *gin.Context) {
	var req createArtifactRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	res, err := s.deps.Commands.AddArtifact(c.Request.Context(), commands.AddArtifact{
		Tenant: p.Tenant,
		Artifact: artifacts.NewArtifact{
			Kind: req.ArtifactType, Value: req.Value, Case: req.CaseID, Host: req.HostID,
			Description: req.Description, Tags: req.Tags, TLP: req.TLP, IOC: req.IsIOC,
			Source: req.Source, Metadata: req.ArtifactMetadata,
		},
		By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/artifacts/"+res.ID)
	if res.Sighted {
		s.respondArtifact(c, http.StatusOK, p.Tenant, res.Result)
		return
	}
	s.respondArtifact(c, http.StatusCreated, p.Tenant, res.Result)
}

// getArtifact reads one artifact from its stream, so that it is always as of
// the latest write (a deleted artifact is gone at once), like a case.
func (s *Server) getArtifact(c *gin.Context) {
	p := mustPrincipal(c)
	v, err := s.deps.Commands.ArtifactView(c.Request.Context(), p.Tenant, artifacts.ID(c.Param("id")))
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(http.StatusOK, artifactFromView(v))
}

var errEmptyArtifactUpdate = domain.Invalid("empty_update", "nothing to change: give description, tags, tlp, is_ioc, source or artifact_metadata")

func (s *Server) updateArtifact(c *gin.Context) {
	var req updateArtifactRequest
	if !bindJSON(c, &req) {
		return
	}
	if req.Description == nil && req.Tags == nil && req.TLP == nil && req.IsIOC == nil && req.Source == nil && req.ArtifactMetadata == nil {
		fail(c, errEmptyArtifactUpdate)
		return
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	p := mustPrincipal(c)
	id := artifacts.ID(c.Param("id"))
	res, err := s.deps.Commands.UpdateArtifact(c.Request.Context(), commands.UpdateArtifact{
		Tenant: p.Tenant, Artifact: id,
		Changes: artifacts.Changes{Description: req.Description, Tags: req.Tags, TLP: req.TLP, IOC: req.IsIOC,
			Source: req.Source, Metadata: req.ArtifactMetadata},
		IfMatch: ifMatch, By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	res.ID = string(id)
	s.respondArtifact(c, http.StatusOK, p.Tenant, res)
}

func (s *Server) deleteArtifact(c *gin.Context) {
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	p := mustPrincipal(c)
	_, err := s.deps.Commands.DeleteArtifact(c.Request.Context(), commands.DeleteArtifact{
		Tenant: p.Tenant, Artifact: artifacts.ID(c.Param("id")), IfMatch: ifMatch, By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) sightArtifact(c *gin.Context) {
	var req sightArtifactRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	sg := artifacts.Sighting{Host: req.HostID, Source: req.Source}
	if req.SeenAt != nil {
		sg.At = *req.SeenAt
	}
	id := artifacts.ID(c.Param("id"))
	res, err := s.deps.Commands.SightArtifact(c.Request.Context(), commands.SightArtifact{
		Tenant: p.Tenant, Artifact: id, Sighting: sg, By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	res.ID = string(id)
	s.respondArtifact(c, http.StatusOK, p.Tenant, res)
}

var (
	errArtifactValueRequired = domain.Invalid("value_required", "value must be given")
	errArtifactValueInvalid  = domain.Invalid("invalid_value", "value is not a valid value of any kind: it must be 1 to 2048 printable characters")
	errArtifactIOCInvalid    = domain.Invalid("invalid_is_ioc", "is_ioc must be true or false")
)

// artifactKindParam reads the kind query parameter (or artifact_type, the
// original field name); "" when neither is given.
func artifactKindParam(c *gin.Context) (artifacts.Kind, error) {
	raw := c.Query("kind")
	if raw == "" {
		raw = c.Query("artifact_type")
	}
	if raw == "" {
		return "", nil
	}
	return artifacts.ParseKind(raw)
}

// artifactValues returns the normalised forms of value to look up: for kind
// alone when it is given (an error naming the expected form if the value does
// not fit it), else for every kind the value fits.
func artifactValues(kind artifacts.Kind, value string) ([]artifactlist.Value, error) {
	if strings.TrimSpace(value) == "" {
		return nil, errArtifactValueRequired
	}
	if kind != "" {
		v, err := artifacts.Normalize(kind, value)
		if err != nil {
			return nil, err
		}
		return []artifactlist.Value{{Kind: kind, Value: v}}, nil
	}
	var out []artifactlist.Value
	for _, k := range artifacts.Kinds() {
		if v, err := artifacts.Normalize(k, value); err == nil {
			out = append(out, artifactlist.Value{Kind: k, Value: v})
		}
	}
	if len(out) == 0 {
		return nil, errArtifactValueInvalid
	}
	return out, nil
}

// artifactFilter reads the list filters of the query string.
func artifactFilter(c *gin.Context) (artifactlist.Filter, error) {
	f := artifactlist.Filter{Case: cases.ID(c.Query("case_id")), Host: hosts.ID(c.Query("host_id"))}
	var err error
	if f.Kind, err = artifactKindParam(c); err != nil {
		return f, err
	}
	if raw := c.Query("is_ioc"); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return f, errArtifactIOCInvalid
		}
		f.IOC = &b
	}
	if raw := c.Query("tag"); raw != "" {
		tags, err := cases.NormalizeTags([]string{raw})
		if err != nil {
			return f, err
		}
		f.Tag = tags[0]
	}
	if raw, ok := c.GetQuery("value"); ok {
		if f.Values, err = artifactValues(f.Kind, raw); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (s *Server) listArtifacts(c *gin.Context) {
	f, err := artifactFilter(c)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondArtifactList(c, f)
}

func (s *Server) lookupArtifacts(c *gin.Context) {
	kind, err := artifactKindParam(c)
	if err != nil {
		fail(c, err)
		return
	}
	values, err := artifactValues(kind, c.Query("value"))
	if err != nil {
		fail(c, err)
		return
	}
	s.respondArtifactList(c, artifactlist.Filter{Values: values})
}

// respondArtifactList answers one page of the caller's tenant's artifacts
// matching f, in the order the query asks for.
func (s *Server) respondArtifactList(c *gin.Context, f artifactlist.Filter) {
	sort, err := artifactlist.ParseSort(c.Query("sort"), c.Query("order"))
	if err != nil {
		fail(c, err)
		return
	}
	page, ok := s.pageParams(c, artifactlist.Name)
	if !ok {
		return
	}
	p := mustPrincipal(c)
	rows, err := artifactlist.List(c.Request.Context(), s.deps.Reads, p.Tenant, f, sort, page)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]artifactRead, 0, len(rows))
	for _, r := range rows {
		out = append(out, artifactFromRow(r))
	}
	if len(rows) == page.Limit {
		setNextCursor(c, artifactlist.Cursor(rows[len(rows)-1], sort))
	}
	c.JSON(http.StatusOK, out)
}
