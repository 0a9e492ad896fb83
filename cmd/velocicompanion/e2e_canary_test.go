package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"velocicompanion/adapters/mail/mailtest"
	"velocicompanion/projections/auditlog"
)

// canarySecret is a secret the canary test used, by what it was.
type canarySecret struct{ what, value string }

// canarySet collects the secrets of the canary test: the passwords it chose
// (each carrying the test's marker) and the tokens, keys and codes the server
// handed out or the test made up.
type canarySet struct {
	marker string
	all    []canarySecret
}

func (c *canarySet) add(what string, values ...string) {
	for _, v := range values {
		if v != "" {
			c.all = append(c.all, canarySecret{what, v})
		}
	}
}

// password returns a new password carrying the marker, and remembers it.
func (c *canarySet) password(what string) string {
	pw := c.marker + "-" + what
	c.add("password "+what, pw)
	return pw
}

// code remembers a TOTP code: six digits are common, so a code is looked for
// as a JSON string only.
func (c *canarySet) code(what, code string) string {
	c.add("TOTP code "+what, `"`+code+`"`)
	return code
}

// scan reports every secret found in text, which is where.
func (c *canarySet) scan(t *testing.T, where, text string) {
	t.Helper()
	if strings.Contains(text, c.marker) {
		i := strings.Index(text, c.marker)
		t.Errorf("%s contains the canary marker: …%s…", where, text[max(0, i-120):min(len(text), i+80)])
	}
	for _, s := range c.all {
		if strings.Contains(text, s.value) {
			t.Errorf("%s contains the %s", where, s.what)
		}
	}
}

