package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	vr "velocicompanion/domain/velociraptor"
)

// VelociraptorDeps are the collaborators of the Velociraptor routes.
type VelociraptorDeps struct {
	// Commands executes the Velociraptor commands; without it the routes
	// answer 503.
	Commands *commands.Velociraptor
	// Org returns the Velociraptor org of a tenant's stored configuration.
	Org func(ctx context.Context, tenant domain.TenantID) (velociraptor.Org, error)
	// Dial connects to the server of a configuration before it is stored.
	Dial func(api velociraptor.APIClient) (*velociraptor.Client, error)
	// Now is the clock that certificates are checked against.
	Now func() time.Time
}

var (
	errVelociraptorUnavailable = domain.Unavailable("velociraptor_unavailable", "the Velociraptor integration is not available on this server")
	errConfigMissing           = domain.Invalid("velociraptor_config_missing", "config must hold the api_client YAML that `velociraptor config api_client` writes")
	errIdempotencyKey          = domain.Invalid("idempotency_key_invalid", "Idempotency-Key must be a UUID")
	errCollectTarget           = domain.Invalid("collection_target_invalid", "give exactly one of client_id and host_id")
	errArtifactsMissing        = domain.Invalid("artifacts_missing", "name at least one artifact (artifacts, or artifact_name)")
	errParameterType           = domain.Invalid("parameter_invalid", "parameters must be an object of strings, numbers or booleans")
)

// Role lists of the Velociraptor routes.
var (
	tenantMembers = []string{string(users.RoleViewer), string(users.RoleAnalyst), string(users.RoleAdmin)}
	responders    = []string{string(users.RoleAnalyst), string(users.RoleAdmin)}
)

// certificateWarning is how long before its client certificate expires a
// connection starts to warn.
const certificateWarning = 30 * 24 * time.Hour

// liveQueryTimeout bounds a query a request waits for, well within the
// server's write timeout.
const liveQueryTimeout = 30 * time.Second

// velociraptorCheckTimeout bounds the trial query of a new configuration.
const velociraptorCheckTimeout = 20 * time.Second

// velociraptorConfigRequest is the body of POST /api/velociraptor/config.
type velociraptorConfigRequest struct {
	Config string `json:"config" doc:"the api_client YAML written by velociraptor config api_client (CA, client certificate and key, api_connection_string); stored encrypted, never returned"`
	OrgID  string `json:"org_id" doc:"the Velociraptor org this tenant maps to; empty for the root org"`
}

// connectionRead is a tenant's Velociraptor connection as the API shows it:
// never its key.
type connectionRead struct {
	OrgID         string        `json:"org_id"`
	Name          string        `json:"name" doc:"api_client name"`
	Address       string        `json:"address"`
	ServerName    string        `json:"server_name" doc:"the TLS name the server certificate must carry"`
	CommonName    string        `json:"common_name" doc:"client certificate subject CN"`
	Fingerprint   string        `json:"fingerprint" doc:"SHA-256 of the client certificate"`
	NotAfter      time.Time     `json:"not_after" doc:"when the client certificate expires"`
	ExpiresInDays int           `json:"expires_in_days"`
	Warnings      []string      `json:"warnings"`
	LastCheck     *checkRead    `json:"last_check,omitempty"`
	Version       int64         `json:"version"`
	UpdatedAt     time.Time     `json:"updated_at"`
	UpdatedBy     domain.UserID `json:"updated_by"`
	Position      int64         `json:"position,omitempty"`
	Clients       *int          `json:"clients,omitempty" doc:"on configuration: the clients the trial query saw (at most 1)"`
	Message       string        `json:"message,omitempty" doc:"on configuration: a sentence saying it was saved, as the original API answered"`
}

