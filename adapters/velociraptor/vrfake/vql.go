package vrfake

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/proto"
)

// rowsPerPart is how many rows the fake puts in one response part, so that
// every answer of more than two rows comes in several parts.
const rowsPerPart = 2

// builtinArtifacts are known without SetArtifactRows or FailArtifact; they
// collect no rows unless told to.
var builtinArtifacts = []string{
	"Generic.Client.Info", "Generic.System.Pstree", "Windows.System.Pslist", "Linux.Sys.Pslist",
	"Windows.Remediation.Quarantine", "Linux.Remediation.Quarantine", "MacOS.System.Pslist",
}

type api struct {
	proto.UnimplementedAPIServer
	s *Server
}

// answer is what the fake sends for one statement: log lines, then rows.
type answer struct {
	logs []string
	rows []map[string]any
}

// fail is a statement that failed: its log line and, for a statement that
// selects a function's value, the null row under column.
func fail(column, format string, args ...any) answer {
	a := answer{logs: []string{fmt.Sprintf(format, args...)}}
	if column != "" {
		a.rows = []map[string]any{{column: nil}}
	}
	return a
}

func (a *api) Query(args *proto.VQLCollectorArgs, stream grpc.ServerStreamingServer[proto.VQLResponse]) error {
	cn, err := peerCN(stream.Context())
	if err != nil {
		return err
	}
	env := map[string]string{}
	for _, kv := range args.GetEnv() {
		env[kv.GetKey()] = kv.GetValue()
	}
	for _, req := range args.GetQuery() {
		ans, queryID := a.s.answer(cn, args.GetOrgId(), req, env)
		if err := send(stream, req, queryID, ans); err != nil {
			return err
		}
	}
	return nil
}

func peerCN(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	return info.State.VerifiedChains[0][0].Subject.CommonName, nil
}

func send(stream grpc.ServerStreamingServer[proto.VQLResponse], req *proto.VQLRequest, queryID uint64, ans answer) error {
	var part uint64
	now := func() uint64 { return uint64(time.Now().UnixMicro()) }
	out := func(r *proto.VQLResponse) error {
		r.Query, r.QueryId, r.Part, r.Timestamp = req, queryID, part, now()
		part++
		return stream.Send(r)
	}
	// The real server starts with an empty part without columns.
	if err := out(&proto.VQLResponse{Response: "[]"}); err != nil {
		return err
	}
	for _, line := range ans.logs {
		if err := out(&proto.VQLResponse{Log: line}); err != nil {
			return err
		}
	}
	for i := 0; i < len(ans.rows); i += rowsPerPart {
		chunk := ans.rows[i:min(i+rowsPerPart, len(ans.rows))]
		b, err := json.Marshal(chunk)
		if err != nil {
			return status.Errorf(codes.Internal, "encode rows: %v", err)
		}
		columns := map[string]bool{}
		for _, r := range chunk {
			for k := range r {
				columns[k] = true
			}
		}
		if err := out(&proto.VQLResponse{Response: string(b), Columns: slices.Sorted(maps.Keys(columns))}); err != nil {
			return err
		}
	}
	return nil
}

type query struct {
	s     *Server
	org   *org
	orgID string
	env   map[string]string
	cn    string
}

