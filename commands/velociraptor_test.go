package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"velocicompanion/adapters/secrets"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
)

// vrSecret is the private key material of the test api_client YAML: it must
// appear nowhere but sealed.
const vrSecret = "MC4CAQAwBQYDK2VwBCIEIPRIVATEKEYMATERIALxyz"

var vrYAML = []byte("ca_certificate: |\n  -----BEGIN CERTIFICATE-----\n  CA\n  -----END CERTIFICATE-----\n" +
	"client_cert: |\n  -----BEGIN CERTIFICATE-----\n  CERT\n  -----END CERTIFICATE-----\n" +
	"client_private_key: |\n  -----BEGIN PRIVATE KEY-----\n  " + vrSecret + "\n  -----END PRIVATE KEY-----\n" +
	"api_connection_string: vr.example:8001\nname: api\n")

const (
	vrClient  = "C.1a2b3c4d5e6f7a8b"
	vrClient2 = "C.0000000000000002"
)

type vrFixture struct {
	*fixture
	v *commands.Velociraptor
}

func newVRFixture(t *testing.T) *vrFixture {
	t.Helper()
	f := newFixture(t)
	kr, err := secrets.NewKeyring(bytes.Repeat([]byte{9}, secrets.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return &vrFixture{fixture: f, v: commands.NewVelociraptor(f.h, kr)}
}

func (f *vrFixture) summary() velociraptor.Summary {
	return velociraptor.Summary{Name: "api", Address: "vr.example:8001", ServerName: "VelociraptorServer", CommonName: "api",
		Fingerprint: strings.Repeat("0f", 32), NotAfter: f.clock().AddDate(1, 0, 0)}
}

// admin and analyst return actors of tenant.
func (f *vrFixture) admin(t *testing.T, tenant domain.TenantID) users.Actor {
	return users.Actor{User: f.user(t, tenant, "admin-"+string(tenant[len(tenant)-6:]), users.RoleAdmin), Tenant: tenant, Role: users.RoleAdmin}
}

func analystOf(tenant domain.TenantID) users.Actor {
	return users.Actor{User: "analyst-of-" + domain.UserID(tenant), Tenant: tenant, Role: users.RoleAnalyst}
}

// configured returns a new tenant with a Velociraptor connection.
func (f *vrFixture) configured(t *testing.T, name string) domain.TenantID {
	t.Helper()
	tenant := f.tenant(t, name)
	_, err := f.v.Configure(context.Background(), commands.ConfigureVelociraptor{Tenant: tenant, OrgID: "O123ABC", Config: vrYAML,
		Summary: f.summary(), By: f.admin(t, tenant)})
	if err != nil {
		t.Fatal(err)
	}
	return tenant
}

func (f *vrFixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.Owner.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *vrFixture) streamNames(t *testing.T, tenant domain.TenantID, typ, id string) []string {
	t.Helper()
	envs, err := f.st.Load(context.Background(), eventstore.Key{Tenant: tenant, Type: typ, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range envs {
		out = append(out, e.Name)
	}
	return out
}

func rows(n int, tag string) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range out {
		out[i] = json.RawMessage(fmt.Sprintf(`{"Name":%q,"Pid":%d}`, tag, i))
	}
	return out
}

func TestVelociraptorConnection(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1, t2 := f.tenant(t, "one"), f.tenant(t, "two")
	admin := f.admin(t, t1)

	if _, err := f.v.Connection(ctx, t1); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("connection before configuring: %v", err)
	}
	cmd := commands.ConfigureVelociraptor{Tenant: t1, OrgID: "O123ABC", Config: vrYAML, Summary: f.summary(), By: admin,
		Meta: eventstore.Metadata{Actor: string(admin.User), ActorType: "user"}}
	if _, err := f.v.Configure(ctx, commands.ConfigureVelociraptor{Tenant: t1, Config: vrYAML, Summary: f.summary(), By: analystOf(t1)}); !errors.Is(err, velociraptor.ErrAdminOnly) {
		t.Fatalf("analyst configures: %v", err)
	}
	if _, err := f.v.Configure(ctx, commands.ConfigureVelociraptor{Tenant: t1, Summary: f.summary(), By: admin}); !errors.Is(err, commands.ErrVelociraptorConfig) {
		t.Fatalf("no config: %v", err)
	}
	expired := cmd
	expired.Summary.NotAfter = f.clock().Add(-time.Second)
	if _, err := f.v.Configure(ctx, expired); !errors.Is(err, velociraptor.ErrCertExpired) {
		t.Fatalf("expired: %v", err)
	}
	res, err := f.v.Configure(ctx, cmd)
	if err != nil || res.Version != 1 || res.Position == 0 {
		t.Fatalf("configure = %+v, %v", res, err)
	}

	c, err := f.v.Connection(ctx, t1)
	if err != nil || c.OrgID != "O123ABC" || c.Summary != f.summary() || c.Version != 1 || c.By != admin.User || !c.Checked.At.IsZero() {
		t.Fatalf("connection = %+v, %v", c, err)
	}
	config, org, version, err := f.v.Credentials(ctx, t1)
	if err != nil || !bytes.Equal(config, vrYAML) || org != "O123ABC" || version != 1 {
		t.Fatalf("credentials = %q %q %d %v", config, org, version, err)
	}
	if _, _, _, err := f.v.Credentials(ctx, t2); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("credentials of another tenant: %v", err)
	}
	if ts, err := f.v.Configured(ctx); err != nil || !reflect.DeepEqual(ts, []domain.TenantID{t1}) {
		t.Fatalf("configured = %v, %v", ts, err)
	}

	// The key is sealed, and nowhere in the events.
	var sealed []byte
	if err := f.db.Owner.QueryRow(ctx, `SELECT sealed_config FROM velociraptor_connections WHERE tenant_id = $1`, string(t1)).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(vrSecret)) || bytes.Contains(sealed, []byte("client_private_key")) {
		t.Fatal("configuration stored in clear")
	}
	noSecretInEvents := func() {
		t.Helper()
		var all string
		if err := f.db.Owner.QueryRow(ctx, `SELECT coalesce(string_agg(payload::text || ' ' || metadata::text, ' '), '') FROM events`).Scan(&all); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(all, vrSecret) || strings.Contains(all, "PRIVATE KEY") || strings.Contains(all, "client_private_key") {
			t.Fatal("key material in the event stream")
		}
		if !strings.Contains(all, f.summary().Fingerprint) {
			t.Fatal("the configured event is missing")
		}
	}
	noSecretInEvents()

	// The same configuration again records nothing; checks record only news.
	if res, err := f.v.Configure(ctx, cmd); err != nil || res.Version != 1 || res.Position != 0 {
		t.Fatalf("same configuration = %+v, %v", res, err)
	}
	for _, ok := range []bool{true, true, false, false, true} {
		msg := ""
		if !ok {
			msg = "connection refused"
		}
		if err := f.v.RecordCheck(ctx, t1, ok, msg); err != nil {
			t.Fatal(err)
		}
	}
	names := f.streamNames(t, t1, velociraptor.StreamType, velociraptor.ConnectionID)
	if want := []string{"velociraptor.configured", "velociraptor.checked", "velociraptor.checked", "velociraptor.checked"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("events = %v, want %v", names, want)
	}
	if c, _ := f.v.Connection(ctx, t1); !c.Checked.OK || c.Checked.At.IsZero() || c.Version != 4 {
		t.Fatalf("after checks: %+v", c)
	}
	if err := f.v.RecordCheck(ctx, t2, true, ""); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("check of an unconfigured tenant: %v", err)
	}

	// A new certificate is a new configuration.
	renewed := cmd
	renewed.Summary.Fingerprint = strings.Repeat("1e", 32)
	if _, err := f.v.Configure(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if _, _, version, err := f.v.Credentials(ctx, t1); err != nil || version != 2 {
		t.Fatalf("version after reconfiguring = %d, %v", version, err)
	}

	// Removing wipes it.
	if _, err := f.v.Remove(ctx, commands.RemoveVelociraptor{Tenant: t1, By: analystOf(t1)}); !errors.Is(err, velociraptor.ErrAdminOnly) {
		t.Fatalf("analyst removes: %v", err)
	}
	if _, err := f.v.Remove(ctx, commands.RemoveVelociraptor{Tenant: t1, By: admin}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.v.Credentials(ctx, t1); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("credentials after removal: %v", err)
	}
	if _, err := f.v.Connection(ctx, t1); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("connection after removal: %v", err)
	}
	if ts, err := f.v.Configured(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("configured after removal = %v, %v", ts, err)
	}
	if n := f.count(t, `SELECT count(*) FROM velociraptor_connections WHERE sealed_config IS NOT NULL`); n != 0 {
		t.Fatalf("%d sealed configurations left", n)
	}
	if _, err := f.v.Remove(ctx, commands.RemoveVelociraptor{Tenant: t1, By: admin}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("removing twice: %v", err)
	}
	noSecretInEvents()
}

