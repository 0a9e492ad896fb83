package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/projections/hostsearch"
)

var (
	hostWriters  = []string{"analyst", "admin"}
	hostDeleters = []string{"admin"}
)

// hostRoutes are the host routes.
func (s *Server) hostRoutes() []op {
	list := append([]param{
		{Name: "hostname", In: "query", Desc: "case-insensitive substring of the hostname (% and _ match themselves)"},
		{Name: "hostname_prefix", In: "query", Desc: "case-insensitive prefix of the hostname"},
		{Name: "ip", In: "query", Desc: "an address (exact) or a network in CIDR notation, IPv4 or IPv6, e.g. 10.0.0.0/8"},
		{Name: "os", In: "query", Desc: "operating system, case-insensitive"},
		{Name: "label", In: "query"},
		{Name: "last_seen_before", In: "query", Desc: "RFC 3339 time; hosts last seen before it"},
		{Name: "last_seen_after", In: "query", Desc: "RFC 3339 time; hosts last seen after it"},
		{Name: "score_min", In: "query", Type: "integer", Desc: "lowest threat score, 0 to 100"},
		{Name: "quarantined", In: "query", Desc: "true: only quarantined hosts (quarantine.status quarantined); false: all the others"},
		{Name: "sort", In: "query", Desc: "hostname (default), fqdn, os, last_seen, first_seen, score or created_at"},
		{Name: "order", In: "query", Desc: "asc (default) or desc"},
		{Name: "include_total", In: "query", Desc: "true: the number of matching hosts in X-Total-Count"},
	}, pageParams...)
	ifMatch := param{Name: "If-Match", In: "header", Desc: `the host version you last saw, e.g. "3"; a stale one answers 412`}
	history := []param{
		{Name: "limit", In: "query", Type: "integer", Desc: "page size, 1 to 500 (default 100)"},
		{Name: "before", In: "query", Type: "integer", Desc: "only events with a lower version: the X-Next-Cursor of the previous page (cursor= is accepted too)"},
	}
	return []op{
		{method: http.MethodGet, path: "/api/hosts", summary: "List and search the tenant's hosts", tag: "hosts", access: anyUser, query: list, resp: []hostRead{}, handler: s.listHosts},
		{method: http.MethodPost, path: "/api/hosts", summary: "Register a host", tag: "hosts", access: roleList, roles: hostWriters, req: createHostRequest{}, resp: hostRead{}, status: http.StatusCreated, handler: s.createHost},
		{method: http.MethodGet, path: "/api/hosts/:id", summary: "Get a host (ETag is its version)", tag: "hosts", access: anyUser, query: minPositionParam, resp: hostRead{}, handler: s.getHost},
		{method: http.MethodPatch, path: "/api/hosts/:id", summary: "Change a host's profile, labels or last-seen time", tag: "hosts", access: roleList, roles: hostWriters, query: []param{ifMatch}, req: updateHostRequest{}, resp: hostRead{}, handler: s.updateHost},
		{method: http.MethodDelete, path: "/api/hosts/:id", summary: "Delete a host (soft: its history is kept)", tag: "hosts", access: roleList, roles: hostDeleters, query: []param{ifMatch}, status: http.StatusNoContent, handler: s.deleteHost},
		{method: http.MethodGet, path: "/api/hosts/:id/history", summary: "A host's events, newest first (kept after deletion)", tag: "hosts", access: anyUser, query: history, resp: []hostEventRead{}, handler: s.hostHistory},
	}
}