// answer records the call and evaluates the statement; the rows it returns
// are fresh copies, safe to encode after the lock is released.
func (s *Server) answer(cn, orgID string, req *proto.VQLRequest, env map[string]string) (answer, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queryID++
	s.calls = append(s.calls, Call{Org: orgID, Name: req.GetName(), VQL: req.GetVQL(), Env: copyMap(env), CN: cn})

	st, ok := s.byVQL[req.GetVQL()]
	if !ok {
		return fail("", "VQL Error: the fake Velociraptor server does not evaluate this statement"), s.queryID
	}
	key := orgKey(orgID)
	o, known := s.orgs[key]
	if orgs, limited := s.access[cn]; !known || (limited && !slices.Contains(orgs, key)) {
		return fail("", "PermissionDenied: user %s has no role in org %s", cn, key), s.queryID
	}
	for _, k := range st.Env {
		if _, ok := env[k]; !ok {
			return fail("", "VQL Error: Symbol %s not found", k), s.queryID
		}
	}
	// Velociraptor's argument parser refuses an argument its plugin or
	// function does not declare: the call logs why and yields nothing.
	if line := checkCalls(st.VQL); line != "" {
		return fail("", "%s", line), s.queryID
	}
	q := &query{s: s, org: o, orgID: orgID, env: env, cn: cn}
	handler, ok := handlers[st.Name]
	if !ok {
		return fail("", "VQL Error: the fake Velociraptor server does not evaluate %s", st.Name), s.queryID
	}
	ans := handler(q)
	if n := statementLimit(st.VQL); n >= 0 && len(ans.rows) > n {
		ans.rows = ans.rows[:n]
	}
	// Round-trip through JSON so that no row shares state with the fake.
	b, err := json.Marshal(ans.rows)
	if err != nil {
		return fail("", "VQL Error: encode rows: %v", err), s.queryID
	}
	ans.rows = nil
	_ = json.Unmarshal(b, &ans.rows)
	return ans, s.queryID
}

var handlers map[string]func(*query) answer

func init() {
	handlers = map[string]func(*query) answer{
		velociraptor.StmtPing:        func(*query) answer { return rows(map[string]any{"ServerTime": time.Now().UTC()}) },
		velociraptor.StmtClients:     (*query).clients,
		velociraptor.StmtClient:      (*query).client,
		velociraptor.StmtCollect:     (*query).collect,
		velociraptor.StmtFindFlow:    (*query).findFlow,
		velociraptor.StmtFlow:        (*query).flow,
		velociraptor.StmtFlowResults: (*query).flowResults,
		velociraptor.StmtFlowLogs:    (*query).flowLogs,
		velociraptor.StmtCancelFlow:  (*query).cancelFlow,
		velociraptor.StmtCreateHunt:  (*query).createHunt,
		velociraptor.StmtFindHunt:    (*query).findHunt,
		velociraptor.StmtHunt:        (*query).hunt,
		velociraptor.StmtHuntResults: (*query).huntResults,
		velociraptor.StmtStopHunt:    (*query).stopHunt,
		velociraptor.StmtLabel:       (*query).label,
	}
}

func rows(r ...map[string]any) answer { return answer{rows: r} }