// TestCanaryNoSecretLeaks runs the identity flows with marked passwords and
// remembers every token, key and code they hand out; then none of them may be
// in the server's output, in any table of its schema (the events' payloads and
// metadata, the audit log, sessions, tokens …), in the audit API and its
// exports, or on the Kafka topic.
func TestCanaryNoSecretLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	c := &canarySet{marker: "CANARY-" + secRandomHex(8)}
	mp := mailtest.Start(t)
	s := startServer(t, mp.Env()...)
	served := secServedRoutes(t, s)
	bootstrap := s.bootstrapPassword(t)
	c.add("bootstrap password", bootstrap) // printed once on stdout by design; nowhere else
	ws := func(token string) {
		t.Helper()
		if got := mxSocket(t, s, token); got != http.StatusSwitchingProtocols {
			t.Fatalf("notification socket: %d", got)
		}
	}

	// The platform administrator replaces the bootstrap password: once with
	// a wrong current password, then rightly.
	root := s.secSignIn(t, "admin", bootstrap)
	c.add("access token", root.AccessToken)
	c.add("refresh token", root.RefreshToken)
	r := s.do(t, http.MethodGet, "/api/auth/me", root.AccessToken, nil)
	var me userBody
	r.json(t, &me)
	rootPW := c.password("root")
	expectStatus(t, s.do(t, http.MethodPatch, "/api/users/"+me.ID, root.AccessToken,
		map[string]string{"password": rootPW, "current_password": c.password("root-wrong-current")}), http.StatusForbidden, "wrong current password")
	expectStatus(t, s.do(t, http.MethodPatch, "/api/users/"+me.ID, root.AccessToken,
		map[string]string{"password": rootPW, "current_password": bootstrap}), http.StatusOK, "change the bootstrap password")
	rootTok := s.secSignIn(t, "admin", rootPW).AccessToken
	c.add("access token", rootTok)

	r = s.do(t, http.MethodPost, "/api/tenants", rootTok, map[string]string{"name": "Canary Corp"})
	expectStatus(t, r, http.StatusCreated, "tenant")
	var tenant struct{ ID string }
	r.json(t, &tenant)
	mkUser := func(token, name, role, pw string) userBody {
		t.Helper()
		r := s.do(t, http.MethodPost, "/api/users", token, map[string]string{"username": name, "password": pw,
			"email": name + "@canary.example", "role": role, "tenant_id": tenant.ID})
		expectStatus(t, r, http.StatusCreated, "create "+name)
		var u userBody
		r.json(t, &u)
		return u
	}
	alicePW, carolPW := c.password("alice"), c.password("carol")
	mkUser(rootTok, "alice", "admin", alicePW)
	carol := mkUser(rootTok, "carol", "analyst", carolPW)

	// Refused passwords: too long, and one with an unknown field beside it.
	for _, body := range []map[string]any{
		{"username": "weak", "password": c.marker + strings.Repeat("x", 200)},
		{"username": "weak", "password": c.password("unknown-field"), "is_admin": true},
	} {
		if r := s.do(t, http.MethodPost, "/api/users", rootTok, body); r.status < 400 || r.status >= 500 {
			t.Fatalf("refused password: %d %s", r.status, r.body)
		}
	}

	// Sign-in: JSON and the OAuth2 form, wrong passwords of known and
	// unknown users, credentials that are not tokens.
	alice := s.secSignIn(t, "alice", alicePW)
	c.add("access token", alice.AccessToken)
	c.add("refresh token", alice.RefreshToken)
	resp, err := http.PostForm(s.base+"/api/auth/login", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePW}})
	if err != nil {
		t.Fatal(err)
	}
	var formPair tokenPair
	_ = json.NewDecoder(resp.Body).Decode(&formPair)
	resp.Body.Close()
	c.add("access token", formPair.AccessToken)
	c.add("refresh token", formPair.RefreshToken)
	for _, who := range []string{"alice", "nobody"} {
		expectStatus(t, s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": who, "password": c.password("wrong-" + who)}),
			http.StatusUnauthorized, "wrong password")
	}
	junk := c.marker + "-not-a-token"
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", junk, nil), http.StatusUnauthorized, "junk bearer")
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me?access_token="+url.QueryEscape(alice.AccessToken)+"&junk="+junk, "", nil),
		http.StatusUnauthorized, "token in the query")
	ws(alice.AccessToken)

	// Refresh: rotation, a replay (a security event) and logout.
	p1, r := s.secRefresh(t, alice.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh")
	c.add("access token", p1.AccessToken)
	c.add("refresh token", p1.RefreshToken)
	p2, r := s.secRefresh(t, p1.RefreshToken)
	expectStatus(t, r, http.StatusOK, "refresh again")
	c.add("access token", p2.AccessToken)
	c.add("refresh token", p2.RefreshToken)
	_, r = s.secRefresh(t, alice.RefreshToken)
	expectStatus(t, r, http.StatusUnauthorized, "replay")
	_, r = s.secRefresh(t, c.marker+"-refresh")
	expectStatus(t, r, http.StatusUnauthorized, "made-up refresh token")
	aliceTok := s.secSignIn(t, "alice", alicePW)
	c.add("access token", aliceTok.AccessToken)
	c.add("refresh token", aliceTok.RefreshToken)
	out := s.secSignIn(t, "alice", alicePW)
	c.add("access token", out.AccessToken)
	c.add("refresh token", out.RefreshToken)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/logout", out.AccessToken, nil), http.StatusNoContent, "logout")

	// Administration with passwords: register, reset another's, change one's own.
	rita := c.password("rita")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/register", aliceTok.AccessToken, map[string]string{"username": "rita", "password": rita}),
		http.StatusCreated, "register")
	carolTok := s.secSignIn(t, "carol", carolPW)
	c.add("access token", carolTok.AccessToken)
	c.add("refresh token", carolTok.RefreshToken)
	carolPW2 := c.password("carol-2")
	expectStatus(t, s.do(t, http.MethodPatch, "/api/users/"+carol.ID, carolTok.AccessToken,
		map[string]string{"password": carolPW2, "current_password": c.password("carol-wrong-current")}), http.StatusForbidden, "wrong current password")
	expectStatus(t, s.do(t, http.MethodPatch, "/api/users/"+carol.ID, carolTok.AccessToken,
		map[string]string{"password": carolPW2, "current_password": carolPW}), http.StatusOK, "change carol's password")

	// Password reset and e-mail verification through mailpit.
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/password-reset/request", "", map[string]string{"email": "carol@canary.example"}), http.StatusOK, "reset request")
	resetTok := mailedToken(t, mp, "carol@canary.example", "password", 1)
	c.add("reset token", resetTok)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": c.marker + "-reset", "new_password": c.password("reset-refused")}),
		http.StatusBadRequest, "made-up reset token")
	carolPW3 := c.password("carol-3")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": resetTok, "new_password": carolPW3}),
		http.StatusOK, "reset")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": resetTok, "new_password": c.password("reset-reused")}),
		http.StatusBadRequest, "reset token reused")
	carolTok = s.secSignIn(t, "carol", carolPW3)
	c.add("access token", carolTok.AccessToken)
	c.add("refresh token", carolTok.RefreshToken)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/verify-email/request", carolTok.AccessToken, nil), http.StatusAccepted, "verification request")
	verifyTok := mailedToken(t, mp, "carol@canary.example", "verify", 1)
	c.add("verification token", verifyTok)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/verify-email/confirm", "", map[string]string{"token": verifyTok}), http.StatusOK, "verify")

	// An API key: created, used for a write, revoked, refused.
	r = s.do(t, http.MethodPost, "/api/apikeys", aliceTok.AccessToken, map[string]string{"name": "canary automation", "role": "analyst",
		"expires_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
	expectStatus(t, r, http.StatusCreated, "create a key")
	var key struct{ ID, Key string }
	r.json(t, &key)
	c.add("API key", key.Key, strings.TrimPrefix(key.Key, "vck_"+key.ID+"_"))
	expectStatus(t, s.do(t, http.MethodPost, "/api/cases", key.Key, map[string]string{"title": "Opened by a key"}), http.StatusCreated, "the key opens a case")
	expectStatus(t, s.do(t, http.MethodDelete, "/api/apikeys/"+key.ID, aliceTok.AccessToken, nil), http.StatusNoContent, "revoke")
	expectStatus(t, s.do(t, http.MethodGet, "/api/cases", key.Key, nil), http.StatusUnauthorized, "revoked key")

	// Two-factor authentication, when served: set up, verify, both sign-in
	// paths, a recovery code, wrong codes, regeneration and disabling.
	if secTwoFactorServed(served) {
		r = s.do(t, http.MethodPost, "/api/auth/2fa/setup", carolTok.AccessToken, nil)
		expectStatus(t, r, http.StatusOK, "2FA setup")
		var setup struct {
			Secret     string `json:"secret"`
			OtpauthURI string `json:"otpauth_uri"`
			QR         string `json:"qr_png_base64"`
		}
		r.json(t, &setup)
		c.add("TOTP secret", setup.Secret, setup.OtpauthURI, setup.QR)
		eventually(t, 2*secTOTPStep, "a time step with 12 s left", func() bool { return time.Now().Unix()%30 < 18 })
		now := time.Now()
		code := func(step int) string {
			return c.code(fmt.Sprintf("of step %+d", step), secOathtool(t, setup.Secret, now.Add(time.Duration(step)*secTOTPStep)))
		}
		r = s.do(t, http.MethodPost, "/api/auth/2fa/verify", carolTok.AccessToken, map[string]string{"code": code(0)})
		expectStatus(t, r, http.StatusOK, "2FA verify")
		var enabled struct {
			RecoveryCodes []string `json:"recovery_codes"`
		}
		r.json(t, &enabled)
		c.add("recovery code", enabled.RecoveryCodes...)
		r = s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "carol", "password": carolPW3})
		expectStatus(t, r, http.StatusOK, "password step")
		var st attackMFAStep
		r.json(t, &st)
		c.add("MFA token", st.MFAToken)
		expectStatus(t, s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"mfa_token": st.MFAToken, "code": code(0)}),
			http.StatusUnauthorized, "a replayed code")
		r = s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"mfa_token": st.MFAToken, "code": code(1)})
		expectStatus(t, r, http.StatusOK, "second step")
		var pair tokenPair
		r.json(t, &pair)
		c.add("access token", pair.AccessToken)
		c.add("refresh token", pair.RefreshToken)
		r = s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "carol", "password": carolPW3, "totp_code": enabled.RecoveryCodes[0]})
		expectStatus(t, r, http.StatusOK, "sign-in with a recovery code")
		r.json(t, &pair)
		c.add("access token", pair.AccessToken)
		c.add("refresh token", pair.RefreshToken)
		r = s.do(t, http.MethodPost, "/api/auth/2fa/recovery-codes", carolTok.AccessToken, map[string]string{"code": enabled.RecoveryCodes[1]})
		if r.status != http.StatusOK {
			// Regeneration may insist on a TOTP code.
			r = s.do(t, http.MethodPost, "/api/auth/2fa/recovery-codes", carolTok.AccessToken, map[string]string{"code": code(-1)})
		}
		expectStatus(t, r, http.StatusOK, "regenerate recovery codes")
		var regenerated struct {
			RecoveryCodes []string `json:"recovery_codes"`
		}
		r.json(t, &regenerated)
		c.add("recovery code", regenerated.RecoveryCodes...)
		if r := s.do(t, http.MethodPost, "/api/auth/2fa/disable", carolTok.AccessToken,
			map[string]string{"password": c.password("disable-wrong"), "code": regenerated.RecoveryCodes[0]}); r.status < 400 {
			t.Fatalf("disable with a wrong password: %d", r.status)
		}
		expectStatus(t, s.do(t, http.MethodPost, "/api/auth/2fa/disable", carolTok.AccessToken,
			map[string]string{"password": carolPW3, "code": regenerated.RecoveryCodes[1]}), http.StatusOK, "disable")
	} else {
		t.Error("the 2FA routes are not served: the canary test could not cover them")
	}

	// Everything recorded so far has reached the read models and the topic.
	waitCaughtUp(t, s, auditlog.Name)
	conn := secPGConn(t)
	ctx := context.Background()

	// 1. The server's output; the bootstrap password is printed once, on
	// purpose, on standard output.
	stdout, stderr := s.output()
	if !strings.Contains(stdout, bootstrap) || !strings.Contains(stderr, `"route":"/api/auth/login"`) {
		t.Fatal("the server's output was not captured: the scan below would prove nothing")
	}
	c.scan(t, "the server's standard output", strings.Replace(stdout, "password: "+bootstrap, "password: <bootstrap>", 1))
	c.scan(t, "the server's standard error (its log)", stderr)

	// 2. Every table of the server's schema, the events first.
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name <> 'events', table_name`, s.schema())
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		var dump string
		if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(row_to_json(x)::text, E'\n'), '') FROM `+
			pgx.Identifier{s.schema(), table}.Sanitize()+` x`).Scan(&dump); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		if table == "events" && !strings.Contains(dump, "user.logged_in") {
			t.Fatal("the events table has no sign-in: the scan would prove nothing")
		}
		c.scan(t, "table "+table, dump)
	}
	if len(tables) < 10 {
		t.Fatalf("only %d tables in the schema: %v", len(tables), tables)
	}

	// 3. The audit log as its readers get it: pages and exports, the
	// tenant's and the platform's.
	for _, path := range []string{"/api/audit?limit=500", "/api/audit?format=csv", "/api/audit?format=jsonl"} {
		r := s.do(t, http.MethodGet, path, aliceTok.AccessToken, nil)
		expectStatus(t, r, http.StatusOK, path)
		c.scan(t, "GET "+path+" (tenant)", string(r.body))
		r = s.do(t, http.MethodGet, path, rootTok, nil)
		expectStatus(t, r, http.StatusOK, path)
		c.scan(t, "GET "+path+" (platform)", string(r.body))
	}
	// And the lists that describe sessions, keys and users.
	for _, path := range []string{"/api/auth/sessions", "/api/apikeys", "/api/users", "/api/users/" + carol.ID + "/sessions", "/api/cases"} {
		r := s.do(t, http.MethodGet, path, aliceTok.AccessToken, nil)
		expectStatus(t, r, http.StatusOK, path)
		c.scan(t, "GET "+path, string(r.body))
	}

	// 4. The Kafka topic: every event, read back from the embedded broker.
	var want int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{s.schema(), "events"}.Sanitize()).Scan(&want); err != nil {
		t.Fatal(err)
	}
	records := canaryConsume(t, s, want)
	if text := canaryRecordText(records[0]); !strings.Contains(text, `"event_id"`) {
		t.Fatalf("a Kafka record is not an event: %.200s", text)
	}
	for _, rec := range records {
		c.scan(t, "Kafka record "+rec.Topic+"/"+fmt.Sprint(rec.Partition)+"@"+fmt.Sprint(rec.Offset), canaryRecordText(rec))
	}
	t.Logf("scanned %d secrets in the output, %d tables, the audit API and %d Kafka records", len(c.all), len(tables), len(records))
}

// canaryConsume reads every record of the server's topics (not Kafka's own)
// from the start, until it has at least events distinct event ids.
func canaryConsume(t *testing.T, s *server, events int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(s.secEnv("VC_KAFKA_EMBEDDED_ADDR")),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(`^[^_].*`),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	var out []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < events {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d events from Kafka within a minute", len(seen), events)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			var env struct {
				EventID string `json:"event_id"`
			}
			if json.Unmarshal(r.Value, &env) == nil && env.EventID != "" {
				seen[env.EventID] = true
			}
		})
	}
	return out
}

// canaryRecordText is all a record carries: key, value and headers.
func canaryRecordText(r *kgo.Record) string {
	var b strings.Builder
	b.Write(r.Key)
	b.WriteByte('\n')
	b.Write(r.Value)
	for _, h := range r.Headers {
		b.WriteString("\n" + h.Key + ": ")
		b.Write(h.Value)
	}
	return b.String()
}
