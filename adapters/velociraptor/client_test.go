package velociraptor_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/vrfake"
	"velocicompanion/domain"
)

const (
	clientA = "C.0000000000000001"
	clientB = "C.0000000000000002"
	clientX = "C.00000000000000ff" // in org O1 only
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect parses the fake's api_client configuration as of now and dials it.
func connect(t *testing.T, fake *vrfake.Server, now time.Time, opt ...vrfake.Option) *velociraptor.Client {
	t.Helper()
	a, err := velociraptor.ParseAPIClient(fake.APIClientYAML(t, opt...), now)
	if err != nil {
		t.Fatalf("ParseAPIClient: %v", err)
	}
	c, err := velociraptor.Dial(a)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fleet is a fake with two clients in the root org and one in org O1.
func fleet(t *testing.T) *vrfake.Server {
	fake := vrfake.Start(t)
	seen := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake.AddClient("", vrfake.Client{
		ClientID: clientA, Hostname: "ws-01", FQDN: "ws-01.corp.example", OS: "windows", Release: "Windows 11",
		Machine: "amd64", MACs: []string{"00:11:22:33:44:55"}, Labels: []string{"Finance"},
		FirstSeen: seen, LastSeen: seen.Add(90*time.Minute + 1234*time.Microsecond), LastIP: "10.0.0.5:51234", AgentVersion: "0.77.0",
	})
	fake.AddClient("", vrfake.Client{ClientID: clientB, Hostname: "srv-db", FQDN: "srv-db.corp.example", OS: "linux"})
	fake.AddClient("O1", vrfake.Client{ClientID: clientX, Hostname: "other-tenant", OS: "linux"})
	fake.SetArtifactRows("Generic.Client.Info/BasicInformation", []map[string]any{
		{"Hostname": "ws-01", "OS": "windows"},
	})
	fake.SetArtifactRows("Generic.Client.Info/Users", []map[string]any{
		{"Name": "alice"}, {"Name": "bob"}, {"Name": "carol"}, {"Name": "dave"}, {"Name": "erin"},
	})
	return fake
}

func wantDomain(t *testing.T, err error, kind domain.Kind, code string) *domain.Error {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *domain.Error", err, err)
	}
	if de.Kind != kind || de.Code != code {
		t.Fatalf("error = %s/%s %q, want %s/%s", de.Kind, de.Code, de.Message, kind, code)
	}
	return de
}

// assertOnlyStatements checks that every query the fake received was one of
// the package's fixed statements, sent under its own name.
func assertOnlyStatements(t *testing.T, fake *vrfake.Server) {
	t.Helper()
	byName := map[string]string{}
	for _, s := range velociraptor.Statements() {
		byName[s.Name] = s.VQL
	}
	for _, c := range fake.Calls() {
		if vql, ok := byName[c.Name]; !ok || vql != c.VQL {
			t.Fatalf("query %q (%s) is not one of the package's statements", c.VQL, c.Name)
		}
	}
}

func TestTLSRefusals(t *testing.T) {
	fake := fleet(t)
	now := time.Now()
	tests := []struct {
		name   string
		now    time.Time
		opt    []vrfake.Option
		reason string
	}{
		// The file of another deployment: the client does not trust the
		// server and the server does not trust the client.
		{"foreign CA", now, []vrfake.Option{vrfake.ForeignCA()}, "unknown authority"},
		{"wrong pinned server name", now, []vrfake.Option{vrfake.ServerName("NotVelociraptor")}, "not NotVelociraptor"},
		// The parse is passed with a clock at which the certificate was
		// valid; the server checks it at the real time. How the refusal
		// reaches the client (a TLS alert or a reset) depends on timing.
		{"expired client certificate", now.Add(-36 * time.Hour), []vrfake.Option{vrfake.Expired(), vrfake.Name("expired")}, ""},
		{"not yet valid client certificate", now.Add(36 * time.Hour), []vrfake.Option{vrfake.NotYetValid(), vrfake.Name("early")}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			org := connect(t, fake, tt.now, tt.opt...).Org("")
			err := org.Ping(testCtx(t))
			de := wantDomain(t, err, domain.KindUnavailable, velociraptor.CodeUnreachable)
			t.Logf("refused: %s", de.Message)
			if !strings.Contains(de.Message, fake.Addr()) || !strings.Contains(de.Message, tt.reason) {
				t.Fatalf("message %q does not name the server and %q", de.Message, tt.reason)
			}
			for _, c := range fake.Calls() {
				if c.CN == "expired" || c.CN == "early" {
					t.Fatalf("the server ran a query for a refused certificate: %+v", c)
				}
			}
		})
	}
	if n := len(fake.Calls()); n != 0 {
		t.Fatalf("the server ran %d queries for refused connections", n)
	}

	t.Run("the right configuration works", func(t *testing.T) {
		if err := connect(t, fake, now).Org("").Ping(testCtx(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		a, err := velociraptor.ParseAPIClient(editYAML(t, fake.APIClientYAML(t), func(m map[string]string) {
			m["api_connection_string"] = "127.0.0.1:1"
		}), now)
		if err != nil {
			t.Fatal(err)
		}
		c, err := velociraptor.Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wantDomain(t, c.Org("").Ping(testCtx(t)), domain.KindUnavailable, velociraptor.CodeUnreachable)
	})
}

func TestClients(t *testing.T) {
	fake := fleet(t)
	org := connect(t, fake, time.Now()).Org("")
	ctx := testCtx(t)

	got, err := org.Clients(ctx, "", 0)
	if err != nil {
		t.Fatalf("Clients: %v", err)
	}
	if len(got) != 2 || got[0].ClientID != clientA || got[1].ClientID != clientB {
		t.Fatalf("Clients = %+v, want the root org's two clients", got)
	}
	seen := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := got[0]
	want := velociraptor.ClientInfo{
		ClientID: clientA, Hostname: "ws-01", FQDN: "ws-01.corp.example", OS: "windows", Release: "Windows 11",
		Machine: "amd64", MACs: []string{"00:11:22:33:44:55"}, Labels: []string{"Finance"},
		FirstSeen: seen, LastSeen: seen.Add(90*time.Minute + 1234*time.Microsecond), LastIP: "10.0.0.5:51234", AgentVersion: "0.77.0",
	}
	if !a.FirstSeen.Equal(want.FirstSeen) || !a.LastSeen.Equal(want.LastSeen) {
		t.Fatalf("seen = %s / %s, want %s / %s (first_seen_at in s, last_seen_at in µs)", a.FirstSeen, a.LastSeen, want.FirstSeen, want.LastSeen)
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(a)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("client = %s\nwant     %s", gotJSON, wantJSON)
	}

	t.Run("search travels in env, the limit is applied here", func(t *testing.T) {
		got, err := org.Clients(ctx, "srv", 5)
		if err != nil || len(got) != 1 || got[0].ClientID != clientB {
			t.Fatalf("Clients(srv) = %+v, %v", got, err)
		}
		calls := fake.Calls()
		last := calls[len(calls)-1]
		// clients() takes no count: the statement caps the answer with a
		// literal LIMIT and Clients cuts it to the caller's limit.
		if last.Env["Search"] != "srv" || len(last.Env) != 1 || !strings.HasSuffix(last.VQL, " LIMIT 10000") ||
			strings.Contains(last.VQL, "count=") {
			t.Fatalf("call = %q %v", last.VQL, last.Env)
		}
		got, err = org.Clients(ctx, "", 1)
		if err != nil || len(got) != 1 || got[0].ClientID != clientA {
			t.Fatalf("Clients(limit 1) = %+v, %v, want the first client only", got, err)
		}
	})

	t.Run("one client", func(t *testing.T) {
		c, err := org.Client(ctx, clientB)
		if err != nil || c.Hostname != "srv-db" {
			t.Fatalf("Client = %+v, %v", c, err)
		}
		_, err = org.Client(ctx, "C.0000000000000abc")
		wantDomain(t, err, domain.KindNotFound, velociraptor.CodeNotFound)
	})
	assertOnlyStatements(t, fake)
}

func TestManyPartsAreGathered(t *testing.T) {
	fake := vrfake.Start(t)
	var want []string
	for i := range 7 {
		id := "C.00000000000000" + string(rune('a'+i)) + "0"
		want = append(want, id)
		fake.AddClient("", vrfake.Client{ClientID: id, Hostname: "host"})
	}
	org := connect(t, fake, time.Now()).Org("")
	got, err := org.Clients(testCtx(t), "", 0)
	if err != nil {
		t.Fatalf("Clients: %v", err)
	}
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ClientID)
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("clients from 4 parts = %v, want %v", ids, want)
	}
}

