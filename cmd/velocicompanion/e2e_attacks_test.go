package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"velocicompanion/adapters/auth"
	"velocicompanion/adapters/mail/mailtest"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// The attack cases of issue 3: what a security team will try against the API.
// Each test starts one server; the cases are table-driven where they can be.
//
// Covered elsewhere, and referenced here rather than repeated:
//   - the expiry of a password-reset token, with an injected clock:
//     commands.TestPasswordResetTokens (commands/recovery_test.go);
//   - refresh races within the reuse grace (two tabs), logout, API keys on
//     person-only routes: TestEndToEndSessionsAndAPIKeys;
//   - cross-tenant access on every route: TestMatrixRoleRoute.
//
// Choices these tests pin down: an administrator registering a taken user
// name gets 409 (only administrators can register, so it enumerates nothing
// an anonymous caller could); a signed token whose exp is a JSON string of
// digits is accepted (golang-jwt's NumericDate reads it; only the key's
// holder can sign one), so it is not among the forgeries.

// attackJWTSecret is the server's HMAC key in these tests, so that tokens can
// be forged precisely: valid in every respect but one.
const attackJWTSecret = "e2e attack tests: a known 32+ byte JWT key"

func attackPassword(name string) string { return "attack password of " + name }

// authErrors are the codes a refused credential may answer with; none says
// more about why.
var attackAuthErrors = []string{"not_authenticated", "token_invalid", "token_expired", "token_revoked"}

func attackRefused(t *testing.T, r response, what string) {
	t.Helper()
	expectStatus(t, r, http.StatusUnauthorized, what)
	if code := r.errorCode(t); !slices.Contains(attackAuthErrors, code) {
		t.Fatalf("%s: error code %q, want one of %v", what, code, attackAuthErrors)
	}
}