func TestCollectionLifecycle(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	t2 := f.tenant(t, "two")
	by := analystOf(t1)

	req := commands.RequestCollection{Tenant: t1, ClientID: vrClient, By: by,
		Artifacts: []string{"Windows.System.Pslist", "Generic.Client.Info/BasicInformation"}, Parameters: map[string]string{"ProcessRegex": "."}}
	if _, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t2, ClientID: vrClient, By: analystOf(t2),
		Artifacts: req.Artifacts}); !errors.Is(err, commands.ErrVelociraptorNotConfigured) {
		t.Fatalf("unconfigured tenant: %v", err)
	}
	if _, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t1, ClientID: vrClient, By: analystOf(t2),
		Artifacts: req.Artifacts}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("actor of another tenant: %v", err)
	}
	if _, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t1, ClientID: "C.bad", By: by,
		Artifacts: req.Artifacts}); !errors.Is(err, velociraptor.ErrClientIDInvalid) {
		t.Fatalf("bad client id: %v", err)
	}
	c, res, err := f.v.RequestCollection(ctx, req)
	if err != nil || res.Version != 1 || c.Status != velociraptor.StatusRequested || c.ClientID != vrClient ||
		c.Purpose != velociraptor.PurposeCollect || c.ID == "" || c.By != by.User {
		t.Fatalf("request = %+v %+v %v", c, res, err)
	}
	jobs, err := f.v.DueJobs(ctx, f.clock(), 10)
	if err != nil || len(jobs) != 1 || jobs[0] != (commands.Job{Tenant: t1, Kind: commands.JobCollection, ID: c.ID, State: commands.JobRequested}) {
		t.Fatalf("due jobs = %+v, %v", jobs, err)
	}

	// Schedule: idempotent by flow id.
	const flow = "F.CP9V4SMR1VBK2"
	for range 2 {
		if err := f.v.ScheduleCollection(ctx, t1, c.ID, flow); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.v.ScheduleCollection(ctx, t1, c.ID, "F.OTHER"); !errors.Is(err, velociraptor.ErrFlowConflict) {
		t.Fatalf("another flow: %v", err)
	}
	if err := f.v.ScheduleCollection(ctx, t2, c.ID, flow); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("schedule in another tenant: %v", err)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock(), 10); len(jobs) != 1 || jobs[0].State != commands.JobScheduled {
		t.Fatalf("jobs after scheduling = %+v", jobs)
	}

	// Complete stores the rows with the event; completing again stores nothing.
	results := []commands.SourceRows{
		{Source: "Windows.System.Pslist", Rows: rows(3, "pslist")},
		{Source: "Generic.Client.Info/BasicInformation", Rows: append(rows(1, "info"), json.RawMessage(`{"nul":"a\u0000b","esc":"\\u0000"}`))},
	}
	for range 2 {
		if err := f.v.CompleteCollection(ctx, t1, c.ID, results, []string{"Collection finished"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count(t, `SELECT count(*) FROM velociraptor_results`); n != 5 {
		t.Fatalf("%d rows stored, want 5", n)
	}
	names := f.streamNames(t, t1, velociraptor.CollectionStreamType, c.ID)
	if want := []string{"collection.requested", "collection.scheduled", "collection.completed"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("events = %v", names)
	}
	c, err = f.v.Collection(ctx, t1, c.ID)
	if err != nil || c.Status != velociraptor.StatusCompleted || c.Rows != 5 || c.FlowID != flow || c.Version != 3 ||
		!reflect.DeepEqual(c.Sources, []velociraptor.SourceCount{{Source: "Windows.System.Pslist", Rows: 3}, {Source: "Generic.Client.Info/BasicInformation", Rows: 2}}) ||
		!reflect.DeepEqual(c.Logs, []string{"Collection finished"}) {
		t.Fatalf("completed = %+v, %v", c, err)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock().Add(time.Hour), 10); len(jobs) != 0 {
		t.Fatalf("a done job is due: %+v", jobs)
	}
	if err := f.v.FailCollection(ctx, t1, c.ID, "late", nil); !errors.Is(err, velociraptor.ErrCollectionFinished) {
		t.Fatalf("fail after completion: %v", err)
	}

	// Read in pages of 2, in (flow, source, seq) order.
	var got []commands.ResultRow
	after, pages := "", 0
	for {
		page, next, err := f.v.Results(ctx, t1, commands.JobCollection, c.ID, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		got, pages = append(got, page...), pages+1
		if next == "" {
			break
		}
		after = next
	}
	if len(got) != 5 || pages != 3 {
		t.Fatalf("%d rows in %d pages", len(got), pages)
	}
	if got[0].Source != "Generic.Client.Info/BasicInformation" || got[2].Source != "Windows.System.Pslist" || got[4].Seq != 2 ||
		got[0].FlowID != flow || got[0].ClientID != vrClient {
		t.Fatalf("order: %+v", got)
	}
	var row map[string]any
	if err := json.Unmarshal(got[1].Row, &row); err != nil || row["nul"] != "a\uFFFDb" || row["esc"] != `\u0000` {
		t.Fatalf("row with NUL = %s (%v)", got[1].Row, err)
	}
	if page, _, err := f.v.Results(ctx, t2, commands.JobCollection, c.ID, "", 10); err != nil || len(page) != 0 {
		t.Fatalf("another tenant reads %d rows (%v)", len(page), err)
	}
	if _, _, err := f.v.Results(ctx, t1, commands.JobCollection, c.ID, "not a cursor", 10); !errors.Is(err, commands.ErrCursorInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := f.v.Results(ctx, t1, "case", c.ID, "", 10); !errors.Is(err, commands.ErrOwnerKindInvalid) {
		t.Fatalf("bad owner kind: %v", err)
	}
	if _, err := f.v.Collection(ctx, t2, c.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("collection of another tenant: %v", err)
	}
}

func TestCollectionIdempotentByID(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	req := commands.RequestCollection{Tenant: t1, ID: "0190c7a4-6a38-7f1e-9a49-00000000c0de", ClientID: vrClient,
		Artifacts: []string{"Generic.Client.Info"}, By: analystOf(t1)}
	first, res1, err := f.v.RequestCollection(ctx, req)
	if err != nil || first.ID != req.ID {
		t.Fatalf("first = %+v, %v", first, err)
	}
	again, res2, err := f.v.RequestCollection(ctx, req)
	if err != nil || !reflect.DeepEqual(again, first) || res2.Version != res1.Version || res2.Position != 0 {
		t.Fatalf("again = %+v %+v, %v", again, res2, err)
	}
	other := req
	other.Artifacts = []string{"Windows.System.Pslist"}
	if _, _, err := f.v.RequestCollection(ctx, other); !errors.Is(err, velociraptor.ErrCollectionExists) {
		t.Fatalf("same id, other request: %v", err)
	}
	if n := f.count(t, `SELECT count(*) FROM velociraptor_jobs`); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
	if _, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t1, ID: "a b", ClientID: vrClient,
		Artifacts: req.Artifacts, By: req.By}); !errors.Is(err, velociraptor.ErrIDInvalid) {
		t.Fatalf("bad id: %v", err)
	}
}

func TestCollectionFails(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	c, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t1, ClientID: vrClient,
		Artifacts: []string{"Generic.Client.Info"}, By: analystOf(t1)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.v.FailCollection(ctx, t1, c.ID, "Unknown artifact", []string{"VQL Error: x"}); err != nil {
			t.Fatal(err)
		}
	}
	c, err = f.v.Collection(ctx, t1, c.ID)
	if err != nil || c.Status != velociraptor.StatusFailed || c.Error != "Unknown artifact" || c.Version != 2 ||
		!reflect.DeepEqual(c.Logs, []string{"VQL Error: x"}) {
		t.Fatalf("failed = %+v, %v", c, err)
	}
	if err := f.v.CompleteCollection(ctx, t1, c.ID, nil, nil); !errors.Is(err, velociraptor.ErrCollectionFinished) {
		t.Fatalf("complete after failure: %v", err)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock().Add(time.Hour), 10); len(jobs) != 0 {
		t.Fatalf("failed job is due: %+v", jobs)
	}
	if err := f.v.FailCollection(ctx, t1, "no-such-collection", "x", nil); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("fail a missing collection: %v", err)
	}
}

