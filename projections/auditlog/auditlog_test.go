package auditlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
	"velocicompanion/projections/auditlog"
	"velocicompanion/projections/readmodel"
)

// Test events: one with secrets in every shape, a security failure, and one
// only the writer knows (the reader's codec does not).
type secretive struct {
	Username string         `json:"username"`
	Password string         `json:"password"`
	APIKey   string         `json:"api_key"`
	Nested   map[string]any `json:"nested"`
	Note     string         `json:"note"`
	Long     string         `json:"long"`
	Items    []int          `json:"items"`
}

func (secretive) EventName() string { return "test.secretive_changed" }

type loginFailed struct {
	Reason string `json:"reason"`
}

func (loginFailed) EventName() string { return "test.login_failed" }

type newerEvent struct {
	Value string `json:"value"`
}

func (newerEvent) EventName() string { return "test.from_the_future" }

const (
	pw         = "hunter2-correct-horse"
	apiKey     = "vc_live_abcdef0123456789"
	nestedTok  = "refresh-token-value-42"
	jwt        = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	argonHash  = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
	tenantA    = domain.TenantID("tenant-a")
	tenantB    = domain.TenantID("tenant-b")
	aliceAgent = "Mozilla/5.0 (audit test)"
)

var allSecrets = []string{pw, apiKey, nestedTok, jwt, argonHash}

func readerCodec() *eventstore.Codec {
	c := eventstore.NewCodec()
	eventstore.Register[secretive](c, 1)
	eventstore.Register[loginFailed](c, 1)
	return c
}

type fixture struct {
	db     *pgtest.DB
	store  *eventstore.Store // reads with readerCodec
	writer *eventstore.Store // also knows newerEvent
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t)
	if err := projections.Migrate(context.Background(), db.Owner, auditlog.Projector{}); err != nil {
		t.Fatal(err)
	}
	wc := readerCodec()
	eventstore.Register[newerEvent](wc, 1)
	return &fixture{db: db, store: eventstore.NewStore(db.App, readerCodec()), writer: eventstore.NewStore(db.App, wc)}
}