// TestAttackForgedTokens forges access tokens with the server's own key and
// with others: every deviation from a genuine token is refused on every kind
// of route, and a genuine claim of a higher role grants nothing.
func TestAttackForgedTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t, "VC_JWT_SECRET="+attackJWTSecret)
	w := newSecWorld(t, s, attackPassword)
	key := []byte(attackJWTSecret)
	header, claims := secJWTDecode(t, w.viewer.token)
	if header["alg"] != "HS256" || header["kid"] == nil || claims["sid"] == nil || claims["typ"] != "access" {
		t.Fatalf("the viewer's token is not what these cases assume: %v %v", header, claims)
	}
	sig := w.viewer.token[strings.LastIndex(w.viewer.token, ".")+1:]
	sign := func(h, c map[string]any) string { return secJWTHMAC(t, h, c, secHS256, key) }
	keep := func(h, c map[string]any) string { return secJWTSigningInput(t, h, c) + "." + sig } // the original signature
	none := func(alg string) string {
		return secJWTSigningInput(t, secJWTWith(header, "alg", alg), claims) + "."
	}
	now := time.Now()
	at := func(d time.Duration) json.Number { return json.Number(fmt.Sprint(now.Add(d).Unix())) }
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := []byte(secRandomHex(32))
	epoch, err := claims["epoch"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	mfa, _, err := (&auth.Issuer{Key: key, Issuer: "velocicompanion", Audience: "velocicompanion-api"}).IssueMFA(auth.Subject{
		User: domain.UserID(w.viewer.id), Tenant: domain.TenantID(w.tenantA), Role: users.RoleViewer,
		Session: claims["sid"].(string), Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}

	// The harness works: the genuine claims, signed anew with the key, pass.
	control := sign(header, claims)
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", control, nil), http.StatusOK, "control: the genuine claims re-signed")
	if code := mxSocket(t, s, control); code != http.StatusSwitchingProtocols {
		t.Fatalf("control: socket %d", code)
	}

	forged := []struct{ name, token string }{
		// Algorithms: only HS256 with the server's key is accepted.
		{"alg none, no signature", none("none")},
		{"alg None", none("None")},
		{"alg NONE", none("NONE")},
		{"alg none, original signature kept", secJWTSigningInput(t, secJWTWith(header, "alg", "none"), claims) + "." + sig},
		{"alg missing", secJWTSigningInput(t, secJWTWith(header, "alg", nil), claims) + "." + sig},
		{"HS256 with another key", secJWTHMAC(t, header, claims, secHS256, otherKey)},
		{"HS256 with an empty key", secJWTHMAC(t, header, claims, secHS256, nil)},
		{"HS384 with the server's key", secJWTHMAC(t, secJWTWith(header, "alg", "HS384"), claims, secHS384, key)},
		{"HS512 with the server's key", secJWTHMAC(t, secJWTWith(header, "alg", "HS512"), claims, secHS512, key)},
		{"RS256 with the attacker's key", secJWTRS256(t, secJWTWith(header, "alg", "RS256"), claims, attacker)},
		{"RS256 with the attacker's key announced in jwk", secJWTRS256(t, secJWTWith(header, "alg", "RS256", "jwk", map[string]any{
			"kty": "RSA", "e": "AQAB", "n": secB64.EncodeToString(attacker.N.Bytes())}), claims, attacker)},
		{"RS256 header, HMAC with the server's key (algorithm confusion)", secJWTHMAC(t, secJWTWith(header, "alg", "RS256"), claims, secHS256, key)},
		{"ES256 header, HMAC with the server's key", secJWTHMAC(t, secJWTWith(header, "alg", "ES256"), claims, secHS256, key)},
		{"jku pointing elsewhere, another key", secJWTHMAC(t, secJWTWith(header, "jku", "https://evil.example/jwks.json"), claims, secHS256, otherKey)},
		// Key ids.
		{"no kid", sign(secJWTWith(header, "kid", nil), claims)},
		{"unknown kid", sign(secJWTWith(header, "kid", "attacker"), claims)},
		{"kid path traversal, empty key", secJWTHMAC(t, secJWTWith(header, "kid", "../../../../../../dev/null"), claims, secHS256, nil)},
		{"kid SQL injection", secJWTHMAC(t, secJWTWith(header, "kid", "x' UNION SELECT 'k'--"), claims, secHS256, []byte("k"))},
		// Claims changed under the original signature.
		{"role changed, original signature", keep(header, secJWTWith(claims, "role", "platform_admin"))},
		{"tid changed, original signature", keep(header, secJWTWith(claims, "tid", w.tenantB))},
		{"sub changed, original signature", keep(header, secJWTWith(claims, "sub", w.admin.id))},
		{"exp extended, original signature", keep(header, secJWTWith(claims, "exp", at(24*time.Hour)))},
		{"signature of another token", secJWTSigningInput(t, header, claims) + "." + w.analyst.token[strings.LastIndex(w.analyst.token, ".")+1:]},
		// Signed with the server's key, one claim wrong.
		{"expired an hour ago", sign(header, secJWTWith(claims, "iat", at(-2*time.Hour), "exp", at(-time.Hour)))},
		{"expired beyond the leeway", sign(header, secJWTWith(claims, "iat", at(-time.Hour), "exp", at(-2*auth.Leeway)))},
		{"no exp", sign(header, secJWTWith(claims, "exp", nil))},
		{"no iat", sign(header, secJWTWith(claims, "iat", nil))},
		{"iat in the future", sign(header, secJWTWith(claims, "iat", at(time.Hour), "exp", at(2*time.Hour)))},
		{"nbf in the future", sign(header, secJWTWith(claims, "nbf", at(time.Hour)))},
		{"wrong iss", sign(header, secJWTWith(claims, "iss", "https://evil.example"))},
		{"no iss", sign(header, secJWTWith(claims, "iss", nil))},
		{"wrong aud", sign(header, secJWTWith(claims, "aud", []string{"another-api"}))},
		{"no aud", sign(header, secJWTWith(claims, "aud", nil))},
		{"typ mfa", sign(header, secJWTWith(claims, "typ", "mfa"))},
		{"typ refresh", sign(header, secJWTWith(claims, "typ", "refresh"))},
		{"no typ", sign(header, secJWTWith(claims, "typ", nil))},
		{"no jti", sign(header, secJWTWith(claims, "jti", nil))},
		{"no sub", sign(header, secJWTWith(claims, "sub", nil))},
		{"no tid", sign(header, secJWTWith(claims, "tid", nil))},
		{"role not a role", sign(header, secJWTWith(claims, "role", "root"))},
		{"no sid", sign(header, secJWTWith(claims, "sid", nil))},
		{"unknown sid", sign(header, secJWTWith(claims, "sid", "01900000-0000-7000-8000-000000000000"))},
		{"another user's sub on this session", sign(header, secJWTWith(claims, "sub", w.admin.id, "role", "admin"))},
		{"tenant B's user on this session", sign(header, secJWTWith(claims, "sub", w.adminB.id, "tid", w.tenantB, "role", "admin"))},
		{"tid of tenant B", sign(header, secJWTWith(claims, "tid", w.tenantB))},
		{"stale epoch", sign(header, secJWTWith(claims, "epoch", epoch-1))},
		{"future epoch", sign(header, secJWTWith(claims, "epoch", epoch+1))},
		{"oversized", sign(header, secJWTWith(claims, "pad", strings.Repeat("A", auth.MaxTokenLen)))},
		{"an MFA token of the same session", mfa},
		// Shapes.
		{"four segments", w.viewer.token + ".x"},
		{"two segments", w.viewer.token[:strings.LastIndex(w.viewer.token, ".")]},
		{"padded base64", strings.Replace(w.viewer.token, ".", "=.", 1)},
		{"garbage", "not.a.token"},
	}
	probes := []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/api/auth/me", nil},                                 // any signed-in person
		{http.MethodGet, "/api/cases", nil},                                   // a tenant read
		{http.MethodPost, "/api/cases", map[string]string{"title": "pwned"}},  // a tenant write
		{http.MethodGet, "/api/users", nil},                                   // administrators only
		{http.MethodPost, "/api/tenants", map[string]string{"name": "Pwned"}}, // platform administrators only
	}
	for _, f := range forged {
		for _, p := range probes {
			attackRefused(t, s.do(t, p.method, p.path, f.token, p.body), f.name+": "+p.method+" "+p.path)
		}
		// The socket closes with 1008 (policy violation), or for a token
		// longer than its message limit with 1009 (message too big).
		if code := mxSocket(t, s, f.token); code != websocket.ClosePolicyViolation && code != websocket.CloseMessageTooBig {
			t.Fatalf("%s: the notification socket answered %d, want a 1008 close", f.name, code)
		}
	}
	r := s.do(t, http.MethodGet, "/api/auth/me", forged[0].token, nil)
	if code := r.errorCode(t); code != "token_invalid" {
		t.Fatalf("alg none answered %q, want token_invalid", code)
	}
	r = s.do(t, http.MethodGet, "/api/auth/me", forged[slices.IndexFunc(forged, func(f struct{ name, token string }) bool {
		return f.name == "expired an hour ago"
	})].token, nil)
	if code := r.errorCode(t); code != "token_expired" {
		t.Fatalf("an expired token answered %q, want token_expired", code)
	}

	// A genuine signature over a higher role grants nothing: the role is
	// taken from the account on every request.
	for _, role := range []string{"admin", "platform_admin"} {
		elevated := sign(header, secJWTWith(claims, "role", role))
		expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", elevated, nil), http.StatusOK, "viewer's session claiming "+role)
		expectStatus(t, s.do(t, http.MethodGet, "/api/users", elevated, nil), http.StatusForbidden, "viewer claiming "+role+" lists users")
		expectStatus(t, s.do(t, http.MethodPost, "/api/cases", elevated, map[string]string{"title": "pwned"}), http.StatusForbidden, "viewer claiming "+role+" opens a case")
		expectStatus(t, s.do(t, http.MethodPost, "/api/tenants", elevated, map[string]string{"name": "Pwned " + role}), http.StatusForbidden, "viewer claiming "+role+" creates a tenant")
	}
	// Nothing of the above wrote anything.
	r = s.do(t, http.MethodGet, "/api/cases", w.admin.token, nil)
	expectStatus(t, r, http.StatusOK, "tenant A's cases")
	if strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("forged tokens opened cases: %s", r.body)
	}
	r = s.do(t, http.MethodGet, "/api/tenants", w.root.token, nil)
	expectStatus(t, r, http.StatusOK, "tenants")
	if strings.Contains(string(r.body), "Pwned") {
		t.Fatalf("a forged token created a tenant: %s", r.body)
	}
}

