package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDatabaseURL is the PostgreSQL server the tests use.
func testDatabaseURL() string {
	if u := os.Getenv("VC_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// server is the real binary running with embedded defaults in a fresh schema.
type server struct {
	base   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func (s *server) output() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdout.String(), s.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

type build struct {
	once sync.Once
	path string
	err  error
}

// builds holds the binary built with the race detector (tests) and without
// (benchmarks, which measure memory and speed).
var builds = map[bool]*build{true: {}, false: {}}

// buildBinary compiles the server once per test run and mode.
func buildBinary(t testing.TB, race bool) string {
	t.Helper()
	b := builds[race]
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "vc-e2e-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "velocicompanion")
		args := []string{"build", "-o", b.path}
		if race {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// startServer builds and starts the binary against a fresh schema, and stops
// it and drops the schema when the test ends.
func startServer(t testing.TB, extraEnv ...string) *server {
	return startBinary(t, true, extraEnv...)
}

func startBinary(t testing.TB, race bool, extraEnv ...string) *server {
	t.Helper()
	bin := buildBinary(t, race)
	// A port picked free may be taken by another process before the server
	// binds it (the packages' tests run in parallel): a server that exits
	// for that reason is started again on other ports, in a fresh schema.
	for attempt := 1; ; attempt++ {
		s, exited := launch(t, bin, extraEnv)
		ready := false
		deadline := time.Now().Add(60 * time.Second)
		for !ready && time.Now().Before(deadline) {
			select {
			case <-exited:
				_, errOut := s.output()
				if attempt < 3 && strings.Contains(errOut, "address already in use") {
					t.Logf("the server lost a port to another process (attempt %d); starting it again", attempt)
					deadline = time.Time{}
					continue
				}
				t.Fatalf("the server exited before it was ready:\n%s", tail(errOut, 8<<10))
			case <-time.After(20 * time.Millisecond):
			}
			if resp, err := http.Get(s.base + "/ready"); err == nil {
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
		}
		if ready {
			return s
		}
		select {
		case <-exited:
			continue // retried above
		default:
			t.Fatal("timed out after 1m0s waiting for the server to be ready")
		}
	}
}

// launch starts bin as the server in a fresh schema on free ports; exited
// closes when the process has ended.
func launch(t testing.TB, bin string, extraEnv []string) (*server, <-chan struct{}) {
	t.Helper()
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "e2e_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatalf("PostgreSQL at %s is required: %v", testDatabaseURL(), err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), testDatabaseURL())
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			conn.Close(context.Background())
		}
	})

	httpPort, kafkaPort := freePort(t), freePort(t)
	s := &server{base: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(os.Environ(),
		"VC_HTTP_ADDR="+fmt.Sprintf("127.0.0.1:%d", httpPort),
		"VC_DATABASE_URL="+testDatabaseURL(),
		"VC_DATABASE_SCHEMA="+schema,
		"VC_KAFKA_EMBEDDED_ADDR="+fmt.Sprintf("127.0.0.1:%d", kafkaPort),
		"VC_DATA_DIR="+t.TempDir(),
		"VC_KAFKA_PARTITIONS=4",
		// A loaded CI machine may need longer than the default 2 s for a
		// read model to catch up; the tests still fail if it never does.
		"VC_READ_WAIT=15s",
	)
	s.cmd.Env = append(s.cmd.Env, extraEnv...)
	s.cmd.Stdout = lockedWriter{&s.mu, &s.stdout}
	s.cmd.Stderr = lockedWriter{&s.mu, &s.stderr}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			out, errOut := s.output()
			t.Logf("server stdout:\n%s\nserver stderr (last 8 KiB):\n%s", out, tail(errOut, 8<<10))
		}
	})
	return s, exited
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

var adminPassword = regexp.MustCompile(`password: (\S+)`)

// bootstrapPassword reads the platform administrator's password the first
// start printed.
func (s *server) bootstrapPassword(t *testing.T) string {
	t.Helper()
	out, _ := s.output()
	m := adminPassword.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("first start printed no administrator password:\n%s", out)
	}
	return m[1]
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorCode returns the code of an error body, failing if it is not one.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.json(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not an error body: %s", r.body)
	}
	return e.Error.Code
}

// do sends a request; body may be nil, a string (sent as is) or a value (JSON).
func (s *server) do(t *testing.T, method, path, token string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

func expectStatus(t *testing.T, r response, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, want, r.body)
	}
}

func (s *server) login(t *testing.T, username, password string) string {
	t.Helper()
	r := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": username, "password": password})
	expectStatus(t, r, http.StatusOK, "login "+username)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	r.json(t, &tok)
	if tok.AccessToken == "" || tok.TokenType != "bearer" {
		t.Fatalf("login answered %s", r.body)
	}
	return tok.AccessToken
}