func TestVQLErrors(t *testing.T) {
	fake := fleet(t)
	c := connect(t, fake, time.Now())
	root := c.Org("")
	o1 := c.Org("O1")
	ctx := testCtx(t)
	limited := connect(t, fake, time.Now(), vrfake.Name("o1-only"), vrfake.OrgAccess("O1")).Org("")

	tests := []struct {
		name    string
		run     func() error
		kind    domain.Kind
		code    string
		message string
	}{
		{"unknown artifact", func() error {
			_, err := root.Collect(ctx, clientA, []string{"Custom.Does.Not.Exist"}, nil)
			return err
		}, domain.KindInvalid, velociraptor.CodeUnknownArtifact, "Unknown artifact Custom.Does.Not.Exist"},
		{"client of another org", func() error {
			_, err := o1.Collect(ctx, clientA, []string{"Generic.Client.Info"}, nil)
			return err
		}, domain.KindNotFound, velociraptor.CodeNotFound, "not known in this org"},
		{"label a client of another org", func() error {
			return root.Label(ctx, clientX, []string{"Quarantine"}, "set")
		}, domain.KindNotFound, velociraptor.CodeNotFound, "client " + clientX + " not known in this org"},
		{"identity without a role in the org", func() error { return limited.Ping(ctx) },
			domain.KindUpstream, velociraptor.CodePermissionDenied, "PermissionDenied"},
		{"org that does not exist", func() error { return c.Org("O-unknown").Ping(ctx) },
			domain.KindUpstream, velociraptor.CodePermissionDenied, "PermissionDenied"},
		{"statement the server cannot run", func() error {
			_, err := root.Query(ctx, "SELECT * FROM nonsense()", nil)
			return err
		}, domain.KindUpstream, velociraptor.CodeQueryFailed, "VQL Error:"},
		{"hunt expiring in the past", func() error {
			_, err := root.CreateHunt(ctx, velociraptor.HuntSpec{Artifacts: []string{"Generic.Client.Info"}, Marker: "h-1",
				Expires: time.Now().Add(-time.Hour)})
			return err
		}, domain.KindUpstream, velociraptor.CodeQueryFailed, "expiry time is in the past"},
		{"stop an unknown hunt", func() error { return root.StopHunt(ctx, "H.NOSUCHHUNT") },
			domain.KindUpstream, velociraptor.CodeQueryFailed, "hunt H.NOSUCHHUNT not found"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			err := tt.run()
			de := wantDomain(t, err, tt.kind, tt.code)
			if !strings.Contains(de.Message, tt.message) {
				t.Fatalf("message %q does not contain %q", de.Message, tt.message)
			}
			var ve *velociraptor.VQLError
			if !errors.As(err, &ve) || !strings.Contains(ve.Log, tt.message) {
				t.Fatalf("error %v is not a *VQLError with the log", err)
			}
		})
	}
	if got := fake.Flows("", clientA); len(got) != 0 {
		t.Fatalf("failed collections started flows %v", got)
	}
	if got := fake.Labels("O1", clientX); len(got) != 0 {
		t.Fatalf("a refused label changed labels: %v", got)
	}
}

