package jobs_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"velocicompanion/adapters/auth"
	atrest "velocicompanion/adapters/secrets"
	"velocicompanion/adapters/velociraptor"
	"velocicompanion/adapters/velociraptor/jobs"
	"velocicompanion/adapters/velociraptor/vrfake"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	vr "velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

const (
	winClient   = "C.00000000000000a1"
	linClient   = "C.00000000000000a2"
	otherClient = "C.00000000000000b1" // in org O2, tenant B's
)

// world is two tenants, A on the fake's root org and B on its org O2, with
// the commands, connections, worker and sync of one server process.
type world struct {
	t      *testing.T
	fake   *vrfake.Server
	db     *pgtest.DB
	h      *commands.Handler
	cmds   *commands.Velociraptor
	conns  *jobs.Connections
	worker *jobs.Worker
	sync   *jobs.Sync
	a, b   domain.TenantID
	adminA users.Actor
	adminB users.Actor
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	if err := commands.Migrate(ctx, db.Owner); err != nil {
		t.Fatal(err)
	}
	hasher, err := auth.NewHasher(auth.HasherOptions{Params: auth.MinimumParams})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyring, err := atrest.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	h := commands.New(eventstore.NewStore(db.App, commands.NewCodec()), hasher)
	if err := h.EnsurePlatformTenant(ctx); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, db: db, h: h, cmds: commands.NewVelociraptor(h, keyring)}
	for _, name := range []string{"Acme", "Globex"} {
		res, err := h.CreateTenant(ctx, commands.CreateTenant{Name: name, By: "root"})
		if err != nil {
			t.Fatal(err)
		}
		if w.a == "" {
			w.a = domain.TenantID(res.ID)
		} else {
			w.b = domain.TenantID(res.ID)
		}
	}
	w.adminA = users.Actor{User: "alice", Tenant: w.a, Role: users.RoleAdmin}
	w.adminB = users.Actor{User: "bob", Tenant: w.b, Role: users.RoleAdmin}

	w.fake = vrfake.Start(t)
	seen := time.Now().Add(-time.Minute).UTC()
	w.fake.AddClient("", vrfake.Client{ClientID: winClient, Hostname: "ws-01", FQDN: "ws-01.corp.example", OS: "windows",
		Release: "Windows 11", Labels: []string{"Finance"}, FirstSeen: seen.Add(-time.Hour), LastSeen: seen, LastIP: "10.0.0.5:51234",
		AgentVersion: "0.77.0"})
	w.fake.AddClient("", vrfake.Client{ClientID: linClient, Hostname: "srv-db", OS: "linux", LastSeen: seen})
	w.fake.AddClient("O2", vrfake.Client{ClientID: otherClient, Hostname: "globex-ws", OS: "windows", LastSeen: seen})
	w.fake.SetArtifactRows("Generic.Client.Info/BasicInformation", []map[string]any{{"Hostname": "ws-01"}})
	w.fake.SetArtifactRows("Generic.Client.Info/Users", []map[string]any{{"Name": "alice"}, {"Name": "bob"}, {"Name": "carol"}})

	w.configure(w.a, w.adminA, "", w.fake.APIClientYAML(t, vrfake.Name("acme"), vrfake.OrgAccess("")))
	w.configure(w.b, w.adminB, "O2", w.fake.APIClientYAML(t, vrfake.Name("globex"), vrfake.OrgAccess("O2")))
	w.restart()
	return w
}

// restart stands for a new server process: new connections, worker and sync
// over the same database.
func (w *world) restart() {
	if w.conns != nil {
		w.conns.Close()
	}
	w.conns = jobs.NewConnections(w.cmds)
	w.t.Cleanup(w.conns.Close)
	w.worker = &jobs.Worker{Cmds: w.cmds, Conns: w.conns, Poll: time.Millisecond, MaxAttempts: 3, Log: quiet()}
	w.sync = &jobs.Sync{Cmds: w.cmds, Hosts: w.h, Conns: w.conns, Log: quiet()}
}