type userBody struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Role     string `json:"role"`
	TenantID string `json:"tenant_id"`
	IsActive bool   `json:"is_active"`
	Version  int64  `json:"version"`
	Position int64  `json:"position"`
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t)
	admin := s.login(t, "admin", s.bootstrapPassword(t))

	// Meta routes.
	expectStatus(t, s.do(t, http.MethodGet, "/health", "", nil), http.StatusOK, "health")
	r := s.do(t, http.MethodGet, "/openapi.json", "", nil)
	expectStatus(t, r, http.StatusOK, "openapi")
	var spec struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	r.json(t, &spec)
	if spec.OpenAPI == "" || spec.Paths["/api/auth/login"] == nil {
		t.Fatalf("openapi document lacks the login route: %s", r.body[:min(len(r.body), 300)])
	}
	r = s.do(t, http.MethodGet, "/docs", "", nil)
	expectStatus(t, r, http.StatusOK, "docs")
	if bytes.Contains(r.body, []byte("https://")) {
		t.Fatal("/docs loads something from another origin")
	}
	r = s.do(t, http.MethodGet, "/metrics", "", nil)
	expectStatus(t, r, http.StatusOK, "metrics")
	if !bytes.Contains(r.body, []byte("velocicompanion_http_requests_total")) {
		t.Fatal("/metrics lacks the HTTP request counter")
	}

	// The platform administrator creates two tenants and an administrator in each.
	var tenantA, tenantB struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Position int64  `json:"position"`
	}
	r = s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Acme Corp", "description": "first client"})
	expectStatus(t, r, http.StatusCreated, "create tenant A")
	r.json(t, &tenantA)
	r = s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Globex"})
	expectStatus(t, r, http.StatusCreated, "create tenant B")
	r.json(t, &tenantB)
	if tenantA.ID == "" || tenantA.Position == 0 || tenantA.Name != "Acme Corp" {
		t.Fatalf("create tenant answered %+v", tenantA)
	}
	r = s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "acme corp"})
	expectStatus(t, r, http.StatusConflict, "duplicate tenant name")

	r = s.do(t, http.MethodGet, fmt.Sprintf("/api/tenants?min_position=%d", tenantB.Position), admin, nil)
	expectStatus(t, r, http.StatusOK, "list tenants")
	var tenantsSeen []struct{ ID, Name string }
	r.json(t, &tenantsSeen)
	if len(tenantsSeen) != 3 { // platform, Acme Corp, Globex
		t.Fatalf("platform admin lists %d tenants, want 3: %s", len(tenantsSeen), r.body)
	}

	const pwA, pwB = "correct horse battery A", "correct horse battery B"
	var aliceA, bobB userBody
	r = s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
		"username": "alice", "password": pwA, "email": "alice@acme.example", "role": "admin", "tenant_id": tenantA.ID})
	expectStatus(t, r, http.StatusCreated, "create alice")
	r.json(t, &aliceA)
	r = s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
		"username": "bob", "password": pwB, "role": "admin", "tenant_id": tenantB.ID})
	expectStatus(t, r, http.StatusCreated, "create bob")
	r.json(t, &bobB)
	if aliceA.TenantID != tenantA.ID || aliceA.Role != "admin" || !aliceA.IsActive {
		t.Fatalf("alice is %+v", aliceA)
	}

	// Alice signs in and sees herself.
	alice := s.login(t, "alice", pwA)
	r = s.do(t, http.MethodGet, "/api/auth/me", alice, nil)
	expectStatus(t, r, http.StatusOK, "me")
	var me userBody
	r.json(t, &me)
	if me.ID != aliceA.ID || me.TenantID != tenantA.ID || me.Username != "alice" {
		t.Fatalf("me = %+v, want alice of tenant A", me)
	}
	if bytes.Contains(r.body, []byte("password")) || bytes.Contains(r.body, []byte("argon2")) {
		t.Fatalf("me leaks a secret: %s", r.body)
	}

	// Another tenant's user answers 404, exactly like a user that does not exist.
	r = s.do(t, http.MethodGet, "/api/users/"+bobB.ID, alice, nil)
	expectStatus(t, r, http.StatusNotFound, "other tenant's user")
	notFoundOther := r.errorCode(t)
	r = s.do(t, http.MethodGet, "/api/users/01900000-0000-7000-8000-000000000000", alice, nil)
	expectStatus(t, r, http.StatusNotFound, "missing user")
	if code := r.errorCode(t); code != notFoundOther {
		t.Fatalf("other tenant's user answers %q, a missing one %q", notFoundOther, code)
	}
	r = s.do(t, http.MethodPatch, "/api/users/"+bobB.ID, alice, map[string]any{"role": "viewer"})
	expectStatus(t, r, http.StatusNotFound, "patch other tenant's user")
	r = s.do(t, http.MethodDelete, "/api/users/"+bobB.ID, alice, nil)
	expectStatus(t, r, http.StatusNotFound, "delete other tenant's user")
	r = s.do(t, http.MethodGet, "/api/tenants/"+tenantB.ID, alice, nil)
	expectStatus(t, r, http.StatusNotFound, "other tenant")
	// A tenant admin cannot create a user in another tenant by naming it.
	r = s.do(t, http.MethodPost, "/api/users", alice, map[string]string{
		"username": "mallory", "password": "correct horse battery M", "tenant_id": tenantB.ID})
	expectStatus(t, r, http.StatusForbidden, "create user in another tenant")
	// Nor create tenants.
	r = s.do(t, http.MethodPost, "/api/tenants", alice, map[string]string{"name": "Evil"})
	expectStatus(t, r, http.StatusForbidden, "tenant admin creates tenant")

	// Alice manages her own tenant: creates an analyst and lists users with read-your-writes.
	r = s.do(t, http.MethodPost, "/api/users", alice, map[string]string{
		"username": "carol", "password": "correct horse battery C", "role": "analyst"})
	expectStatus(t, r, http.StatusCreated, "create carol")
	var carol userBody
	r.json(t, &carol)
	if carol.TenantID != tenantA.ID {
		t.Fatalf("carol landed in tenant %s, want %s", carol.TenantID, tenantA.ID)
	}
	r = s.do(t, http.MethodGet, fmt.Sprintf("/api/users?min_position=%d", carol.Position), alice, nil)
	expectStatus(t, r, http.StatusOK, "list users")
	if r.header.Get("X-Read-Stale") != "" {
		t.Fatal("the read model did not catch up within the read wait")
	}
	var listed []userBody
	r.json(t, &listed)
	names := map[string]bool{}
	for _, u := range listed {
		names[u.Username] = true
		if u.TenantID != tenantA.ID {
			t.Fatalf("tenant A's list shows %+v", u)
		}
	}
	if !names["alice"] || !names["carol"] || names["bob"] || len(listed) != 2 {
		t.Fatalf("tenant A lists %v", names)
	}

	// Bad input: malformed JSON, wrong content type, unknown fields, oversized values.
	r = s.do(t, http.MethodPost, "/api/users", alice, `{"username": "dave",`)
	expectStatus(t, r, http.StatusBadRequest, "malformed JSON")
	if r.errorCode(t) != "invalid_json" {
		t.Fatalf("malformed JSON answered %s", r.body)
	}
	r = s.do(t, http.MethodPost, "/api/users", alice, `username=dave`, "Content-Type", "text/plain")
	expectStatus(t, r, http.StatusUnsupportedMediaType, "wrong content type")
	r.errorCode(t)
	r = s.do(t, http.MethodPost, "/api/users", alice, map[string]any{
		"username": "dave", "password": "correct horse battery D", "is_admin": true})
	expectStatus(t, r, http.StatusBadRequest, "unknown field")
	r = s.do(t, http.MethodPost, "/api/users", alice, map[string]any{"username": "dave", "password": "short"})
	expectStatus(t, r, http.StatusUnprocessableEntity, "weak password")
	r = s.do(t, http.MethodGet, "/api/users?limit=100000", alice, nil)
	expectStatus(t, r, http.StatusBadRequest, "limit too large")
	// None of those created dave.
	r = s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "dave", "password": "correct horse battery D"})
	expectStatus(t, r, http.StatusUnauthorized, "dave does not exist")

	// A wrong password and an unknown user are indistinguishable.
	wrong := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "alice", "password": "not her password"})
	unknown := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "nobody", "password": "not her password"})
	if wrong.status != http.StatusUnauthorized || unknown.status != http.StatusUnauthorized || !bytes.Equal(wrong.body, unknown.body) {
		t.Fatalf("wrong password %d %s, unknown user %d %s", wrong.status, wrong.body, unknown.status, unknown.body)
	}

	// The OAuth2 password form is accepted for compatibility.
	req, _ := http.NewRequest(http.MethodPost, s.base+"/api/auth/login",
		strings.NewReader("grant_type=password&username=carol&password=correct+horse+battery+C"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("form login: %d", resp.StatusCode)
	}

	// A role change takes effect on the next request; the old token stops working.
	carolTok := s.login(t, "carol", "correct horse battery C")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", carolTok, nil), http.StatusOK, "carol me")
	r = s.do(t, http.MethodPatch, "/api/users/"+carol.ID, alice, map[string]any{"role": "viewer"}, "If-Match", `"1"`)
	expectStatus(t, r, http.StatusPreconditionFailed, "stale If-Match")
	r = s.do(t, http.MethodPatch, "/api/users/"+carol.ID, alice, map[string]any{"role": "viewer"})
	expectStatus(t, r, http.StatusOK, "demote carol")
	r = s.do(t, http.MethodGet, "/api/auth/me", carolTok, nil)
	expectStatus(t, r, http.StatusUnauthorized, "carol's old token after the role change")

	// Tampered tokens and tokens in the query string are refused.
	// Change one character inside the signature (not the last, whose low bits
	// base64 ignores) to a different one.
	i := len(alice) - 10
	swap := byte('A')
	if alice[i] == 'A' {
		swap = 'B'
	}
	tampered := alice[:i] + string(swap) + alice[i+1:]
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", tampered, nil), http.StatusUnauthorized, "tampered token")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me?access_token="+alice, "", nil), http.StatusUnauthorized, "token in query")

	// Every response carries a request id; a 404 route is JSON too.
	r = s.do(t, http.MethodGet, "/api/nothing-here", alice, nil)
	expectStatus(t, r, http.StatusNotFound, "unknown route")
	r.errorCode(t)
	if r.header.Get("X-Request-ID") == "" {
		t.Fatal("no X-Request-ID")
	}

	// The events are all there, with actor and source IP, and no secret.
	assertEventsClean(t, s, []string{pwA, pwB, "correct horse battery C"},
		"tenant.created", "user.registered", "user.logged_in", "user.login_failed", "user.role_changed")

	// Rebuilding a read model from the event store while the server runs gives
	// exactly the rows the live projector built; verify finds every chain intact.
	waitCaughtUp(t, s, "userlist.v1")
	before := dumpTable(t, s, "user_list")
	out := s.runTask(t, "replay", "--projection", "userlist.v1")
	if !strings.Contains(out, "userlist.v1 rebuilt") {
		t.Fatalf("replay printed %q", out)
	}
	if after := dumpTable(t, s, "user_list"); after != before {
		t.Fatalf("rebuilt user_list differs from the live one:\nlive:\n%s\nrebuilt:\n%s", before, after)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/users", alice, nil), http.StatusOK, "list users after the swap")
	out = s.runTask(t, "verify")
	if !strings.Contains(out, "OK: every hash chain is intact") {
		t.Fatalf("verify printed %q", out)
	}
}