func (f *fixture) append(t *testing.T, key eventstore.Key, meta eventstore.Metadata, events ...domain.Event) {
	t.Helper()
	_, err := f.writer.Append(context.Background(), eventstore.AppendRequest{Key: key, Expected: eventstore.Any,
		Events: events, Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
}

// fill records a session: tenant A has 7 events over 3 streams, tenant B 2.
func (f *fixture) fill(t *testing.T) {
	t.Helper()
	alice := eventstore.Metadata{Actor: "alice", ActorType: "user", Role: "admin", SourceIP: "192.0.2.10",
		UserAgent: aliceAgent, RequestID: "req-1", CorrelationID: "corr-1"}
	long := strings.Repeat("é", 300) // 600 bytes
	f.append(t, eventstore.Key{Tenant: tenantA, Type: "user", ID: "u1"}, alice,
		secretive{Username: "carol", Password: pw, APIKey: apiKey, Note: jwt, Long: long, Items: make([]int, 80),
			Nested: map[string]any{"refresh_token": nestedTok, "hash": argonHash, "label": argonHash, "ok": "fine"}})
	f.append(t, eventstore.Key{Tenant: tenantA, Type: "user", ID: "u1"}, eventstore.Metadata{Actor: "u1"},
		loginFailed{Reason: "bad_password"}, loginFailed{Reason: "bad_password"})
	f.append(t, eventstore.Key{Tenant: tenantA, Type: "case", ID: "c1"}, alice,
		secretive{Username: "x"}, secretive{Username: "y"})
	f.append(t, eventstore.Key{Tenant: tenantA, Type: "gadget", ID: "g1"}, eventstore.Metadata{},
		newerEvent{Value: "v"}, newerEvent{Value: "w"})
	f.append(t, eventstore.Key{Tenant: tenantB, Type: "user", ID: "u9"},
		eventstore.Metadata{Actor: "bob", ActorType: "api_key", Role: "admin"},
		secretive{Username: "bob"}, loginFailed{Reason: "disabled"})
}

// readAll reads every stored event, waiting for other schemas' writers that
// hold the read horizon back.
func (f *fixture) readAll(t *testing.T) []eventstore.Envelope {
	t.Helper()
	ctx := context.Background()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		envs, err := f.store.ReadAll(ctx, eventstore.Checkpoint{}, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		var stored int
		if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if len(envs) == stored {
			return envs
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("only %d of %d events readable", len(envs), stored)
		}
	}
}

// project applies envs as the runner does: as vc_app, scoped to each event's
// tenant; batch uses ApplyBatch per tenant.
func (f *fixture) project(t *testing.T, envs []eventstore.Envelope, batch bool) {
	t.Helper()
	ctx := context.Background()
	p := auditlog.Projector{}
	groups := map[domain.TenantID][]eventstore.Envelope{}
	for _, env := range envs {
		groups[env.Tenant] = append(groups[env.Tenant], env)
	}
	for tenant, group := range groups {
		err := pgx.BeginFunc(ctx, f.db.App, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(tenant)); err != nil {
				return err
			}
			if batch {
				return p.ApplyBatch(ctx, tx, group)
			}
			for _, env := range group {
				if err := p.Apply(ctx, tx, env); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
}

// dump returns every row of audit_log, as the owner, in key order.
func (f *fixture) dump(t *testing.T) string {
	t.Helper()
	var s string
	err := f.db.Owner.QueryRow(context.Background(), `SELECT coalesce(string_agg(row_to_json(a)::text, E'\n'
		ORDER BY tenant_id, event_id), '') FROM audit_log a`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func list(t *testing.T, f *fixture, tenant domain.TenantID, filter auditlog.Filter) []auditlog.Entry {
	t.Helper()
	var all []auditlog.Entry
	page := readmodel.Page{Limit: 2}
	for {
		rows, err := auditlog.List(context.Background(), f.db.App, tenant, filter, page)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rows...)
		if len(rows) < page.Limit {
			return all
		}
		cur, err := readmodel.DecodeCursor(auditlog.Cursor(rows[len(rows)-1]))
		if err != nil {
			t.Fatal(err)
		}
		page.Cursor = cur
	}
}

func TestProjectEveryEventOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.fill(t)
	envs := f.readAll(t)
	f.project(t, envs, false)
	once := f.dump(t)
	f.project(t, envs, true) // redelivered, through the batch path
	if again := f.dump(t); again != once {
		t.Fatalf("applying the events again changed the log:\n%s\n---\n%s", once, again)
	}

	a := list(t, f, tenantA, auditlog.Filter{})
	if len(a) != 7 {
		t.Fatalf("tenant A has %d entries, want 7: %+v", len(a), a)
	}
	byID := map[string]eventstore.Envelope{}
	for _, env := range envs {
		byID[env.EventID] = env
	}
	for i, e := range a {
		env, ok := byID[e.ID]
		if !ok || env.Tenant != tenantA || e.Tenant != tenantA || e.Position != env.Position || e.Action != env.Name ||
			e.ResourceType != env.StreamType || e.ResourceID != env.StreamID || !e.Time.Equal(env.RecordedAt) ||
			e.Time.Location() != time.UTC {
			t.Fatalf("entry %+v does not describe its event %+v", e, env)
		}
		if i > 0 && (a[i-1].Time.Before(e.Time) || (a[i-1].Time.Equal(e.Time) && a[i-1].Position < e.Position)) {
			t.Fatalf("not newest first: %v then %v", a[i-1], e)
		}
		wantResult := "success"
		if env.Name == "test.login_failed" {
			wantResult = "failure"
		}
		if e.Result != wantResult {
			t.Fatalf("%s has result %q", e.Action, e.Result)
		}
		for _, secret := range allSecrets {
			if strings.Contains(string(e.Details), secret) {
				t.Fatalf("entry %s carries a secret: %s", e.Action, e.Details)
			}
		}
	}

	first := a[len(a)-1] // the oldest: the secretive change by alice
	if first.Actor != "alice" || first.ActorType != "user" || first.Role != "admin" || first.SourceIP != "192.0.2.10" ||
		first.UserAgent != aliceAgent || first.RequestID != "req-1" || first.CorrelationID != "corr-1" {
		t.Fatalf("metadata not carried: %+v", first)
	}
	var details map[string]any
	if err := json.Unmarshal(first.Details, &details); err != nil {
		t.Fatal(err)
	}
	nested, _ := details["nested"].(map[string]any)
	items, _ := details["items"].([]any)
	long, _ := details["long"].(string)
	switch {
	case details["username"] != "carol":
		t.Fatalf("username missing from %s", first.Details)
	case details["password"] != nil || details["api_key"] != nil || nested["refresh_token"] != nil || nested["hash"] != nil:
		t.Fatalf("secret fields kept: %s", first.Details)
	case details["note"] != auditlog.Redacted || nested["label"] != auditlog.Redacted || nested["ok"] != "fine":
		t.Fatalf("credential-looking values kept: %s", first.Details)
	case len(items) != 51 || len(long) > 260 || !strings.HasSuffix(long, "…") || !strings.HasPrefix(long, "éé"):
		t.Fatalf("long values not bounded: %d items, %d bytes of string", len(items), len(long))
	}

	// Events without actor are the system's; events the reader's codec does
	// not know are recorded too.
	unknown := list(t, f, tenantA, auditlog.Filter{ResourceType: "gadget"})
	if len(unknown) != 2 || unknown[0].Action != "test.from_the_future" || unknown[0].ActorType != "system" ||
		strings.ReplaceAll(string(unknown[0].Details), " ", "") != `{"value":"w"}` {
		t.Fatalf("unknown events: %+v", unknown)
	}

	// Filters.
	failures := list(t, f, tenantA, auditlog.Filter{Result: "failure"})
	if len(failures) != 2 || failures[0].Action != "test.login_failed" || failures[0].ActorType != "user" {
		t.Fatalf("failures: %+v", failures)
	}
	if got := list(t, f, tenantA, auditlog.Filter{Actor: "alice", ResourceType: "case", ResourceID: "c1"}); len(got) != 2 {
		t.Fatalf("alice on case c1: %+v", got)
	}
	if got := list(t, f, tenantA, auditlog.Filter{Action: "test.secretive_changed"}); len(got) != 3 {
		t.Fatalf("by action: %d", len(got))
	}
	mid := a[3].Time
	newer := list(t, f, tenantA, auditlog.Filter{Start: mid})
	older := list(t, f, tenantA, auditlog.Filter{End: mid.Add(-time.Microsecond)})
	if len(newer)+len(older) != 7 || len(newer) < 4 {
		t.Fatalf("time range: %d at or after %v, %d before", len(newer), mid, len(older))
	}
	if _, err := auditlog.List(ctx, f.db.App, tenantA, auditlog.Filter{Result: "maybe"}, readmodel.Page{Limit: 5}); !errors.Is(err, auditlog.ErrBadResult) {
		t.Fatalf("bad result filter: %v", err)
	}
	if _, err := auditlog.List(ctx, f.db.App, tenantA, auditlog.Filter{Start: mid, End: mid.Add(-time.Second)}, readmodel.Page{Limit: 5}); !errors.Is(err, auditlog.ErrBadRange) {
		t.Fatalf("inverted range: %v", err)
	}
	if _, err := auditlog.List(ctx, f.db.App, tenantA, auditlog.Filter{}, readmodel.Page{Limit: 5, Cursor: []string{"x"}}); !errors.Is(err, readmodel.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}

	// Tenants are apart, by the query and by row-level security.
	b := list(t, f, tenantB, auditlog.Filter{})
	if len(b) != 2 || b[0].Tenant != tenantB || b[1].ActorType != "api_key" {
		t.Fatalf("tenant B: %+v", b)
	}
	if _, err := auditlog.Get(ctx, f.db.App, tenantB, a[0].ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("tenant B reads tenant A's entry: %v", err)
	}
	if _, err := auditlog.Get(ctx, f.db.App, tenantA, "not-a-uuid"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("malformed id: %v", err)
	}
	if e, err := auditlog.Get(ctx, f.db.App, tenantA, a[0].ID); err != nil || e.ID != a[0].ID || e.Position != a[0].Position {
		t.Fatalf("Get: %+v %v", e, err)
	}
	var visible int
	err := readmodel.Read(ctx, f.db.App, readmodel.Scope{Tenant: tenantB}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&visible)
	})
	if err != nil || visible != 2 {
		t.Fatalf("row-level security lets tenant B see %d rows (%v), want 2", visible, err)
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.fill(t)
	f.project(t, f.readAll(t), true)

	var began int
	var got []string
	err := auditlog.Export(ctx, f.db.App, tenantA, auditlog.Filter{ResourceType: "user"}, 3,
		func() error { began++; return nil },
		func(e auditlog.Entry) error { got = append(got, e.Action); return nil })
	if err != nil || began != 1 || fmt.Sprint(got) != "[test.login_failed test.login_failed test.secretive_changed]" {
		t.Fatalf("export: %v, began %d, rows %v", err, began, got)
	}
	began, got = 0, nil
	err = auditlog.Export(ctx, f.db.App, tenantA, auditlog.Filter{}, 3,
		func() error { began++; return nil },
		func(e auditlog.Entry) error { got = append(got, e.Action); return nil })
	if !errors.Is(err, auditlog.ErrExportTooLarge) || began != 0 || got != nil || !strings.Contains(err.Error(), "more than 3 entries") {
		t.Fatalf("export beyond the limit: %v, began %d, rows %v", err, began, got)
	}
	stop := errors.New("client went away")
	err = auditlog.Export(ctx, f.db.App, tenantA, auditlog.Filter{}, 0, func() error { return nil },
		func(auditlog.Entry) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("a failing writer: %v", err)
	}
}

// TestRebuildAndGrants rebuilds the log from the store as the owner and checks
// that the application role cannot change or remove entries.
func TestRebuildAndGrants(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.fill(t)
	f.project(t, f.readAll(t), false)
	live := f.dump(t)
	if err := projections.Rebuild(ctx, f.db.Owner, f.store, auditlog.Projector{}, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if rebuilt := f.dump(t); rebuilt != live {
		t.Fatalf("rebuilt log differs:\n%s\n---\n%s", live, rebuilt)
	}
	for _, stmt := range []string{
		`UPDATE audit_log SET action = 'forged'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
	} {
		err := pgx.BeginFunc(ctx, f.db.App, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(tenantA)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, stmt)
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("as vc_app, %q: %v, want permission denied", stmt, err)
		}
	}
	if after := f.dump(t); after != live {
		t.Fatal("the log changed")
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"a": 1, "b": "x"}`, `{"a":1,"b":"x"}`},
		{`{"Password": "p", "newPassword": "p", "totp_secret": "s", "recoveryCodes": ["1"], "client_key": "k",
			"session_token": "t", "passwordHash": "h", "Authorization": "Bearer x", "name": "n"}`, `{"name":"n"}`},
		{`{"deep": {"list": [{"token": "t", "id": 1}], "salt": "s"}}`, `{"deep":{"list":[{"id":1}]}}`},
		{`{"header": "Bearer abc.def", "pem": "-----BEGIN PRIVATE KEY-----"}`, `{"header":"[redacted]","pem":"[redacted]"}`},
		{`[1, "two", null, true, 1.50]`, `[1,"two",null,true,1.50]`},
		{`not json`, `{}`},
		{`{"n": 12345678901234567890}`, `{"n":12345678901234567890}`},
	} {
		if got := string(auditlog.Summarize([]byte(tc.in))); got != tc.want {
			t.Errorf("Summarize(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	// Bounds: members, nesting, string length on a rune boundary.
	obj := map[string]int{}
	for i := range 70 {
		obj[fmt.Sprintf("f%02d", i)] = i
	}
	raw, _ := json.Marshal(obj)
	var out map[string]any
	if err := json.Unmarshal(auditlog.Summarize(raw), &out); err != nil || len(out) != 51 || out["…"] != "20 more fields" {
		t.Fatalf("70 members summarised to %d (%v): %v", len(out), err, out["…"])
	}
	deep := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)
	if s := string(auditlog.Summarize([]byte(deep))); !strings.Contains(s, `"…"`) || len(s) > 200 {
		t.Fatalf("deep nesting: %s", s)
	}
	s := strings.Repeat("a", 255) + "€€"
	raw, _ = json.Marshal(map[string]string{"v": s})
	_ = json.Unmarshal(auditlog.Summarize(raw), &out)
	if v := out["v"].(string); v != strings.Repeat("a", 255)+"…" {
		t.Fatalf("cut inside a rune: %q", v[250:])
	}
}

func TestResultOf(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"user.login_failed": "failure", "user.refresh_token_reused": "failure", "user.access_denied": "failure",
		"user.logged_in": "success", "case.opened": "success", "user.failed_attempts_reset": "success",
		"collection.failed": "failure", "hunt.failed": "failure", "host.quarantine_failed": "failure",
		"collection.completed": "success", "hunt.stopped": "success", "host.released": "success",
	} {
		if got := auditlog.ResultOf(name); got != want {
			t.Errorf("ResultOf(%s) = %s, want %s", name, got, want)
		}
	}
	for _, secret := range []string{"api_key", "x-api-key", "totpSeed", "PASSWORD", "reset_code", "mfa_secret"} {
		if !auditlog.SecretName(secret) {
			t.Errorf("SecretName(%q) = false", secret)
		}
	}
	for _, ok := range []string{"username", "email", "title", "role", "reason", "session", "source_ip"} {
		if auditlog.SecretName(ok) {
			t.Errorf("SecretName(%q) = true", ok)
		}
	}
}

// TestDescribeVelociraptor describes the Velociraptor events as they are
// stored: the resource is their stream, failures are failures, and the
// summary keeps what identifies a connection but never a parameter value or
// a client's log line.
func TestDescribeVelociraptor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, streamType, streamID, payload string
		result, details                     string
	}{
		{"velociraptor.configured", "velociraptor", "connection",
			`{"org_id":"O1","name":"vc","address":"vr.example:8001","server_name":"VelociraptorServer","common_name":"vc",` +
				`"fingerprint":"ab12","not_after":"2027-01-01T00:00:00Z","by":"u1"}`, "success",
			`{"address":"vr.example:8001","by":"u1","common_name":"vc","fingerprint":"ab12","name":"vc","not_after":"2027-01-01T00:00:00Z","org_id":"O1","server_name":"VelociraptorServer"}`},
		{"velociraptor.checked", "velociraptor", "connection", `{"ok":false,"error":"connection refused","at":"2026-11-26T12:00:00Z"}`,
			"failure", `{"at":"2026-11-26T12:00:00Z","error":"connection refused","ok":false}`},
		{"velociraptor.checked", "velociraptor", "connection", `{"ok":true,"error":"","at":"2026-11-26T12:00:00Z"}`,
			"success", `{"at":"2026-11-26T12:00:00Z","error":"","ok":true}`},
		{"collection.requested", "collection", "col-1",
			`{"id":"col-1","client_id":"C.1234567890abcdef","artifacts":["Generic.Collectors.File"],` +
				`"parameters":{"Glob":"C:\\Users\\*","UploadURL":"https://x.example/u?sig=s3cr3t","S3Secret":"s3cr3t"},"purpose":"collect","by":"u1"}`,
			"success",
			`{"artifacts":["Generic.Collectors.File"],"by":"u1","client_id":"C.1234567890abcdef","id":"col-1","parameters":{"Glob":"[redacted]","UploadURL":"[redacted]"},"purpose":"collect"}`},
		{"collection.completed", "collection", "col-1", `{"rows":3,"sources":[{"source":"A","rows":3}],"logs":["token=abc"]}`,
			"success", `{"logs":"[redacted]","rows":3,"sources":[{"rows":3,"source":"A"}]}`},
		{"collection.failed", "collection", "col-1", `{"error":"VQL Error: boom","logs":["ERROR: x"]}`,
			"failure", `{"error":"VQL Error: boom","logs":"[redacted]"}`},
		{"hunt.requested", "hunt", "hunt-1", `{"id":"hunt-1","description":"d","artifacts":["A"],"parameters":{"Pattern":"x"},"by":"u1"}`,
			"success", `{"artifacts":["A"],"by":"u1","description":"d","id":"hunt-1","parameters":{"Pattern":"[redacted]"}}`},
		{"hunt.failed", "hunt", "hunt-1", `{"error":"PermissionDenied"}`, "failure", `{"error":"PermissionDenied"}`},
		{"hunt.stopped", "hunt", "hunt-1", `{}`, "success", `{}`},
		{"host.quarantine_failed", "host", "h1", `{"collection":"q-1","error":"flow timed out"}`,
			"failure", `{"collection":"q-1","error":"flow timed out"}`},
		{"host.quarantined", "host", "h1", `{"collection":"q-1","flow_id":"F.1"}`, "success", `{"collection":"q-1","flow_id":"F.1"}`},
	} {
		e := auditlog.Describe(eventstore.Envelope{EventID: "e1", Tenant: tenantA, StreamType: tc.streamType, StreamID: tc.streamID,
			Name: tc.name, Payload: json.RawMessage(tc.payload)})
		if e.Action != tc.name || e.ResourceType != tc.streamType || e.ResourceID != tc.streamID || e.Result != tc.result ||
			string(e.Details) != tc.details {
			t.Errorf("%s: %s %s/%s %s %s, want %s %s", tc.name, e.Action, e.ResourceType, e.ResourceID, e.Result, e.Details, tc.result, tc.details)
		}
		if strings.Contains(string(e.Details), "s3cr3t") || strings.Contains(string(e.Details), "token=") {
			t.Errorf("%s: the summary repeats a secret: %s", tc.name, e.Details)
		}
	}
}