// TestAttackRefreshTokens runs with no reuse grace, so that every second use
// of a refresh token is a replay: the whole session (token family) ends.
func TestAttackRefreshTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t, "VC_REFRESH_REUSE_GRACE=0s")
	w := newSecWorld(t, s, attackPassword)
	u := w.spare

	// Replay: p0 is exchanged for p1, p1 for p2; p0 comes back.
	p0 := s.secSignIn(t, u.name, u.password)
	p1, r := s.secRefresh(t, p0.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh p0")
	p2, r := s.secRefresh(t, p1.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh p1")
	_, replay := s.secRefresh(t, p0.RefreshToken)
	expectStatus(t, replay, http.StatusUnauthorized, "replay of p0")
	_, r = s.secRefresh(t, p2.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "the newest refresh token after the replay")
	for name, tok := range map[string]string{"p0": p0.AccessToken, "p1": p1.AccessToken, "p2": p2.AccessToken} {
		attackRefused(t, s.do(t, http.MethodGet, "/api/auth/me", tok, nil), "access token "+name+" after the replay")
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", u.token, nil), http.StatusOK, "another session of the same user lives on")
	_, unknown := s.secRefresh(t, strings.Repeat("A", 43))
	if replay.status != unknown.status || string(replay.body) != string(unknown.body) {
		t.Fatalf("a replay answers %d %s, an unknown token %d %s", replay.status, replay.body, unknown.status, unknown.body)
	}
	conn := secPGConn(t)
	var reuses int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{s.schema(), "events"}.Sanitize()+`
		WHERE name = 'user.refresh_token_reused' AND stream_id = $1`, u.id).Scan(&reuses); err != nil {
		t.Fatal(err)
	}
	if reuses != 1 {
		t.Fatalf("%d user.refresh_token_reused events, want 1", reuses)
	}

	// Eight concurrent exchanges of one token: exactly one wins.
	race := s.secSignIn(t, u.name, u.password)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Go(func() {
			resp, err := http.Post(s.base+"/api/auth/refresh", "application/json",
				strings.NewReader(`{"refresh_token":"`+race.RefreshToken+`"}`))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	wins := 0
	for _, st := range statuses {
		switch st {
		case http.StatusOK:
			wins++
		case http.StatusUnauthorized:
		default:
			// The losers are replays (no grace); each must be refused like
			// any invalid token, however its recording fares.
			t.Errorf("a concurrent refresh was refused with %d, not 401 (statuses %v)", st, statuses)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of 8 concurrent refreshes succeeded, want exactly 1 (statuses %v)", wins, statuses)
	}

	// A refresh token is no access token, nor the other way round, and it is
	// read from the body only.
	q := s.secSignIn(t, u.name, u.password)
	attackRefused(t, s.do(t, http.MethodGet, "/api/auth/me", q.RefreshToken, nil), "refresh token as a bearer token")
	_, r = s.secRefresh(t, q.AccessToken)
	expectStatus(t, r, http.StatusUnauthorized, "access token as a refresh token")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/refresh?refresh_token="+url.QueryEscape(q.RefreshToken), "", map[string]string{}),
		http.StatusBadRequest, "refresh token in the query string")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/refresh", q.RefreshToken, map[string]string{}),
		http.StatusBadRequest, "refresh token in the Authorization header")
	_, r = s.secRefresh(t, q.RefreshToken)
	expectStatus(t, r, http.StatusOK, "the refused attempts did not spend the token")
}

// TestAttackRecoveryAndEnumeration: password-reset tokens are single use,
// superseded, bound to their purpose and read from the body only; the
// answers do not tell whether an account exists; the per-address limit does
// not believe X-Forwarded-For.
func TestAttackRecoveryAndEnumeration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	mp := mailtest.Start(t)
	s := startServer(t, mp.Env()...)
	w := newSecWorld(t, s, attackPassword)
	u := w.spare
	reset := func(email string, headers ...string) response {
		return s.do(t, http.MethodPost, "/api/auth/password-reset/request", "", map[string]string{"email": email}, headers...)
	}
	confirm := func(token, password string) response {
		return s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": token, "new_password": password})
	}

	t.Run("reset tokens", func(t *testing.T) {
		session := s.secSignIn(t, u.name, u.password)
		expectStatus(t, reset(u.email), http.StatusOK, "first reset request")
		first := mailedToken(t, mp, u.email, "password", 1)
		expectStatus(t, reset(strings.ToUpper(u.email)), http.StatusOK, "second reset request")
		second := mailedToken(t, mp, u.email, "password", 2)
		// A reset token is no access token.
		attackRefused(t, s.do(t, http.MethodGet, "/api/auth/me", second, nil), "reset token as a bearer token")
		// Nor a verification token; and a verification token resets nothing.
		expectStatus(t, s.do(t, http.MethodPost, "/api/auth/verify-email/confirm", "", map[string]string{"token": second}),
			http.StatusBadRequest, "reset token as a verification token")
		expectStatus(t, s.do(t, http.MethodPost, "/api/auth/verify-email/request", u.token, nil), http.StatusAccepted, "verification request")
		verify := mailedToken(t, mp, u.email, "verify", 1)
		expectStatus(t, confirm(verify, "a password set by a verification token"), http.StatusBadRequest, "verification token as a reset token")
		// Supersession, the query string, single use.
		expectStatus(t, confirm(first, "a password set by a superseded token"), http.StatusBadRequest, "superseded token")
		r := s.do(t, http.MethodPost, "/api/auth/password-reset/confirm?token="+second, "", map[string]string{"new_password": "a password set from the query"})
		expectStatus(t, r, http.StatusBadRequest, "token in the query string")
		const newPassword = "the password after the reset"
		expectStatus(t, confirm(second, newPassword), http.StatusOK, "reset")
		r = confirm(second, "a password set by a used token")
		expectStatus(t, r, http.StatusBadRequest, "used token")
		unknown := confirm(strings.Repeat("A", len(second)), "a password set by a made-up token")
		if r.status != unknown.status || string(r.body) != string(unknown.body) {
			t.Fatalf("a used token answers %d %s, a made-up one %d %s", r.status, r.body, unknown.status, unknown.body)
		}
		// The reset ended the sessions that existed before it.
		attackRefused(t, s.do(t, http.MethodGet, "/api/auth/me", session.AccessToken, nil), "access token from before the reset")
		_, r = s.secRefresh(t, session.RefreshToken)
		expectStatus(t, r, http.StatusUnauthorized, "refresh token from before the reset")
		for _, pw := range []string{u.password, "a password set by a superseded token", "a password set by a verification token",
			"a password set by a used token"} { // fewer than users.FreeLoginFailures: no throttling
			r := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": u.name, "password": pw})
			expectStatus(t, r, http.StatusUnauthorized, "sign in with "+pw)
		}
		u.password = newPassword
		u.token = s.login(t, u.name, u.password)
		// The expiry of a token is commands.TestPasswordResetTokens's, with an injected clock.
	})

	t.Run("enumeration", func(t *testing.T) {
		same := func(what string, a, b response) {
			t.Helper()
			if a.status != b.status || string(a.body) != string(b.body) || a.header.Get("WWW-Authenticate") != b.header.Get("WWW-Authenticate") {
				t.Errorf("%s: %d %s versus %d %s", what, a.status, a.body, b.status, b.body)
			}
		}
		// Each comparison comes from its own address, so that the
		// per-address sign-in limit does not answer for both.
		ip := 60
		login := func(name, pw string) response {
			ip++
			return s.secDoFrom(t, fmt.Sprintf("127.0.0.%d", ip), http.MethodPost, "/api/auth/login", "", map[string]string{"username": name, "password": pw})
		}
		// A wrong password, an unknown user, a disabled and a deleted one
		// answer alike (while the password is wrong).
		mk := func(name string) *secUser {
			x := &secUser{name: name, password: attackPassword(name)}
			r := s.do(t, http.MethodPost, "/api/users", w.admin.token, map[string]string{"username": name, "password": x.password})
			expectStatus(t, r, http.StatusCreated, "create "+name)
			var b userBody
			r.json(t, &b)
			x.id = b.ID
			return x
		}
		disabled, deleted := mk("dora"), mk("dean")
		expectStatus(t, s.do(t, http.MethodPatch, "/api/users/"+disabled.id, w.admin.token, map[string]bool{"is_active": false}), http.StatusOK, "disable dora")
		expectStatus(t, s.do(t, http.MethodDelete, "/api/users/"+deleted.id, w.admin.token, nil), http.StatusNoContent, "delete dean")
		base := login("nobody-at-all", "a wrong password 1")
		expectStatus(t, base, http.StatusUnauthorized, "unknown user")
		same("wrong password / unknown user", login(w.analyst.name, "a wrong password 1"), base)
		same("disabled user / unknown user", login(disabled.name, "a wrong password 1"), base)
		same("deleted user, right password / unknown user", login(deleted.name, deleted.password), base)
		same("user name in other case / unknown user", login(strings.ToUpper(w.analyst.name), "a wrong password 1"), base)

		// Password-reset requests: known, unknown, differently cased, and a
		// known address whose account is disabled.
		known := reset(w.analyst.email)
		expectStatus(t, known, http.StatusOK, "reset request")
		same("reset request: known / unknown address", known, reset("nobody@nowhere.example"))
		same("reset request: known / upper-case address", known, reset(strings.ToUpper(w.admin.email)))

		// Anonymous registration is closed: a taken and a free name answer
		// alike. (Administrators registering a taken name get 409
		// username_taken, which the issue allows: only they can ask.)
		taken := s.do(t, http.MethodPost, "/api/auth/register", "", map[string]string{"username": w.analyst.name, "password": "a password of mallory"})
		free := s.do(t, http.MethodPost, "/api/auth/register", "", map[string]string{"username": "mallory", "password": "a password of mallory"})
		expectStatus(t, taken, http.StatusForbidden, "anonymous registration")
		same("anonymous registration: taken / free name", taken, free)
		r := s.do(t, http.MethodPost, "/api/auth/register", w.admin.token, map[string]string{"username": w.analyst.name, "password": "a password of mallory"})
		expectStatus(t, r, http.StatusConflict, "an administrator registers a taken name")

		// Throttling must not tell a real account from a made-up one: after
		// more failures than are free, both answer alike.
		target := mk("thea")
		for i := 0; i <= users.FreeLoginFailures+1; i++ {
			a := s.secDoFrom(t, "127.0.0.40", http.MethodPost, "/api/auth/login", "", map[string]string{"username": target.name, "password": "a wrong password 2"})
			b := s.secDoFrom(t, "127.0.0.41", http.MethodPost, "/api/auth/login", "", map[string]string{"username": "nobody-else", "password": "a wrong password 2"})
			same(fmt.Sprintf("failed sign-in %d: real account / unknown user", i+1), a, b)
		}
	})

	t.Run("per-address limit ignores forwarded headers", func(t *testing.T) {
		// The recovery routes allow each address a burst of requests. From
		// one address, with a different X-Forwarded-For (and X-Real-IP and
		// Forwarded) each time, the limit is still reached, and stays reached
		// for yet another claimed address: the headers are not believed (no
		// trusted proxies). Another real address is not limited.
		const ip = "127.0.0.50"
		request := func(from string, i int) response {
			fake := fmt.Sprintf("198.51.%d.%d", i/250, 1+i%250)
			return s.secDoFrom(t, from, http.MethodPost, "/api/auth/password-reset/request", "", map[string]string{"email": "nobody@nowhere.example"},
				"X-Forwarded-For", fake, "X-Real-IP", fake, "Forwarded", "for="+fake)
		}
		limited := 0
		for i := 0; i < 500 && limited == 0; i++ {
			switch r := request(ip, i); r.status {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				limited = i + 1
			default:
				t.Fatalf("reset request %d answered %d %s", i+1, r.status, r.body)
			}
		}
		if limited == 0 {
			t.Fatal("500 reset requests from one address, each claiming another, were all accepted")
		}
		t.Logf("request %d from one address was limited", limited)
		expectStatus(t, request(ip, 999), http.StatusTooManyRequests, "yet another claimed address after the limit")
		expectStatus(t, request("127.0.0.51", 0), http.StatusOK, "another real address")

		// Failed sign-ins are limited per address the same way. Each attempt
		// names another unknown user, so that only the address counts.
		const signInIP = "127.0.0.52"
		attempt := func(from string, i int) response {
			fake := fmt.Sprintf("198.51.%d.%d", i/250, 1+i%250)
			return s.secDoFrom(t, from, http.MethodPost, "/api/auth/login", "",
				map[string]string{"username": fmt.Sprintf("guess-%d", i), "password": "a guessed password"},
				"X-Forwarded-For", fake, "X-Real-IP", fake, "Forwarded", "for="+fake)
		}
		limited = 0
		for i := 0; i < 500 && limited == 0; i++ {
			switch r := attempt(signInIP, i); r.status {
			case http.StatusUnauthorized:
			case http.StatusTooManyRequests:
				limited = i + 1
			default:
				t.Fatalf("sign-in %d answered %d %s", i+1, r.status, r.body)
			}
		}
		if limited == 0 {
			t.Fatal("500 failed sign-ins from one address, each claiming another, were never limited")
		}
		t.Logf("failed sign-in %d from one address was limited", limited)
		expectStatus(t, attempt(signInIP, 999), http.StatusTooManyRequests, "a sign-in claiming yet another address after the limit")
		expectStatus(t, attempt("127.0.0.53", 1000), http.StatusUnauthorized, "a sign-in from another real address")
	})
}

// TestAttackRequests: where credentials are read from, what bodies may set,
// how big and of what type they may be, whose address is recorded, and which
// origins a browser may call from.
func TestAttackRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	const uiOrigin = "https://ui.example"
	s := startServer(t, "VC_CORS_ORIGINS="+uiOrigin)
	w := newSecWorld(t, s, attackPassword)
	alice := w.admin.token
	r := s.do(t, http.MethodPost, "/api/cases", alice, map[string]string{"title": "Attack case"})
	expectStatus(t, r, http.StatusCreated, "open a case")
	var kase struct{ ID string }
	r.json(t, &kase)
	r = s.do(t, http.MethodPost, "/api/apikeys", alice, map[string]string{"name": "attack key", "role": "admin",
		"expires_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
	expectStatus(t, r, http.StatusCreated, "create an API key")
	var key struct{ Key string }
	r.json(t, &key)

	t.Run("credentials in the query string or a cookie", func(t *testing.T) {
		routes := []struct {
			method, path string
			body         any
		}{
			{http.MethodGet, "/api/auth/me", nil},
			{http.MethodGet, "/api/tenants", nil},
			{http.MethodGet, "/api/users", nil},
			{http.MethodGet, "/api/cases/" + kase.ID, nil},
			{http.MethodPost, "/api/cases", map[string]string{"title": "from the query"}},
			{http.MethodGet, "/api/audit?format=csv", nil},
			{http.MethodPost, "/api/auth/verify-email/request", nil},
			{http.MethodPost, "/api/auth/logout", nil},
		}
		for _, cred := range []struct{ name, value string }{{"access token", alice}, {"API key", key.Key}} {
			for _, param := range []string{"access_token", "token", "jwt", "api_key", "apikey", "key", "auth", "authorization", "bearer"} {
				for _, rt := range routes {
					sep := "?"
					if strings.Contains(rt.path, "?") {
						sep = "&"
					}
					path := rt.path + sep + param + "=" + url.QueryEscape(cred.value)
					r := s.do(t, rt.method, path, "", rt.body)
					expectStatus(t, r, http.StatusUnauthorized, cred.name+" in ?"+param+" on "+rt.method+" "+rt.path)
					if code := r.errorCode(t); code != "not_authenticated" {
						t.Fatalf("%s in ?%s on %s %s: code %q, want not_authenticated", cred.name, param, rt.method, rt.path, code)
					}
				}
			}
			for _, rt := range routes {
				r := s.do(t, rt.method, rt.path, "", rt.body, "Cookie", "access_token="+cred.value+"; token="+cred.value+"; session="+cred.value)
				expectStatus(t, r, http.StatusUnauthorized, cred.name+" in a cookie on "+rt.method+" "+rt.path)
			}
			for _, scheme := range []string{"Token ", "Basic ", "JWT ", "", "Bearer:"} {
				r := s.do(t, http.MethodGet, "/api/auth/me", "", nil, "Authorization", scheme+cred.value)
				expectStatus(t, r, http.StatusUnauthorized, cred.name+" with scheme "+strings.TrimSpace(scheme))
			}
		}
		// Public routes whose credential travels in the body do not read it
		// from the query string either (with real tokens:
		// TestAttackRecoveryAndEnumeration, TestAttackRefreshTokens,
		// TestAttackTwoFactor).
		for _, c := range []struct {
			path string
			body map[string]string
		}{
			{"/api/auth/refresh?refresh_token=" + strings.Repeat("A", 43), map[string]string{}},
			{"/api/auth/password-reset/confirm?token=" + strings.Repeat("A", 43), map[string]string{"new_password": "a password from the query"}},
			{"/api/auth/verify-email/confirm?token=" + strings.Repeat("A", 43), map[string]string{}},
			{"/api/auth/login/mfa?mfa_token=" + url.QueryEscape(alice), map[string]string{"code": "123456"}},
		} {
			expectStatus(t, s.do(t, http.MethodPost, c.path, "", c.body), http.StatusBadRequest, "credential in the query string of "+c.path)
		}
		// The socket, too, ignores a token in the URL: its first message must
		// authenticate, and a ping is not that.
		conn, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(
			"ws"+strings.TrimPrefix(s.base, "http")+"/api/notifications/ws?access_token="+url.QueryEscape(alice)+"&token="+url.QueryEscape(alice), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.WriteJSON(map[string]string{"type": "ping"}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m map[string]any
		err = conn.ReadJSON(&m)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			t.Fatalf("socket with a token in the URL answered %v, %v; want a 1008 close", m, err)
		}
		// The credentials still work where they belong, and nothing was written.
		expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", alice, nil), http.StatusOK, "alice's token in the header")
		r := s.do(t, http.MethodGet, "/api/cases", alice, nil)
		if strings.Contains(string(r.body), "from the query") {
			t.Fatal("a credential in the query string opened a case")
		}
	})

	t.Run("mass assignment", func(t *testing.T) {
		conn := secPGConn(t)
		events := pgx.Identifier{s.schema(), "events"}.Sanitize()
		snapshot := func(u *secUser) string {
			t.Helper()
			r := s.do(t, http.MethodGet, "/api/users/"+u.id+"?tenant_id="+u.tenant, w.root.token, nil)
			expectStatus(t, r, http.StatusOK, "read "+u.name)
			var n int
			if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+events+` WHERE stream_id = $1`, u.id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("%s (%d events)", r.body, n)
		}
		vic, carol := w.viewer, w.analyst
		before := map[string]string{}
		for _, u := range []*secUser{vic, carol, w.admin, w.adminB} {
			before[u.name] = snapshot(u)
		}
		attempts := []struct {
			who    *secUser
			target *secUser
			query  string
			body   map[string]any
			want   int
		}{
			// The viewer on their own account.
			{vic, vic, "", map[string]any{"role": "admin"}, http.StatusForbidden},
			{vic, vic, "", map[string]any{"role": "platform_admin"}, http.StatusForbidden},
			{vic, vic, "", map[string]any{"role": "admin", "email": "vic-admin@acme.example"}, http.StatusForbidden},
			{vic, vic, "", map[string]any{"is_active": false}, http.StatusForbidden},
			{vic, vic, "", map[string]any{"tenant_id": w.tenantB}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"email": "vic2@acme.example", "tenant_id": w.tenantB}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"is_admin": true}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"is_superuser": true}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"email_verified": true}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"totp_enabled": false}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"id": w.admin.id}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"version": 99}, http.StatusBadRequest},
			{vic, vic, "", map[string]any{"Role": "admin"}, http.StatusForbidden}, // field names match case-insensitively: still the role
			{vic, vic, "", map[string]any{"password": "a password without the old one"}, http.StatusForbidden},
			// The analyst on their own account and on another's.
			{carol, carol, "", map[string]any{"role": "admin"}, http.StatusForbidden},
			{carol, vic, "", map[string]any{"role": "analyst"}, http.StatusNotFound},
			{carol, vic, "", map[string]any{"password": "a password set by carol"}, http.StatusNotFound},
			// The administrator: not their own role, no platform role, not another tenant's user.
			{w.admin, w.admin, "", map[string]any{"role": "viewer"}, http.StatusForbidden},
			{w.admin, vic, "", map[string]any{"role": "platform_admin"}, http.StatusUnprocessableEntity},
			{w.admin, w.adminB, "", map[string]any{"role": "viewer"}, http.StatusNotFound},
			{w.admin, w.adminB, "?tenant_id=" + w.tenantB, map[string]any{"role": "viewer"}, http.StatusNotFound},
			{w.admin, w.adminB, "?tenant_id=" + w.tenantB, map[string]any{"is_active": false}, http.StatusNotFound},
		}
		for _, a := range attempts {
			r := s.do(t, http.MethodPatch, "/api/users/"+a.target.id+a.query, a.who.token, a.body)
			what := fmt.Sprintf("%s PATCH %s%s %v", a.who.name, a.target.name, a.query, a.body)
			if a.want == http.StatusUnprocessableEntity {
				if r.status != http.StatusBadRequest && r.status != http.StatusUnprocessableEntity && r.status != http.StatusForbidden {
					t.Errorf("%s: status %d, want a refusal; body %s", what, r.status, r.body)
				}
				continue
			}
			if r.status != a.want {
				t.Errorf("%s: status %d, want %d; body %s", what, r.status, a.want, r.body)
			}
		}
		// The original API's PUT /api/auth/me, which took role and is_active, is not served.
		expectStatus(t, s.do(t, http.MethodPut, "/api/auth/me", vic.token, map[string]any{"role": "admin"}), http.StatusMethodNotAllowed, "PUT /api/auth/me")
		for _, u := range []*secUser{vic, carol, w.admin, w.adminB} {
			if after := snapshot(u); after != before[u.name] {
				t.Errorf("%s changed:\nbefore %s\nafter  %s", u.name, before[u.name], after)
			}
		}

		// tenant_id in the bodies of other creations: refused (403 where the
		// field exists for platform administrators, 400 unknown field where
		// it does not), and nothing lands in tenant B.
		inMonth := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
		for _, c := range []struct {
			who  *secUser
			path string
			body map[string]any
			want int
		}{
			{w.admin, "/api/users", map[string]any{"username": "mallory1", "password": "a password of mallory", "tenant_id": w.tenantB}, http.StatusForbidden},
			{w.admin, "/api/users", map[string]any{"username": "mallory2", "password": "a password of mallory", "tenant_id": w.tenantB, "role": "admin"}, http.StatusForbidden},
			{w.admin, "/api/auth/register", map[string]any{"username": "mallory3", "password": "a password of mallory", "tenant_id": w.tenantB}, http.StatusForbidden},
			{w.admin, "/api/users", map[string]any{"username": "mallory4", "password": "a password of mallory", "tenant_id": domain.PlatformTenant, "role": "platform_admin"}, http.StatusForbidden},
			{w.analyst, "/api/users", map[string]any{"username": "mallory5", "password": "a password of mallory", "tenant_id": w.tenantA}, http.StatusForbidden},
			{w.admin, "/api/cases", map[string]any{"title": "in B", "tenant_id": w.tenantB}, http.StatusBadRequest},
			{w.admin, "/api/hosts", map[string]any{"hostname": "in-b", "tenant_id": w.tenantB}, http.StatusBadRequest},
			{w.admin, "/api/artifacts", map[string]any{"artifact_type": "domain", "value": "in-b.example", "case_id": kase.ID, "tenant_id": w.tenantB}, http.StatusBadRequest},
			{w.admin, "/api/apikeys", map[string]any{"name": "in B", "role": "viewer", "expires_at": inMonth, "tenant_id": w.tenantB}, http.StatusBadRequest},
			{w.admin, "/api/tenants", map[string]any{"name": "Alice's own"}, http.StatusForbidden},
		} {
			r := s.do(t, http.MethodPost, c.path, c.who.token, c.body)
			if r.status != c.want {
				t.Errorf("%s POST %s %v: status %d, want %d; body %s", c.who.name, c.path, c.body, r.status, c.want, r.body)
			}
		}
		for _, path := range []string{"/api/cases", "/api/hosts", "/api/artifacts", "/api/apikeys"} {
			r := s.do(t, http.MethodGet, path, w.adminB.token, nil)
			expectStatus(t, r, http.StatusOK, "tenant B lists "+path)
			if strings.TrimSpace(string(r.body)) != "[]" {
				t.Errorf("tenant B's %s: %s", path, r.body)
			}
		}
		r := s.do(t, http.MethodGet, "/api/users", w.adminB.token, nil)
		var bUsers []userBody
		r.json(t, &bUsers)
		if len(bUsers) != 1 || bUsers[0].ID != w.adminB.id {
			t.Errorf("tenant B's users: %s", r.body)
		}
		for i := 1; i <= 5; i++ {
			expectStatus(t, s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": fmt.Sprintf("mallory%d", i), "password": "a password of mallory"}),
				http.StatusUnauthorized, "mallory was not created")
		}
	})

	t.Run("body size and type", func(t *testing.T) {
		const limit = 1 << 20 // VC_MAX_BODY_BYTES default
		big := `{"title": "` + strings.Repeat("x", limit) + `"}`
		bigForm := "grant_type=password&username=alice&password=" + strings.Repeat("x", limit)
		send := func(method, path, token, contentType, body string, chunked bool) response {
			t.Helper()
			var rd io.Reader = strings.NewReader(body)
			if chunked {
				rd = io.MultiReader(rd) // hides the length: Transfer-Encoding: chunked
			}
			req, err := http.NewRequest(method, s.base+path, rd)
			if err != nil {
				t.Fatal(err)
			}
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			return response{status: resp.StatusCode, header: resp.Header, body: raw}
		}
		for _, c := range []struct {
			name, method, path, token, contentType, body string
			chunked                                      bool
			want                                         int
		}{
			{"oversized JSON with a length", http.MethodPost, "/api/cases", alice, "application/json", big, false, http.StatusRequestEntityTooLarge},
			{"oversized JSON, chunked", http.MethodPost, "/api/cases", alice, "application/json", big, true, http.StatusRequestEntityTooLarge},
			{"oversized PATCH, chunked", http.MethodPatch, "/api/users/" + w.viewer.id, alice, "application/json", big, true, http.StatusRequestEntityTooLarge},
			{"oversized sign-in, chunked", http.MethodPost, "/api/auth/login", "", "application/json", big, true, http.StatusRequestEntityTooLarge},
			{"oversized sign-in form with a length", http.MethodPost, "/api/auth/login", "", "application/x-www-form-urlencoded", bigForm, false, http.StatusRequestEntityTooLarge},
			{"oversized sign-in form, chunked", http.MethodPost, "/api/auth/login", "", "application/x-www-form-urlencoded", bigForm, true, http.StatusRequestEntityTooLarge},
			{"oversized refresh form, chunked", http.MethodPost, "/api/auth/refresh", "", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=" + strings.Repeat("x", limit), true, http.StatusRequestEntityTooLarge},
			{"oversized anonymous reset request, chunked", http.MethodPost, "/api/auth/password-reset/request", "", "application/json", big, true, http.StatusRequestEntityTooLarge},
			{"text/plain", http.MethodPost, "/api/cases", alice, "text/plain", `{"title": "typed"}`, false, http.StatusUnsupportedMediaType},
			{"form on a JSON route", http.MethodPost, "/api/cases", alice, "application/x-www-form-urlencoded", "title=typed", false, http.StatusUnsupportedMediaType},
			{"multipart", http.MethodPost, "/api/cases", alice, "multipart/form-data; boundary=x", "--x\r\n\r\ntyped\r\n--x--", false, http.StatusUnsupportedMediaType},
			{"no content type", http.MethodPost, "/api/cases", alice, "", `{"title": "typed"}`, false, http.StatusUnsupportedMediaType},
			{"XML", http.MethodPatch, "/api/users/" + w.viewer.id, alice, "application/xml", "<user/>", false, http.StatusUnsupportedMediaType},
			{"text/plain sign-in", http.MethodPost, "/api/auth/login", "", "text/plain", `{"username":"alice"}`, false, http.StatusUnsupportedMediaType},
			{"text/plain refresh", http.MethodPost, "/api/auth/refresh", "", "text/plain", `{"refresh_token":"x"}`, false, http.StatusUnsupportedMediaType},
			{"text/plain reset", http.MethodPost, "/api/auth/password-reset/confirm", "", "text/plain", `{"token":"x"}`, false, http.StatusUnsupportedMediaType},
		} {
			r := send(c.method, c.path, c.token, c.contentType, c.body, c.chunked)
			if r.status != c.want {
				t.Errorf("%s: %s %s answered %d, want %d; body %.200s", c.name, c.method, c.path, r.status, c.want, r.body)
				continue
			}
			r.errorCode(t)
		}
		r := s.do(t, http.MethodGet, "/api/cases", alice, nil)
		if strings.Contains(string(r.body), "typed") || strings.Contains(string(r.body), "xxxx") {
			t.Fatalf("a refused body opened a case: %.300s", r.body)
		}
	})

	t.Run("forwarded addresses are not believed", func(t *testing.T) {
		const fake = "203.0.113.77"
		spoof := []string{"X-Forwarded-For", fake, "X-Real-IP", fake, "Forwarded", "for=" + fake, "True-Client-IP", fake,
			"CF-Connecting-IP", fake, "X-Client-IP", fake}
		r := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": w.analyst.name, "password": w.analyst.password}, spoof...)
		expectStatus(t, r, http.StatusOK, "sign in with forged forwarding headers")
		var p tokenPair
		r.json(t, &p)
		list := s.sessions(t, p.AccessToken, "/api/auth/sessions")
		for _, x := range list {
			if x.Current && x.IP != "127.0.0.1" {
				t.Fatalf("the session records address %q", x.IP)
			}
		}
		expectStatus(t, s.do(t, http.MethodPost, "/api/cases", p.AccessToken, map[string]string{"title": "spoofed"}, spoof...), http.StatusCreated, "write with forged headers")
		conn := secPGConn(t)
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{s.schema(), "events"}.Sanitize()+
			` WHERE metadata::text LIKE '%' || $1 || '%' OR payload::text LIKE '%' || $1 || '%'`, fake).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d events record the forged address", n)
		}
		eventually(t, 30*time.Second, "the sign-in in the audit log", func() bool {
			r := s.do(t, http.MethodGet, "/api/audit?action=user.logged_in&actor="+w.analyst.id, alice, nil)
			var entries []auditEntry
			if r.status == http.StatusOK {
				r.json(t, &entries)
			}
			for _, e := range entries {
				if e.IPAddress == fake {
					t.Fatalf("the audit log records the forged address: %+v", e)
				}
			}
			return len(entries) > 0
		})
		_, logs := s.output()
		if strings.Contains(logs, fake) {
			t.Fatal("the server's log records the forged address")
		}
	})

	t.Run("CORS", func(t *testing.T) {
		foreign := []string{"https://evil.example", "null", "https://ui.example.evil.example", "http://ui.example",
			"https://ui.example:8443", "https://UI.EXAMPLE", "https://evil.example/https://ui.example"}
		for _, origin := range foreign {
			r := s.do(t, http.MethodGet, "/api/auth/me", alice, nil, "Origin", origin)
			expectStatus(t, r, http.StatusOK, "request from "+origin)
			for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods"} {
				if v := r.header.Get(h); v != "" {
					t.Errorf("a request from %s got %s: %s", origin, h, v)
				}
			}
			r = s.do(t, http.MethodOptions, "/api/users", "", nil, "Origin", origin,
				"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
			if r.status < 400 || r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Methods") != "" {
				t.Errorf("a preflight from %s answered %d with %v", origin, r.status, r.header)
			}
		}
		// The configured origin is allowed, by name and never as *.
		r := s.do(t, http.MethodGet, "/api/auth/me", alice, nil, "Origin", uiOrigin)
		if r.header.Get("Access-Control-Allow-Origin") != uiOrigin || !strings.Contains(r.header.Get("Vary"), "Origin") {
			t.Fatalf("the allowed origin got %v", r.header)
		}
		r = s.do(t, http.MethodOptions, "/api/users", "", nil, "Origin", uiOrigin, "Access-Control-Request-Method", "POST")
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != uiOrigin {
			t.Fatalf("the allowed origin's preflight answered %d %v", r.status, r.header)
		}
	})

	t.Run("routing tricks", func(t *testing.T) {
		for _, c := range []struct {
			method, path, token string
			headers             []string
			refused             []int
		}{
			{http.MethodGet, "/api/users/", "", nil, []int{http.StatusUnauthorized}},
			{http.MethodGet, "/api/users/", w.viewer.token, nil, []int{http.StatusForbidden}},
			{http.MethodGet, "/api/users//", w.viewer.token, nil, []int{http.StatusForbidden, http.StatusNotFound}},
			{http.MethodGet, "/api//users", w.viewer.token, nil, []int{http.StatusNotFound, http.StatusForbidden}},
			{http.MethodGet, "/API/USERS", w.viewer.token, nil, []int{http.StatusNotFound}},
			{http.MethodGet, "/api/users%2F", w.viewer.token, nil, []int{http.StatusNotFound, http.StatusForbidden}},
			{http.MethodGet, "/api/./users", w.viewer.token, nil, []int{http.StatusNotFound, http.StatusForbidden}},
			{http.MethodGet, "/api/cases/../users", w.viewer.token, nil, []int{http.StatusNotFound, http.StatusForbidden}},
			{http.MethodPost, "/api/users/" + w.viewer.id, alice, []string{"X-HTTP-Method-Override", "DELETE", "X-HTTP-Method", "DELETE", "X-Method-Override", "DELETE"},
				[]int{http.StatusMethodNotAllowed, http.StatusNotFound}},
		} {
			r := s.do(t, c.method, c.path, c.token, nil, c.headers...)
			if !slices.Contains(c.refused, r.status) {
				t.Errorf("%s %s: status %d, want one of %v; body %.200s", c.method, c.path, r.status, c.refused, r.body)
			}
		}
		r := s.do(t, http.MethodGet, "/", "", nil, "X-Original-URL", "/api/users", "X-Rewrite-URL", "/api/users")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "Welcome") {
			t.Fatalf("GET / with X-Original-URL answered %d %s", r.status, r.body)
		}
		expectStatus(t, s.do(t, http.MethodGet, "/api/users/"+w.viewer.id, alice, nil), http.StatusOK, "the viewer still exists")
	})
}