// hostRead is a host as the API shows it: the original HostRead fields (id,
// hostname, ip_address, os, tenant_id, host_metadata, created_at, last_seen)
// and the rest of its profile.
type hostRead struct {
	ID                   hosts.ID        `json:"id"`
	Hostname             string          `json:"hostname"`
	IPAddress            *string         `json:"ip_address" doc:"the first of ip_addresses (IPv4 first), as in the original API; null for none"`
	OS                   *string         `json:"os"`
	TenantID             domain.TenantID `json:"tenant_id"`
	HostMetadata         json.RawMessage `json:"host_metadata" doc:"free-form JSON object; null for none"`
	CreatedAt            time.Time       `json:"created_at"`
	LastSeen             *time.Time      `json:"last_seen" doc:"null until the host was seen"`
	IPAddresses          []string        `json:"ip_addresses" doc:"canonical addresses, IPv4 first"`
	FQDN                 *string         `json:"fqdn"`
	OSVersion            *string         `json:"os_version"`
	Labels               []string        `json:"labels" doc:"lower case, sorted"`
	VelociraptorClientID *string         `json:"velociraptor_client_id" doc:"C. and 16 hexadecimal digits; unique among the tenant's hosts"`
	FirstSeen            *time.Time      `json:"first_seen"`
	ThreatScore          *int            `json:"threat_score" doc:"0 to 100; null until scored"`
	ThreatClass          *hosts.Class    `json:"threat_class" doc:"benign, low, medium, high or critical; null until scored"`
	Source               hosts.Source    `json:"source" doc:"who registered or discovered the host: analyst or velociraptor"`
	UpdatedAt            time.Time       `json:"updated_at"`
	Version              int64           `json:"version"`
	Position             int64           `json:"position,omitempty" doc:"global position of the write; pass it as min_position to read your own write"`
	Quarantine           hostQuarantine  `json:"quarantine" doc:"the host's network isolation through Velociraptor"`
}

// hostQuarantine is where a host's network quarantine stands.
type hostQuarantine struct {
	Status       string     `json:"status" doc:"none, quarantine_requested, quarantined, release_requested, released or failed (a quarantine or release failed: whether the host is isolated is unknown)"`
	CollectionID *string    `json:"collection_id" doc:"the Velociraptor collection of the latest quarantine or release (GET /api/velociraptor/collections/{id}); null for none"`
	UpdatedAt    *time.Time `json:"updated_at" doc:"when the status last changed; null for none, and in the answer to a host write"`
}

// quarantineRead returns a host's quarantine as the API shows it.
func quarantineRead(status hosts.QuarantineStatus, collection string, at *time.Time) hostQuarantine {
	q := hostQuarantine{Status: string(status), CollectionID: hostText(collection)}
	if status == hosts.StatusNotQuarantined {
		q.Status = "none"
	}
	if at != nil {
		q.UpdatedAt = hostTime(*at)
	}
	return q
}

// createHostRequest is the body of POST /api/hosts.
type createHostRequest struct {
	Hostname             string          `json:"hostname"`
	IPAddress            string          `json:"ip_address,omitempty" doc:"one address, as in the original API; joins ip_addresses"`
	IPAddresses          []string        `json:"ip_addresses,omitempty"`
	FQDN                 string          `json:"fqdn,omitempty"`
	OS                   string          `json:"os,omitempty"`
	OSVersion            string          `json:"os_version,omitempty"`
	Labels               []string        `json:"labels,omitempty"`
	VelociraptorClientID string          `json:"velociraptor_client_id,omitempty"`
	HostMetadata         json.RawMessage `json:"host_metadata,omitempty" doc:"a JSON object of at most 64 KiB"`
	LastSeen             *string         `json:"last_seen,omitempty" doc:"RFC 3339 time the host was last seen"`
}

// updateHostRequest is the body of PATCH /api/hosts/{id}; absent fields stay
// as they are.
type updateHostRequest struct {
	Hostname             *string         `json:"hostname,omitempty"`
	IPAddress            *string         `json:"ip_address,omitempty" doc:"as in the original API: the host's addresses become this one"`
	IPAddresses          *[]string       `json:"ip_addresses,omitempty" doc:"the host's addresses become these; [] removes them"`
	FQDN                 *string         `json:"fqdn,omitempty" doc:"empty removes it"`
	OS                   *string         `json:"os,omitempty"`
	OSVersion            *string         `json:"os_version,omitempty"`
	Labels               *[]string       `json:"labels,omitempty" doc:"the host's labels become exactly these"`
	AddLabels            []string        `json:"add_labels,omitempty"`
	RemoveLabels         []string        `json:"remove_labels,omitempty"`
	VelociraptorClientID *string         `json:"velociraptor_client_id,omitempty" doc:"empty removes it"`
	HostMetadata         json.RawMessage `json:"host_metadata,omitempty" doc:"replaces the metadata; {} or null removes it"`
	LastSeen             *string         `json:"last_seen,omitempty" doc:"RFC 3339 time the host was seen; moves last_seen forward (or first_seen back)"`
}

