package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// auditEntry is an entry as GET /api/audit shows it.
type auditEntry struct {
	ID            string          `json:"id"`
	TenantID      string          `json:"tenant_id"`
	UserID        string          `json:"user_id"`
	ActorType     string          `json:"actor_type"`
	Role          string          `json:"role"`
	Action        string          `json:"action"`
	ResourceType  string          `json:"resource_type"`
	ResourceID    string          `json:"resource_id"`
	Result        string          `json:"result"`
	IPAddress     string          `json:"ip_address"`
	UserAgent     string          `json:"user_agent"`
	RequestID     string          `json:"request_id"`
	CorrelationID string          `json:"correlation_id"`
	Position      int64           `json:"position"`
	Details       json.RawMessage `json:"details"`
	CreatedAt     time.Time       `json:"created_at"`
}

type integrityBody struct {
	TenantID         string `json:"tenant_id"`
	Status           string `json:"status"`
	EventsVerified   int64  `json:"events_verified"`
	LatestCheckpoint *struct {
		Seq       int64  `json:"seq"`
		Events    int64  `json:"events"`
		Digest    string `json:"digest"`
		KeyID     string `json:"key_id"`
		Signature string `json:"signature"`
	} `json:"latest_checkpoint"`
	Break *struct {
		Reason  string `json:"reason"`
		EventID string `json:"event_id"`
	} `json:"break"`
}

// auditSession is a server driven through a forged X-Forwarded-For, which
// must be ignored: no trusted proxies are configured.
type auditSession struct {
	*server
	t *testing.T
}

const forgedIP = "203.0.113.66"

func (a auditSession) do(method, path, token string, body any, headers ...string) response {
	a.t.Helper()
	return a.server.do(a.t, method, path, token, body,
		append([]string{"X-Forwarded-For", forgedIP, "X-Real-IP", forgedIP}, headers...)...)
}

func (a auditSession) login(username, password string) string {
	a.t.Helper()
	r := a.do(http.MethodPost, "/api/auth/login", "", map[string]string{"username": username, "password": password})
	expectStatus(a.t, r, http.StatusOK, "login "+username)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.json(a.t, &tok)
	return tok.AccessToken
}

// entries pages through GET /api/audit with query q (which may be empty).
func (a auditSession) entries(token, q string) []auditEntry {
	a.t.Helper()
	var all []auditEntry
	path := "/api/audit?limit=7"
	if q != "" {
		path += "&" + q
	}
	for {
		r := a.do(http.MethodGet, path, token, nil)
		expectStatus(a.t, r, http.StatusOK, "list audit "+q)
		var page []auditEntry
		r.json(a.t, &page)
		all = append(all, page...)
		next := r.header.Get("X-Next-Cursor")
		if next == "" {
			return all
		}
		if len(page) != 7 || !strings.Contains(r.header.Get("Link"), `rel="next"`) {
			a.t.Fatalf("page of %d with cursor, Link %q", len(page), r.header.Get("Link"))
		}
		path = "/api/audit?limit=7&cursor=" + url.QueryEscape(next)
		if q != "" {
			path += "&" + q
		}
	}
}

func ids(es []auditEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	slices.Sort(out)
	return out
}