func TestHuntLifecycle(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	t2 := f.configured(t, "two")
	by := analystOf(t1)

	h, res, err := f.v.RequestHunt(ctx, commands.RequestHunt{Tenant: t1, Description: "chrome everywhere",
		Artifacts: []string{"Windows.System.Pslist"}, IncludeLabels: []string{"Finance"}, OS: "windows", By: by})
	if err != nil || res.Version != 1 || h.Status != velociraptor.StatusRequested || !h.Expires.Equal(f.clock().Add(velociraptor.DefaultHuntExpiry)) ||
		!reflect.DeepEqual(h.IncludeLabels, []string{"finance"}) || h.Version != 1 || h.CreatedAt.IsZero() {
		t.Fatalf("hunt = %+v %+v %v", h, res, err)
	}
	if _, _, err := f.v.RequestHunt(ctx, commands.RequestHunt{Tenant: t1, Artifacts: []string{"A"}, OS: "plan9", By: by}); !errors.Is(err, velociraptor.ErrOSInvalid) {
		t.Fatalf("bad os: %v", err)
	}
	if err := f.v.RecordHuntProgress(ctx, t1, h.ID, commands.HuntProgress{State: "RUNNING"}); !errors.Is(err, velociraptor.ErrHuntNotScheduled) {
		t.Fatalf("progress before scheduling: %v", err)
	}
	if _, err := f.v.RequestHuntStop(ctx, commands.StopHunt{Tenant: t1, ID: h.ID, By: by}); !errors.Is(err, velociraptor.ErrHuntNotRunning) {
		t.Fatalf("stop before scheduling: %v", err)
	}
	const vrHunt, flowA, flowB = "H.CP9V4SMR1VBK2", "F.AAAA.H", "F.BBBB.H"
	for range 2 {
		if err := f.v.ScheduleHunt(ctx, t1, h.ID, vrHunt); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []commands.HuntProgress{{State: "RUNNING", Scheduled: 2}, {State: "RUNNING", Scheduled: 2}, {State: "RUNNING", Scheduled: 2, Completed: 2, WithResults: 2}} {
		if err := f.v.RecordHuntProgress(ctx, t1, h.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := f.v.StoreHuntResults(ctx, t1, h.ID, vrClient, flowA, "Windows.System.Pslist", rows(3, "a")); err != nil {
			t.Fatal(err)
		}
		if err := f.v.StoreHuntResults(ctx, t1, h.ID, vrClient2, flowB, "Windows.System.Pslist", rows(2, "b")); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count(t, `SELECT count(*) FROM velociraptor_results WHERE owner_kind = 'hunt'`); n != 5 {
		t.Fatalf("%d hunt rows stored, want 5", n)
	}
	page, next, err := f.v.Results(ctx, t1, commands.JobHunt, h.ID, "", 4)
	if err != nil || len(page) != 4 || next == "" || page[0].FlowID != flowA || page[3].ClientID != vrClient2 {
		t.Fatalf("first page = %+v %q %v", page, next, err)
	}
	page, next, err = f.v.Results(ctx, t1, commands.JobHunt, h.ID, next, 4)
	if err != nil || len(page) != 1 || next != "" || page[0].Seq != 1 {
		t.Fatalf("second page = %+v %q %v", page, next, err)
	}
	// A flow that was still uploading when first read: its further rows are
	// stored and recorded, the first ones not again.
	if err := f.v.StoreHuntResults(ctx, t1, h.ID, vrClient2, flowB, "Windows.System.Pslist", rows(4, "b")); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, `SELECT count(*) FROM velociraptor_results WHERE owner_kind = 'hunt'`); n != 7 {
		t.Fatalf("%d hunt rows stored after further rows, want 7", n)
	}
	if n := f.count(t, `SELECT count(*) FROM events WHERE name = 'hunt.results_received'`); n != 3 {
		t.Fatalf("%d hunt.results_received events, want 3", n)
	}
	if h, err := f.v.Hunt(ctx, t1, h.ID); err != nil || h.Rows != 7 || h.Results != 2 {
		t.Fatalf("hunt after further rows: rows %d, results %d, %v", h.Rows, h.Results, err)
	}

	if _, err := f.v.RequestHuntStop(ctx, commands.StopHunt{Tenant: t1, ID: h.ID, By: analystOf(t2)}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("stop by another tenant: %v", err)
	}
	if _, err := f.v.RequestHuntStop(ctx, commands.StopHunt{Tenant: t1, ID: h.ID, By: by}); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock(), 10); len(jobs) != 1 || jobs[0].State != commands.JobStopping {
		t.Fatalf("jobs while stopping = %+v", jobs)
	}
	h, err = f.v.Hunt(ctx, t1, h.ID)
	if err != nil || !h.StopRequested || h.Status != velociraptor.StatusStopping || h.HuntID != vrHunt {
		t.Fatalf("stopping = %+v, %v", h, err)
	}
	for range 2 {
		if err := f.v.RecordHuntStopped(ctx, t1, h.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.v.FailHunt(ctx, t1, h.ID, "late"); !errors.Is(err, velociraptor.ErrHuntFinished) {
		t.Fatalf("fail after stop: %v", err)
	}
	h, err = f.v.Hunt(ctx, t1, h.ID)
	want := velociraptor.HuntStats{Scheduled: 2, Completed: 2, WithResults: 2}
	if err != nil || h.Status != velociraptor.StatusStopped || h.Stats != want || h.State != "RUNNING" || h.Rows != 7 || h.Results != 2 {
		t.Fatalf("stopped = %+v, %v", h, err)
	}
	names := f.streamNames(t, t1, velociraptor.HuntStreamType, h.ID)
	wantNames := []string{"hunt.requested", "hunt.scheduled", "hunt.progressed", "hunt.progressed", "hunt.results_received",
		"hunt.results_received", "hunt.results_received", "hunt.stop_requested", "hunt.stopped"}
	if !reflect.DeepEqual(names, wantNames) || h.Version != int64(len(wantNames)) {
		t.Fatalf("events = %v (version %d)", names, h.Version)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock().Add(time.Hour), 10); len(jobs) != 0 {
		t.Fatalf("stopped hunt is due: %+v", jobs)
	}

	// A second hunt fails; lists are per tenant and paged, newest first.
	f.advance(time.Second)
	h2, _, err := f.v.RequestHunt(ctx, commands.RequestHunt{Tenant: t1, ID: "my-hunt", Artifacts: []string{"Generic.Client.Info"}, By: by})
	if err != nil {
		t.Fatal(err)
	}
	if again, res, err := f.v.RequestHunt(ctx, commands.RequestHunt{Tenant: t1, ID: "my-hunt", Artifacts: []string{"Generic.Client.Info"}, By: by}); err != nil || again.ID != "my-hunt" || res.Position != 0 {
		t.Fatalf("same hunt again = %+v %+v %v", again, res, err)
	}
	if err := f.v.FailHunt(ctx, t1, h2.ID, "Velociraptor refused the hunt"); err != nil {
		t.Fatal(err)
	}
	list, next, err := f.v.Hunts(ctx, t1, "", 1)
	if err != nil || len(list) != 1 || list[0].ID != "my-hunt" || list[0].Status != velociraptor.StatusFailed || next == "" {
		t.Fatalf("first page of hunts = %+v %q %v", list, next, err)
	}
	list, next, err = f.v.Hunts(ctx, t1, next, 1)
	if err != nil || len(list) != 1 || list[0].ID != h.ID || next != "" {
		t.Fatalf("second page of hunts = %+v %q %v", list, next, err)
	}
	if list, _, err := f.v.Hunts(ctx, t2, "", 10); err != nil || len(list) != 0 {
		t.Fatalf("hunts of another tenant = %+v %v", list, err)
	}
	if _, err := f.v.Hunt(ctx, t2, h.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("hunt of another tenant: %v", err)
	}
}

func TestQuarantineAndRelease(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	t2 := f.configured(t, "two")
	by := analystOf(t1)
	register := func(tenant domain.TenantID, p hosts.Profile) hosts.ID {
		t.Helper()
		res, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: tenant, Profile: p, By: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		return hosts.ID(res.ID)
	}
	win := register(t1, hosts.Profile{Hostname: "ws-1", OS: "windows", ClientID: vrClient})
	noClient := register(t1, hosts.Profile{Hostname: "ws-2", OS: "windows"})
	mac := register(t1, hosts.Profile{Hostname: "mac-1", OS: "darwin", ClientID: vrClient2})
	foreignHost := register(t2, hosts.Profile{Hostname: "ws-9", OS: "windows", ClientID: vrClient})

	// Refusals.
	if _, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: foreignHost, By: by}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("other tenant's host: %v", err)
	}
	if _, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: noClient, By: by}); !errors.Is(err, hosts.ErrNoClientID) {
		t.Fatalf("host without client id: %v", err)
	}
	if _, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: mac, By: by}); !errors.Is(err, velociraptor.ErrQuarantineOS) ||
		domain.KindOf(err) != domain.KindUnprocessable {
		t.Fatalf("unsupported os: %v", err)
	}
	if _, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: win, By: users.Actor{User: "v", Tenant: t1, Role: users.RoleViewer}}); !errors.Is(err, velociraptor.ErrNotAllowed) {
		t.Fatalf("viewer: %v", err)
	}
	if _, _, err := f.v.RequestRelease(ctx, commands.Release{Tenant: t1, Host: win, By: by}); !errors.Is(err, hosts.ErrNotQuarantined) {
		t.Fatalf("release of a host never quarantined: %v", err)
	}

	// Quarantine: the host records the request, the collection does it.
	c, res, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: win, Message: "Call the SOC", By: by})
	if err != nil || res.Version != 1 {
		t.Fatal(err)
	}
	if c.Purpose != velociraptor.PurposeQuarantine || c.HostID != win || c.ClientID != vrClient ||
		!reflect.DeepEqual(c.Artifacts, []string{"Windows.Remediation.Quarantine"}) ||
		!reflect.DeepEqual(c.Parameters, map[string]string{"MessageBox": "Call the SOC"}) {
		t.Fatalf("quarantine collection = %+v", c)
	}
	hv, err := f.h.HostView(ctx, t1, win)
	if err != nil || hv.State.Quarantine.Status != hosts.StatusQuarantineRequested || hv.State.Quarantine.Collection != c.ID {
		t.Fatalf("host = %+v, %v", hv.State.Quarantine, err)
	}
	if _, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: win, By: by}); !errors.Is(err, hosts.ErrQuarantineBusy) {
		t.Fatalf("second quarantine: %v", err)
	}
	if err := f.v.ScheduleCollection(ctx, t1, c.ID, "F.Q1"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.v.CompleteCollection(ctx, t1, c.ID, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	hv, _ = f.h.HostView(ctx, t1, win)
	if q := hv.State.Quarantine; q.Status != hosts.StatusQuarantined || q.FlowID != "F.Q1" {
		t.Fatalf("after completion: %+v", q)
	}
	names := f.hostEvents(t, t1, string(win))
	if want := []string{"host.registered", "host.quarantine_requested", "host.quarantined"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("host events = %v", names)
	}

	// Release, which fails.
	r, _, err := f.v.RequestRelease(ctx, commands.Release{Tenant: t1, Host: win, By: by})
	if err != nil || r.Purpose != velociraptor.PurposeRelease || !reflect.DeepEqual(r.Parameters, map[string]string{"RemovePolicy": "Y"}) ||
		!reflect.DeepEqual(r.Artifacts, []string{"Windows.Remediation.Quarantine"}) {
		t.Fatalf("release = %+v, %v", r, err)
	}
	if err := f.v.FailCollection(ctx, t1, r.ID, "client offline", nil); err != nil {
		t.Fatal(err)
	}
	hv, _ = f.h.HostView(ctx, t1, win)
	if q := hv.State.Quarantine; q.Status != hosts.StatusQuarantineFailed || q.Error != "client offline" || q.Collection != r.ID {
		t.Fatalf("after failed release: %+v", q)
	}
	// A failed release may be retried.
	r2, _, err := f.v.RequestRelease(ctx, commands.Release{Tenant: t1, Host: win, By: by})
	if err != nil || r2.ID == r.ID {
		t.Fatalf("second release = %+v, %v", r2, err)
	}
	if err := f.v.CompleteCollection(ctx, t1, r2.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	hv, _ = f.h.HostView(ctx, t1, win)
	if hv.State.Quarantine.Status != hosts.StatusReleased {
		t.Fatalf("after release: %+v", hv.State.Quarantine)
	}
}

// TestQuarantineAfterCrash: the host recorded the request but the collection
// was never created; asking again creates it under the recorded id.
func TestQuarantineAfterCrash(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	res, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: t1, Profile: hosts.Profile{Hostname: "srv", OS: "Ubuntu Linux", ClientID: vrClient}, By: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	const lost = "0190c7a4-6a38-7f1e-9a49-0000000105e7"
	if _, err := f.st.Append(ctx, eventstore.AppendRequest{Key: eventstore.Key{Tenant: t1, Type: commands.HostStreamType, ID: res.ID},
		Expected: eventstore.Version(res.Version), Events: []domain.Event{hosts.QuarantineRequested{Collection: lost, Message: "hi", By: "u1"}}}); err != nil {
		t.Fatal(err)
	}
	c, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: hosts.ID(res.ID), Message: "other", By: analystOf(t1)})
	if err != nil || c.ID != lost || !reflect.DeepEqual(c.Parameters, map[string]string{"MessageBox": "hi"}) ||
		!reflect.DeepEqual(c.Artifacts, []string{"Linux.Remediation.Quarantine"}) {
		t.Fatalf("recovered collection = %+v, %v", c, err)
	}
	if names := f.hostEvents(t, t1, res.ID); len(names) != 2 {
		t.Fatalf("host events = %v", names)
	}
	if _, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: hosts.ID(res.ID), By: analystOf(t1)}); !errors.Is(err, hosts.ErrQuarantineBusy) {
		t.Fatalf("third request: %v", err)
	}
}

