package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// siemDestinationBody is a destination as the API shows it.
type siemDestinationBody struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Config struct {
		Kind      string `json:"kind"`
		Address   string `json:"address"`
		Transport string `json:"transport"`
		Body      string `json:"body"`
		URL       string `json:"url"`
	} `json:"config"`
	TLPCeiling string `json:"tlp_ceiling"`
	HasSecret  bool   `json:"has_secret"`
	Version    int64  `json:"version"`
	Position   int64  `json:"position"`
}

// syslogFrames accepts connections on a loopback port and sends each RFC 6587
// octet-counted message it reads to the returned channel.
func syslogFrames(t *testing.T) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan string, 1024)
	read := func(conn net.Conn) {
		defer conn.Close()
		r := bufio.NewReader(conn)
		for {
			n, err := r.ReadString(' ')
			if err != nil {
				return
			}
			size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
			if err != nil || size <= 0 || size > 1<<20 {
				return
			}
			msg := make([]byte, size)
			if _, err := io.ReadFull(r, msg); err != nil {
				return
			}
			out <- string(msg)
		}
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go read(conn)
		}
	}()
	return ln.Addr().String(), out
}

func TestEndToEndSIEMDestinations(t *testing.T) {
	s := startServer(t, "VC_SIEM_ALLOWED_NETWORKS=127.0.0.0/8")
	root := s.login(t, "admin", s.bootstrapPassword(t))
	tenant := func(name string) string {
		r := s.do(t, http.MethodPost, "/api/tenants", root, map[string]string{"name": name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+name)
		var out struct{ ID string }
		r.json(t, &out)
		return out.ID
	}
	user := func(tenant, name, role string) string {
		pw := "password of " + name
		r := s.do(t, http.MethodPost, "/api/users", root, map[string]string{
			"username": name, "password": pw, "role": role, "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create user "+name)
		return s.login(t, name, pw)
	}
	tenantA, tenantB := tenant("Acme"), tenant("Globex")
	alice, carol, bob := user(tenantA, "alice", "admin"), user(tenantA, "carol", "analyst"), user(tenantB, "bob", "admin")

	const path = "/api/siem/destinations"
	list := func(token string) []siemDestinationBody {
		t.Helper()
		r := s.do(t, http.MethodGet, path, token, nil)
		expectStatus(t, r, http.StatusOK, "list destinations")
		var out []siemDestinationBody
		r.json(t, &out)
		return out
	}

	// Only the tenant's administrators manage destinations.
	for _, tok := range []string{carol, root} {
		expectStatus(t, s.do(t, http.MethodGet, path, tok, nil), http.StatusForbidden, "list as non-admin")
		expectStatus(t, s.do(t, http.MethodPost, path, tok, map[string]any{"name": "x",
			"config": map[string]any{"kind": "syslog", "address": "127.0.0.1:1"}}), http.StatusForbidden, "create as non-admin")
	}

	// A Splunk destination: the token is write-only.
	const token = "hec-token-e2e-5f3c9a1b"
	var hecAuth atomic.Value
	hec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hecAuth.Store(r.Header.Get("Authorization"))
		if r.URL.Path != "/services/collector/event" || r.Header.Get("Authorization") != "Splunk "+token {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"text":"Invalid token","code":4}`)
			return
		}
		_, _ = io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	defer hec.Close()
	r := s.do(t, http.MethodPost, path, alice, map[string]any{
		"name": "Splunk", "tlp_ceiling": "amber", "secret": token,
		"config": map[string]any{"kind": "splunk_hec", "url": hec.URL, "index": "main"},
		"filter": map[string]any{"types": []string{"user.*"}, "min_threat": "low"},
	})
	expectStatus(t, r, http.StatusCreated, "create splunk destination")
	if strings.Contains(string(r.body), token) {
		t.Fatalf("create answered the secret: %s", r.body)
	}
	var splunk siemDestinationBody
	r.json(t, &splunk)
	if !splunk.HasSecret || splunk.Version != 1 || splunk.Position == 0 || splunk.TLPCeiling != "amber" ||
		r.header.Get("ETag") != `"1"` || r.header.Get("Location") != path+"/"+splunk.ID {
		t.Fatalf("created %+v, headers %v", splunk, r.header)
	}

	// Bad input: a clear 4xx and nothing written.
	for _, bad := range []struct {
		body any
		code string
	}{
		{map[string]any{"name": "x", "config": map[string]any{"kind": "ftp"}}, "kind_invalid"},
		{map[string]any{"name": "x", "config": map[string]any{"kind": "syslog", "address": "nohost"}}, "address_invalid"},
		{map[string]any{"name": "x", "config": map[string]any{"kind": "splunk_hec", "url": "https://s:8088"}}, "secret_required"},
		{map[string]any{"name": "x", "tlp_ceiling": "white", "config": map[string]any{"kind": "syslog", "address": "h:1"}}, "tlp_ceiling_invalid"},
		{map[string]any{"name": "x", "bogus": 1, "config": map[string]any{"kind": "syslog", "address": "h:1"}}, ""},
	} {
		r := s.do(t, http.MethodPost, path, alice, bad.body)
		if r.status < 400 || r.status >= 500 {
			t.Fatalf("bad input %v: status %d %s", bad.body, r.status, r.body)
		}
		if bad.code != "" && r.errorCode(t) != bad.code {
			t.Fatalf("bad input %v: code %q, want %q", bad.body, r.errorCode(t), bad.code)
		}
	}
	if got := list(alice); len(got) != 1 || got[0].ID != splunk.ID {
		t.Fatalf("list after bad input = %+v", got)
	}

	// A syslog destination, tested against a listener.
	addr, frames := syslogFrames(t)
	r = s.do(t, http.MethodPost, path, alice, map[string]any{
		"name": "rsyslog", "config": map[string]any{"kind": "syslog", "address": addr, "transport": "tcp"}})
	expectStatus(t, r, http.StatusCreated, "create syslog destination")
	var sys siemDestinationBody
	r.json(t, &sys)
	if sys.Config.Body != "cef" || sys.Config.Transport != "tcp" || sys.TLPCeiling != "clear" || sys.HasSecret {
		t.Fatalf("syslog destination = %+v", sys)
	}
	r = s.do(t, http.MethodPost, path+"/"+sys.ID+"/test", alice, nil)
	expectStatus(t, r, http.StatusOK, "test syslog destination")
	var res struct {
		Delivered bool   `json:"delivered"`
		Error     string `json:"error"`
	}
	r.json(t, &res)
	if !res.Delivered {
		t.Fatalf("test not delivered: %s", res.Error)
	}
	select {
	case msg := <-frames:
		if !strings.HasPrefix(msg, "<") || !strings.Contains(msg, "siem_destination.tested") ||
			!strings.Contains(msg, `tenant="`+tenantA+`"`) || !strings.Contains(msg, "CEF:0|VelociCompanion|") {
			t.Fatalf("received %q", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no test message received")
	}
	// The Splunk test opens the sealed token and presents it.
	r = s.do(t, http.MethodPost, path+"/"+splunk.ID+"/test", alice, nil)
	expectStatus(t, r, http.StatusOK, "test splunk destination")
	r.json(t, &res)
	if !res.Delivered || strings.Contains(string(r.body), token) || hecAuth.Load() != "Splunk "+token {
		t.Fatalf("splunk test = %s (HEC saw %v)", r.body, hecAuth.Load())
	}

	// Another tenant sees nothing and changes nothing.
	if got := list(bob); len(got) != 0 {
		t.Fatalf("tenant B lists %+v", got)
	}
	for _, try := range []struct{ method, path string }{
		{http.MethodPatch, path + "/" + splunk.ID}, {http.MethodDelete, path + "/" + splunk.ID},
		{http.MethodPost, path + "/" + splunk.ID + "/test"},
	} {
		var body any
		if try.method == http.MethodPatch {
			body = map[string]any{"name": "stolen", "secret": "x"}
		}
		expectStatus(t, s.do(t, try.method, try.path, bob, body), http.StatusNotFound, "cross-tenant "+try.method+" "+try.path)
	}

	// Update: stale If-Match, then a rename with the right one.
	expectStatus(t, s.do(t, http.MethodPatch, path+"/"+splunk.ID, alice, map[string]any{"name": "Splunk 2"}, "If-Match", `"9"`),
		http.StatusPreconditionFailed, "stale patch")
	r = s.do(t, http.MethodPatch, path+"/"+splunk.ID, alice, map[string]any{"name": "Splunk 2", "secret": "new-token"}, "If-Match", `"1"`)
	expectStatus(t, r, http.StatusOK, "patch")
	var patched siemDestinationBody
	r.json(t, &patched)
	if patched.Name != "Splunk 2" || patched.Version != 2 || !patched.HasSecret || strings.Contains(string(r.body), "new-token") {
		t.Fatalf("patched = %s", r.body)
	}
	expectStatus(t, s.do(t, http.MethodPatch, path+"/"+splunk.ID, alice, map[string]any{"secret": ""}), http.StatusUnprocessableEntity,
		"remove a required secret")
	for _, got := range list(alice) {
		if got.ID == splunk.ID && (got.Name != "Splunk 2" || got.Version != 2) {
			t.Fatalf("after cross-tenant attempts and bad patch: %+v", got)
		}
	}

	// Delete.
	expectStatus(t, s.do(t, http.MethodDelete, path+"/"+splunk.ID, carol, nil), http.StatusForbidden, "analyst delete")
	expectStatus(t, s.do(t, http.MethodDelete, path+"/"+splunk.ID, alice, nil), http.StatusNoContent, "delete")
	expectStatus(t, s.do(t, http.MethodDelete, path+"/"+splunk.ID, alice, nil), http.StatusNotFound, "delete again")
	if got := list(alice); len(got) != 1 || got[0].ID != sys.ID {
		t.Fatalf("list after delete = %+v", got)
	}

	assertEventsClean(t, s, []string{token, "new-token"}, "siem_destination.created", "siem_destination.updated", "siem_destination.deleted")
}

// TestEndToEndSIEMForwarding adds a syslog destination to tenant A and
// checks that A's events reach it, in CEF, and B's never do.
func TestEndToEndSIEMForwarding(t *testing.T) {
	s := startServer(t, "VC_SIEM_REFRESH=100ms", "VC_SIEM_ATTEMPTS=3", "VC_SIEM_ALLOWED_NETWORKS=127.0.0.0/8")
	root := s.login(t, "admin", s.bootstrapPassword(t))
	tenant := func(name string) string {
		r := s.do(t, http.MethodPost, "/api/tenants", root, map[string]string{"name": name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+name)
		var out struct{ ID string }
		r.json(t, &out)
		return out.ID
	}
	user := func(tenant, name, role string) string {
		r := s.do(t, http.MethodPost, "/api/users", root, map[string]string{
			"username": name, "password": "password of " + name, "role": role, "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create user "+name)
		var u struct{ ID string }
		r.json(t, &u)
		return u.ID
	}
	tenantA, tenantB := tenant("Acme"), tenant("Globex")
	user(tenantA, "alice", "admin")
	alice := s.login(t, "alice", "password of alice")

	addr, frames := syslogFrames(t)
	r := s.do(t, http.MethodPost, "/api/siem/destinations", alice, map[string]any{
		"name": "rsyslog", "config": map[string]any{"kind": "syslog", "address": addr, "transport": "tcp"},
		"filter": map[string]any{"types": []string{"user.*"}}})
	expectStatus(t, r, http.StatusCreated, "create syslog destination")

	dora := user(tenantA, "dora", "viewer")
	erin := user(tenantB, "erin", "viewer")
	fred := user(tenantA, "fred", "viewer")
	var got []string
	deadline := time.After(30 * time.Second)
	for seen := map[string]bool{}; !seen[dora] || !seen[fred]; {
		select {
		case msg := <-frames:
			got = append(got, msg)
			for _, id := range []string{dora, fred} {
				if strings.Contains(msg, `resource_id="`+id+`"`) {
					seen[id] = true
				}
			}
		case <-deadline:
			t.Fatalf("the registrations of dora and fred did not both arrive; got %q", got)
		}
	}
	// Everything sent is A's, about users, in CEF; B's user never shows.
	for _, msg := range got {
		if !strings.Contains(msg, `tenant="`+tenantA+`"`) || strings.Contains(msg, erin) || strings.Contains(msg, tenantB) {
			t.Fatalf("forwarded %q", msg)
		}
		if !strings.Contains(msg, "CEF:0|VelociCompanion|velocicompanion|") || !strings.Contains(msg, " user.") {
			t.Fatalf("not a CEF user event: %q", msg)
		}
		if strings.Contains(msg, "password of") || strings.Contains(msg, "argon2") {
			t.Fatalf("secret forwarded: %q", msg)
		}
	}
}

// TestEndToEndSIEMNetworkPolicy shows that without an allow-list a tenant
// administrator cannot aim a destination at the server's own loopback.
func TestEndToEndSIEMNetworkPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	f := newTenantFixture(t)
	r := f.s.do(t, http.MethodPost, "/api/siem/destinations", f.alice, map[string]any{"name": "internal probe",
		"config": map[string]any{"kind": "syslog", "address": "127.0.0.1:5432", "transport": "tcp"}})
	expectStatus(t, r, http.StatusCreated, "create destination")
	var d struct{ ID string }
	r.json(t, &d)
	r = f.s.do(t, http.MethodPost, "/api/siem/destinations/"+d.ID+"/test", f.alice, nil)
	expectStatus(t, r, http.StatusUnprocessableEntity, "test an internal destination")
	if code := r.errorCode(t); code != "destination_not_allowed" {
		t.Fatalf("internal destination answered %s", code)
	}
}