// tenantEventIDs returns the ids of tenant's events straight from the store.
func tenantEventIDs(t *testing.T, s *server, tenant string, where string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT event_id::text FROM `+pgx.Identifier{s.schema(), "events"}.Sanitize()+
		` WHERE tenant_id = $1 `+where+` ORDER BY 1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runTaskStatus runs an operator subcommand and returns its output and error.
func (s *server) runTaskStatus(args ...string) (string, error) {
	cmd := exec.Command(s.cmd.Path, args...)
	cmd.Env = s.cmd.Env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestEndToEndAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	a := auditSession{server: startServer(t, "VC_AUDIT_CHECKPOINT_INTERVAL=100ms", "VC_AUDIT_INTEGRITY_RECHECK=500ms"), t: t}
	platform := a.login("admin", a.bootstrapPassword(t))

	mkTenant := func(name string) string {
		r := a.do(http.MethodPost, "/api/tenants", platform, map[string]string{"name": name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+name)
		var out struct{ ID string }
		r.json(t, &out)
		return out.ID
	}
	tenantA, tenantB := mkTenant("Initech"), mkTenant("Umbrella")
	const (
		pwAlice  = "alice audit secret 1"
		pwCarol  = "carol audit secret 2"
		pwVic    = "vic audit secret 3"
		pwVicNew = "vic new audit secret 4"
		pwBob    = "bob audit secret 5"
		pwWrong  = "not carols password 6"
	)
	secrets := []string{pwAlice, pwCarol, pwVic, pwVicNew, pwBob, pwWrong}
	mkUser := func(by, tenant, name, pw, role string) string {
		body := map[string]string{"username": name, "password": pw, "role": role}
		if tenant != "" {
			body["tenant_id"] = tenant
		}
		r := a.do(http.MethodPost, "/api/users", by, body)
		expectStatus(t, r, http.StatusCreated, "create user "+name)
		var u userBody
		r.json(t, &u)
		return u.ID
	}

	// The session: users, a failed login, role changes, a password change,
	// a case with a task and a comment; the case is opened from a client
	// whose User-Agent is a spreadsheet formula.
	aliceID := mkUser(platform, tenantA, "alice", pwAlice, "admin")
	mkUser(platform, tenantB, "bob", pwBob, "admin")
	alice := a.login("alice", pwAlice)
	carolID := mkUser(alice, "", "carol", pwCarol, "analyst")
	vicID := mkUser(alice, "", "vic", pwVic, "viewer")
	r := a.do(http.MethodPost, "/api/auth/login", "", map[string]string{"username": "carol", "password": pwWrong})
	expectStatus(t, r, http.StatusUnauthorized, "carol's wrong password")
	for _, role := range []string{"viewer", "analyst"} {
		r = a.do(http.MethodPatch, "/api/users/"+carolID, alice, map[string]any{"role": role})
		expectStatus(t, r, http.StatusOK, "carol becomes "+role)
	}
	r = a.do(http.MethodPatch, "/api/users/"+vicID, alice, map[string]any{"password": pwVicNew})
	expectStatus(t, r, http.StatusOK, "vic's new password")
	carol := a.login("carol", pwCarol)
	vic := a.login("vic", pwVicNew)
	const formula = `=HYPERLINK("http://evil.example","x")`
	r = a.do(http.MethodPost, "/api/cases", alice, map[string]any{"title": "Phishing wave", "severity": "high"},
		"User-Agent", formula)
	expectStatus(t, r, http.StatusCreated, "open case")
	var kase caseBody
	r.json(t, &kase)
	r = a.do(http.MethodPost, "/api/cases/"+kase.ID+"/tasks", carol, map[string]any{"title": "Block sender"})
	expectStatus(t, r, http.StatusCreated, "add task")
	r = a.do(http.MethodPost, "/api/cases/"+kase.ID+"/comments", carol, map[string]any{"body": "+1 seen on three hosts"})
	expectStatus(t, r, http.StatusCreated, "add comment")
	r = a.do(http.MethodPatch, "/api/cases/"+kase.ID, alice, map[string]any{"status": "investigating"})
	expectStatus(t, r, http.StatusOK, "investigate")
	bob := a.login("bob", pwBob)
	r = a.do(http.MethodPost, "/api/cases", bob, map[string]any{"title": "Umbrella case"})
	expectStatus(t, r, http.StatusCreated, "bob's case")
	waitCaughtUp(t, a.server, "auditlog.v1")

	// Exactly one entry per event of the tenant, with the real client
	// address and no secret.
	entriesA := a.entries(alice, "")
	if want, got := tenantEventIDs(t, a.server, tenantA, ""), ids(entriesA); !slices.Equal(got, want) {
		t.Fatalf("tenant A: %d audit entries for %d events:\nentries %v\nevents  %v", len(got), len(want), got, want)
	}
	byAction := map[string][]auditEntry{}
	for i, e := range entriesA {
		byAction[e.Action] = append(byAction[e.Action], e)
		if e.TenantID != tenantA || e.IPAddress != "127.0.0.1" || e.RequestID == "" || e.CorrelationID == "" {
			t.Fatalf("entry %+v: want tenant A, client 127.0.0.1 and request ids", e)
		}
		if i > 0 && entriesA[i-1].CreatedAt.Before(e.CreatedAt) {
			t.Fatalf("not newest first: %v before %v", entriesA[i-1].CreatedAt, e.CreatedAt)
		}
	}
	listA := a.do(http.MethodGet, "/api/audit?limit=500", alice, nil)
	for _, secret := range append(secrets, forgedIP, "argon2") {
		if bytes.Contains(listA.body, []byte(secret)) {
			t.Fatalf("the audit log shows %q", secret)
		}
	}
	failed := byAction["user.login_failed"]
	if len(failed) != 1 || failed[0].Result != "failure" || failed[0].ResourceType != "user" || failed[0].ResourceID != carolID {
		t.Fatalf("login failures: %+v", failed)
	}
	roles := byAction["user.role_changed"]
	if len(roles) != 2 || roles[0].UserID != aliceID || roles[0].Role != "admin" || roles[0].ActorType != "user" ||
		roles[0].ResourceID != carolID || roles[0].Result != "success" || !bytes.Contains(roles[0].Details, []byte(`"analyst"`)) {
		t.Fatalf("role changes: %+v", roles)
	}
	if pw := byAction["user.password_changed"]; len(pw) != 1 || pw[0].ResourceID != vicID || pw[0].UserID != aliceID {
		t.Fatalf("password changes: %+v", pw)
	}
	if created := byAction["tenant.created"]; len(created) != 1 || created[0].Role != "platform_admin" {
		t.Fatalf("tenant creation: %+v", created)
	}
	opened := byAction["case.opened"]
	if len(opened) != 1 || opened[0].UserAgent != formula || opened[0].ResourceID != kase.ID {
		t.Fatalf("case opened: %+v", opened)
	}

	// Filters.
	if got := a.entries(alice, "action=user.role_changed"); len(got) != 2 {
		t.Fatalf("action filter: %d", len(got))
	}
	if got := a.entries(alice, "result=failure"); len(got) != 1 || got[0].ID != failed[0].ID {
		t.Fatalf("result filter: %+v", got)
	}
	caseIDs := tenantEventIDs(t, a.server, tenantA, `AND stream_type = 'case' AND stream_id = '`+kase.ID+`'`)
	if got := a.entries(alice, "resource_type=case&resource_id="+kase.ID); !slices.Equal(ids(got), caseIDs) || len(got) < 4 {
		t.Fatalf("resource filter: %d entries, %d events", len(got), len(caseIDs))
	}
	byAlice, byAlias := a.entries(alice, "actor="+aliceID), a.entries(alice, "user_id="+aliceID)
	if len(byAlice) < 6 || !slices.Equal(ids(byAlice), ids(byAlias)) {
		t.Fatalf("actor filter: %d, user_id: %d", len(byAlice), len(byAlias))
	}
	for _, e := range byAlice {
		if e.UserID != aliceID {
			t.Fatalf("actor filter returned %+v", e)
		}
	}
	since := opened[0].CreatedAt.Format(time.RFC3339Nano)
	later := a.entries(alice, "start="+url.QueryEscape(since))
	if alias := a.entries(alice, "start_date="+url.QueryEscape(since)); !slices.Equal(ids(later), ids(alias)) || len(later) < 4 {
		t.Fatalf("start: %d entries, start_date: %d", len(later), len(alias))
	}
	before := a.entries(alice, "end="+url.QueryEscape(opened[0].CreatedAt.Add(-time.Microsecond).Format(time.RFC3339Nano)))
	if len(before)+len(later) != len(entriesA) {
		t.Fatalf("%d before the case, %d from it, %d in all", len(before), len(later), len(entriesA))
	}
	if got := a.entries(alice, "end_date=2000-01-01"); len(got) != 0 {
		t.Fatalf("entries before 2000: %d", len(got))
	}
	for q, code := range map[string]string{
		"start=yesterday": "invalid_time", "result=maybe": "invalid_result", "format=xml": "invalid_format",
		"start=2030-01-02&end=2030-01-01": "invalid_range", "cursor=garbage": "invalid_cursor",
	} {
		r = a.do(http.MethodGet, "/api/audit?"+q, alice, nil)
		expectStatus(t, r, http.StatusBadRequest, q)
		if got := r.errorCode(t); got != code {
			t.Fatalf("%s: code %q, want %q", q, got, code)
		}
	}

	// One entry; another tenant's is not found.
	r = a.do(http.MethodGet, "/api/audit/"+roles[0].ID, alice, nil)
	expectStatus(t, r, http.StatusOK, "get entry")
	var one auditEntry
	r.json(t, &one)
	if one.ID != roles[0].ID || one.Position != roles[0].Position || one.Action != "user.role_changed" {
		t.Fatalf("get entry: %+v", one)
	}
	expectStatus(t, a.do(http.MethodGet, "/api/audit/"+roles[0].ID, bob, nil), http.StatusNotFound, "bob reads tenant A's entry")
	expectStatus(t, a.do(http.MethodGet, "/api/audit/01900000-0000-7000-8000-000000000000", alice, nil), http.StatusNotFound, "unknown entry")
	expectStatus(t, a.do(http.MethodGet, "/api/audit/nope", alice, nil), http.StatusNotFound, "malformed id")

	// Only administrators read the log.
	for _, path := range []string{"/api/audit", "/api/audit/" + roles[0].ID, "/api/audit/integrity", "/api/audit?format=csv"} {
		expectStatus(t, a.do(http.MethodGet, path, carol, nil), http.StatusForbidden, "analyst reads "+path)
		expectStatus(t, a.do(http.MethodGet, path, vic, nil), http.StatusForbidden, "viewer reads "+path)
		expectStatus(t, a.do(http.MethodGet, path, "", nil), http.StatusUnauthorized, "anonymous reads "+path)
	}
	// Another tenant's administrator sees only their own tenant, even when naming another.
	entriesB := a.entries(bob, "")
	if want := tenantEventIDs(t, a.server, tenantB, ""); !slices.Equal(ids(entriesB), want) {
		t.Fatalf("tenant B: %d entries for %d events", len(entriesB), len(want))
	}
	if named := a.entries(bob, "tenant_id="+tenantA); !slices.Equal(ids(named), ids(entriesB)) {
		t.Fatal("a tenant administrator read another tenant's log with tenant_id")
	}
	for _, e := range entriesB {
		if e.TenantID != tenantB || slices.Contains(ids(entriesA), e.ID) {
			t.Fatalf("bob sees %+v", e)
		}
	}
	// Platform administrators read their own tenant, or any named one.
	for _, e := range a.entries(platform, "") {
		if e.TenantID != "00000000-0000-0000-0000-000000000000" {
			t.Fatalf("platform administrator's own log shows %+v", e)
		}
	}
	if got := a.entries(platform, "tenant_id="+tenantA); !slices.Equal(ids(got), ids(entriesA)) {
		t.Fatalf("platform administrator reads %d of tenant A's %d entries", len(got), len(entriesA))
	}

	// No route changes or deletes an entry.
	for _, m := range []string{http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodPost} {
		r = a.do(m, "/api/audit/"+roles[0].ID, alice, map[string]any{"action": "forged"})
		if r.status != http.StatusMethodNotAllowed && r.status != http.StatusNotFound {
			t.Fatalf("%s on an entry: %d %s", m, r.status, r.body)
		}
	}
	expectStatus(t, a.do(http.MethodDelete, "/api/audit", alice, nil), http.StatusMethodNotAllowed, "DELETE the log")
	if again := a.entries(alice, ""); !slices.Equal(ids(again), ids(entriesA)) {
		t.Fatal("the log changed")
	}

	// CSV export round-trips through encoding/csv and neutralises formulas.
	r = a.do(http.MethodGet, "/api/audit?format=csv", alice, nil)
	expectStatus(t, r, http.StatusOK, "CSV export")
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(r.header.Get("Content-Disposition"), `attachment; filename="audit-`+tenantA) {
		t.Fatalf("CSV headers %v", r.header)
	}
	records, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	if len(records) != len(entriesA)+1 || records[0][0] != "id" || records[0][3] != "user_id" || len(records[0]) != 16 {
		t.Fatalf("CSV has %d records for %d entries; header %v", len(records), len(entriesA), records[0])
	}
	var csvIDs []string
	for _, rec := range records[1:] {
		csvIDs = append(csvIDs, rec[0])
		for _, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Fatalf("CSV cell %q starts a formula", cell)
			}
		}
		var details map[string]any
		if err := json.Unmarshal([]byte(rec[15]), &details); err != nil {
			t.Fatalf("details %q: %v", rec[15], err)
		}
		if rec[0] == opened[0].ID && (rec[11] != "'"+formula || details["title"] != "Phishing wave") {
			t.Fatalf("case opened in CSV: user agent %q, details %v", rec[11], details)
		}
		if rec[10] != "127.0.0.1" {
			t.Fatalf("CSV address %q", rec[10])
		}
	}
	slices.Sort(csvIDs)
	if !slices.Equal(csvIDs, ids(entriesA)) {
		t.Fatal("the CSV export holds other entries than the list")
	}
	for _, secret := range secrets {
		if bytes.Contains(r.body, []byte(secret)) {
			t.Fatalf("the CSV export shows %q", secret)
		}
	}
	r = a.do(http.MethodGet, "/api/audit?format=csv&action=user.role_changed", alice, nil)
	expectStatus(t, r, http.StatusOK, "filtered CSV export")
	if records, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll(); err != nil || len(records) != 3 {
		t.Fatalf("filtered CSV: %d records, %v", len(records), err)
	}

	// JSON Lines export.
	r = a.do(http.MethodGet, "/api/audit?format=jsonl", alice, nil)
	expectStatus(t, r, http.StatusOK, "JSON Lines export")
	if r.header.Get("Content-Type") != "application/x-ndjson" || !strings.Contains(r.header.Get("Content-Disposition"), ".jsonl") {
		t.Fatalf("JSON Lines headers %v", r.header)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
	var jsonlIDs []string
	for _, line := range lines {
		var e auditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.TenantID != tenantA {
			t.Fatalf("JSON line %q: %v", line, err)
		}
		jsonlIDs = append(jsonlIDs, e.ID)
	}
	slices.Sort(jsonlIDs)
	if !slices.Equal(jsonlIDs, ids(entriesA)) {
		t.Fatalf("JSON Lines export: %d lines for %d entries", len(lines), len(entriesA))
	}

	// Signed checkpoints cover every event; the integrity route and verify agree.
	var integ integrityBody
	eventually(t, 30*time.Second, "a checkpoint covering tenant A's events", func() bool {
		r := a.do(http.MethodGet, "/api/audit/integrity", alice, nil)
		expectStatus(t, r, http.StatusOK, "integrity")
		integ = integrityBody{}
		r.json(t, &integ)
		return integ.LatestCheckpoint != nil && integ.LatestCheckpoint.Events == int64(len(entriesA))
	})
	if integ.Status != "ok" || integ.TenantID != tenantA || integ.EventsVerified != int64(len(entriesA)) ||
		!strings.HasPrefix(integ.LatestCheckpoint.KeyID, "ed25519:") || len(integ.LatestCheckpoint.Digest) != 64 {
		t.Fatalf("integrity: %+v", integ)
	}
	out := a.runTask(t, "verify")
	if !strings.Contains(out, "OK: every hash chain is intact") || !strings.Contains(out, "OK: every signed audit checkpoint verifies") {
		t.Fatalf("verify printed %q", out)
	}

	// The log rebuilds from the event store, as the owner, while the server runs.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	dumpLog := func() string {
		var dump string
		waitCaughtUp(t, a.server, "auditlog.v1")
		if err := conn.QueryRow(ctx, `SELECT string_agg(row_to_json(x)::text, E'\n' ORDER BY x.tenant_id, x.event_id) FROM `+
			pgx.Identifier{a.schema(), "audit_log"}.Sanitize()+` x`).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		return dump
	}
	live := dumpLog()
	if out := a.runTask(t, "replay", "--projection", "auditlog.v1"); !strings.Contains(out, "auditlog.v1 rebuilt") {
		t.Fatalf("replay printed %q", out)
	}
	if rebuilt := dumpLog(); rebuilt != live {
		t.Fatalf("the rebuilt audit log differs from the live one:\n%s\n---\n%s", live, rebuilt)
	}

	// Tampering with an event, as a superuser could, is found.
	events := pgx.Identifier{a.schema(), "events"}.Sanitize()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, q := range []string{
			`ALTER TABLE ` + events + ` DISABLE TRIGGER ALL`,
			`UPDATE ` + events + ` SET payload = jsonb_set(payload, '{title}', '"Nothing to see"') WHERE event_id = '` + opened[0].ID + `'`,
			`ALTER TABLE ` + events + ` ENABLE TRIGGER ALL`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err = a.runTaskStatus("verify", "--tenant", tenantA)
	if err == nil || !strings.Contains(out, "BREAK: tenant "+tenantA) || !strings.Contains(out, opened[0].ID) {
		t.Fatalf("verify after tampering: %v\n%s", err, out)
	}
	if out, err := a.runTaskStatus("verify", "--tenant", tenantB); err != nil {
		t.Fatalf("tenant B verifies no longer: %v\n%s", err, out)
	}
	// The integrity route finds it on its next full walk (VC_AUDIT_INTEGRITY_RECHECK),
	// even after new checkpoints were chained onto the changed history.
	r = a.do(http.MethodPatch, "/api/cases/"+kase.ID, alice, map[string]any{"severity": "critical"})
	expectStatus(t, r, http.StatusOK, "a change after the tampering")
	eventually(t, 30*time.Second, "the integrity route to report the break", func() bool {
		r := a.do(http.MethodGet, "/api/audit/integrity", alice, nil)
		integ = integrityBody{}
		r.json(t, &integ)
		return integ.Status == "broken"
	})
	if integ.Break == nil || integ.Break.EventID != opened[0].ID || !strings.Contains(integ.Break.Reason, "changed") {
		t.Fatalf("integrity after tampering: %+v", integ.Break)
	}
	r = a.do(http.MethodGet, "/api/audit/integrity", bob, nil)
	expectStatus(t, r, http.StatusOK, "bob's integrity")
	integ = integrityBody{}
	r.json(t, &integ)
	if integ.TenantID != tenantB || integ.Status == "broken" {
		t.Fatalf("tenant B's integrity: %+v", integ)
	}
}