func TestHostileValues(t *testing.T) {
	fake := fleet(t)
	org := connect(t, fake, time.Now()).Org("")
	ctx := testCtx(t)
	const injection = `'); SELECT * FROM clients() --`

	t.Run("rejected before any call", func(t *testing.T) {
		before := len(fake.Calls())
		checks := []func() error{
			func() error { _, err := org.Client(ctx, "C.0000000000000001"+injection); return err },
			func() error {
				_, err := org.Collect(ctx, clientA, []string{"Generic.Client.Info" + injection}, nil)
				return err
			},
			func() error {
				_, _, err := org.FindFlow(ctx, clientA, velociraptor.FlowMatch{Artifacts: []string{"Generic.Client.Info" + injection}})
				return err
			},
			func() error {
				_, err := org.Collect(ctx, clientA, []string{"Generic.Client.Info"}, map[string]string{"x" + injection: "1"})
				return err
			},
			func() error {
				_, err := org.CreateHunt(ctx, velociraptor.HuntSpec{Artifacts: []string{"Generic.Client.Info"}, Marker: "h" + injection})
				return err
			},
			func() error { _, _, err := org.FindHunt(ctx, "h"+injection); return err },
			func() error {
				_, err := org.FlowResults(ctx, clientA, "F.ABC", "Generic.Client.Info"+injection)
				return err
			},
			func() error { _, err := org.Flow(ctx, clientA, "F.ABC"+injection); return err },
			func() error { _, err := org.HuntResults(ctx, "H.ABC"+injection, "Generic.Client.Info"); return err },
			func() error { return org.Label(ctx, clientA, []string{"ok"}, "set"+injection) },
			func() error {
				_, err := org.CreateHunt(ctx, velociraptor.HuntSpec{Artifacts: []string{"Generic.Client.Info"}, Marker: "h", OS: "windows" + injection})
				return err
			},
		}
		for i, check := range checks {
			if err := check(); domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("check %d: error %v, want invalid", i, err)
			}
		}
		if after := len(fake.Calls()); after != before {
			t.Fatalf("invalid values reached the server: %d calls", after-before)
		}
	})

	t.Run("free text only travels in env", func(t *testing.T) {
		got, err := org.Clients(ctx, injection, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("Clients(injection) = %+v, %v, want no client", got, err)
		}
		asked := time.Now()
		flowID, err := org.Collect(ctx, clientA, []string{"Generic.Client.Info"}, map[string]string{"Path": injection})
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		if _, err := org.CreateHunt(ctx, velociraptor.HuntSpec{Description: injection, Artifacts: []string{"Generic.Client.Info"},
			Params: map[string]string{"Path": injection}, IncludeLabels: []string{injection}, Marker: "h-env"}); err != nil {
			t.Fatalf("CreateHunt: %v", err)
		}
		if err := org.Label(ctx, clientA, []string{injection}, "set"); err != nil {
			t.Fatalf("Label: %v", err)
		}
		if !slices.Contains(fake.Labels("", clientA), injection) {
			t.Fatalf("labels = %v, want the literal value", fake.Labels("", clientA))
		}
		found, ok, err := org.FindFlow(ctx, clientA, velociraptor.FlowMatch{
			Artifacts: []string{"Generic.Client.Info"}, Params: map[string]string{"Path": injection}, Since: asked,
		})
		if err != nil || !ok || found != flowID {
			t.Fatalf("FindFlow = %q %v %v, want %q", found, ok, err, flowID)
		}
		inEnv := 0
		for _, c := range fake.Calls() {
			if strings.Contains(c.VQL, injection) || strings.Contains(c.VQL, "SELECT * FROM clients()") {
				t.Fatalf("a user value reached the VQL text: %q", c.VQL)
			}
			for _, v := range c.Env {
				if strings.Contains(v, injection) {
					inEnv++
					break
				}
			}
		}
		if inEnv < 4 {
			t.Fatalf("the value travelled in env of %d calls, want 4 (clients, collect, hunt, label)", inEnv)
		}
		assertOnlyStatements(t, fake)
	})
}

