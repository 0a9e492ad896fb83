package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tokenPair is what sign-in and refresh answer.
type tokenPair struct {
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
}

// secrets collects every token and key the test sees, to check afterwards
// that none of them was stored or logged.
type secrets struct {
	mu  sync.Mutex
	all []string
}

func (s *secrets) add(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, v...)
}

func (s *secrets) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.all...)
}

func (p tokenPair) check(t *testing.T, what string) tokenPair {
	t.Helper()
	if p.AccessToken == "" || len(p.RefreshToken) != 43 || p.TokenType != "bearer" || p.ExpiresIn <= 0 || p.RefreshExpiresIn <= 0 {
		t.Fatalf("%s answered %+v", what, p)
	}
	return p
}

func (s *server) signIn(t *testing.T, seen *secrets, username, password string) tokenPair {
	t.Helper()
	r := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": username, "password": password},
		"User-Agent", "e2e-sessions/"+username)
	expectStatus(t, r, http.StatusOK, "sign in "+username)
	var p tokenPair
	r.json(t, &p)
	seen.add(p.AccessToken, p.RefreshToken)
	return p.check(t, "sign in "+username)
}

func (s *server) refreshTokens(t *testing.T, seen *secrets, refresh string) (tokenPair, response) {
	t.Helper()
	r := s.do(t, http.MethodPost, "/api/auth/refresh", "", map[string]string{"refresh_token": refresh})
	var p tokenPair
	if r.status == http.StatusOK {
		r.json(t, &p)
		seen.add(p.AccessToken, p.RefreshToken)
		p.check(t, "refresh")
	}
	return p, r
}

type sessionBody struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	Current    bool      `json:"current"`
}

func (s *server) sessions(t *testing.T, token, path string) []sessionBody {
	t.Helper()
	r := s.do(t, http.MethodGet, path, token, nil)
	expectStatus(t, r, http.StatusOK, "list "+path)
	var out []sessionBody
	r.json(t, &out)
	return out
}

func currentSession(t *testing.T, list []sessionBody) string {
	t.Helper()
	for _, x := range list {
		if x.Current {
			return x.ID
		}
	}
	t.Fatalf("no current session in %+v", list)
	return ""
}

func TestEndToEndSessionsAndAPIKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t)
	seen := &secrets{}
	admin := s.login(t, "admin", s.bootstrapPassword(t))
	seen.add(admin)
	var tenantA, tenantB struct{ ID string }
	r := s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Acme"})
	expectStatus(t, r, http.StatusCreated, "tenant A")
	r.json(t, &tenantA)
	r = s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Globex"})
	expectStatus(t, r, http.StatusCreated, "tenant B")
	r.json(t, &tenantB)
	const pwAlice, pwCarol, pwBob = "alice's sessions password", "carol's sessions password", "bob's sessions password"
	newUser := func(name, pw, role, tenant string) userBody {
		r := s.do(t, http.MethodPost, "/api/users", admin, map[string]string{"username": name, "password": pw, "role": role, "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create "+name)
		var u userBody
		r.json(t, &u)
		return u
	}
	alice := newUser("alice", pwAlice, "admin", tenantA.ID)
	carol := newUser("carol", pwCarol, "analyst", tenantA.ID)
	newUser("bob", pwBob, "admin", tenantB.ID)
	aliceTok := s.signIn(t, seen, "alice", pwAlice).AccessToken
	bobTok := s.signIn(t, seen, "bob", pwBob).AccessToken

	// The OAuth2 forms: password sign-in and refresh both answer a pair.
	form := func(path string, values url.Values) (int, tokenPair) {
		resp, err := http.Post(s.base+path, "application/x-www-form-urlencoded", strings.NewReader(values.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p tokenPair
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			seen.add(p.AccessToken, p.RefreshToken)
		}
		return resp.StatusCode, p
	}
	status, fp := form("/api/auth/login", url.Values{"grant_type": {"password"}, "username": {"carol"}, "password": {pwCarol}})
	if status != http.StatusOK {
		t.Fatalf("form sign-in: %d", status)
	}
	fp.check(t, "form sign-in")
	status, fp2 := form("/api/auth/refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fp.RefreshToken}})
	if status != http.StatusOK {
		t.Fatalf("form refresh: %d", status)
	}
	fp2.check(t, "form refresh")
	if status, _ := form("/api/auth/refresh", url.Values{"grant_type": {"password"}, "refresh_token": {fp2.RefreshToken}}); status != http.StatusBadRequest {
		t.Fatalf("form refresh with the wrong grant: %d", status)
	}

	// Rotation: every refresh answers a new pair; the access token works.
	p0 := s.signIn(t, seen, "carol", pwCarol)
	p1, r := s.refreshTokens(t, seen, p0.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh")
	if p1.RefreshToken == p0.RefreshToken || p1.AccessToken == p0.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", p1.AccessToken, nil), http.StatusOK, "me with a refreshed token")
	// Presenting p0's token again at once, before p1's was used, looks like two
	// tabs racing: refused, and the session lives on.
	_, r = s.refreshTokens(t, seen, p0.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "race loser")
	if r.errorCode(t) != "refresh_token_invalid" {
		t.Fatalf("race loser answered %s", r.body)
	}
	p2, r := s.refreshTokens(t, seen, p1.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh after a race")
	p3, r := s.refreshTokens(t, seen, p2.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh again")
	// Now p1's token comes back after its successor was used: a replay. It is
	// refused, and the whole session ends: the newest refresh token and the
	// access tokens too.
	_, replay := s.refreshTokens(t, seen, p1.RefreshToken)
	expectStatus(t, replay, http.StatusUnauthorized, "replay")
	_, r = s.refreshTokens(t, seen, p3.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "newest token after a replay")
	_, unknown := s.refreshTokens(t, seen, strings.Repeat("A", 43))
	if replay.status != unknown.status || string(replay.body) != string(unknown.body) {
		t.Fatalf("a replay answers %d %s, an unknown token %d %s", replay.status, replay.body, unknown.status, unknown.body)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", p3.AccessToken, nil), http.StatusUnauthorized, "access token after a replay")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", p0.AccessToken, nil), http.StatusUnauthorized, "first access token after a replay")
	// The refresh token is read from the body only.
	q := s.signIn(t, seen, "carol", pwCarol)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/refresh?refresh_token="+q.RefreshToken, "", map[string]string{}),
		http.StatusBadRequest, "refresh token in the query string")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/refresh", "", map[string]string{"refresh_token": q.RefreshToken, "user": "x"}),
		http.StatusBadRequest, "unknown field")

	// Concurrent refreshes with one token: exactly one wins.
	race := s.signIn(t, seen, "carol", pwCarol)
	var wg sync.WaitGroup
	statuses := make(chan int, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(s.base+"/api/auth/refresh", "application/json",
				strings.NewReader(`{"refresh_token":"`+race.RefreshToken+`"}`))
			if err != nil {
				statuses <- 0
				return
			}
			var p tokenPair
			_ = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			seen.add(p.AccessToken, p.RefreshToken)
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	wins := 0
	for st := range statuses {
		switch st {
		case http.StatusOK:
			wins++
		case http.StatusUnauthorized:
		default:
			t.Fatalf("concurrent refresh answered %d", st)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent refreshes succeeded, want 1", wins)
	}

	// Logout ends the session: its access token stops working at once, and so
	// does its refresh token. Other sessions live on.
	out := s.signIn(t, seen, "carol", pwCarol)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/logout", out.AccessToken, nil), http.StatusNoContent, "logout")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", out.AccessToken, nil), http.StatusUnauthorized, "access token after logout")
	_, r = s.refreshTokens(t, seen, out.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "refresh token after logout")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", q.AccessToken, nil), http.StatusOK, "another session after logout")

	// Sessions: carol sees hers, never a token, and ends one of them.
	x := s.signIn(t, seen, "carol", pwCarol)
	y := s.signIn(t, seen, "carol", pwCarol)
	r = s.do(t, http.MethodGet, "/api/auth/sessions", x.AccessToken, nil)
	expectStatus(t, r, http.StatusOK, "own sessions")
	for _, secret := range seen.list() {
		if secret != "" && strings.Contains(string(r.body), secret) {
			t.Fatal("the session list shows a token")
		}
	}
	var mine []sessionBody
	r.json(t, &mine)
	xID := currentSession(t, mine)
	yID := currentSession(t, s.sessions(t, y.AccessToken, "/api/auth/sessions"))
	if xID == yID || len(mine) < 3 {
		t.Fatalf("sessions %+v", mine)
	}
	for _, m := range mine {
		if m.IP != "127.0.0.1" || !strings.HasPrefix(m.UserAgent, "e2e-sessions/") && m.UserAgent != "Go-http-client/1.1" ||
			m.CreatedAt.IsZero() || !m.ExpiresAt.After(m.CreatedAt.Add(29*24*time.Hour)) {
			t.Fatalf("session %+v", m)
		}
	}
	page := s.do(t, http.MethodGet, "/api/auth/sessions?limit=1", x.AccessToken, nil)
	expectStatus(t, page, http.StatusOK, "first page")
	if page.header.Get("X-Next-Cursor") == "" {
		t.Fatal("a full page has no next cursor")
	}
	aliceSessions := s.sessions(t, aliceTok, "/api/auth/sessions")
	aliceSession := currentSession(t, aliceSessions)
	expectStatus(t, s.do(t, http.MethodDelete, "/api/auth/sessions/"+aliceSession, x.AccessToken, nil), http.StatusNotFound, "ending someone else's session")
	expectStatus(t, s.do(t, http.MethodDelete, "/api/auth/sessions/01900000-0000-7000-8000-000000000000", x.AccessToken, nil), http.StatusNotFound, "ending a missing session")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", aliceTok, nil), http.StatusOK, "alice after carol's attempt")
	expectStatus(t, s.do(t, http.MethodDelete, "/api/auth/sessions/"+yID, x.AccessToken, nil), http.StatusNoContent, "ending y")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", y.AccessToken, nil), http.StatusUnauthorized, "y after it was ended")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", x.AccessToken, nil), http.StatusOK, "x after y was ended")

	// Administrators see and end a user's sessions in their own tenant only.
	expectStatus(t, s.do(t, http.MethodGet, "/api/users/"+alice.ID+"/sessions", x.AccessToken, nil), http.StatusForbidden, "analyst lists admin's sessions")
	expectStatus(t, s.do(t, http.MethodGet, "/api/users/"+carol.ID+"/sessions", bobTok, nil), http.StatusNotFound, "other tenant lists")
	expectStatus(t, s.do(t, http.MethodDelete, "/api/users/"+carol.ID+"/sessions", bobTok, nil), http.StatusNotFound, "other tenant ends")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", x.AccessToken, nil), http.StatusOK, "carol after the other tenant's attempt")
	listed := s.sessions(t, aliceTok, "/api/users/"+carol.ID+"/sessions")
	if len(listed) == 0 || listed[0].Current {
		t.Fatalf("admin sees %+v", listed)
	}
	expectStatus(t, s.do(t, http.MethodDelete, "/api/users/"+carol.ID+"/sessions", aliceTok, nil), http.StatusNoContent, "admin ends carol's sessions")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", x.AccessToken, nil), http.StatusUnauthorized, "carol after the admin ended her sessions")
	_, r = s.refreshTokens(t, seen, x.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "carol's refresh after the admin ended her sessions")
	if left := s.sessions(t, aliceTok, "/api/users/"+carol.ID+"/sessions"); len(left) != 0 {
		t.Fatalf("carol still has %d sessions", len(left))
	}

	// Changing one's password ends every session of the account.
	z := s.signIn(t, seen, "carol", pwCarol)
	const pwCarol2 = "carol's second sessions password"
	r = s.do(t, http.MethodPatch, "/api/users/"+carol.ID, z.AccessToken, map[string]string{"password": pwCarol2, "current_password": pwCarol})
	expectStatus(t, r, http.StatusOK, "password change")
	_, r = s.refreshTokens(t, seen, z.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "refresh after a password change")

	// API keys: created by a tenant admin, shown once, usable as a bearer
	// token with their own role, recorded as the actor.
	inMonth := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	carolTok := s.signIn(t, seen, "carol", pwCarol2).AccessToken
	expectStatus(t, s.do(t, http.MethodPost, "/api/apikeys", carolTok, map[string]string{"name": "x", "role": "viewer", "expires_at": inMonth}),
		http.StatusForbidden, "analyst creates a key")
	expectStatus(t, s.do(t, http.MethodPost, "/api/apikeys", admin, map[string]string{"name": "x", "role": "viewer", "expires_at": inMonth}),
		http.StatusForbidden, "platform admin creates a key")
	for _, bad := range []struct {
		body any
		want int
	}{
		{map[string]string{"name": "x", "role": "platform_admin", "expires_at": inMonth}, http.StatusBadRequest},
		{map[string]string{"name": "x", "role": "viewer"}, http.StatusBadRequest},
		{map[string]string{"name": "x", "role": "viewer", "expires_at": time.Now().AddDate(1, 0, 3).UTC().Format(time.RFC3339)}, http.StatusUnprocessableEntity},
		{map[string]string{"name": "x", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"}, http.StatusUnprocessableEntity},
		{map[string]string{"name": "", "role": "viewer", "expires_at": inMonth}, http.StatusBadRequest},
		{map[string]string{"name": "x", "role": "viewer", "expires_at": inMonth, "tenant_id": tenantB.ID}, http.StatusBadRequest},
		{`name=x`, http.StatusUnsupportedMediaType},
	} {
		r := s.do(t, http.MethodPost, "/api/apikeys", aliceTok, bad.body)
		if bad.want == http.StatusUnsupportedMediaType {
			r = s.do(t, http.MethodPost, "/api/apikeys", aliceTok, bad.body, "Content-Type", "text/plain")
		}
		expectStatus(t, r, bad.want, "bad key request")
		r.errorCode(t)
	}
	type keyBody struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		Role      string    `json:"role"`
		Key       string    `json:"key"`
		Status    string    `json:"status"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	listKeys := func(token string) ([]keyBody, response) {
		r := s.do(t, http.MethodGet, "/api/apikeys", token, nil)
		expectStatus(t, r, http.StatusOK, "list keys")
		var out []keyBody
		r.json(t, &out)
		return out, r
	}
	if keys, _ := listKeys(aliceTok); len(keys) != 0 {
		t.Fatalf("refused requests created keys: %+v", keys)
	}
	createKey := func(name, role, expires string) keyBody {
		r := s.do(t, http.MethodPost, "/api/apikeys", aliceTok, map[string]string{"name": name, "role": role, "expires_at": expires})
		expectStatus(t, r, http.StatusCreated, "create key "+name)
		var k keyBody
		r.json(t, &k)
		if !strings.HasPrefix(k.Key, "vck_"+k.ID+"_") || k.Role != role || k.Name != name {
			t.Fatalf("created key %+v", k)
		}
		seen.add(k.Key, strings.TrimPrefix(k.Key, "vck_"+k.ID+"_"))
		return k
	}
	adminKey := createKey("provisioning", "admin", inMonth)
	viewerKey := createKey("dashboard", "viewer", inMonth)
	keys, kr := listKeys(aliceTok)
	if len(keys) != 2 || keys[0].ID != viewerKey.ID || keys[0].Key != "" || keys[0].Status != "active" || strings.Contains(string(kr.body), adminKey.Key[len(adminKey.Key)-43:]) {
		t.Fatalf("key list %s", kr.body)
	}
	if other, _ := listKeys(bobTok); len(other) != 0 {
		t.Fatalf("tenant B lists tenant A's keys: %+v", other)
	}

	// The admin key creates a user; the event names the key as the actor.
	r = s.do(t, http.MethodPost, "/api/users", adminKey.Key, map[string]string{"username": "erin", "password": "erin's sessions password", "role": "viewer"})
	expectStatus(t, r, http.StatusCreated, "key creates a user")
	var erin userBody
	r.json(t, &erin)
	if erin.TenantID != tenantA.ID {
		t.Fatalf("the key created erin in %s", erin.TenantID)
	}
	r = s.do(t, http.MethodGet, "/api/users?min_position="+itoa64(erin.Position), viewerKey.Key, nil)
	expectStatus(t, r, http.StatusForbidden, "viewer key lists users")
	r = s.do(t, http.MethodGet, "/api/users?min_position="+itoa64(erin.Position), adminKey.Key, nil)
	expectStatus(t, r, http.StatusOK, "admin key lists users")
	r = s.do(t, http.MethodGet, "/api/tenants/"+tenantA.ID, viewerKey.Key, nil)
	expectStatus(t, r, http.StatusOK, "viewer key reads its tenant")
	expectStatus(t, s.do(t, http.MethodGet, "/api/tenants/"+tenantB.ID, adminKey.Key, nil), http.StatusNotFound, "key reads another tenant")
	expectStatus(t, s.do(t, http.MethodGet, "/api/users/"+carol.ID+"/sessions", adminKey.Key, nil), http.StatusForbidden, "key lists sessions")

	// Keys cannot use the routes of a signed-in person.
	for _, route := range []struct{ method, path string }{
		{http.MethodPost, "/api/auth/refresh"},
		{http.MethodPost, "/api/auth/logout"},
		{http.MethodGet, "/api/auth/sessions"},
		{http.MethodDelete, "/api/auth/sessions/" + xID},
		{http.MethodDelete, "/api/users/" + carol.ID + "/sessions"},
		{http.MethodGet, "/api/auth/me"},
		{http.MethodGet, "/api/apikeys"},
		{http.MethodPost, "/api/apikeys"},
		{http.MethodDelete, "/api/apikeys/" + viewerKey.ID},
	} {
		var body any
		if route.method == http.MethodPost {
			body = map[string]string{"refresh_token": z.RefreshToken}
		}
		r := s.do(t, route.method, route.path, adminKey.Key, body)
		expectStatus(t, r, http.StatusForbidden, "admin key on "+route.method+" "+route.path)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/tenants/"+tenantA.ID, viewerKey.Key, nil), http.StatusOK, "viewer key was not revoked by the refused call")

	// Cross-tenant revocation is not found and changes nothing; the owner's works at once.
	expectStatus(t, s.do(t, http.MethodDelete, "/api/apikeys/"+viewerKey.ID, bobTok, nil), http.StatusNotFound, "other tenant revokes")
	expectStatus(t, s.do(t, http.MethodGet, "/api/tenants/"+tenantA.ID, viewerKey.Key, nil), http.StatusOK, "key after the other tenant's attempt")
	expectStatus(t, s.do(t, http.MethodDelete, "/api/apikeys/"+viewerKey.ID, carolTok, nil), http.StatusForbidden, "analyst revokes")
	expectStatus(t, s.do(t, http.MethodDelete, "/api/apikeys/"+viewerKey.ID, aliceTok, nil), http.StatusNoContent, "revoke")
	r = s.do(t, http.MethodGet, "/api/tenants/"+tenantA.ID, viewerKey.Key, nil)
	expectStatus(t, r, http.StatusUnauthorized, "revoked key")
	if r.errorCode(t) != "api_key_invalid" {
		t.Fatalf("revoked key answered %s", r.body)
	}
	// A tampered secret is refused like an unknown key.
	tampered := adminKey.Key[:len(adminKey.Key)-2] + "AA"
	if tampered == adminKey.Key {
		tampered = adminKey.Key[:len(adminKey.Key)-2] + "BB"
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/tenants/"+tenantA.ID, tampered, nil), http.StatusUnauthorized, "tampered key")
	if keys, _ := listKeys(aliceTok); keys[0].Status != "revoked" {
		t.Fatalf("revoked key listed as %+v", keys[0])
	}
	// A key expires by itself.
	soon := createKey("short-lived", "viewer", time.Now().Add(2*time.Second).UTC().Format(time.RFC3339Nano))
	eventually(t, 15*time.Second, "the short-lived key to expire", func() bool {
		return s.do(t, http.MethodGet, "/api/tenants/"+tenantA.ID, soon.Key, nil).status == http.StatusUnauthorized
	})

	// What was recorded: the sign-ins' sessions, the replay as a security
	// event, logout and revocations, the key as the actor; and no token or
	// key anywhere in the events or the server's output.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	events := pgx.Identifier{s.schema(), "events"}.Sanitize()
	var actor, actorType, by string
	if err := conn.QueryRow(ctx, `SELECT metadata->>'actor', metadata->>'actor_type', payload->>'by' FROM `+events+`
		WHERE name = 'user.registered' AND payload->>'username' = 'erin'`).Scan(&actor, &actorType, &by); err != nil {
		t.Fatal(err)
	}
	if actor != "apikey:"+adminKey.ID || actorType != "api_key" || by != actor {
		t.Fatalf("erin's registration recorded actor %q (%s), by %q", actor, actorType, by)
	}
	var reuses int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+events+` WHERE name = 'user.refresh_token_reused'
		AND stream_id = $1 AND payload->>'source_ip' = '127.0.0.1' AND payload->>'session' <> ''`, carol.ID).Scan(&reuses); err != nil {
		t.Fatal(err)
	}
	if reuses != 1 {
		t.Fatalf("%d refresh_token_reused events, want 1", reuses)
	}
	counts := map[string]int{}
	rows, err := conn.Query(ctx, `SELECT name, payload::text, metadata::text FROM `+events)
	if err != nil {
		t.Fatal(err)
	}
	all := seen.list()
	for rows.Next() {
		var name, payload, md string
		if err := rows.Scan(&name, &payload, &md); err != nil {
			t.Fatal(err)
		}
		counts[name]++
		for _, secret := range all {
			if secret != "" && (strings.Contains(payload, secret) || strings.Contains(md, secret)) {
				t.Fatalf("event %s carries a token or key", name)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, want := range []string{"user.session_started", "user.logged_out", "user.session_revoked", "user.refresh_token_reused",
		"apikey.created", "apikey.revoked"} {
		if counts[want] == 0 {
			t.Fatalf("no %s event; have %v", want, counts)
		}
	}
	stdout, stderr := s.output()
	for _, secret := range all {
		if secret != "" && (strings.Contains(stdout, secret) || strings.Contains(stderr, secret)) {
			t.Fatal("the server's output carries a token or key")
		}
	}
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