// hostEventRead is one entry of a host's history.
type hostEventRead struct {
	Version   int64           `json:"version"`
	Type      string          `json:"type" doc:"the event's name, e.g. host.registered"`
	Time      time.Time       `json:"time"`
	Actor     string          `json:"actor" doc:"the user id (apikey:<id> for an API key, or system) that caused it"`
	ActorType string          `json:"actor_type,omitempty"`
	Position  int64           `json:"position"`
	Payload   json.RawMessage `json:"payload" doc:"the event's fields"`
}

// hostList returns s, or an empty list for nil, so that JSON shows [].
func hostList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hostText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func hostTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func hostFromView(v commands.View[hosts.State], tenant domain.TenantID, pos int64) hostRead {
	st := v.State
	out := hostRead{ID: st.ID, Hostname: st.Hostname, OS: hostText(st.OS), TenantID: tenant,
		HostMetadata: st.Metadata, CreatedAt: v.CreatedAt.UTC(), LastSeen: hostTime(st.LastSeen),
		IPAddresses: hostList(st.IPs), FQDN: hostText(st.FQDN), OSVersion: hostText(st.OSVersion),
		Labels: hostList(st.Labels), VelociraptorClientID: hostText(st.ClientID),
		FirstSeen: hostTime(st.FirstSeen), Source: st.Origin, UpdatedAt: v.UpdatedAt.UTC(), Version: v.Version,
		Position: pos, Quarantine: quarantineRead(st.Quarantine.Status, st.Quarantine.Collection, nil)}
	if len(st.IPs) > 0 {
		out.IPAddress = &st.IPs[0]
	}
	if st.Class != "" {
		out.ThreatScore, out.ThreatClass = &st.Score, &st.Class
	}
	return out
}

func hostFromRow(h hostsearch.Host) hostRead {
	out := hostRead{ID: h.ID, Hostname: h.Hostname, OS: hostText(h.OS), TenantID: h.Tenant,
		HostMetadata: h.Metadata, CreatedAt: h.CreatedAt.UTC(), IPAddresses: hostList(h.IPs),
		FQDN: hostText(h.FQDN), OSVersion: hostText(h.OSVersion), Labels: hostList(h.Labels),
		VelociraptorClientID: hostText(h.ClientID), Source: h.Source, UpdatedAt: h.UpdatedAt.UTC(),
		Version: h.Version, Quarantine: quarantineRead(h.Quarantine.Status, h.Quarantine.Collection, h.Quarantine.UpdatedAt)}
	if h.LastSeen != nil {
		out.LastSeen = hostTime(*h.LastSeen)
	}
	if h.FirstSeen != nil {
		out.FirstSeen = hostTime(*h.FirstSeen)
	}
	if len(h.IPs) > 0 {
		out.IPAddress = &h.IPs[0]
	}
	if h.Class != "" {
		out.ThreatScore, out.ThreatClass = &h.Score, &h.Class
	}
	return out
}

// respondHost answers a write with the host as of that write.
func (s *Server) respondHost(c *gin.Context, status int, tenant domain.TenantID, res commands.Result) {
	v, err := s.deps.Commands.HostView(c.Request.Context(), tenant, hosts.ID(res.ID))
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(status, hostFromView(v, tenant, res.Position))
}

// parseHostTime parses an RFC 3339 time given as the request field or query
// parameter name.
func parseHostTime(name, raw string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(raw))
	if err != nil {
		return time.Time{}, domain.Invalid("invalid_time", "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
	}
	return t, nil
}

