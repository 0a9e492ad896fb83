package velociraptor

import "strconv"

// The VQL this package sends. Each operation runs exactly one of these fixed
// statements; whatever came from a user reaches the server only as a string in
// the query's env (lists and maps as JSON, decoded inside the statement), so no
// value can change what the statement does.

// HuntMarkerPrefix starts the mark that CreateHunt appends to a hunt's
// description, "[VelociCompanion <marker>]", so that FindHunt finds the hunt
// again after a crash: Velociraptor's hunt() takes no tags, and the
// description is the only text of ours that it keeps.
//
// WARNING: durable: hunts already started carry it; never change.
const HuntMarkerPrefix = "[VelociCompanion "

// huntMark is the mark of the hunt whose marker is m.
func huntMark(m string) string { return HuntMarkerPrefix + m + "]" }

// clientsCap is the LIMIT of the clients statement: clients() takes no count
// argument and VQL's LIMIT takes only a literal, so the statement returns at
// most this many and Clients cuts the answer to its caller's limit.
const clientsCap = 10000

// Statement is one of the fixed VQL statements of this package.
type Statement struct {
	Name string   // sent as VQLRequest.Name
	VQL  string   // the exact text sent as VQLRequest.VQL
	Env  []string // the env keys the statement reads
}

// The statement names.
const (
	StmtPing        = "vc_ping"
	StmtClients     = "vc_clients"
	StmtClient      = "vc_client"
	StmtCollect     = "vc_collect"
	StmtFindFlow    = "vc_find_flow"
	StmtFlow        = "vc_flow"
	StmtFlowResults = "vc_flow_results"
	StmtFlowLogs    = "vc_flow_logs"
	StmtCancelFlow  = "vc_cancel_flow"
	StmtCreateHunt  = "vc_create_hunt"
	StmtFindHunt    = "vc_find_hunt"
	StmtHunt        = "vc_hunt"
	StmtHuntResults = "vc_hunt_results"
	StmtStopHunt    = "vc_stop_hunt"
	StmtLabel       = "vc_label"
)

const clientColumns = "client_id, os_info, labels, first_seen_at, last_seen_at, last_ip, agent_information"

var statements = []Statement{
	{StmtPing, "SELECT timestamp(epoch=now()) AS ServerTime FROM scope()", nil},
	{StmtClients, "SELECT " + clientColumns + " FROM clients(search=Search) LIMIT " + strconv.Itoa(clientsCap), []string{"Search"}},
	{StmtClient, "SELECT " + clientColumns + " FROM clients(client_id=ClientId)", []string{"ClientId"}},
	{StmtCollect, "SELECT collect_client(client_id=ClientId, artifacts=parse_json_array(data=Artifacts), " +
		"env=parse_json(data=CollectEnv)) AS Collection FROM scope()", []string{"ClientId", "Artifacts", "CollectEnv"}},
	{StmtFindFlow, "SELECT session_id, create_time, request.creator AS creator, request.artifacts AS artifacts, " +
		"request.specs AS specs FROM flows(client_id=ClientId)", []string{"ClientId"}},
	{StmtFlow, "SELECT session_id, state, status, total_collected_rows, artifacts_with_results " +
		"FROM flows(client_id=ClientId, flow_id=FlowId)", []string{"ClientId", "FlowId"}},
	// source() also takes HuntId, ArtifactName, Limit, StartRow, StartTime,
	// EndTime and NotebookId from the query's scope when its own argument is
	// unset: its env must never carry those names (HuntId would make it read
	// a hunt's results instead of the flow's).
	{StmtFlowResults, "SELECT * FROM source(client_id=ClientId, flow_id=FlowId, artifact=Source)",
		[]string{"ClientId", "FlowId", "Source"}},
	{StmtFlowLogs, "SELECT * FROM flow_logs(client_id=ClientId, flow_id=FlowId)", []string{"ClientId", "FlowId"}},
	{StmtCancelFlow, "SELECT cancel_flow(client_id=ClientId, flow_id=FlowId) AS Cancelled FROM scope()",
		[]string{"ClientId", "FlowId"}},
	{StmtCreateHunt, "SELECT hunt(description=Description, artifacts=parse_json_array(data=Artifacts), " +
		"spec=parse_json(data=Spec), expires=timestamp(epoch=Expires), " +
		"include_labels=parse_json_array(data=IncludeLabels), exclude_labels=parse_json_array(data=ExcludeLabels), " +
		"os=OS, pause=FALSE) AS Hunt FROM scope()",
		[]string{"Description", "Artifacts", "Spec", "Expires", "IncludeLabels", "ExcludeLabels", "OS"}},
	{StmtFindHunt, "SELECT hunt_id, hunt_description FROM hunts()", nil},
	{StmtHunt, "SELECT hunt_id, state, artifacts, artifact_sources, stats FROM hunts(hunt_id=HuntId)", []string{"HuntId"}},
	{StmtHuntResults, "SELECT * FROM hunt_results(hunt_id=HuntId, artifact=Source)", []string{"HuntId", "Source"}},
	{StmtStopHunt, "SELECT hunt_update(hunt_id=HuntId, stop=TRUE) AS Stopped FROM scope()", []string{"HuntId"}},
	{StmtLabel, "SELECT label(client_id=ClientId, labels=parse_json_array(data=Labels), op=Op) AS Labelled FROM scope()",
		[]string{"ClientId", "Labels", "Op"}},
}

// Statements returns every statement this package sends, for test servers
// that answer them (package vrfake).
func Statements() []Statement {
	out := make([]Statement, len(statements))
	for i, s := range statements {
		out[i] = Statement{Name: s.Name, VQL: s.VQL, Env: append([]string(nil), s.Env...)}
	}
	return out
}

// statement returns the statement called name; a missing one is a
// programming error.
func statement(name string) Statement {
	for _, s := range statements {
		if s.Name == name {
			return s
		}
	}
	panic("velociraptor: no statement " + name)
}