func (w *world) configure(tenant domain.TenantID, by users.Actor, org string, yaml []byte) {
	w.t.Helper()
	api, err := velociraptor.ParseAPIClient(yaml, time.Now())
	if err != nil {
		w.t.Fatal(err)
	}
	sum := api.Summary()
	if _, err := w.cmds.Configure(context.Background(), commands.ConfigureVelociraptor{Tenant: tenant, OrgID: org, Config: yaml, By: by,
		Summary: vr.Summary{Name: sum.Name, Address: sum.Address, ServerName: sum.ServerName, CommonName: sum.CommonName,
			Fingerprint: sum.Fingerprint, NotAfter: sum.NotAfter}}); err != nil {
		w.t.Fatal(err)
	}
}

// settle runs the worker until it has nothing due or rounds run out.
func (w *world) settle(rounds int) {
	w.t.Helper()
	for range rounds {
		time.Sleep(2 * time.Millisecond) // past the poll wait of a running job
		n, err := w.worker.Step(context.Background())
		if err != nil {
			w.t.Fatalf("worker step: %v", err)
		}
		if n == 0 {
			return
		}
	}
}

func (w *world) collection(tenant domain.TenantID, id string) commands.Collection {
	w.t.Helper()
	c, err := w.cmds.Collection(context.Background(), tenant, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *world) collect(tenant domain.TenantID, by users.Actor, client string, artifacts ...string) commands.Collection {
	w.t.Helper()
	c, _, err := w.cmds.RequestCollection(context.Background(), commands.RequestCollection{Tenant: tenant, ClientID: client,
		Artifacts: artifacts, By: by})
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func TestCollectionLifecycle(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.fake.FinishAfterPolls(3)
	c := w.collect(w.a, w.adminA, winClient, "Generic.Client.Info")
	if c.Status != vr.StatusRequested {
		t.Fatalf("requested collection: %+v", c)
	}
	w.settle(20)
	got := w.collection(w.a, c.ID)
	if got.Status != vr.StatusCompleted || got.FlowID == "" || got.Rows != 4 {
		t.Fatalf("after the worker: %+v", got)
	}
	if flows := w.fake.Flows("", winClient); len(flows) != 1 || flows[0] != got.FlowID {
		t.Fatalf("Velociraptor has flows %v, want just %s", flows, got.FlowID)
	}
	// Results page by two, in a stable order, and end.
	var all []string
	cursor := ""
	for page := 0; ; page++ {
		rows, next, err := w.cmds.Results(ctx, w.a, commands.JobCollection, c.ID, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			all = append(all, r.Source+" "+string(r.Row))
		}
		if next == "" {
			break
		}
		if page > 5 {
			t.Fatal("results do not end")
		}
		cursor = next
	}
	if len(all) != 4 || !strings.Contains(strings.Join(all, "\n"), `"carol"`) {
		t.Fatalf("stored results: %q", all)
	}
	// Another tenant sees neither the collection nor its rows.
	if _, err := w.cmds.Collection(ctx, w.b, c.ID); err != domain.ErrNotFound {
		t.Fatalf("tenant B reads A's collection: %v", err)
	}
	if rows, _, err := w.cmds.Results(ctx, w.b, commands.JobCollection, c.ID, "", 10); err != nil || len(rows) != 0 {
		t.Fatalf("tenant B reads A's results: %d rows, %v", len(rows), err)
	}
	// More steps change nothing.
	w.settle(3)
	if again := w.collection(w.a, c.ID); again.Version != got.Version {
		t.Fatalf("a done collection changed: %+v", again)
	}
}

// TestCrashBetweenStartAndRecord starts the collection in Velociraptor as
// the worker does and "crashes" before recording it: the next process finds
// the flow (by its artifacts, parameters, creator and time) and records it,
// and Velociraptor runs it once.
func TestCrashBetweenStartAndRecord(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	c := w.collect(w.a, w.adminA, linClient, "Generic.Client.Info")
	org, err := w.conns.Org(ctx, w.a)
	if err != nil {
		t.Fatal(err)
	}
	started, err := org.Collect(ctx, c.ClientID, c.Artifacts, c.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	w.restart()
	w.settle(20)
	got := w.collection(w.a, c.ID)
	if got.FlowID != started || got.Status != vr.StatusCompleted {
		t.Fatalf("after the restart: %+v, want flow %s completed", got, started)
	}
	if flows := w.fake.Flows("", linClient); len(flows) != 1 {
		t.Fatalf("Velociraptor ran the collection %d times: %v", len(flows), flows)
	}
}

// TestCrashWithTwinCollections crashes after starting the first of two
// identical collections: the flow found again is bound to one of them, and
// the other gets a flow of its own.
func TestCrashWithTwinCollections(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	first := w.collect(w.a, w.adminA, linClient, "Generic.Client.Info")
	second := w.collect(w.a, w.adminA, linClient, "Generic.Client.Info")
	org, err := w.conns.Org(ctx, w.a)
	if err != nil {
		t.Fatal(err)
	}
	started, err := org.Collect(ctx, first.ClientID, first.Artifacts, first.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	w.restart()
	w.settle(20)
	a, b := w.collection(w.a, first.ID), w.collection(w.a, second.ID)
	if a.Status != vr.StatusCompleted || b.Status != vr.StatusCompleted || a.FlowID == b.FlowID ||
		(a.FlowID != started && b.FlowID != started) {
		t.Fatalf("twins after the restart: %+v and %+v; the crash started %s", a, b, started)
	}
	if flows := w.fake.Flows("", linClient); len(flows) != 2 {
		t.Fatalf("Velociraptor ran %d flows for two collections: %v", len(flows), flows)
	}
}

func TestCollectionFailures(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	// The artifact fails on the client: the collection fails with its reason.
	w.fake.FailArtifact("Windows.System.Pslist", "ERROR: Access is denied")
	failed := w.collect(w.a, w.adminA, winClient, "Windows.System.Pslist")
	// Velociraptor does not know the artifact: the query's log says so.
	unknown := w.collect(w.a, w.adminA, winClient, "Custom.Not.Installed")
	// Tenant B names A's client, which B's org does not have.
	foreign := w.collect(w.b, w.adminB, winClient, "Generic.Client.Info")
	w.settle(20)

	if got := w.collection(w.a, failed.ID); got.Status != vr.StatusFailed || !strings.Contains(got.Error+strings.Join(got.Logs, "\n"), "Access is denied") {
		t.Fatalf("failed artifact: %+v", got)
	}
	if got := w.collection(w.a, unknown.ID); got.Status != vr.StatusFailed || !strings.Contains(got.Error, "Custom.Not.Installed") {
		t.Fatalf("unknown artifact: %+v", got)
	}
	if got := w.collection(w.b, foreign.ID); got.Status != vr.StatusFailed || got.FlowID != "" {
		t.Fatalf("another org's client: %+v", got)
	}
	if flows := w.fake.Flows("O2", winClient); len(flows) != 0 {
		t.Fatalf("tenant B started flows on A's client: %v", flows)
	}

	// A server that cannot be reached is tried again, later, then given up.
	yaml := w.fake.APIClientYAML(t, vrfake.Name("acme2"))
	yaml = []byte(strings.Replace(string(yaml), w.fake.Addr(), "127.0.0.1:1", 1))
	w.configure(w.a, w.adminA, "", yaml)
	gone := w.collect(w.a, w.adminA, winClient, "Generic.Client.Info")
	if _, err := w.worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.collection(w.a, gone.ID); got.Status != vr.StatusRequested {
		t.Fatalf("after one unreachable attempt: %+v", got)
	}
	due, err := w.cmds.DueJobs(ctx, time.Now(), 10)
	if err != nil || len(due) != 0 {
		t.Fatalf("a deferred job is due at once: %+v, %v", due, err)
	}
	later, err := w.cmds.DueJobs(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || len(later) != 1 || later[0].Attempts != 1 {
		t.Fatalf("the deferred job: %+v, %v", later, err)
	}
	w.worker.Now = func() time.Time { return time.Now().Add(time.Hour) }
	for range 5 {
		if _, err := w.worker.Step(ctx); err != nil {
			t.Fatal(err)
		}
		w.worker.Now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	}
	if got := w.collection(w.a, gone.ID); got.Status != vr.StatusFailed || !strings.Contains(got.Error, "127.0.0.1:1") {
		t.Fatalf("after the last attempt: %+v", got)
	}
}

func TestHuntLifecycle(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	h, _, err := w.cmds.RequestHunt(ctx, commands.RequestHunt{Tenant: w.a, Description: "find the users",
		Artifacts: []string{"Generic.Client.Info"}, By: w.adminA})
	if err != nil {
		t.Fatal(err)
	}
	w.settle(3)
	got, err := w.cmds.Hunt(ctx, w.a, h.ID)
	if err != nil || got.HuntID == "" {
		t.Fatalf("scheduled hunt: %+v, %v", got, err)
	}
	w.fake.HuntClients(got.HuntID, winClient, linClient)
	w.settle(3)
	rows, _, err := w.cmds.Results(ctx, w.a, commands.JobHunt, h.ID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]int{}
	for _, r := range rows {
		clients[r.ClientID]++
	}
	if len(clients) != 2 || clients[winClient] == 0 || clients[linClient] == 0 {
		t.Fatalf("hunt rows by client: %v", clients)
	}
	// Another look stores nothing twice.
	w.settle(3)
	again, _, err := w.cmds.Results(ctx, w.a, commands.JobHunt, h.ID, "", 100)
	if err != nil || len(again) != len(rows) {
		t.Fatalf("after another look: %d rows, want %d (%v)", len(again), len(rows), err)
	}

	if _, err := w.cmds.RequestHuntStop(ctx, commands.StopHunt{Tenant: w.a, ID: h.ID, By: w.adminA}); err != nil {
		t.Fatal(err)
	}
	w.settle(3)
	got, err = w.cmds.Hunt(ctx, w.a, h.ID)
	if err != nil || got.Status != vr.StatusStopped {
		t.Fatalf("stopped hunt: %+v, %v", got, err)
	}
	org, _ := w.conns.Org(ctx, w.a)
	if vrHunt, err := org.Hunt(ctx, got.HuntID); err != nil || vrHunt.State != "STOPPED" {
		t.Fatalf("Velociraptor's hunt: %+v, %v", vrHunt, err)
	}
	if _, err := w.cmds.Hunt(ctx, w.b, h.ID); err != domain.ErrNotFound {
		t.Fatalf("tenant B reads A's hunt: %v", err)
	}
}

func TestQuarantineAndRelease(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if _, err := w.sync.Tenant(ctx, w.a); err != nil {
		t.Fatal(err)
	}
	host := w.hostOf(w.a, winClient)
	q, _, err := w.cmds.RequestQuarantine(ctx, commands.Quarantine{Tenant: w.a, Host: host, Message: "IR in progress", By: w.adminA})
	if err != nil {
		t.Fatal(err)
	}
	if q.Artifacts[0] != "Windows.Remediation.Quarantine" || q.Parameters["MessageBox"] != "IR in progress" {
		t.Fatalf("quarantine collection: %+v", q)
	}
	w.settle(20)
	if st := w.hostState(w.a, host); st.Quarantine.Status != hosts.StatusQuarantined {
		t.Fatalf("host after quarantine: %+v", st.Quarantine)
	}
	if labels := w.fake.Labels("", winClient); !slices.Contains(labels, jobs.QuarantineLabel) {
		t.Fatalf("client labels %v lack %s", labels, jobs.QuarantineLabel)
	}

	if _, _, err := w.cmds.RequestRelease(ctx, commands.Release{Tenant: w.a, Host: host, By: w.adminA}); err != nil {
		t.Fatal(err)
	}
	w.settle(20)
	if st := w.hostState(w.a, host); st.Quarantine.Status != hosts.StatusReleased {
		t.Fatalf("host after release: %+v", st.Quarantine)
	}
	if labels := w.fake.Labels("", winClient); slices.Contains(labels, jobs.QuarantineLabel) {
		t.Fatalf("client labels %v still hold %s", labels, jobs.QuarantineLabel)
	}

	// Tenant B cannot quarantine A's host.
	if _, _, err := w.cmds.RequestQuarantine(ctx, commands.Quarantine{Tenant: w.b, Host: host, By: w.adminB}); err != domain.ErrNotFound {
		t.Fatalf("tenant B quarantines A's host: %v", err)
	}
}

func (w *world) hostOf(tenant domain.TenantID, client string) hosts.ID {
	w.t.Helper()
	var id string
	if err := w.db.Owner.QueryRow(context.Background(), `SELECT host_id FROM host_registry WHERE tenant_id = $1 AND client_id = $2`,
		string(tenant), client).Scan(&id); err != nil {
		w.t.Fatalf("host of %s: %v", client, err)
	}
	return hosts.ID(id)
}

func (w *world) hostState(tenant domain.TenantID, id hosts.ID) hosts.State {
	w.t.Helper()
	v, err := w.h.HostView(context.Background(), tenant, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return v.State
}

func TestSyncFollowsTheFleet(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	rep, err := w.sync.Tenant(ctx, w.a)
	if err != nil || rep.Clients != 2 || rep.Discovered != 2 {
		t.Fatalf("first sync: %+v, %v", rep, err)
	}
	st := w.hostState(w.a, w.hostOf(w.a, winClient))
	if st.Hostname != "ws-01" || st.OS != "windows" || fmtList(st.IPs) != "10.0.0.5" || fmtList(st.Labels) != "finance" {
		t.Fatalf("synced host: %+v", st)
	}
	var meta map[string]map[string]any
	if err := json.Unmarshal(st.Metadata, &meta); err != nil || meta["velociraptor"]["agent_version"] != "0.77.0" {
		t.Fatalf("synced metadata %s: %v", st.Metadata, err)
	}
	// Again: nothing new, nothing appended.
	var before, after int
	_ = w.db.Owner.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&before)
	rep, err = w.sync.Tenant(ctx, w.a)
	_ = w.db.Owner.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&after)
	if err != nil || rep.Discovered != 0 || rep.Changed != 0 || after != before {
		t.Fatalf("second sync: %+v, %v; events %d -> %d", rep, err, before, after)
	}
	// Tenant B's sync sees its own org only.
	rep, err = w.sync.Tenant(ctx, w.b)
	if err != nil || rep.Clients != 1 {
		t.Fatalf("tenant B's sync: %+v, %v", rep, err)
	}
	var hostsOfB int
	_ = w.db.Owner.QueryRow(ctx, `SELECT count(*) FROM host_registry WHERE tenant_id = $1`, string(w.b)).Scan(&hostsOfB)
	if hostsOfB != 1 {
		t.Fatalf("tenant B has %d hosts, want 1", hostsOfB)
	}
	conn, err := w.cmds.Connection(ctx, w.a)
	if err != nil || !conn.Checked.OK {
		t.Fatalf("connection check after a sync: %+v, %v", conn.Checked, err)
	}
}

func fmtList(s []string) string { return strings.Join(s, ",") }

func TestCollectionCancel(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const held = "Custom.Slow.Collection"
	w.fake.HoldArtifact(held)
	cancel := func(id string) {
		t.Helper()
		c, _, err := w.cmds.RequestCollectionCancel(ctx, commands.CancelCollection{Tenant: w.a, ID: id, By: w.adminA})
		if err != nil || !c.CancelRequested {
			t.Fatalf("cancel %s = %+v, %v", id, c, err)
		}
	}
	org, err := w.conns.Org(ctx, w.a)
	if err != nil {
		t.Fatal(err)
	}

	// Before the worker started it: recorded cancelled, never started.
	early := w.collect(w.a, w.adminA, winClient, held)
	cancel(early.ID)
	w.settle(5)
	if got := w.collection(w.a, early.ID); got.Status != vr.StatusCancelled || got.FlowID != "" {
		t.Fatalf("cancelled before it started: %+v", got)
	}
	if flows := w.fake.Flows("", winClient); len(flows) != 0 {
		t.Fatalf("Velociraptor ran a cancelled collection: %v", flows)
	}

	// Started, then a crash before it was recorded, then cancelled: the
	// worker finds the flow and cancels it.
	crashed := w.collect(w.a, w.adminA, linClient, held)
	started, err := org.Collect(ctx, crashed.ClientID, crashed.Artifacts, crashed.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	cancel(crashed.ID)
	w.restart()
	w.settle(5)
	if got := w.collection(w.a, crashed.ID); got.Status != vr.StatusCancelled || got.FlowID != started {
		t.Fatalf("cancelled after a crash: %+v, want flow %s cancelled", got, started)
	}
	if state, status, _ := w.fake.FlowState("", started); state != "ERROR" || !strings.HasPrefix(status, "Cancelled") {
		t.Fatalf("Velociraptor's flow after the cancel: %s %q", state, status)
	}

	// Running: the flow is cancelled in Velociraptor, then recorded.
	running := w.collect(w.a, w.adminA, winClient, held)
	w.settle(3)
	got := w.collection(w.a, running.ID)
	if got.Status != vr.StatusScheduled || got.FlowID == "" {
		t.Fatalf("the held collection: %+v", got)
	}
	if state, _, _ := w.fake.FlowState("", got.FlowID); state != "RUNNING" {
		t.Fatalf("the held flow is %s", state)
	}
	cancel(running.ID)
	w.settle(5)
	got = w.collection(w.a, running.ID)
	if got.Status != vr.StatusCancelled || got.CancelBy != w.adminA.User {
		t.Fatalf("cancelled while running: %+v", got)
	}
	if state, status, _ := w.fake.FlowState("", got.FlowID); state != "ERROR" || !strings.HasPrefix(status, "Cancelled") {
		t.Fatalf("Velociraptor's flow after the cancel: %s %q", state, status)
	}
	if flows := w.fake.Flows("", winClient); len(flows) != 1 {
		t.Fatalf("Velociraptor ran %d flows on the client: %v", len(flows), flows)
	}
	// More steps change nothing, and asking again records nothing.
	cancel(running.ID)
	w.settle(3)
	if again := w.collection(w.a, running.ID); again.Version != got.Version {
		t.Fatalf("a cancelled collection changed: %+v", again)
	}

	// Asked too late: the flow had finished, so the collection completes.
	w.fake.FinishAfterPolls(0)
	late := w.collect(w.a, w.adminA, winClient, "Generic.Client.Info")
	if _, err := w.worker.Step(ctx); err != nil { // starts it
		t.Fatal(err)
	}
	cancel(late.ID)
	w.settle(5)
	if got := w.collection(w.a, late.ID); got.Status != vr.StatusCompleted || got.Rows != 4 {
		t.Fatalf("cancelled after it finished: %+v", got)
	}
	if _, _, err := w.cmds.RequestCollectionCancel(ctx, commands.CancelCollection{Tenant: w.a, ID: late.ID, By: w.adminA}); !errors.Is(err, vr.ErrCollectionEnded) {
		t.Fatalf("cancel a completed collection: %v", err)
	}
}

// TestHangingServerHoldsUpOnlyItsTenant points tenant B at a server that
// accepts connections and never answers: A's collection completes while B's
// job is still waiting.
func TestHangingServerHoldsUpOnlyItsTenant(t *testing.T) {
	w := newWorld(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	yaml := strings.Replace(string(w.fake.APIClientYAML(t, vrfake.Name("globex-hangs"), vrfake.OrgAccess("O2"))), w.fake.Addr(), ln.Addr().String(), 1)
	w.configure(w.b, w.adminB, "O2", []byte(yaml))
	stuck := w.collect(w.b, w.adminB, otherClient, "Generic.Client.Info")
	done := w.collect(w.a, w.adminA, winClient, "Generic.Client.Info")

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.worker.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for w.collection(w.a, done.ID).Status != vr.StatusCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("tenant A's collection did not complete beside a hanging server: %+v", w.collection(w.a, done.ID))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.collection(w.b, stuck.ID); got.Status != vr.StatusRequested {
		t.Fatalf("tenant B's collection on a hanging server: %+v", got)
	}
	cancel()
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

// TestSyncWarnsOfExpiry: a sync of a connection whose certificate expires
// within a month records the warning, once.
func TestSyncWarnsOfExpiry(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	yaml := w.fake.APIClientYAML(t, vrfake.Name("acme-expiring"), vrfake.OrgAccess(""))
	api, err := velociraptor.ParseAPIClient(yaml, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sum := api.Summary()
	// The summary says what the administrator was shown: here, a certificate
	// that expires in ten days.
	if _, err := w.cmds.Configure(ctx, commands.ConfigureVelociraptor{Tenant: w.a, Config: yaml, By: w.adminA,
		Summary: vr.Summary{Name: sum.Name, Address: sum.Address, ServerName: sum.ServerName, CommonName: sum.CommonName,
			Fingerprint: sum.Fingerprint, NotAfter: time.Now().Add(10 * 24 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := w.sync.Tenant(ctx, w.a); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := w.db.Owner.QueryRow(ctx, `SELECT count(*) FROM events WHERE name = $1 AND tenant_id = $2`,
		vr.EventCertificateExpiring, string(w.a)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d expiry warnings after two syncs (%v), want 1", n, err)
	}
}