func TestCollection(t *testing.T) {
	fake := fleet(t)
	fake.FinishAfterPolls(2)
	fake.DeclareParameters("Generic.Client.Info", "Verbose")
	org := connect(t, fake, time.Now()).Org("")
	ctx := testCtx(t)
	asked := time.Now()
	match := velociraptor.FlowMatch{Artifacts: []string{"Generic.Client.Info"}, Params: map[string]string{"Verbose": "Y"}, Since: asked}

	// A worker looks for the flow before starting it, so that a crash after
	// Collect and before recording the flow id does not start a second one.
	schedule := func() string {
		t.Helper()
		id, found, err := org.FindFlow(ctx, clientA, match)
		if err != nil {
			t.Fatalf("FindFlow: %v", err)
		}
		if found {
			return id
		}
		id, err = org.Collect(ctx, clientA, []string{"Generic.Client.Info"}, map[string]string{"Verbose": "Y"})
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		return id
	}
	flowID := schedule()
	if again := schedule(); again != flowID {
		t.Fatalf("second schedule = %s, want the same flow %s", again, flowID)
	}
	if flows := fake.Flows("", clientA); !slices.Equal(flows, []string{flowID}) {
		t.Fatalf("flows = %v, want only %s", flows, flowID)
	}
	// Another collection is not this one: other parameters (as recorded),
	// other artifacts, asked for after the flow started, or started by
	// another identity.
	other := connect(t, fake, time.Now(), vrfake.Name("another-identity")).Org("")
	for name, m := range map[string]velociraptor.FlowMatch{
		"other parameters": {Artifacts: match.Artifacts, Params: map[string]string{"Verbose": "N"}, Since: asked},
		"other artifacts":  {Artifacts: []string{"Generic.Client.Info", "Generic.System.Pstree"}, Params: match.Params, Since: asked},
		"asked later":      {Artifacts: match.Artifacts, Params: match.Params, Since: time.Now().Add(time.Minute)},
	} {
		if _, found, err := org.FindFlow(ctx, clientA, m); err != nil || found {
			t.Fatalf("FindFlow(%s) = %v, %v; want not found", name, found, err)
		}
	}
	if _, found, err := other.FindFlow(ctx, clientA, match); err != nil || found {
		t.Fatalf("FindFlow(another identity) = %v, %v; want not found", found, err)
	}
	for _, c := range fake.Calls() {
		if c.Name == velociraptor.StmtCollect {
			var env map[string]string
			if err := json.Unmarshal([]byte(c.Env["CollectEnv"]), &env); err != nil || len(env) != 1 || env["Verbose"] != "Y" {
				t.Fatalf("CollectEnv = %q, want the parameters only", c.Env["CollectEnv"])
			}
			if c.Env["ClientId"] != clientA || c.Env["Artifacts"] != `["Generic.Client.Info"]` {
				t.Fatalf("collect env = %v", c.Env)
			}
		}
	}

	var states []string
	var flow velociraptor.Flow
	for range 5 {
		var err error
		if flow, err = org.Flow(ctx, clientA, flowID); err != nil {
			t.Fatalf("Flow: %v", err)
		}
		states = append(states, flow.State)
		if flow.Done() {
			break
		}
	}
	if !slices.Equal(states, []string{"RUNNING", "RUNNING", "FINISHED"}) {
		t.Fatalf("states = %v", states)
	}
	wantSources := []string{"Generic.Client.Info/BasicInformation", "Generic.Client.Info/Users"}
	if flow.FlowID != flowID || flow.TotalRows != 6 || !slices.Equal(flow.Sources, wantSources) {
		t.Fatalf("flow = %+v", flow)
	}
	users, err := org.FlowResults(ctx, clientA, flowID, "Generic.Client.Info/Users")
	if err != nil {
		t.Fatalf("FlowResults: %v", err)
	}
	var names []string
	for _, raw := range users {
		var r struct{ Name string }
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"alice", "bob", "carol", "dave", "erin"}) {
		t.Fatalf("rows from 3 parts = %v", names)
	}
	logs, err := org.FlowLogs(ctx, clientA, flowID, 1)
	if err != nil || !slices.Equal(logs, []string{"Collection is done"}) {
		t.Fatalf("FlowLogs(limit 1) = %v, %v", logs, err)
	}

	t.Run("a flow of another client is not found", func(t *testing.T) {
		_, err := org.Flow(ctx, clientB, flowID)
		wantDomain(t, err, domain.KindNotFound, velociraptor.CodeNotFound)
	})
	t.Run("a flow is not visible from another org", func(t *testing.T) {
		o1 := connect(t, fake, time.Now()).Org("O1")
		_, err := o1.Flow(ctx, clientA, flowID)
		wantDomain(t, err, domain.KindNotFound, velociraptor.CodeNotFound)
	})
}