var (
	errIPConflict     = domain.Invalid("ip_conflict", "give ip_address or ip_addresses, not both")
	errLabelsConflict = domain.Invalid("labels_conflict", "give labels, or add_labels and remove_labels, not both")
	errEmptyHostPatch = domain.Invalid("empty_update", "nothing to change")
	errBadScoreMin    = domain.Invalid("invalid_score_min", "score_min must be an integer from 0 to 100")
	errBadTotalFlag   = domain.Invalid("invalid_include_total", "include_total must be true or false")
	errBadQuarantined = domain.Invalid("invalid_quarantined", "quarantined must be true or false")
	errBadBefore      = domain.Invalid("invalid_before", "before must be a positive integer: the X-Next-Cursor of the previous page")
)

func (s *Server) createHost(c *gin.Context) {
	var req createHostRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	cmd := commands.RegisterHost{Tenant: p.Tenant, By: p.User, Meta: meta(c), Profile: hosts.Profile{
		Hostname: req.Hostname, FQDN: req.FQDN, IPs: req.IPAddresses, OS: req.OS, OSVersion: req.OSVersion,
		Labels: req.Labels, ClientID: req.VelociraptorClientID, Metadata: req.HostMetadata,
	}}
	if req.IPAddress != "" {
		cmd.Profile.IPs = append([]string{req.IPAddress}, cmd.Profile.IPs...)
	}
	if req.LastSeen != nil {
		at, err := parseHostTime("last_seen", *req.LastSeen)
		if err != nil {
			fail(c, err)
			return
		}
		cmd.SeenAt = at
	}
	res, err := s.deps.Commands.RegisterHost(c.Request.Context(), cmd)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/hosts/"+res.ID)
	s.respondHost(c, http.StatusCreated, p.Tenant, res)
}

// hostQuery reads the list's filters and sort from the query string.
func hostQuery(c *gin.Context) (hostsearch.Query, error) {
	var q hostsearch.Query
	var err error
	f := &q.Filter
	f.Hostname, f.HostnamePrefix = c.Query("hostname"), c.Query("hostname_prefix")
	f.OS, f.Label = c.Query("os"), c.Query("label")
	if v := c.Query("ip"); v != "" {
		if f.IP, err = hostsearch.ParseIP(v); err != nil {
			return q, err
		}
	}
	for name, dst := range map[string]*time.Time{"last_seen_before": &f.LastSeenBefore, "last_seen_after": &f.LastSeenAfter} {
		if v := c.Query(name); v != "" {
			if *dst, err = parseHostTime(name, v); err != nil {
				return q, err
			}
		}
	}
	if v := c.Query("score_min"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > hosts.MaxScore {
			return q, errBadScoreMin
		}
		f.ScoreMin = &n
	}
	if v := c.Query("quarantined"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return q, errBadQuarantined
		}
		f.Quarantined = &b
	}
	q.Sort, err = hostsearch.ParseSort(c.Query("sort"), c.Query("order"))
	return q, err
}