func clientRow(c *Client) map[string]any {
	row := map[string]any{
		"client_id": c.ClientID,
		"os_info": map[string]any{
			"hostname": c.Hostname, "fqdn": c.FQDN, "system": c.OS, "release": c.Release,
			"machine": c.Machine, "mac_addresses": nonNil(c.MACs),
		},
		"labels":            nonNil(c.Labels),
		"first_seen_at":     0,
		"last_seen_at":      0,
		"last_ip":           c.LastIP,
		"agent_information": map[string]any{"version": c.AgentVersion, "name": "velociraptor"},
	}
	if !c.FirstSeen.IsZero() {
		row["first_seen_at"] = c.FirstSeen.Unix() // seconds
	}
	if !c.LastSeen.IsZero() {
		row["last_seen_at"] = c.LastSeen.UnixMicro() // microseconds
	}
	return row
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// clients answers every client that matches the search; the statement's
// LIMIT cuts the answer.
func (q *query) clients() answer {
	search := strings.ToLower(q.env["Search"])
	var out []map[string]any
	for _, id := range slices.Sorted(maps.Keys(q.org.clients)) {
		if c := q.org.clients[id]; matches(c, search) {
			out = append(out, clientRow(c))
		}
	}
	return answer{rows: out}
}

// matches is a small model of Velociraptor's client search: "label:",
// "host:", or a part of the host name or the client id.
func matches(c *Client, search string) bool {
	switch {
	case search == "" || search == "all":
		return true
	case strings.HasPrefix(search, "label:"):
		return slices.ContainsFunc(c.Labels, func(l string) bool { return strings.EqualFold(l, search[len("label:"):]) })
	case strings.HasPrefix(search, "host:"):
		return strings.HasPrefix(strings.ToLower(c.Hostname), search[len("host:"):])
	}
	return strings.Contains(strings.ToLower(c.Hostname), search) || strings.ToLower(c.ClientID) == search
}

func (q *query) client() answer {
	c, ok := q.org.clients[q.env["ClientId"]]
	if !ok {
		return answer{}
	}
	return rows(clientRow(c))
}

// knownClient returns the org's client named in env, or the failure the real
// server logs for a client of another org.
func (q *query) knownClient(fn, column string) (*Client, *answer) {
	id := q.env["ClientId"]
	c, ok := q.org.clients[id]
	if !ok {
		a := fail(column, "%s: client %s not known in this org", fn, id)
		return nil, &a
	}
	return c, nil
}

func (s *Server) knownArtifact(name string) bool {
	if slices.Contains(builtinArtifacts, name) {
		return true
	}
	if _, ok := s.failed[name]; ok {
		return true
	}
	if s.held[name] {
		return true
	}
	for k := range s.rows {
		if k == name || strings.HasPrefix(k, name+"/") {
			return true
		}
	}
	return false
}

// sources returns the artifact's sources that have rows, and their total.
func (s *Server) sources(artifacts []string) ([]string, int) {
	var out []string
	total := 0
	for _, a := range artifacts {
		for _, k := range slices.Sorted(maps.Keys(s.rows)) {
			if (k == a || strings.HasPrefix(k, a+"/")) && len(s.rows[k]) > 0 {
				out = append(out, k)
				total += len(s.rows[k])
			}
		}
	}
	return out, total
}

func parseList(text string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(text), &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (q *query) collect() answer {
	c, failed := q.knownClient("collect_client", "Collection")
	if failed != nil {
		return *failed
	}
	artifacts, err := parseList(q.env["Artifacts"])
	if err != nil || len(artifacts) == 0 {
		return fail("Collection", "VQL Error: collect_client: artifacts must be a list of names")
	}
	for _, a := range artifacts {
		if !q.s.knownArtifact(a) {
			return fail("Collection", "collect_client: Unknown artifact %s", a)
		}
	}
	var params map[string]any
	if err := json.Unmarshal([]byte(q.env["CollectEnv"]), &params); err != nil {
		return fail("Collection", "VQL Error: collect_client: env must be a dict")
	}
	f := &flow{id: newID("F."), clientID: c.ClientID, creator: q.cn, artifacts: artifacts, created: time.Now(), state: "RUNNING",
		env: map[string][][2]string{}}
	// Velociraptor records, of env, only the parameters each artifact
	// declares; the other keys are dropped without a word.
	for _, a := range artifacts {
		for _, k := range slices.Sorted(maps.Keys(params)) {
			if slices.Contains(q.s.params[a], k) {
				f.env[a] = append(f.env[a], [2]string{k, fmt.Sprint(params[k])})
			}
		}
	}
	q.org.flows[f.id] = f
	q.org.order = append(q.org.order, f.id)
	return rows(map[string]any{"Collection": map[string]any{"flow_id": f.id, "request": f.request()}})
}

func (f *flow) specs() []any {
	specs := make([]any, 0, len(f.artifacts))
	for _, a := range f.artifacts {
		env := make([]any, 0, len(f.env[a]))
		for _, kv := range f.env[a] {
			env = append(env, map[string]any{"key": kv[0], "value": kv[1]})
		}
		specs = append(specs, map[string]any{"artifact": a, "parameters": map[string]any{"env": env}})
	}
	return specs
}

func (f *flow) request() map[string]any {
	return map[string]any{"client_id": f.clientID, "creator": f.creator, "artifacts": f.artifacts, "specs": f.specs()}
}

func (q *query) findFlow() answer {
	c, failed := q.knownClient("flows", "")
	if failed != nil {
		return *failed
	}
	var out []map[string]any
	for _, id := range slices.Backward(q.org.order) { // newest first
		if f := q.org.flows[id]; f.clientID == c.ClientID {
			out = append(out, map[string]any{
				"session_id": f.id, "create_time": f.created.UnixMicro(), // microseconds
				"creator": f.creator, "artifacts": f.artifacts, "specs": f.specs(),
			})
		}
	}
	return answer{rows: out}
}

// flowOf returns the client's flow named in env, if the org has it.
func (q *query) flowOf() (*flow, bool) {
	f, ok := q.org.flows[q.env["FlowId"]]
	if !ok || f.clientID != q.env["ClientId"] {
		return nil, false
	}
	return f, true
}

// advance counts one poll of f and ends it after the configured number,
// unless it collects a held artifact.
func (s *Server) advance(f *flow) {
	if f.state != "RUNNING" || slices.ContainsFunc(f.artifacts, func(a string) bool { return s.held[a] }) {
		return
	}
	if f.polls < s.finishAfter {
		f.polls++
		return
	}
	s.finish(f)
}

func (s *Server) finish(f *flow) {
	for _, a := range f.artifacts {
		if line, ok := s.failed[a]; ok {
			f.state, f.status = "ERROR", line
			return
		}
	}
	f.state = "FINISHED"
}

func (q *query) flow() answer {
	if _, failed := q.knownClient("flows", ""); failed != nil {
		return *failed
	}
	f, ok := q.flowOf()
	if !ok {
		return answer{}
	}
	q.s.advance(f)
	sources, total := []string{}, 0
	if f.state == "FINISHED" {
		sources, total = q.s.sources(f.artifacts)
	}
	return rows(map[string]any{
		"session_id": f.id, "state": f.state, "status": f.status,
		"total_collected_rows": total, "artifacts_with_results": nonNil(sources),
	})
}

func (q *query) flowResults() answer {
	f, ok := q.flowOf()
	if !ok || f.state != "FINISHED" {
		return answer{}
	}
	source := q.env["Source"]
	if sources, _ := q.s.sources(f.artifacts); !slices.Contains(sources, source) {
		return answer{}
	}
	return answer{rows: q.s.rows[source]}
}

func (q *query) flowLogs() answer {
	f, ok := q.flowOf()
	if !ok {
		return answer{}
	}
	ts := f.created.Unix()
	out := []map[string]any{{"_ts": ts, "client_time": ts, "level": "DEFAULT",
		"message": "Starting collection of " + strings.Join(f.artifacts, ", ")}}
	switch f.state {
	case "ERROR":
		out = append(out, map[string]any{"_ts": ts, "client_time": ts, "level": "ERROR", "message": f.status})
	case "FINISHED":
		out = append(out, map[string]any{"_ts": ts, "client_time": ts, "level": "DEFAULT", "message": "Collection is done"})
	}
	return answer{rows: out}
}

func (q *query) cancelFlow() answer {
	if _, failed := q.knownClient("cancel_flow", "Cancelled"); failed != nil {
		return *failed
	}
	f, ok := q.flowOf()
	if !ok {
		return fail("Cancelled", "cancel_flow: Error: flow %s not found", q.env["FlowId"])
	}
	if f.state == "RUNNING" {
		f.state, f.status = "ERROR", "Cancelled by "+q.cn
	}
	return rows(map[string]any{"Cancelled": map[string]any{"flow_id": f.id}})
}

func (q *query) createHunt() answer {
	lists := map[string][]string{}
	for _, k := range []string{"Artifacts", "IncludeLabels", "ExcludeLabels"} {
		l, err := parseList(q.env[k])
		if err != nil {
			return fail("Hunt", "VQL Error: hunt: %s must be a list", k)
		}
		lists[k] = l
	}
	if len(lists["Artifacts"]) == 0 {
		return fail("Hunt", "VQL Error: hunt: artifacts required")
	}
	for _, a := range lists["Artifacts"] {
		if !q.s.knownArtifact(a) {
			return fail("Hunt", "hunt: Unknown artifact %s", a)
		}
	}
	var spec map[string]any
	if err := json.Unmarshal([]byte(q.env["Spec"]), &spec); err != nil {
		return fail("Hunt", "VQL Error: hunt: spec must be a dict")
	}
	expires, err := time.Parse(time.RFC3339, q.env["Expires"])
	if err != nil {
		return fail("Hunt", "VQL Error: hunt: expires is not a time")
	}
	if !expires.After(time.Now()) {
		return fail("Hunt", "hunt: Error: expiry time is in the past")
	}
	switch q.env["OS"] {
	case "", "windows", "linux", "darwin":
	default:
		return fail("Hunt", "hunt: Error: unknown OS %s", q.env["OS"])
	}
	h := &hunt{
		id: newID("H."), description: q.env["Description"], state: "RUNNING", os: q.env["OS"],
		artifacts: lists["Artifacts"], include: lists["IncludeLabels"], exclude: lists["ExcludeLabels"],
		spec: spec, expires: expires, created: time.Now(),
	}
	q.org.hunts[h.id] = h
	q.org.hunted = append(q.org.hunted, h.id)
	return rows(map[string]any{"Hunt": map[string]any{"HuntId": h.id, "Request": map[string]any{
		"artifacts": h.artifacts, "specs": h.spec, "creator": q.cn,
	}}})
}

func (q *query) findHunt() answer {
	var out []map[string]any
	for _, id := range slices.Backward(q.org.hunted) {
		h := q.org.hunts[id]
		out = append(out, map[string]any{"hunt_id": h.id, "hunt_description": h.description})
	}
	return answer{rows: out}
}

func (q *query) hunt() answer {
	h, ok := q.org.hunts[q.env["HuntId"]]
	if !ok {
		return answer{}
	}
	var scheduled, withResults, withoutResults, errors int
	for _, id := range h.flows {
		f := q.org.flows[id]
		scheduled++
		switch f.state {
		case "ERROR":
			errors++
		case "FINISHED":
			if _, total := q.s.sources(f.artifacts); total > 0 {
				withResults++
			} else {
				withoutResults++
			}
		}
	}
	sources := []string{}
	for _, a := range h.artifacts {
		named := false
		for k := range q.s.rows {
			if strings.HasPrefix(k, a+"/") {
				sources, named = append(sources, k), true
			}
		}
		if !named {
			sources = append(sources, a)
		}
	}
	slices.Sort(sources)
	return rows(map[string]any{
		"hunt_id": h.id, "state": h.state, "artifacts": h.artifacts, "artifact_sources": sources,
		"stats": map[string]any{
			"total_clients_scheduled":       scheduled,
			"total_clients_with_results":    withResults,
			"total_clients_without_results": withoutResults,
			"total_clients_with_errors":     errors,
		},
	})
}

func (q *query) huntResults() answer {
	h, ok := q.org.hunts[q.env["HuntId"]]
	if !ok {
		return answer{}
	}
	source := q.env["Source"]
	var out []map[string]any
	for _, id := range h.flows {
		f := q.org.flows[id]
		if f.state != "FINISHED" {
			continue
		}
		if sources, _ := q.s.sources(f.artifacts); !slices.Contains(sources, source) {
			continue
		}
		fqdn := ""
		if c, ok := q.org.clients[f.clientID]; ok {
			fqdn = c.FQDN
		}
		for _, r := range q.s.rows[source] {
			row := maps.Clone(r)
			row["FlowId"], row["ClientId"], row["_OrgId"], row["Fqdn"] = f.id, f.clientID, orgKey(q.orgID), fqdn
			out = append(out, row)
		}
	}
	return answer{rows: out}
}

func (q *query) stopHunt() answer {
	h, ok := q.org.hunts[q.env["HuntId"]]
	if !ok {
		return fail("Stopped", "hunt_update: Error: hunt %s not found", q.env["HuntId"])
	}
	if h.state == "RUNNING" || h.state == "PAUSED" {
		h.state = "STOPPED"
	}
	return rows(map[string]any{"Stopped": h.id})
}

func (q *query) label() answer {
	c, failed := q.knownClient("label", "Labelled")
	if failed != nil {
		return *failed
	}
	labels, err := parseList(q.env["Labels"])
	if err != nil {
		return fail("Labelled", "VQL Error: label: labels must be a list")
	}
	switch q.env["Op"] {
	case "set":
		for _, l := range labels {
			if !slices.Contains(c.Labels, l) {
				c.Labels = append(c.Labels, l)
			}
		}
	case "remove":
		c.Labels = slices.DeleteFunc(c.Labels, func(l string) bool { return slices.Contains(labels, l) })
	default:
		return fail("Labelled", "VQL Error: label: op must be set, check or remove")
	}
	// label() answers its arguments as a dict.
	return rows(map[string]any{"Labelled": map[string]any{"client_id": c.ClientID, "labels": labels, "op": q.env["Op"]}})
}