func TestFailedAndCancelledFlows(t *testing.T) {
	fake := fleet(t)
	fake.FinishAfterPolls(0)
	fake.FailArtifact("Windows.Remediation.Quarantine", "Error: quarantine needs EXECVE and NETWORK permissions")
	org := connect(t, fake, time.Now()).Org("")
	ctx := testCtx(t)

	failed, err := org.Collect(ctx, clientA, []string{"Windows.Remediation.Quarantine"}, map[string]string{"MessageBox": "Isolated"})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	flow, err := org.Flow(ctx, clientA, failed)
	if err != nil {
		t.Fatalf("Flow: %v", err)
	}
	if !flow.Done() || flow.State != "ERROR" || !strings.Contains(flow.Status, "EXECVE") || len(flow.Sources) != 0 {
		t.Fatalf("flow = %+v, want ERROR with the status", flow)
	}
	logs, err := org.FlowLogs(ctx, clientA, failed, 0)
	if err != nil || len(logs) != 2 || !strings.HasPrefix(logs[1], "ERROR: Error: quarantine") {
		t.Fatalf("FlowLogs = %q, %v", logs, err)
	}

	fake.FinishAfterPolls(10)
	running, err := org.Collect(ctx, clientB, []string{"Generic.Client.Info"}, nil)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if err := org.CancelFlow(ctx, clientB, running); err != nil {
		t.Fatalf("CancelFlow: %v", err)
	}
	flow, err = org.Flow(ctx, clientB, running)
	if err != nil || !flow.Done() || !strings.Contains(flow.Status, "Cancelled") {
		t.Fatalf("cancelled flow = %+v, %v", flow, err)
	}

	// A held artifact's flows run until released or cancelled.
	fake.FinishAfterPolls(0)
	fake.HoldArtifact("Custom.Held")
	held, err := org.Collect(ctx, clientB, []string{"Custom.Held"}, nil)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	released, err := org.Collect(ctx, clientB, []string{"Custom.Held"}, nil)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	for range 3 {
		if flow, err := org.Flow(ctx, clientB, held); err != nil || flow.Done() {
			t.Fatalf("held flow = %+v, %v", flow, err)
		}
	}
	if err := org.CancelFlow(ctx, clientB, held); err != nil {
		t.Fatalf("CancelFlow: %v", err)
	}
	if state, status, ok := fake.FlowState("", held); !ok || state != "ERROR" || !strings.HasPrefix(status, "Cancelled by") {
		t.Fatalf("the fake's cancelled flow: %s %q %v", state, status, ok)
	}
	fake.ReleaseArtifact("Custom.Held")
	if flow, err := org.Flow(ctx, clientB, released); err != nil || flow.State != "FINISHED" {
		t.Fatalf("released flow = %+v, %v", flow, err)
	}
}