func (s *Server) listHosts(c *gin.Context) {
	p := mustPrincipal(c)
	q, err := hostQuery(c)
	if err != nil {
		fail(c, err)
		return
	}
	withTotal := false
	if v := c.Query("include_total"); v != "" {
		if withTotal, err = strconv.ParseBool(v); err != nil {
			fail(c, errBadTotalFlag)
			return
		}
	}
	page, ok := s.pageParams(c, hostsearch.Name)
	if !ok {
		return
	}
	q.Limit, q.Cursor = page.Limit, page.Cursor
	rows, next, err := hostsearch.List(c.Request.Context(), s.deps.Reads, p.Tenant, q)
	if err != nil {
		fail(c, err)
		return
	}
	if withTotal {
		n, err := hostsearch.Count(c.Request.Context(), s.deps.Reads, p.Tenant, q.Filter)
		if err != nil {
			fail(c, err)
			return
		}
		c.Header("X-Total-Count", strconv.FormatInt(n, 10))
	}
	out := make([]hostRead, 0, len(rows))
	for _, r := range rows {
		out = append(out, hostFromRow(r))
	}
	if next != "" {
		setNextCursor(c, next)
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getHost(c *gin.Context) {
	p := mustPrincipal(c)
	if !s.waitMinPosition(c, hostsearch.Name) {
		return
	}
	h, err := hostsearch.Get(c.Request.Context(), s.deps.Reads, p.Tenant, hosts.ID(c.Param("id")))
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(h.Version))
	c.JSON(http.StatusOK, hostFromRow(h))
}

func (s *Server) updateHost(c *gin.Context) {
	var req updateHostRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	if req.IPAddress != nil && req.IPAddresses != nil {
		fail(c, errIPConflict)
		return
	}
	if req.Labels != nil && (req.AddLabels != nil || req.RemoveLabels != nil) {
		fail(c, errLabelsConflict)
		return
	}
	cmd := commands.UpdateHost{Tenant: p.Tenant, Host: hosts.ID(c.Param("id")), By: p.User, Meta: meta(c),
		Changes: hosts.Changes{Hostname: req.Hostname, FQDN: req.FQDN, IPs: req.IPAddresses, OS: req.OS,
			OSVersion: req.OSVersion, ClientID: req.VelociraptorClientID, Metadata: req.HostMetadata},
		Labels: req.Labels, AddLabels: req.AddLabels, RemoveLabels: req.RemoveLabels}
	if req.IPAddress != nil {
		ips := []string{*req.IPAddress}
		if strings.TrimSpace(*req.IPAddress) == "" {
			ips = []string{}
		}
		cmd.Changes.IPs = &ips
	}
	if req.LastSeen != nil {
		at, err := parseHostTime("last_seen", *req.LastSeen)
		if err != nil {
			fail(c, err)
			return
		}
		cmd.SeenAt = at
	}
	ch := cmd.Changes
	if ch.Hostname == nil && ch.FQDN == nil && ch.IPs == nil && ch.OS == nil && ch.OSVersion == nil && ch.ClientID == nil &&
		ch.Metadata == nil && cmd.Labels == nil && cmd.AddLabels == nil && cmd.RemoveLabels == nil && cmd.SeenAt.IsZero() {
		fail(c, errEmptyHostPatch)
		return
	}
	var ok bool
	if cmd.IfMatch, ok = ifMatchVersion(c); !ok {
		return
	}
	res, err := s.deps.Commands.UpdateHost(c.Request.Context(), cmd)
	if err != nil {
		fail(c, err)
		return
	}
	s.respondHost(c, http.StatusOK, p.Tenant, res)
}

func (s *Server) deleteHost(c *gin.Context) {
	p := mustPrincipal(c)
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	_, err := s.deps.Commands.DeleteHost(c.Request.Context(), commands.DeleteHost{
		Tenant: p.Tenant, Host: hosts.ID(c.Param("id")), IfMatch: ifMatch, By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) hostHistory(c *gin.Context) {
	p := mustPrincipal(c)
	limit, ok := queryLimit(c, defaultLimit, commands.MaxHistoryLimit)
	if !ok {
		return
	}
	var before int64
	raw := c.Query("before")
	if raw == "" {
		raw = c.Query("cursor")
	}
	if raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 1 {
			fail(c, errBadBefore)
			return
		}
		before = n
	}
	events, err := s.deps.Commands.HostHistory(c.Request.Context(), p.Tenant, hosts.ID(c.Param("id")), before, limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]hostEventRead, 0, len(events))
	for _, e := range events {
		out = append(out, hostEventRead{Version: e.Version, Type: e.Name, Time: e.At.UTC(), Actor: e.Meta.Actor,
			ActorType: e.Meta.ActorType, Position: e.Position, Payload: e.Payload})
	}
	if n := len(events); n == limit && events[n-1].Version > 1 {
		next := strconv.FormatInt(events[n-1].Version, 10)
		q := url.Values{"before": {next}}
		if c.Query("limit") != "" {
			q.Set("limit", strconv.Itoa(limit))
		}
		c.Header("X-Next-Cursor", next)
		c.Header("Link", "<"+c.Request.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	c.JSON(http.StatusOK, out)
}
