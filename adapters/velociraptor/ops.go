package velociraptor

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"velocicompanion/domain"
)

// Ping runs a trivial query in the org: it proves that the server answers,
// accepts the API client and lets it query the org.
func (o Org) Ping(ctx context.Context) error {
	rows, err := o.run(ctx, StmtPing, nil)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return domain.Upstream(CodeBadResponse, "Velociraptor answered the test query with no row")
	}
	return nil
}

// ClientInfo is what VelociCompanion uses of a Velociraptor client.
type ClientInfo struct {
	ClientID     string    `json:"client_id"`
	Hostname     string    `json:"hostname"`
	FQDN         string    `json:"fqdn"`
	OS           string    `json:"os"` // os_info.system: windows, linux, darwin
	Release      string    `json:"release"`
	Machine      string    `json:"machine"`
	MACs         []string  `json:"macs"`
	Labels       []string  `json:"labels"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	LastIP       string    `json:"last_ip"`
	AgentVersion string    `json:"agent_version"`
}

type clientRow struct {
	ClientID string `json:"client_id"`
	OSInfo   struct {
		Hostname string   `json:"hostname"`
		FQDN     string   `json:"fqdn"`
		System   string   `json:"system"`
		Release  string   `json:"release"`
		Machine  string   `json:"machine"`
		MACs     []string `json:"mac_addresses"`
	} `json:"os_info"`
	Labels      []string `json:"labels"`
	FirstSeenAt number   `json:"first_seen_at"` // seconds
	LastSeenAt  number   `json:"last_seen_at"`  // microseconds
	LastIP      string   `json:"last_ip"`
	Agent       struct {
		Version string `json:"version"`
	} `json:"agent_information"`
}

func (r clientRow) info() ClientInfo {
	c := ClientInfo{
		ClientID: r.ClientID, Hostname: r.OSInfo.Hostname, FQDN: r.OSInfo.FQDN, OS: r.OSInfo.System,
		Release: r.OSInfo.Release, Machine: r.OSInfo.Machine, MACs: r.OSInfo.MACs, Labels: r.Labels,
		LastIP: r.LastIP, AgentVersion: r.Agent.Version,
	}
	if r.FirstSeenAt > 0 {
		c.FirstSeen = time.Unix(int64(r.FirstSeenAt), 0).UTC()
	}
	if r.LastSeenAt > 0 {
		c.LastSeen = time.UnixMicro(int64(r.LastSeenAt)).UTC()
	}
	return c
}

// DefaultClientsLimit and MaxClientsLimit bound Clients.
const (
	DefaultClientsLimit = 1000
	MaxClientsLimit     = 10000
)

// Clients lists the org's clients that match search (Velociraptor's search
// syntax: a host name, "host:", "label:"…; "" lists all), at most limit of
// them (DefaultClientsLimit when limit <= 0, at most MaxClientsLimit).
func (o Org) Clients(ctx context.Context, search string, limit int) ([]ClientInfo, error) {
	if err := checkText("velociraptor_search_invalid", "the search", search, maxSearch); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultClientsLimit
	}
	limit = min(limit, MaxClientsLimit)
	rows, err := o.run(ctx, StmtClients, map[string]string{"Search": search})
	if err != nil {
		return nil, err
	}
	out := make([]ClientInfo, 0, min(len(rows), limit))
	for _, raw := range rows {
		if len(out) == limit {
			break
		}
		var r clientRow
		if err := json.Unmarshal(raw, &r); err != nil || r.ClientID == "" {
			continue // not a client row
		}
		out = append(out, r.info())
	}
	return out, nil
}

// Client returns the org's client clientID; NotFound when the org has none.
func (o Org) Client(ctx context.Context, clientID string) (ClientInfo, error) {
	if err := CheckClientID(clientID); err != nil {
		return ClientInfo{}, err
	}
	rows, err := o.run(ctx, StmtClient, map[string]string{"ClientId": clientID})
	if err != nil {
		return ClientInfo{}, err
	}
	for _, raw := range rows {
		var r clientRow
		if err := json.Unmarshal(raw, &r); err == nil && r.ClientID == clientID {
			return r.info(), nil
		}
	}
	return ClientInfo{}, domain.NotFound(CodeNotFound, "client %s is not known in this org", clientID)
}

// Collect starts a collection of artifacts on the client, with params for the
// artifacts, and returns its flow id. Velociraptor keeps, of params, only the
// ones each artifact declares, and no other text of ours: FindFlow finds the
// flow again by what it collects, who started it and when.
func (o Org) Collect(ctx context.Context, clientID string, artifacts []string, params map[string]string) (string, error) {
	if err := CheckClientID(clientID); err != nil {
		return "", err
	}
	if err := checkArtifacts(artifacts); err != nil {
		return "", err
	}
	if err := checkParams(params); err != nil {
		return "", err
	}
	env := make(map[string]string, len(params))
	for k, v := range params {
		env[k] = v
	}
	rows, err := o.run(ctx, StmtCollect, map[string]string{
		"ClientId": clientID, "Artifacts": jsonString(artifacts), "CollectEnv": jsonString(env),
	})
	if err != nil {
		return "", err
	}
	var r struct {
		Collection *struct {
			FlowID string `json:"flow_id"`
		} `json:"Collection"`
	}
	if len(rows) != 1 || json.Unmarshal(rows[0], &r) != nil || r.Collection == nil {
		return "", domain.Upstream(CodeQueryFailed, "Velociraptor did not start the collection and gave no reason")
	}
	if err := CheckFlowID(r.Collection.FlowID); err != nil {
		return "", domain.Upstream(CodeBadResponse, "Velociraptor answered the collection with an invalid flow id")
	}
	return r.Collection.FlowID, nil
}

// FlowMatch tells FindFlow which flow a previous Collect started.
// Velociraptor keeps no text of the caller with a collection (collect_client
// records, of its env, only the parameters the artifacts declare), so the flow
// is recognised by what it collects, who started it and when.
type FlowMatch struct {
	Artifacts []string          // exactly the artifacts given to Collect, in order
	Params    map[string]string // the params given to Collect; those Velociraptor recorded must be equal
	Since     time.Time         // when the collection was asked for: older flows are not its own
	// Taken holds flows that other collections already recorded as theirs:
	// they are never this one's.
	Taken map[string]bool
}

// FindFlow looks for the client's flow that a previous Collect of m started
// with this connection's identity, created at or after m.Since; the oldest one
// when there are several. Two collections of the same artifacts and
// parameters on the same client asked for at the same time cannot be told
// apart: the caller must not start both before recording the first.
func (o Org) FindFlow(ctx context.Context, clientID string, m FlowMatch) (string, bool, error) {
	if err := CheckClientID(clientID); err != nil {
		return "", false, err
	}
	if err := checkArtifacts(m.Artifacts); err != nil {
		return "", false, err
	}
	rows, err := o.run(ctx, StmtFindFlow, map[string]string{"ClientId": clientID})
	if err != nil {
		return "", false, err
	}
	since := m.Since.UnixMicro()
	var found string
	var foundAt int64
	for _, raw := range rows {
		var r struct {
			SessionID  string   `json:"session_id"`
			CreateTime number   `json:"create_time"` // microseconds
			Creator    string   `json:"creator"`
			Artifacts  []string `json:"artifacts"`
			Specs      []struct {
				Artifact   string `json:"artifact"`
				Parameters struct {
					Env []struct {
						Key   string `json:"key"`
						Value string `json:"value"`
					} `json:"env"`
				} `json:"parameters"`
			} `json:"specs"`
		}
		if json.Unmarshal(raw, &r) != nil || CheckFlowID(r.SessionID) != nil || m.Taken[r.SessionID] {
			continue
		}
		created := int64(r.CreateTime)
		if created < since || !slices.Equal(r.Artifacts, m.Artifacts) {
			continue
		}
		if o.client.principal != "" && r.Creator != o.client.principal {
			continue
		}
		same := true
		for _, spec := range r.Specs {
			for _, kv := range spec.Parameters.Env {
				if v, ok := m.Params[kv.Key]; !ok || v != kv.Value {
					same = false
				}
			}
		}
		if same && (found == "" || created < foundAt) {
			found, foundAt = r.SessionID, created
		}
	}
	return found, found != "", nil
}

// Flow is the state of a collection.
type Flow struct {
	FlowID    string   `json:"flow_id"`
	State     string   `json:"state"`  // UNSET RUNNING WAITING IN_PROGRESS UNRESPONSIVE FINISHED ERROR
	Status    string   `json:"status"` // error text
	TotalRows int64    `json:"total_rows"`
	Sources   []string `json:"sources"` // artifacts_with_results: "Name" or "Name/Source"
}

// Done reports whether the flow has ended: FINISHED or ERROR (only FINISHED
// is a success; a cancelled flow ends in ERROR).
func (f Flow) Done() bool {
	return f.State == "FINISHED" || f.State == "ERROR"
}

// flowStates are the names of ArtifactCollectorContext.State by number
// (Velociraptor's VQL writes the names; the numbers are decoded too).
var flowStates = []string{"UNSET", "RUNNING", "FINISHED", "ERROR", "IN_PROGRESS", "UNRESPONSIVE", "WAITING"}

// Flow returns the state of the client's flow; NotFound when there is none.
func (o Org) Flow(ctx context.Context, clientID, flowID string) (Flow, error) {
	env, err := flowEnv(clientID, flowID)
	if err != nil {
		return Flow{}, err
	}
	rows, err := o.run(ctx, StmtFlow, env)
	if err != nil {
		return Flow{}, err
	}
	for _, raw := range rows {
		var r struct {
			SessionID string    `json:"session_id"`
			State     enumState `json:"state"`
			Status    string    `json:"status"`
			Rows      number    `json:"total_collected_rows"`
			Sources   []string  `json:"artifacts_with_results"`
		}
		if json.Unmarshal(raw, &r) != nil || r.SessionID != flowID {
			continue
		}
		return Flow{FlowID: flowID, State: r.State.name(flowStates), Status: r.Status, TotalRows: int64(r.Rows), Sources: r.Sources}, nil
	}
	return Flow{}, domain.NotFound(CodeNotFound, "flow %s of client %s is not known in this org", flowID, clientID)
}

func flowEnv(clientID, flowID string) (map[string]string, error) {
	if err := CheckClientID(clientID); err != nil {
		return nil, err
	}
	if err := CheckFlowID(flowID); err != nil {
		return nil, err
	}
	return map[string]string{"ClientId": clientID, "FlowId": flowID}, nil
}

// FlowResults returns the rows the flow collected for source ("Name" or
// "Name/Source", as listed in Flow.Sources).
func (o Org) FlowResults(ctx context.Context, clientID, flowID, source string) ([]json.RawMessage, error) {
	env, err := flowEnv(clientID, flowID)
	if err != nil {
		return nil, err
	}
	if err := CheckArtifactName(source); err != nil {
		return nil, err
	}
	env["Source"] = source
	return o.run(ctx, StmtFlowResults, env)
}

// FlowLogs returns the flow's log lines, the last limit of them when limit >
// 0 (failures are logged last). Errors and warnings start with their level.
func (o Org) FlowLogs(ctx context.Context, clientID, flowID string, limit int) ([]string, error) {
	env, err := flowEnv(clientID, flowID)
	if err != nil {
		return nil, err
	}
	rows, err := o.run(ctx, StmtFlowLogs, env)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, raw := range rows {
		var r struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &r) != nil || r.Message == "" {
			continue
		}
		line := r.Message
		if r.Level == "ERROR" || r.Level == "WARN" || r.Level == "WARNING" {
			line = r.Level + ": " + line
		}
		lines = append(lines, line)
	}
	if limit > 0 && len(lines) > limit {
		lines = lines[len(lines)-limit:]
	}
	return lines, nil
}

// CancelFlow cancels the client's flow.
func (o Org) CancelFlow(ctx context.Context, clientID, flowID string) error {
	env, err := flowEnv(clientID, flowID)
	if err != nil {
		return err
	}
	_, err = o.run(ctx, StmtCancelFlow, env)
	return err
}

// HuntSpec is what a hunt collects and from which clients.
type HuntSpec struct {
	Description   string
	Artifacts     []string
	Params        map[string]string // given to every artifact
	IncludeLabels []string
	ExcludeLabels []string
	OS            string    // "", windows, linux, darwin
	Expires       time.Time // zero: DefaultHuntExpiry from now
	Marker        string    // VelociCompanion's hunt id, appended to the description as "[VelociCompanion <marker>]"
}

// DefaultHuntExpiry is how long a hunt without an expiry runs.
const DefaultHuntExpiry = 7 * 24 * time.Hour

// CreateHunt starts a hunt (not paused) and returns its id.
func (o Org) CreateHunt(ctx context.Context, s HuntSpec) (string, error) {
	if err := checkArtifacts(s.Artifacts); err != nil {
		return "", err
	}
	if err := checkParams(s.Params); err != nil {
		return "", err
	}
	if err := checkLabels(s.IncludeLabels, false); err != nil {
		return "", err
	}
	if err := checkLabels(s.ExcludeLabels, false); err != nil {
		return "", err
	}
	if err := checkMarker(s.Marker); err != nil {
		return "", err
	}
	if err := checkText("velociraptor_hunt_invalid", "the description", s.Description, maxDescription); err != nil {
		return "", err
	}
	switch s.OS {
	case "", "windows", "linux", "darwin":
	default:
		return "", domain.Invalid("velociraptor_hunt_invalid", "the OS of a hunt is windows, linux or darwin")
	}
	if s.OS != "" && len(s.IncludeLabels) > 0 {
		// Velociraptor's hunt conditions are not additive: it would ignore one.
		return "", domain.Invalid("velociraptor_hunt_invalid", "a hunt targets an OS or labels, not both")
	}
	expires := s.Expires
	if expires.IsZero() {
		expires = time.Now().Add(DefaultHuntExpiry)
	}
	spec := make(map[string]map[string]string, len(s.Artifacts))
	for _, a := range s.Artifacts {
		params := map[string]string{}
		for k, v := range s.Params {
			params[k] = v
		}
		spec[a] = params
	}
	description := huntMark(s.Marker)
	if s.Description != "" {
		description = s.Description + " " + description
	}
	rows, err := o.run(ctx, StmtCreateHunt, map[string]string{
		"Description":   description,
		"Artifacts":     jsonString(s.Artifacts),
		"Spec":          jsonString(spec),
		"Expires":       expires.UTC().Format(time.RFC3339),
		"IncludeLabels": jsonString(nonNil(s.IncludeLabels)),
		"ExcludeLabels": jsonString(nonNil(s.ExcludeLabels)),
		"OS":            s.OS,
	})
	if err != nil {
		return "", err
	}
	var r struct {
		Hunt *struct {
			HuntID string `json:"HuntId"`
		} `json:"Hunt"`
	}
	if len(rows) != 1 || json.Unmarshal(rows[0], &r) != nil || r.Hunt == nil {
		return "", domain.Upstream(CodeQueryFailed, "Velociraptor did not start the hunt and gave no reason")
	}
	id := r.Hunt.HuntID
	if err := CheckHuntID(id); err != nil {
		return "", domain.Upstream(CodeBadResponse, "Velociraptor answered the hunt with an invalid hunt id")
	}
	return id, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// FindHunt looks for the org's hunt whose description carries marker's mark,
// the one a previous CreateHunt with the same marker started.
func (o Org) FindHunt(ctx context.Context, marker string) (string, bool, error) {
	if err := checkMarker(marker); err != nil {
		return "", false, err
	}
	rows, err := o.run(ctx, StmtFindHunt, nil)
	if err != nil {
		return "", false, err
	}
	mark := huntMark(marker)
	for _, raw := range rows {
		var r struct {
			HuntID      string `json:"hunt_id"`
			Description string `json:"hunt_description"`
		}
		if json.Unmarshal(raw, &r) == nil && CheckHuntID(r.HuntID) == nil && strings.HasSuffix(r.Description, mark) {
			return r.HuntID, true, nil
		}
	}
	return "", false, nil
}

// Hunt is the state of a hunt.
type Hunt struct {
	HuntID string `json:"hunt_id"`
	State  string `json:"state"` // UNSET PAUSED RUNNING STOPPED ARCHIVED DELETED
	// Artifacts are the hunt's result sources ("Name" or "Name/Source", from
	// artifact_sources), or its artifact names when the server lists no sources:
	// each is a valid source for HuntResults.
	Artifacts []string  `json:"artifacts"`
	Stats     HuntStats `json:"stats"`
}

// HuntStats counts the clients of a hunt.
type HuntStats struct {
	Scheduled   int64 `json:"scheduled"`    // total_clients_scheduled
	Completed   int64 `json:"completed"`    // clients whose collection ended, with or without results or errors
	WithResults int64 `json:"with_results"` // total_clients_with_results
	Errors      int64 `json:"errors"`       // total_clients_with_errors
}

// huntStates are the names of Hunt.State by number.
var huntStates = []string{"UNSET", "PAUSED", "RUNNING", "STOPPED", "ARCHIVED", "DELETED"}

// Hunt returns the state of the org's hunt; NotFound when there is none.
func (o Org) Hunt(ctx context.Context, huntID string) (Hunt, error) {
	if err := CheckHuntID(huntID); err != nil {
		return Hunt{}, err
	}
	rows, err := o.run(ctx, StmtHunt, map[string]string{"HuntId": huntID})
	if err != nil {
		return Hunt{}, err
	}
	for _, raw := range rows {
		var r struct {
			HuntID    string    `json:"hunt_id"`
			State     enumState `json:"state"`
			Artifacts []string  `json:"artifacts"`
			Sources   []string  `json:"artifact_sources"`
			Stats     struct {
				Scheduled      number `json:"total_clients_scheduled"`
				WithResults    number `json:"total_clients_with_results"`
				WithoutResults number `json:"total_clients_without_results"`
				Errors         number `json:"total_clients_with_errors"`
			} `json:"stats"`
		}
		if json.Unmarshal(raw, &r) != nil || r.HuntID != huntID {
			continue
		}
		h := Hunt{HuntID: huntID, State: r.State.name(huntStates), Artifacts: r.Sources}
		if len(h.Artifacts) == 0 {
			h.Artifacts = r.Artifacts
		}
		st := r.Stats
		h.Stats = HuntStats{Scheduled: int64(st.Scheduled), WithResults: int64(st.WithResults), Errors: int64(st.Errors)}
		h.Stats.Completed = int64(st.WithResults + st.WithoutResults + st.Errors)
		if h.Stats.Scheduled > 0 {
			h.Stats.Completed = min(h.Stats.Completed, h.Stats.Scheduled)
		}
		return h, nil
	}
	return Hunt{}, domain.NotFound(CodeNotFound, "hunt %s is not known in this org", huntID)
}

// HuntResults returns the rows of every client of the hunt for source ("Name"
// or "Name/Source"); each row carries ClientId and FlowId.
func (o Org) HuntResults(ctx context.Context, huntID, source string) ([]json.RawMessage, error) {
	if err := CheckHuntID(huntID); err != nil {
		return nil, err
	}
	if err := CheckArtifactName(source); err != nil {
		return nil, err
	}
	return o.run(ctx, StmtHuntResults, map[string]string{"HuntId": huntID, "Source": source})
}

// StopHunt stops the hunt: clients that have not started it will not.
func (o Org) StopHunt(ctx context.Context, huntID string) error {
	if err := CheckHuntID(huntID); err != nil {
		return err
	}
	_, err := o.run(ctx, StmtStopHunt, map[string]string{"HuntId": huntID})
	return err
}

// Label sets (op "set") or removes (op "remove") labels on the client.
func (o Org) Label(ctx context.Context, clientID string, labels []string, op string) error {
	if err := CheckClientID(clientID); err != nil {
		return err
	}
	if err := checkLabels(labels, true); err != nil {
		return err
	}
	if op != "set" && op != "remove" {
		return domain.Invalid("velociraptor_label_invalid", "a label operation is set or remove")
	}
	rows, err := o.run(ctx, StmtLabel, map[string]string{"ClientId": clientID, "Labels": jsonString(labels), "Op": op})
	if err != nil {
		return err
	}
	var r struct {
		Labelled json.RawMessage `json:"Labelled"`
	}
	if len(rows) != 1 || json.Unmarshal(rows[0], &r) != nil || len(r.Labelled) == 0 || bytes.Equal(r.Labelled, []byte("null")) {
		return domain.Upstream(CodeQueryFailed, "Velociraptor did not label client %s and gave no reason", clientID)
	}
	return nil
}

// number decodes a JSON number, a numeric string or null.
type number float64

func (n *number) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*n = number(f)
	return nil
}

// enumState decodes a protobuf enum written as its name or its number.
type enumState struct {
	text  string
	num   int
	isNum bool
}

func (e *enumState) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &e.text)
	}
	if string(b) == "null" {
		return nil
	}
	e.isNum = true
	return json.Unmarshal(b, &e.num)
}

func (e enumState) name(names []string) string {
	if !e.isNum {
		return e.text
	}
	if e.num >= 0 && e.num < len(names) {
		return names[e.num]
	}
	return strconv.Itoa(e.num)
}