// schema returns the server's database schema.
func (s *server) schema() string {
	for _, e := range s.cmd.Env {
		if v, ok := strings.CutPrefix(e, "VC_DATABASE_SCHEMA="); ok {
			return v
		}
	}
	return "public"
}

// runTask runs an operator subcommand of the binary against the server's
// database and returns its standard output.
func (s *server) runTask(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(s.cmd.Path, args...)
	cmd.Env = s.cmd.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("velocicompanion %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// waitCaughtUp waits until projector has applied every event stored so far.
func waitCaughtUp(t *testing.T, s *server, projector string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	events, seen := pgx.Identifier{s.schema(), "events"}.Sanitize(), pgx.Identifier{s.schema(), "projector_seen"}.Sanitize()
	eventually(t, 30*time.Second, projector+" to catch up", func() bool {
		var behind int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM `+events+` e WHERE NOT EXISTS
			(SELECT 1 FROM `+seen+` p WHERE p.projector = $1 AND p.position = e.position)`, projector).Scan(&behind)
		if err != nil {
			t.Fatal(err)
		}
		return behind == 0
	})
}

// dumpTable returns every row of a read-model table, in key order, as text.
func dumpTable(t *testing.T, s *server, table string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var dump string
	q := `SELECT coalesce(string_agg(row_to_json(x)::text, E'\n' ORDER BY x.tenant_id, x.user_id), '') FROM ` +
		pgx.Identifier{s.schema(), table}.Sanitize() + ` x`
	if err := conn.QueryRow(ctx, q).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if dump == "" {
		t.Fatalf("%s is empty", table)
	}
	return dump
}

// assertEventsClean checks the events the server recorded: none contains a
// secret, logins carry the source IP, and each required type was recorded.
func assertEventsClean(t *testing.T, s *server, secrets []string, required ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT name, payload::text, metadata::text FROM `+pgx.Identifier{s.schema(), "events"}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var name, payload, meta string
		if err := rows.Scan(&name, &payload, &meta); err != nil {
			t.Fatal(err)
		}
		counts[name]++
		for _, secret := range secrets {
			if strings.Contains(payload, secret) || strings.Contains(meta, secret) {
				t.Fatalf("event %s carries a password", name)
			}
		}
		if strings.Contains(payload, "argon2") {
			t.Fatalf("event %s carries a password hash", name)
		}
		if name == "user.logged_in" && !strings.Contains(meta, `"source_ip": "127.0.0.1"`) && !strings.Contains(meta, `"source_ip":"127.0.0.1"`) {
			t.Fatalf("login event without source IP: %s", meta)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for _, want := range required {
		if counts[want] == 0 {
			t.Fatalf("no %s event recorded; have %v", want, counts)
		}
	}
}