func TestHuntLifecycle(t *testing.T) {
	fake := fleet(t)
	fake.FailArtifact("Windows.System.Pslist", "Error: the process list failed")
	org := connect(t, fake, time.Now()).Org("")
	ctx := testCtx(t)
	const marker = "0197a0c2-7d1e-7c3a-9f00-00000000000h"

	spec := velociraptor.HuntSpec{
		Description: "Who is logged on", Artifacts: []string{"Generic.Client.Info"}, Params: map[string]string{"Verbose": "Y"},
		IncludeLabels: []string{"Finance"}, ExcludeLabels: []string{"Quarantine"}, Expires: time.Now().Add(time.Hour), Marker: marker,
	}
	if _, found, err := org.FindHunt(ctx, marker); err != nil || found {
		t.Fatalf("FindHunt before = %v, %v", found, err)
	}
	huntID, err := org.CreateHunt(ctx, spec)
	if err != nil {
		t.Fatalf("CreateHunt: %v", err)
	}
	if found, ok, err := org.FindHunt(ctx, marker); err != nil || !ok || found != huntID {
		t.Fatalf("FindHunt = %q %v %v, want %s", found, ok, err, huntID)
	}
	for _, c := range fake.Calls() {
		if c.Name != velociraptor.StmtCreateHunt {
			continue
		}
		_, hasTags := c.Env["Tags"]
		if c.Env["Description"] != "Who is logged on [VelociCompanion "+marker+"]" || hasTags || c.Env["IncludeLabels"] != `["Finance"]` ||
			c.Env["Spec"] != `{"Generic.Client.Info":{"Verbose":"Y"}}` || c.Env["OS"] != "" {
			t.Fatalf("hunt env = %v", c.Env)
		}
		if _, err := time.Parse(time.RFC3339, c.Env["Expires"]); err != nil {
			t.Fatalf("Expires = %q: %v", c.Env["Expires"], err)
		}
	}

	h, err := org.Hunt(ctx, huntID)
	if err != nil {
		t.Fatalf("Hunt: %v", err)
	}
	if h.State != "RUNNING" || h.Stats != (velociraptor.HuntStats{}) {
		t.Fatalf("new hunt = %+v", h)
	}
	fake.HuntClients(huntID, clientA, clientB)
	h, err = org.Hunt(ctx, huntID)
	if err != nil {
		t.Fatalf("Hunt: %v", err)
	}
	wantSources := []string{"Generic.Client.Info/BasicInformation", "Generic.Client.Info/Users"}
	if h.Stats != (velociraptor.HuntStats{Scheduled: 2, Completed: 2, WithResults: 2}) || !slices.Equal(h.Artifacts, wantSources) {
		t.Fatalf("hunt = %+v", h)
	}
	rows, err := org.HuntResults(ctx, huntID, "Generic.Client.Info/Users")
	if err != nil {
		t.Fatalf("HuntResults: %v", err)
	}
	perClient := map[string]int{}
	for _, raw := range rows {
		var r struct{ ClientId, FlowId, Name string }
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if velociraptor.CheckFlowID(r.FlowId) != nil || !strings.HasSuffix(r.FlowId, ".H") || r.Name == "" {
			t.Fatalf("hunt row %s", raw)
		}
		perClient[r.ClientId]++
	}
	if len(rows) != 10 || perClient[clientA] != 5 || perClient[clientB] != 5 {
		t.Fatalf("hunt rows per client = %v (of %d)", perClient, len(rows))
	}

	if err := org.StopHunt(ctx, huntID); err != nil {
		t.Fatalf("StopHunt: %v", err)
	}
	if h, err = org.Hunt(ctx, huntID); err != nil || h.State != "STOPPED" {
		t.Fatalf("stopped hunt = %+v, %v", h, err)
	}

	t.Run("errors are counted", func(t *testing.T) {
		id, err := org.CreateHunt(ctx, velociraptor.HuntSpec{Artifacts: []string{"Windows.System.Pslist"}, OS: "windows", Marker: "h-err"})
		if err != nil {
			t.Fatalf("CreateHunt: %v", err)
		}
		fake.HuntClients(id, clientA)
		h, err := org.Hunt(ctx, id)
		if err != nil || h.Stats != (velociraptor.HuntStats{Scheduled: 1, Completed: 1, Errors: 1}) {
			t.Fatalf("hunt = %+v, %v", h, err)
		}
	})
	t.Run("hunts are scoped by org", func(t *testing.T) {
		o1 := connect(t, fake, time.Now()).Org("O1")
		_, err := o1.Hunt(ctx, huntID)
		wantDomain(t, err, domain.KindNotFound, velociraptor.CodeNotFound)
		if _, found, err := o1.FindHunt(ctx, marker); err != nil || found {
			t.Fatalf("FindHunt in O1 = %v, %v", found, err)
		}
	})
	t.Run("OS and labels together are refused", func(t *testing.T) {
		_, err := org.CreateHunt(ctx, velociraptor.HuntSpec{Artifacts: []string{"Generic.Client.Info"}, OS: "linux",
			IncludeLabels: []string{"x"}, Marker: "h-both"})
		wantDomain(t, err, domain.KindInvalid, "velociraptor_hunt_invalid")
	})
}