type checkRead struct {
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// vrClientRead is a Velociraptor client as the API shows it.
type vrClientRead struct {
	ClientID     string    `json:"client_id"`
	Hostname     string    `json:"hostname"`
	FQDN         string    `json:"fqdn"`
	OS           string    `json:"os"`
	Release      string    `json:"release"`
	Machine      string    `json:"machine"`
	MACs         []string  `json:"mac_addresses"`
	Labels       []string  `json:"labels"`
	FirstSeen    time.Time `json:"first_seen_at"`
	LastSeen     time.Time `json:"last_seen_at"`
	LastIP       string    `json:"last_ip"`
	AgentVersion string    `json:"agent_version"`
}

type vrClientList struct {
	Clients []vrClientRead `json:"clients"`
}

// collectRequest is the body of POST /api/velociraptor/collect.
type collectRequest struct {
	ClientID     string         `json:"client_id" doc:"the Velociraptor client id (C. and 16 hex digits); or host_id"`
	HostID       string         `json:"host_id" doc:"a host of the tenant that has a client id; or client_id"`
	Artifacts    []string       `json:"artifacts" doc:"artifact names, e.g. Generic.Client.Info"`
	ArtifactName string         `json:"artifact_name" doc:"one artifact name (the original API's field); added to artifacts"`
	Parameters   map[string]any `json:"parameters" doc:"artifact parameters: strings (numbers and booleans are sent as text)"`
}

// collectionRead is a collection as the API shows it.
type collectionRead struct {
	ID         string            `json:"id"`
	ClientID   string            `json:"client_id"`
	HostID     hosts.ID          `json:"host_id,omitempty"`
	Artifacts  []string          `json:"artifacts"`
	Parameters map[string]string `json:"parameters"`
	Purpose    vr.Purpose        `json:"purpose" doc:"collect, quarantine or release"`
	Status     vr.Status         `json:"status" doc:"requested, scheduled, completed, failed or cancelled"`
	FlowID     string            `json:"flow_id,omitempty"`
	Rows       int64             `json:"rows"`
	Sources    []vr.SourceCount  `json:"sources"`
	Logs       []string          `json:"logs"`
	Error      string            `json:"error,omitempty"`
	By         domain.UserID     `json:"requested_by"`
	// CancelRequested stays true once asked, whatever the outcome: a flow
	// that finished before the cancel reached it still completes.
	CancelRequested bool          `json:"cancel_requested" doc:"someone asked to cancel the collection; it ends cancelled unless its flow had already finished"`
	CancelBy        domain.UserID `json:"cancel_requested_by,omitempty" doc:"who asked to cancel it"`
	CreatedAt       time.Time     `json:"created_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
	Version         int64         `json:"version"`
	Position        int64         `json:"position,omitempty"`
}

// huntRequest is the body of POST /api/velociraptor/hunts.
type huntRequest struct {
	Description   string         `json:"description"`
	HuntName      string         `json:"hunt_name" doc:"the original API's name; used as the description when that is empty"`
	Artifacts     []string       `json:"artifacts"`
	ArtifactName  string         `json:"artifact_name" doc:"one artifact name (the original API's field); added to artifacts"`
	Parameters    map[string]any `json:"parameters"`
	IncludeLabels []string       `json:"include_labels" doc:"only clients with one of these labels"`
	ExcludeLabels []string       `json:"exclude_labels"`
	OS            string         `json:"os" doc:"windows, linux or darwin; empty for all"`
	Expires       *time.Time     `json:"expires" doc:"RFC 3339; default in 7 days, at most 90 days away"`
}

// huntRead is a hunt as the API shows it.
type huntRead struct {
	commands.Hunt
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
	Position  int64     `json:"position,omitempty"`
}

// resultRead is one stored result row.
type resultRead struct {
	FlowID   string          `json:"flow_id"`
	ClientID string          `json:"client_id"`
	Source   string          `json:"source"`
	Seq      int64           `json:"seq"`
	Row      json.RawMessage `json:"row"`
}

type resultPage struct {
	Results    []resultRead `json:"results"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// quarantineRequest is the body of POST /api/hosts/{id}/quarantine.
type quarantineRequest struct {
	Message string `json:"message" doc:"shown to the host's user; optional"`
}

// velociraptorRoutes are the Velociraptor routes.
func (s *Server) velociraptorRoutes() []op {
	page := []param{
		{Name: "limit", In: "query", Type: "integer", Desc: "page size, 1 to 500 (default 100)"},
		{Name: "cursor", In: "query", Desc: "next_cursor of the previous page"},
	}
	clients := []param{
		{Name: "search", In: "query", Desc: "Velociraptor's client search, e.g. host:ws-01 or label:finance"},
		{Name: "limit", In: "query", Type: "integer", Desc: "1 to 10000 (default 100)"},
	}
	results := []param{
		{Name: "limit", In: "query", Type: "integer", Desc: "page size, 1 to 1000 (default 100)"},
		page[1],
	}
	idem := []param{{Name: "Idempotency-Key", In: "header", Desc: "a UUID: the same key and body again returns the first answer"}}
	collections := append([]param{
		{Name: "client_id", In: "query", Desc: "only collections from this Velociraptor client id"},
		{Name: "host_id", In: "query", Desc: "only collections from this host"},
		{Name: "status", In: "query", Desc: "requested, scheduled, completed, failed or cancelled"},
		{Name: "purpose", In: "query", Desc: "collect, quarantine or release"},
	}, page...)
	return []op{
		{method: http.MethodPost, path: "/api/velociraptor/config", summary: "Connect the tenant to its Velociraptor server and org (checked before it is stored)", tag: "velociraptor", access: roleList, roles: tenantAdmins, req: velociraptorConfigRequest{}, resp: connectionRead{}, handler: s.configureVelociraptor},
		{method: http.MethodGet, path: "/api/velociraptor/config", summary: "The tenant's Velociraptor connection (never its key)", tag: "velociraptor", access: roleList, roles: tenantAdmins, resp: connectionRead{}, handler: s.getVelociraptorConfig},
		{method: http.MethodDelete, path: "/api/velociraptor/config", summary: "Disconnect the tenant from Velociraptor and erase its key", tag: "velociraptor", access: roleList, roles: tenantAdmins, status: http.StatusNoContent, handler: s.removeVelociraptorConfig},
		{method: http.MethodGet, path: "/api/velociraptor/clients", summary: "The org's clients, live from Velociraptor", tag: "velociraptor", access: roleList, roles: tenantMembers, query: clients, resp: vrClientList{}, handler: s.listVRClients},
		{method: http.MethodGet, path: "/api/velociraptor/clients/:id", summary: "One client, live from Velociraptor", tag: "velociraptor", access: roleList, roles: tenantMembers, resp: vrClientRead{}, handler: s.getVRClient},
		{method: http.MethodPost, path: "/api/velociraptor/collect", summary: "Collect artifacts from a client (done in the background; poll the collection)", tag: "velociraptor", access: roleList, roles: responders, query: idem, req: collectRequest{}, resp: collectionRead{}, status: http.StatusAccepted, handler: s.collect},
		{method: http.MethodGet, path: "/api/velociraptor/collections", summary: "The tenant's collections, newest first (next page in X-Next-Cursor)", tag: "velociraptor", access: roleList, roles: tenantMembers, query: collections, resp: []collectionRead{}, handler: s.listCollections},
		{method: http.MethodGet, path: "/api/velociraptor/collections/:id", summary: "A collection: status, flow, rows per source, logs", tag: "velociraptor", access: roleList, roles: tenantMembers, resp: collectionRead{}, handler: s.getCollection},
		{method: http.MethodGet, path: "/api/velociraptor/collections/:id/results", summary: "A collection's stored result rows", tag: "velociraptor", access: roleList, roles: tenantMembers, query: results, resp: resultPage{}, handler: s.collectionResults()},
		{method: http.MethodPost, path: "/api/velociraptor/collections/:id/cancel", summary: "Cancel a collection that has not ended (its flow is cancelled in the background; quarantines and releases cannot be cancelled)", tag: "velociraptor", access: roleList, roles: responders, resp: collectionRead{}, status: http.StatusAccepted, handler: s.cancelCollection},
		{method: http.MethodPost, path: "/api/velociraptor/hunts", summary: "Hunt across the org's clients (started in the background)", tag: "velociraptor", access: roleList, roles: responders, query: idem, req: huntRequest{}, resp: huntRead{}, status: http.StatusAccepted, handler: s.createHunt},
		{method: http.MethodGet, path: "/api/velociraptor/hunts", summary: "The tenant's hunts, newest first", tag: "velociraptor", access: roleList, roles: tenantMembers, query: page, resp: []huntRead{}, handler: s.listHunts},
		{method: http.MethodGet, path: "/api/velociraptor/hunts/:id", summary: "A hunt: status, Velociraptor's state and stats", tag: "velociraptor", access: roleList, roles: tenantMembers, resp: huntRead{}, handler: s.getHunt},
		{method: http.MethodGet, path: "/api/velociraptor/hunts/:id/results", summary: "A hunt's result rows, stored as clients report them", tag: "velociraptor", access: roleList, roles: tenantMembers, query: results, resp: resultPage{}, handler: s.huntResults()},
		{method: http.MethodPost, path: "/api/velociraptor/hunts/:id/stop", summary: "Stop a hunt", tag: "velociraptor", access: roleList, roles: responders, resp: huntRead{}, status: http.StatusAccepted, handler: s.stopHunt},
		{method: http.MethodPost, path: "/api/hosts/:id/quarantine", summary: "Isolate a host from the network through Velociraptor", tag: "velociraptor", access: roleList, roles: responders, req: quarantineRequest{}, resp: collectionRead{}, status: http.StatusAccepted, handler: s.quarantineHost},
		{method: http.MethodPost, path: "/api/hosts/:id/release", summary: "Lift a host's quarantine", tag: "velociraptor", access: roleList, roles: responders, resp: collectionRead{}, status: http.StatusAccepted, handler: s.releaseHost},
	}
}

// vrCommands returns the Velociraptor commands, or answers 503.
func (s *Server) vrCommands(c *gin.Context) (*commands.Velociraptor, bool) {
	d := s.deps.Velociraptor
	if d.Commands == nil || d.Org == nil || d.Dial == nil {
		fail(c, errVelociraptorUnavailable)
		return nil, false
	}
	return d.Commands, true
}

func (s *Server) vrNow() time.Time {
	if s.deps.Velociraptor.Now != nil {
		return s.deps.Velociraptor.Now()
	}
	return time.Now()
}

func (s *Server) connectionRead(conn commands.Connection, pos int64) connectionRead {
	sum := conn.Summary
	now := s.vrNow()
	out := connectionRead{OrgID: conn.OrgID, Name: sum.Name, Address: sum.Address, ServerName: sum.ServerName,
		CommonName: sum.CommonName, Fingerprint: sum.Fingerprint, NotAfter: sum.NotAfter.UTC(),
		ExpiresInDays: int(sum.NotAfter.Sub(now).Hours() / 24), Warnings: []string{},
		Version: conn.Version, UpdatedAt: conn.UpdatedAt.UTC(), UpdatedBy: conn.By, Position: pos}
	switch left := sum.NotAfter.Sub(now); {
	case left <= 0:
		out.Warnings = append(out.Warnings, "the client certificate has expired: create a new api_client configuration and post it")
	case left < certificateWarning:
		out.Warnings = append(out.Warnings, "the client certificate expires in "+strconv.Itoa(out.ExpiresInDays)+
			" days: create a new api_client configuration and post it before then")
	}
	if !conn.Checked.At.IsZero() {
		out.LastCheck = &checkRead{OK: conn.Checked.OK, Error: conn.Checked.Error, At: conn.Checked.At.UTC()}
		if !conn.Checked.OK {
			out.Warnings = append(out.Warnings, "the last check failed: "+conn.Checked.Error)
		}
	}
	return out
}

func (s *Server) configureVelociraptor(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	var req velociraptorConfigRequest
	if !bindJSON(c, &req) {
		return
	}
	if strings.TrimSpace(req.Config) == "" {
		fail(c, errConfigMissing)
		return
	}
	orgID, err := vr.CheckOrgID(req.OrgID)
	if err != nil {
		fail(c, err)
		return
	}
	api, err := velociraptor.ParseAPIClient([]byte(req.Config), s.vrNow())
	if err != nil {
		fail(c, err)
		return
	}
	// The configuration is stored only once it works: connect, and list a
	// client of the org to prove the identity has a role there.
	client, err := s.deps.Velociraptor.Dial(api)
	if err != nil {
		fail(c, err)
		return
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(c.Request.Context(), velociraptorCheckTimeout)
	defer cancel()
	org := client.Org(orgID)
	if err := org.Ping(ctx); err != nil {
		fail(c, err)
		return
	}
	seen, err := org.Clients(ctx, "", 1)
	if err != nil {
		fail(c, err)
		return
	}
	sum := api.Summary()
	res, err := cmds.Configure(c.Request.Context(), commands.ConfigureVelociraptor{
		Tenant: p.Tenant, OrgID: orgID, Config: []byte(req.Config), By: p.Actor(), Meta: meta(c),
		Summary: vr.Summary{Name: sum.Name, Address: sum.Address, ServerName: sum.ServerName, CommonName: sum.CommonName,
			Fingerprint: sum.Fingerprint, NotAfter: sum.NotAfter},
	})
	if err != nil {
		fail(c, err)
		return
	}
	if err := cmds.RecordCheck(c.Request.Context(), p.Tenant, true, ""); err != nil {
		fail(c, err)
		return
	}
	conn, err := cmds.Connection(c.Request.Context(), p.Tenant)
	if err != nil {
		fail(c, err)
		return
	}
	out := s.connectionRead(conn, res.Position)
	n := len(seen)
	out.Clients = &n
	out.Message = "Velociraptor configuration saved"
	c.Header("ETag", etag(conn.Version))
	c.JSON(http.StatusOK, out)
}

func (s *Server) getVelociraptorConfig(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	conn, err := cmds.Connection(c.Request.Context(), p.Tenant)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(conn.Version))
	c.JSON(http.StatusOK, s.connectionRead(conn, 0))
}

func (s *Server) removeVelociraptorConfig(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	if _, err := cmds.Remove(c.Request.Context(), commands.RemoveVelociraptor{Tenant: p.Tenant, By: p.Actor(), Meta: meta(c)}); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// vrOrg returns the tenant's Velociraptor org, or answers.
func (s *Server) vrOrg(c *gin.Context, tenant domain.TenantID) (velociraptor.Org, bool) {
	if _, ok := s.vrCommands(c); !ok {
		return velociraptor.Org{}, false
	}
	org, err := s.deps.Velociraptor.Org(c.Request.Context(), tenant)
	if err != nil {
		fail(c, err)
		return velociraptor.Org{}, false
	}
	return org, true
}

func clientRead(ci velociraptor.ClientInfo) vrClientRead {
	r := vrClientRead{ClientID: ci.ClientID, Hostname: ci.Hostname, FQDN: ci.FQDN, OS: ci.OS, Release: ci.Release,
		Machine: ci.Machine, MACs: ci.MACs, Labels: ci.Labels, LastIP: ci.LastIP, AgentVersion: ci.AgentVersion,
		FirstSeen: ci.FirstSeen.UTC(), LastSeen: ci.LastSeen.UTC()}
	if r.MACs == nil {
		r.MACs = []string{}
	}
	if r.Labels == nil {
		r.Labels = []string{}
	}
	return r
}

func (s *Server) listVRClients(c *gin.Context) {
	p := mustPrincipal(c)
	limit, ok := queryLimit(c, 100, velociraptor.MaxClientsLimit)
	if !ok {
		return
	}
	org, ok := s.vrOrg(c, p.Tenant)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), liveQueryTimeout)
	defer cancel()
	list, err := org.Clients(ctx, c.Query("search"), limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := vrClientList{Clients: make([]vrClientRead, 0, len(list))}
	for _, ci := range list {
		out.Clients = append(out.Clients, clientRead(ci))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getVRClient(c *gin.Context) {
	p := mustPrincipal(c)
	if err := velociraptor.CheckClientID(c.Param("id")); err != nil {
		fail(c, err)
		return
	}
	org, ok := s.vrOrg(c, p.Tenant)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), liveQueryTimeout)
	defer cancel()
	ci, err := org.Client(ctx, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, clientRead(ci))
}

// clientCheckTimeout bounds the look-up of a client before a request for it
// is recorded.
const clientCheckTimeout = 10 * time.Second

// knownClient answers 404 when the tenant's org does not know the client
// (named by its id, or by the host that has it) and returns false. A server
// that cannot be asked now does not stop the request: the worker starts it
// once the server answers, or records why it could not.
func (s *Server) knownClient(c *gin.Context, tenant domain.TenantID, clientID string, host hosts.ID) bool {
	ctx := c.Request.Context()
	if clientID == "" && host != "" {
		v, err := s.deps.Commands.HostView(ctx, tenant, host)
		if err != nil || v.State.ClientID == "" {
			return true // the command says what is wrong with the host
		}
		clientID = v.State.ClientID
	}
	if velociraptor.CheckClientID(clientID) != nil {
		return true // the command refuses it
	}
	org, err := s.deps.Velociraptor.Org(ctx, tenant)
	if err != nil {
		return true // the command says the tenant is not configured, or the worker retries
	}
	ctx, cancel := context.WithTimeout(ctx, clientCheckTimeout)
	defer cancel()
	if _, err := org.Client(ctx, clientID); domain.KindOf(err) == domain.KindNotFound {
		fail(c, err)
		return false
	}
	return true
}

// idempotencyKey returns the request's Idempotency-Key (a UUID) or "".
func idempotencyKey(c *gin.Context) (string, bool) {
	raw := strings.TrimSpace(c.GetHeader("Idempotency-Key"))
	if raw == "" {
		return "", true
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		fail(c, errIdempotencyKey)
		return "", false
	}
	return id.String(), true
}

// artifactList joins artifacts and the original API's artifact_name.
func artifactList(artifacts []string, name string) []string {
	out := append([]string(nil), artifacts...)
	if name = strings.TrimSpace(name); name != "" {
		out = append(out, name)
	}
	return out
}

// textParameters turns JSON parameter values into Velociraptor's strings.
func textParameters(in map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		switch v := v.(type) {
		case string:
			out[k] = v
		case bool:
			out[k] = map[bool]string{true: "Y", false: "N"}[v]
		case float64:
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return nil, errParameterType
		}
	}
	return out, nil
}

func collectionOut(col commands.Collection, pos int64) collectionRead {
	r := collectionRead{ID: col.ID, ClientID: col.ClientID, HostID: col.HostID, Artifacts: col.Artifacts, Parameters: col.Parameters,
		Purpose: col.Purpose, Status: col.Status, FlowID: col.FlowID, Rows: col.Rows, Sources: col.Sources, Logs: col.Logs,
		Error: col.Error, By: col.By, CancelRequested: col.CancelRequested, CancelBy: col.CancelBy,
		CreatedAt: col.CreatedAt.UTC(), UpdatedAt: col.UpdatedAt.UTC(), Version: col.Version, Position: pos}
	if r.Parameters == nil {
		r.Parameters = map[string]string{}
	}
	if r.Sources == nil {
		r.Sources = []vr.SourceCount{}
	}
	if r.Logs == nil {
		r.Logs = []string{}
	}
	return r
}

func (s *Server) collect(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	id, ok := idempotencyKey(c)
	if !ok {
		return
	}
	var req collectRequest
	if !bindJSON(c, &req) {
		return
	}
	if (req.ClientID == "") == (req.HostID == "") {
		fail(c, errCollectTarget)
		return
	}
	artifacts := artifactList(req.Artifacts, req.ArtifactName)
	if len(artifacts) == 0 {
		fail(c, errArtifactsMissing)
		return
	}
	params, err := textParameters(req.Parameters)
	if err != nil {
		fail(c, err)
		return
	}
	if !s.knownClient(c, p.Tenant, req.ClientID, hosts.ID(req.HostID)) {
		return
	}
	col, res, err := cmds.RequestCollection(c.Request.Context(), commands.RequestCollection{
		Tenant: p.Tenant, ID: id, ClientID: req.ClientID, HostID: hosts.ID(req.HostID), Artifacts: artifacts,
		Parameters: params, By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/velociraptor/collections/"+col.ID)
	c.JSON(http.StatusAccepted, collectionOut(col, res.Position))
}

func (s *Server) getCollection(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	col, err := cmds.Collection(c.Request.Context(), p.Tenant, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(col.Version))
	c.JSON(http.StatusOK, collectionOut(col, 0))
}

func (s *Server) listCollections(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	limit, ok := queryLimit(c, defaultLimit, commands.MaxCollectionPage)
	if !ok {
		return
	}
	filter := commands.CollectionFilter{ClientID: c.Query("client_id"), HostID: hosts.ID(c.Query("host_id")),
		Status: vr.Status(c.Query("status")), Purpose: vr.Purpose(c.Query("purpose"))}
	list, next, err := cmds.Collections(c.Request.Context(), p.Tenant, filter, c.Query("cursor"), limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]collectionRead, 0, len(list))
	for _, col := range list {
		out = append(out, collectionOut(col, 0))
	}
	if next != "" {
		setNextCursor(c, next)
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) cancelCollection(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	col, res, err := cmds.RequestCollectionCancel(c.Request.Context(), commands.CancelCollection{
		Tenant: p.Tenant, ID: c.Param("id"), By: p.Actor(), Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/velociraptor/collections/"+col.ID)
	c.JSON(http.StatusAccepted, collectionOut(col, res.Position))
}

// collectionResults and huntResults answer a page of the stored results of
// the tenant's collection or hunt: 404 when the tenant has no such one.
func (s *Server) collectionResults() gin.HandlerFunc {
	return s.resultPage(commands.JobCollection, func(ctx context.Context, cmds *commands.Velociraptor, tenant domain.TenantID, id string) error {
		_, err := cmds.Collection(ctx, tenant, id)
		return err
	})
}

func (s *Server) huntResults() gin.HandlerFunc {
	return s.resultPage(commands.JobHunt, func(ctx context.Context, cmds *commands.Velociraptor, tenant domain.TenantID, id string) error {
		_, err := cmds.Hunt(ctx, tenant, id)
		return err
	})
}

func (s *Server) resultPage(kind string, exists func(context.Context, *commands.Velociraptor, domain.TenantID, string) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := mustPrincipal(c)
		cmds, ok := s.vrCommands(c)
		if !ok {
			return
		}
		owner := c.Param("id")
		if err := exists(c.Request.Context(), cmds, p.Tenant, owner); err != nil {
			fail(c, err)
			return
		}
		limit, ok := queryLimit(c, defaultLimit, commands.MaxResultPage)
		if !ok {
			return
		}
		rows, next, err := cmds.Results(c.Request.Context(), p.Tenant, kind, owner, c.Query("cursor"), limit)
		if err != nil {
			fail(c, err)
			return
		}
		out := resultPage{Results: make([]resultRead, 0, len(rows)), NextCursor: next}
		for _, r := range rows {
			out.Results = append(out.Results, resultRead{FlowID: r.FlowID, ClientID: r.ClientID, Source: r.Source, Seq: r.Seq, Row: r.Row})
		}
		if next != "" {
			setNextCursor(c, next)
		}
		c.JSON(http.StatusOK, out)
	}
}

func huntOut(h commands.Hunt, pos int64) huntRead {
	return huntRead{Hunt: h, CreatedAt: h.CreatedAt.UTC(), UpdatedAt: h.UpdatedAt.UTC(), Version: h.Version, Position: pos}
}

func (s *Server) createHunt(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	id, ok := idempotencyKey(c)
	if !ok {
		return
	}
	var req huntRequest
	if !bindJSON(c, &req) {
		return
	}
	artifacts := artifactList(req.Artifacts, req.ArtifactName)
	if len(artifacts) == 0 {
		fail(c, errArtifactsMissing)
		return
	}
	params, err := textParameters(req.Parameters)
	if err != nil {
		fail(c, err)
		return
	}
	description := req.Description
	if strings.TrimSpace(description) == "" {
		description = req.HuntName
	}
	var expires time.Time
	if req.Expires != nil {
		expires = *req.Expires
	}
	h, res, err := cmds.RequestHunt(c.Request.Context(), commands.RequestHunt{
		Tenant: p.Tenant, ID: id, Description: description, Artifacts: artifacts, Parameters: params,
		IncludeLabels: req.IncludeLabels, ExcludeLabels: req.ExcludeLabels, OS: req.OS, Expires: expires,
		By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/velociraptor/hunts/"+h.ID)
	c.JSON(http.StatusAccepted, huntOut(h, res.Position))
}

func (s *Server) listHunts(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	limit, ok := queryLimit(c, defaultLimit, commands.MaxHuntPage)
	if !ok {
		return
	}
	list, next, err := cmds.Hunts(c.Request.Context(), p.Tenant, c.Query("cursor"), limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]huntRead, 0, len(list))
	for _, h := range list {
		out = append(out, huntOut(h, 0))
	}
	if next != "" {
		setNextCursor(c, next)
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getHunt(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	h, err := cmds.Hunt(c.Request.Context(), p.Tenant, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(h.Version))
	c.JSON(http.StatusOK, huntOut(h, 0))
}

func (s *Server) stopHunt(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	res, err := cmds.RequestHuntStop(c.Request.Context(), commands.StopHunt{Tenant: p.Tenant, ID: c.Param("id"), By: p.Actor(), Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	h, err := cmds.Hunt(c.Request.Context(), p.Tenant, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, huntOut(h, res.Position))
}

func (s *Server) quarantineHost(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	var req quarantineRequest
	if c.Request.ContentLength != 0 && !bindJSON(c, &req) {
		return
	}
	if !s.knownClient(c, p.Tenant, "", hosts.ID(c.Param("id"))) {
		return
	}
	col, res, err := cmds.RequestQuarantine(c.Request.Context(), commands.Quarantine{
		Tenant: p.Tenant, Host: hosts.ID(c.Param("id")), Message: req.Message, By: p.Actor(), Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/velociraptor/collections/"+col.ID)
	c.JSON(http.StatusAccepted, collectionOut(col, res.Position))
}

func (s *Server) releaseHost(c *gin.Context) {
	p := mustPrincipal(c)
	cmds, ok := s.vrCommands(c)
	if !ok {
		return
	}
	col, res, err := cmds.RequestRelease(c.Request.Context(), commands.Release{
		Tenant: p.Tenant, Host: hosts.ID(c.Param("id")), By: p.Actor(), Meta: meta(c)})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/velociraptor/collections/"+col.ID)
	c.JSON(http.StatusAccepted, collectionOut(col, res.Position))
}