// mfaStep is the answer of the password step of an account with 2FA.
type attackMFAStep struct {
	MFARequired  bool     `json:"mfa_required"`
	MFAToken     string   `json:"mfa_token"`
	Methods      []string `json:"methods"`
	AccessToken  string   `json:"access_token"`
	RefreshToken string   `json:"refresh_token"`
}

// TestAttackTwoFactor: the MFA token of a two-step sign-in is good for its
// second step only, and once; a TOTP code works once, within one step either
// side of now; recovery codes work once. Codes are made by oathtool, apart
// from the server's TOTP code.
func TestAttackTwoFactor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t)
	if !secTwoFactorServed(secServedRoutes(t, s)) {
		t.Fatal("the 2FA routes of issue 3 are not served: nothing to attack yet")
	}
	w := newSecWorld(t, s, attackPassword)
	u := w.analyst

	// Set-up: a 160-bit secret; 2FA is on only once a code was verified.
	r := s.do(t, http.MethodPost, "/api/auth/2fa/setup", u.token, nil)
	expectStatus(t, r, http.StatusOK, "2FA setup")
	var setup struct {
		Secret     string `json:"secret"`
		OtpauthURI string `json:"otpauth_uri"`
		QR         string `json:"qr_png_base64"`
	}
	r.json(t, &setup)
	if len(setup.Secret) < 32 || !strings.Contains(setup.OtpauthURI, "secret="+setup.Secret) || !strings.HasPrefix(setup.QR, "iVBORw0KGgo") {
		t.Fatalf("setup answered %.300s", r.body)
	}
	code := func(at time.Time) string { return secOathtool(t, setup.Secret, at) }
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", s.secSignIn(t, u.name, u.password).AccessToken, nil),
		http.StatusOK, "sign-in before the setup was verified needs no code")
	// Verify at the start of a time step V, so that the server's clock stays
	// in V while the window is probed.
	eventually(t, 2*secTOTPStep, "a time step with 12 s left", func() bool {
		return time.Now().Unix()%30 < 18
	})
	v := time.Now()
	r = s.do(t, http.MethodPost, "/api/auth/2fa/verify", u.token, map[string]string{"code": code(v)})
	expectStatus(t, r, http.StatusOK, "verify")
	var enabled struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	r.json(t, &enabled)
	if len(enabled.RecoveryCodes) != 10 {
		t.Fatalf("verify answered %d recovery codes", len(enabled.RecoveryCodes))
	}

	// The password step yields an MFA token and no other token.
	passwordStep := func() attackMFAStep {
		t.Helper()
		r := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": u.name, "password": u.password})
		expectStatus(t, r, http.StatusOK, "password step")
		var st attackMFAStep
		r.json(t, &st)
		if !st.MFARequired || st.MFAToken == "" || st.AccessToken != "" || st.RefreshToken != "" {
			t.Fatalf("password step answered %s", r.body)
		}
		return st
	}
	secondStep := func(st attackMFAStep, field, value string) response {
		return s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"mfa_token": st.MFAToken, field: value})
	}

	// The window and replays. V's code was spent by the verification; V+1
	// is within the window and unused. (Four refusals at most in a row: the
	// fifth would lock the second factor.)
	st := passwordStep()
	r = secondStep(st, "code", code(v.Add(secTOTPStep)))
	expectStatus(t, r, http.StatusOK, "the code of step V+1 (within the window, unused)")
	var late tokenPair
	r.json(t, &late)
	expectStatus(t, secondStep(st, "code", code(v.Add(secTOTPStep))), http.StatusUnauthorized, "the same MFA token again")
	for _, c := range []struct {
		name string
		at   time.Time
	}{
		{"step V+1 again (replay)", v.Add(secTOTPStep)},
		{"step V-2 (outside the window)", v.Add(-2 * secTOTPStep)},
		{"step V+2 (outside the window)", v.Add(2 * secTOTPStep)},
	} {
		r := secondStep(passwordStep(), "code", code(c.at))
		expectStatus(t, r, http.StatusUnauthorized, c.name)
		if got := r.errorCode(t); got != "mfa_code_invalid" {
			t.Fatalf("%s: code %q", c.name, got)
		}
	}
	r = s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": u.name, "password": u.password, "totp_code": code(v.Add(secTOTPStep))})
	expectStatus(t, r, http.StatusUnauthorized, "step V+1's code with the password (replay)")
	if time.Now().Unix()/30 != v.Unix()/30 {
		t.Fatal("the probes took longer than the time step; their outcome proves nothing")
	}

	// The MFA token is useless anywhere else.
	st = passwordStep()
	for _, p := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/api/auth/me", nil},
		{http.MethodGet, "/api/cases", nil},
		{http.MethodPost, "/api/cases", map[string]string{"title": "pwned"}},
		{http.MethodGet, "/api/auth/sessions", nil},
		{http.MethodPost, "/api/auth/2fa/setup", nil},
		{http.MethodPost, "/api/auth/2fa/disable", map[string]string{"password": u.password, "code": enabled.RecoveryCodes[9]}},
		{http.MethodPost, "/api/auth/logout", nil},
	} {
		attackRefused(t, s.do(t, p.method, p.path, st.MFAToken, p.body), "MFA token on "+p.method+" "+p.path)
	}
	if code := mxSocket(t, s, st.MFAToken); code != websocket.ClosePolicyViolation {
		t.Fatalf("MFA token on the notification socket: %d", code)
	}
	_, r = s.secRefresh(t, st.MFAToken)
	expectStatus(t, r, http.StatusUnauthorized, "MFA token as a refresh token")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"mfa_token": u.token, "code": "123456"}),
		http.StatusUnauthorized, "an access token as the MFA token")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/login/mfa?mfa_token="+url.QueryEscape(st.MFAToken), "", map[string]string{"code": "123456"}),
		http.StatusBadRequest, "the MFA token in the query string")

	// Recovery codes: each once.
	rc := enabled.RecoveryCodes[0]
	expectStatus(t, secondStep(passwordStep(), "recovery_code", rc), http.StatusOK, "a recovery code")
	expectStatus(t, secondStep(passwordStep(), "recovery_code", rc), http.StatusUnauthorized, "the same recovery code again")

	// Turning 2FA off needs the password and a fresh code.
	disable := func(password, code string) response {
		return s.do(t, http.MethodPost, "/api/auth/2fa/disable", u.token, map[string]string{"password": password, "code": code})
	}
	if r := disable("not the password at all", enabled.RecoveryCodes[1]); r.status < 400 || r.status >= 500 {
		t.Fatalf("disable with a wrong password: %d %s", r.status, r.body)
	}
	if r := disable(u.password, rc); r.status < 400 || r.status >= 500 {
		t.Fatalf("disable with a used recovery code: %d %s", r.status, r.body)
	}
	if r := disable(u.password, code(v.Add(secTOTPStep))); r.status < 400 || r.status >= 500 {
		t.Fatalf("disable with a used TOTP code: %d %s", r.status, r.body)
	}
	passwordStep() // still on
	expectStatus(t, disable(u.password, enabled.RecoveryCodes[2]), http.StatusOK, "disable")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", late.AccessToken, nil), http.StatusUnauthorized, "another session after 2FA was turned off")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", u.token, nil), http.StatusOK, "the session that turned it off")
	s.secSignIn(t, u.name, u.password)

	// The refusals were recorded, with why.
	conn := secPGConn(t)
	rows, err := conn.Query(context.Background(), `SELECT payload->>'reason' FROM `+pgx.Identifier{s.schema(), "events"}.Sanitize()+`
		WHERE name = 'user.mfa_failed' AND stream_id = $1`, u.id)
	if err != nil {
		t.Fatal(err)
	}
	reasons, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{users.ReasonBadCode, users.ReasonReplayedCode} {
		if !slices.Contains(reasons, want) {
			t.Fatalf("user.mfa_failed reasons %v lack %s", reasons, want)
		}
	}
}