func TestLabels(t *testing.T) {
	fake := fleet(t)
	org := connect(t, fake, time.Now()).Org("")
	ctx := testCtx(t)
	if err := org.Label(ctx, clientA, []string{"Quarantine", "IR-42"}, "set"); err != nil {
		t.Fatalf("Label set: %v", err)
	}
	if got := fake.Labels("", clientA); !slices.Equal(got, []string{"Finance", "IR-42", "Quarantine"}) {
		t.Fatalf("labels after set = %v", got)
	}
	if err := org.Label(ctx, clientA, []string{"Quarantine"}, "remove"); err != nil {
		t.Fatalf("Label remove: %v", err)
	}
	if got := fake.Labels("", clientA); !slices.Equal(got, []string{"Finance", "IR-42"}) {
		t.Fatalf("labels after remove = %v", got)
	}
	c, err := org.Client(ctx, clientA)
	if err != nil || !slices.Contains(c.Labels, "IR-42") || slices.Contains(c.Labels, "Quarantine") {
		t.Fatalf("client labels = %v, %v", c.Labels, err)
	}
	wantDomain(t, org.Label(ctx, clientA, nil, "set"), domain.KindInvalid, "velociraptor_label_invalid")
	wantDomain(t, org.Label(ctx, clientA, []string{"x"}, "check"), domain.KindInvalid, "velociraptor_label_invalid")
}