func TestDueJobsAcrossTenants(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1, t2 := f.configured(t, "one"), f.configured(t, "two")
	request := func(tenant domain.TenantID) string {
		t.Helper()
		c, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: tenant, ClientID: vrClient,
			Artifacts: []string{"Generic.Client.Info"}, By: analystOf(tenant)})
		if err != nil {
			t.Fatal(err)
		}
		f.advance(time.Second)
		return c.ID
	}
	a, b, done := request(t1), request(t2), request(t1)
	h, _, err := f.v.RequestHunt(ctx, commands.RequestHunt{Tenant: t2, Artifacts: []string{"Generic.Client.Info"}, By: analystOf(t2)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.FailCollection(ctx, t1, done, "x", nil); err != nil {
		t.Fatal(err)
	}
	jobs, err := f.v.DueJobs(ctx, f.clock(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	if want := []string{a, b, h.ID}; !reflect.DeepEqual(ids, want) || jobs[1].Tenant != t2 || jobs[2].Kind != commands.JobHunt {
		t.Fatalf("due = %+v, want %v", jobs, want)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock(), 1); len(jobs) != 1 || jobs[0].ID != a {
		t.Fatalf("limited = %+v", jobs)
	}
	// Deferring counts an attempt and hides the job until then; waiting does not count.
	if err := f.v.DeferJob(ctx, jobs[0], f.clock().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock(), 10); len(jobs) != 2 || jobs[0].ID != b {
		t.Fatalf("after deferring = %+v", jobs)
	}
	later, _ := f.v.DueJobs(ctx, f.clock().Add(time.Minute), 10)
	if len(later) != 3 || later[0].ID != b || later[2].ID != a || later[2].Attempts != 1 {
		t.Fatalf("a minute later = %+v", later)
	}
	if err := f.v.WaitJob(ctx, later[2], f.clock().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, `SELECT attempts FROM velociraptor_jobs WHERE id = $1`, a); n != 0 {
		t.Fatalf("attempts after waiting = %d", n)
	}
}

func TestResultsAreEvidence(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1 := f.configured(t, "one")
	c, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t1, ClientID: vrClient,
		Artifacts: []string{"Generic.Client.Info"}, By: analystOf(t1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.CompleteCollection(ctx, t1, c.ID, []commands.SourceRows{{Source: "Generic.Client.Info", Rows: rows(1, "x")}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE velociraptor_results SET row = '{}'`,
		`DELETE FROM velociraptor_results`,
		`DELETE FROM velociraptor_jobs`,
		`DELETE FROM velociraptor_collections`,
		`DELETE FROM velociraptor_connections`,
	} {
		_, err := f.db.App.Exec(ctx, stmt)
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "42501" {
			t.Errorf("%s as the application: %v, want permission denied", stmt, err)
		}
	}
	if n := f.count(t, `SELECT count(*) FROM velociraptor_results WHERE row->>'Name' = 'x'`); n != 1 {
		t.Fatalf("rows changed: %d", n)
	}
}

func TestCollectionCancel(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1, t2 := f.configured(t, "one"), f.configured(t, "two")
	by := analystOf(t1)
	request := func() commands.Collection {
		t.Helper()
		c, _, err := f.v.RequestCollection(ctx, commands.RequestCollection{Tenant: t1, ClientID: vrClient,
			Artifacts: []string{"Generic.Client.Info"}, By: by})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	job := func(id string) string {
		t.Helper()
		var state string
		if err := f.db.Owner.QueryRow(ctx, `SELECT state FROM velociraptor_jobs WHERE id = $1`, id).Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state
	}
	cancel := func(tenant domain.TenantID, id string, by users.Actor) (commands.Collection, commands.Result, error) {
		return f.v.RequestCollectionCancel(ctx, commands.CancelCollection{Tenant: tenant, ID: id, By: by})
	}

	// Before it was started: asked twice, one event; the job is due at once.
	early := request()
	f.advance(time.Second)
	if _, _, err := cancel(t1, early.ID, users.Actor{User: "v", Tenant: t1, Role: users.RoleViewer}); !errors.Is(err, velociraptor.ErrNotAllowed) {
		t.Fatalf("viewer cancels: %v", err)
	}
	if _, _, err := cancel(t2, early.ID, analystOf(t2)); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("another tenant cancels: %v", err)
	}
	if _, _, err := cancel(t1, "no-such-collection", by); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("cancel a missing collection: %v", err)
	}
	c, res, err := cancel(t1, early.ID, by)
	if err != nil || res.Version != 2 || !c.CancelRequested || c.CancelBy != by.User || c.Status != velociraptor.StatusRequested || c.Version != 2 {
		t.Fatalf("cancel = %+v %+v, %v", c, res, err)
	}
	if _, res, err := cancel(t1, early.ID, users.Actor{User: "another", Tenant: t1, Role: users.RoleAdmin}); err != nil || res.Version != 2 || res.Position != 0 {
		t.Fatalf("cancel again = %+v, %v", res, err)
	}
	if st := job(early.ID); st != commands.JobCancelling {
		t.Fatalf("job state %s, want cancelling", st)
	}
	if jobs, _ := f.v.DueJobs(ctx, f.clock(), 10); len(jobs) != 1 || jobs[0].ID != early.ID || jobs[0].State != commands.JobCancelling {
		t.Fatalf("due jobs = %+v", jobs)
	}
	// Found started by its marker after a crash: scheduling keeps the job cancelling.
	if err := f.v.ScheduleCollection(ctx, t1, early.ID, "F.EARLY"); err != nil {
		t.Fatal(err)
	}
	if st := job(early.ID); st != commands.JobCancelling {
		t.Fatalf("job state after scheduling %s, want cancelling", st)
	}
	for range 2 {
		if err := f.v.RecordCollectionCancelled(ctx, t1, early.ID); err != nil {
			t.Fatal(err)
		}
	}
	c, err = f.v.Collection(ctx, t1, early.ID)
	if err != nil || c.Status != velociraptor.StatusCancelled || c.FlowID != "F.EARLY" || c.Version != 4 || c.CancelBy != by.User {
		t.Fatalf("cancelled = %+v, %v", c, err)
	}
	if want := []string{"collection.requested", "collection.cancel_requested", "collection.scheduled", "collection.cancelled"}; !reflect.DeepEqual(
		f.streamNames(t, t1, velociraptor.CollectionStreamType, early.ID), want) {
		t.Fatalf("events = %v", f.streamNames(t, t1, velociraptor.CollectionStreamType, early.ID))
	}
	if st := job(early.ID); st != commands.JobDone {
		t.Fatalf("job of a cancelled collection: %s", st)
	}
	if _, _, err := cancel(t1, early.ID, by); err != nil {
		t.Fatalf("cancel a cancelled collection: %v", err)
	}
	if err := f.v.CompleteCollection(ctx, t1, early.ID, nil, nil); !errors.Is(err, velociraptor.ErrCollectionFinished) {
		t.Fatalf("complete a cancelled collection: %v", err)
	}

	// Ended collections are not cancelled; nobody asked, nothing is recorded.
	done := request()
	if err := f.v.RecordCollectionCancelled(ctx, t1, done.ID); !errors.Is(err, velociraptor.ErrCancelNotRequested) {
		t.Fatalf("record a cancel nobody asked for: %v", err)
	}
	if err := f.v.CompleteCollection(ctx, t1, done.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cancel(t1, done.ID, by); !errors.Is(err, velociraptor.ErrCollectionEnded) || domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("cancel a completed collection: %v", err)
	}

	// A quarantine is never cancelled.
	res2, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: t1, Profile: hosts.Profile{Hostname: "ws-1", OS: "windows", ClientID: vrClient2}, By: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: hosts.ID(res2.ID), By: by})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cancel(t1, q.ID, by); !errors.Is(err, velociraptor.ErrIsolationCancel) {
		t.Fatalf("cancel a quarantine: %v", err)
	}
	if got, err := f.v.Collection(ctx, t1, q.ID); err != nil || got.CancelRequested || got.Status != velociraptor.StatusRequested {
		t.Fatalf("quarantine after a refused cancel = %+v, %v", got, err)
	}
}

func TestCollectionList(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	t1, t2 := f.configured(t, "one"), f.configured(t, "two")
	by := analystOf(t1)
	host, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: t1, Profile: hosts.Profile{Hostname: "ws-1", OS: "windows", ClientID: vrClient2}, By: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string // oldest first
	collect := func(tenant domain.TenantID, req commands.RequestCollection) string {
		t.Helper()
		req.Tenant, req.Artifacts = tenant, []string{"Generic.Client.Info"}
		if req.By.User == "" {
			req.By = analystOf(tenant)
		}
		c, _, err := f.v.RequestCollection(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		f.advance(time.Second)
		if tenant == t1 {
			ids = append(ids, c.ID)
		}
		return c.ID
	}
	a := collect(t1, commands.RequestCollection{ClientID: vrClient})
	b := collect(t1, commands.RequestCollection{HostID: hosts.ID(host.ID)})
	c := collect(t1, commands.RequestCollection{ClientID: "C.1A2B3C4D5E6F7A8B", Parameters: map[string]string{"x": "1"}})
	collect(t2, commands.RequestCollection{ClientID: vrClient})
	q, _, err := f.v.RequestQuarantine(ctx, commands.Quarantine{Tenant: t1, Host: hosts.ID(host.ID), By: by})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, q.ID)
	f.advance(time.Second)
	if err := f.v.ScheduleCollection(ctx, t1, a, "F.A"); err != nil {
		t.Fatal(err)
	}
	if err := f.v.CompleteCollection(ctx, t1, a, []commands.SourceRows{{Source: "Generic.Client.Info", Rows: rows(2, "a")}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.v.FailCollection(ctx, t1, b, "client offline", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.v.RequestCollectionCancel(ctx, commands.CancelCollection{Tenant: t1, ID: c, By: by}); err != nil {
		t.Fatal(err)
	}

	list := func(filter commands.CollectionFilter, limit int) []string {
		t.Helper()
		var out []string
		after := ""
		for page := 0; ; page++ {
			got, next, err := f.v.Collections(ctx, t1, filter, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > limit {
				t.Fatalf("page of %d, limit %d", len(got), limit)
			}
			for _, c := range got {
				if c.Tenant != t1 {
					t.Fatalf("collection of tenant %s", c.Tenant)
				}
				out = append(out, c.ID)
			}
			if next == "" {
				return out
			}
			if page > 10 {
				t.Fatal("the list does not end")
			}
			after = next
		}
	}
	newest := slices.Clone(ids)
	slices.Reverse(newest)
	if got := list(commands.CollectionFilter{}, 100); !reflect.DeepEqual(got, newest) {
		t.Fatalf("all = %v, want %v", got, newest)
	}
	if got := list(commands.CollectionFilter{}, 1); !reflect.DeepEqual(got, newest) {
		t.Fatalf("in pages of 1 = %v, want %v", got, newest)
	}
	for name, tc := range map[string]struct {
		filter commands.CollectionFilter
		want   []string
	}{
		"client":           {commands.CollectionFilter{ClientID: vrClient}, []string{c, a}},
		"client_any_case":  {commands.CollectionFilter{ClientID: "C.1A2B3C4D5E6F7A8B"}, []string{c, a}},
		"host":             {commands.CollectionFilter{HostID: hosts.ID(host.ID)}, []string{q.ID, b}},
		"completed":        {commands.CollectionFilter{Status: velociraptor.StatusCompleted}, []string{a}},
		"failed":           {commands.CollectionFilter{Status: velociraptor.StatusFailed}, []string{b}},
		"requested":        {commands.CollectionFilter{Status: velociraptor.StatusRequested}, []string{q.ID, c}},
		"quarantine":       {commands.CollectionFilter{Purpose: velociraptor.PurposeQuarantine}, []string{q.ID}},
		"collect":          {commands.CollectionFilter{Purpose: velociraptor.PurposeCollect}, []string{c, b, a}},
		"host_and_purpose": {commands.CollectionFilter{HostID: hosts.ID(host.ID), Purpose: velociraptor.PurposeCollect}, []string{b}},
		"nothing":          {commands.CollectionFilter{Status: velociraptor.StatusCancelled}, nil},
	} {
		if got := list(tc.filter, 1); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %v, want %v", name, got, tc.want)
		}
	}
	// The list shows what the stream says.
	got, _, err := f.v.Collections(ctx, t1, commands.CollectionFilter{Status: velociraptor.StatusCompleted}, "", 10)
	if err != nil || len(got) != 1 || got[0].Rows != 2 || got[0].FlowID != "F.A" || got[0].Version != 3 || got[0].CreatedAt.IsZero() {
		t.Fatalf("completed in the list = %+v, %v", got, err)
	}
	if one, err := f.v.Collection(ctx, t1, a); err != nil || !reflect.DeepEqual(one, got[0]) {
		t.Fatalf("the list and Collection differ: %+v\n%+v (%v)", got[0], one, err)
	}
	got, _, err = f.v.Collections(ctx, t1, commands.CollectionFilter{ClientID: vrClient, Status: velociraptor.StatusRequested}, "", 10)
	if err != nil || len(got) != 1 || got[0].ID != c || !got[0].CancelRequested || got[0].CancelBy != by.User {
		t.Fatalf("cancel-requested in the list = %+v, %v", got, err)
	}
	// Tenant two sees its own only.
	if got, _, err := f.v.Collections(ctx, t2, commands.CollectionFilter{}, "", 10); err != nil || len(got) != 1 {
		t.Fatalf("tenant two lists %d, %v", len(got), err)
	}
	// Bad filters and cursors are refused.
	for name, tc := range map[string]struct {
		filter commands.CollectionFilter
		after  string
		want   error
	}{
		"status":  {commands.CollectionFilter{Status: "running"}, "", commands.ErrStatusInvalid},
		"purpose": {commands.CollectionFilter{Purpose: "delete"}, "", velociraptor.ErrPurposeInvalid},
		"client":  {commands.CollectionFilter{ClientID: "C.1' OR 1=1"}, "", velociraptor.ErrClientIDInvalid},
		"host":    {commands.CollectionFilter{HostID: "a/b"}, "", velociraptor.ErrHostIDInvalid},
		"cursor":  {commands.CollectionFilter{}, "not a cursor", commands.ErrCursorInvalid},
	} {
		if _, _, err := f.v.Collections(ctx, t1, tc.filter, tc.after, 10); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestWarnExpiry warns once that a connection's certificate expires within
// the window, and again for a new certificate.
func TestWarnExpiry(t *testing.T) {
	f := newVRFixture(t)
	ctx := context.Background()
	tenant := f.configured(t, "Expiring")
	admin := users.Actor{User: "renewing-admin", Tenant: tenant, Role: users.RoleAdmin}
	const month = 30 * 24 * time.Hour
	if warned, err := f.v.WarnExpiry(ctx, tenant, month); err != nil || warned {
		t.Fatalf("a year before expiry: warned %v, %v", warned, err)
	}
	f.advance(340 * 24 * time.Hour)
	for i, want := range []bool{true, false} {
		if warned, err := f.v.WarnExpiry(ctx, tenant, month); err != nil || warned != want {
			t.Fatalf("look %d within a month of expiry: warned %v, %v; want %v", i, warned, err, want)
		}
	}
	renewed := f.summary()
	renewed.Fingerprint = strings.Repeat("1e", 32)
	renewed.NotAfter = f.clock().Add(10 * 24 * time.Hour)
	if _, err := f.v.Configure(ctx, commands.ConfigureVelociraptor{Tenant: tenant, OrgID: "O123ABC", Config: vrYAML,
		Summary: renewed, By: admin}); err != nil {
		t.Fatal(err)
	}
	if warned, err := f.v.WarnExpiry(ctx, tenant, month); err != nil || !warned {
		t.Fatalf("new certificate within a month of expiry: warned %v, %v", warned, err)
	}
	if n := f.count(t, `SELECT count(*) FROM events WHERE name = 'velociraptor.certificate_expiring'`); n != 2 {
		t.Fatalf("%d expiry warnings recorded, want 2", n)
	}
	if _, err := f.v.WarnExpiry(ctx, f.tenant(t, "Unconfigured"), month); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("tenant without a connection: %v", err)
	}
}