func TestOrgScoping(t *testing.T) {
	fake := fleet(t)
	c := connect(t, fake, time.Now(), vrfake.Name("tenant-o1"), vrfake.OrgAccess("O1"))
	ctx := testCtx(t)
	o1 := c.Org("O1")

	got, err := o1.Clients(ctx, "", 0)
	if err != nil || len(got) != 1 || got[0].ClientID != clientX {
		t.Fatalf("O1 clients = %+v, %v", got, err)
	}
	_, err = o1.Client(ctx, clientA)
	wantDomain(t, err, domain.KindNotFound, velociraptor.CodeNotFound)
	_, err = c.Org("").Clients(ctx, "", 0)
	wantDomain(t, err, domain.KindUpstream, velociraptor.CodePermissionDenied)

	for _, call := range fake.Calls() {
		if call.CN != "tenant-o1" {
			t.Fatalf("call by %q, want tenant-o1", call.CN)
		}
	}
	calls := fake.Calls()
	if calls[0].Org != "O1" || calls[len(calls)-1].Org != "" {
		t.Fatalf("org ids sent = %q … %q", calls[0].Org, calls[len(calls)-1].Org)
	}
}

// TestDialControl refuses the fake's address in the socket's Control, as an
// operator's network policy does: nothing reaches the server.
func TestDialControl(t *testing.T) {
	fake := fleet(t)
	a, err := velociraptor.ParseAPIClient(fake.APIClientYAML(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	var mu sync.Mutex
	refuse := velociraptor.WithControl(func(_, address string, _ syscall.RawConn) error {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, address)
		return errors.New("address not allowed")
	})
	c, err := velociraptor.Dial(a, refuse)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Org("").Ping(testCtx(t))
	wantDomain(t, err, domain.KindUnavailable, velociraptor.CodeUnreachable)
	mu.Lock()
	defer mu.Unlock()
	if len(asked) == 0 || asked[0] != fake.Addr() {
		t.Fatalf("control saw %v, want %s", asked, fake.Addr())
	}
	if n := len(fake.Calls()); n != 0 {
		t.Fatalf("the server ran %d queries through a refused connection", n)
	}
}
