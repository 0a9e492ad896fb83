package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// mfaOathtool returns the TOTP code of secret at the time at, computed by the
// OATH Toolkit, independently of the server. The secret goes in on standard
// input, never on a command line.
func mfaOathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is needed to make codes independently (apt-get install -y oathtool): %v", err)
	}
	cmd := exec.Command(path, "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), "-")
	cmd.Stdin = strings.NewReader(secret + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool: %v: %s", err, out)
	}
	code := strings.TrimSpace(string(out))
	if len(code) != 6 {
		t.Fatalf("oathtool printed %q", out)
	}
	return code
}

// mfaClients are HTTP clients whose connections come from a given loopback
// address, so that the per-address sign-in limit sees distinct clients.
var mfaClients sync.Map // ip → *http.Client

// mfaDoFrom sends a JSON request from the loopback address ip.
func (s *server) mfaDoFrom(t *testing.T, ip, path string, body any) response {
	t.Helper()
	c, ok := mfaClients.Load(ip)
	if !ok {
		d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, _ = mfaClients.LoadOrStore(ip, &http.Client{Transport: &http.Transport{DialContext: d.DialContext}})
	}
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.(*http.Client).Post(s.base+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// mfaTokens is the body of a sign-in: either the tokens, or the request for
// a second factor.
type mfaTokens struct {
	tokenPair
	MFARequired bool     `json:"mfa_required"`
	MFAToken    string   `json:"mfa_token"`
	Methods     []string `json:"methods"`
	// expires_in is the MFA token's lifetime when mfa_required (tokenPair's field).
}

// mfaSecrets collects what must never be stored or logged.
type mfaSecrets struct{ raw, codes []string }

func (m *mfaSecrets) add(v ...string)  { m.raw = append(m.raw, v...) }
func (m *mfaSecrets) code(v ...string) { m.codes = append(m.codes, v...) }

// leaked returns the first collected secret that text contains. TOTP codes
// are six digits, which timestamps and durations contain by chance: they
// count only as a JSON string or a word of their own.
func (m *mfaSecrets) leaked(text string) string {
	for _, v := range m.raw {
		if v != "" && (strings.Contains(text, v) || strings.Contains(strings.ToLower(text), strings.ToLower(v))) {
			return v
		}
	}
	for _, c := range m.codes {
		if strings.Contains(text, `"`+c+`"`) || strings.Contains(text, " "+c+" ") || strings.Contains(text, "="+c) {
			return c
		}
	}
	return ""
}

func TestEndToEndMFA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t, "VC_LOGIN_IP_MAX_FAILURES=6")
	admin := s.login(t, "admin", s.bootstrapPassword(t))
	seen := &mfaSecrets{}
	const pwAlice, pwAdmin = "mfa marker password Q7", "mfa marker password of the admin Z3"
	seen.add(pwAlice, pwAdmin)

	r := s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "MFA Corp"})
	expectStatus(t, r, http.StatusCreated, "create tenant")
	var tenant struct{ ID string }
	r.json(t, &tenant)
	for _, u := range []struct{ name, pw, role string }{{"mfa.alice", pwAlice, "analyst"}, {"mfa.admin", pwAdmin, "admin"}} {
		expectStatus(t, s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
			"username": u.name, "password": u.pw, "role": u.role, "tenant_id": tenant.ID}), http.StatusCreated, "create "+u.name)
	}
	signIn := func(body any, headers ...string) (mfaTokens, response) {
		t.Helper()
		r := s.do(t, http.MethodPost, "/api/auth/login", "", body, headers...)
		var out mfaTokens
		if r.status == http.StatusOK {
			r.json(t, &out)
			seen.add(out.AccessToken, out.RefreshToken, out.MFAToken)
		}
		return out, r
	}
	tokensOf := func(what string, p mfaTokens, r response) tokenPair {
		t.Helper()
		expectStatus(t, r, http.StatusOK, what)
		if p.MFARequired {
			t.Fatalf("%s asks for a second factor: %s", what, r.body)
		}
		return p.tokenPair.check(t, what)
	}
	second := func(body map[string]string) (mfaTokens, response) {
		t.Helper()
		r := s.do(t, http.MethodPost, "/api/auth/login/mfa", "", body)
		var out mfaTokens
		if r.status == http.StatusOK {
			r.json(t, &out)
			seen.add(out.AccessToken, out.RefreshToken)
		}
		return out, r
	}
	expectCode := func(r response, status int, code, what string) {
		t.Helper()
		expectStatus(t, r, status, what)
		if got := r.errorCode(t); got != code {
			t.Fatalf("%s: error %q, want %q", what, got, code)
		}
	}
	me := func(token string) int { return s.do(t, http.MethodGet, "/api/auth/me", token, nil).status }
	creds := map[string]string{"username": "mfa.alice", "password": pwAlice}

	p, r := signIn(creds)
	first := tokensOf("sign in without 2FA", p, r)

	// Setup needs a signed-in person: not anonymous, not an API key.
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/2fa/setup", "", nil), http.StatusUnauthorized, "anonymous setup")
	adminTok := s.login(t, "mfa.admin", pwAdmin)
	r = s.do(t, http.MethodPost, "/api/apikeys", adminTok, map[string]string{"name": "robot", "role": "analyst",
		"expires_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
	expectStatus(t, r, http.StatusCreated, "create an API key")
	var key struct{ Key string }
	r.json(t, &key)
	seen.add(key.Key)
	expectCode(s.do(t, http.MethodPost, "/api/auth/2fa/setup", key.Key, nil), http.StatusForbidden, "api_key_not_allowed", "setup with an API key")

	// Setup: a 160-bit secret, its otpauth URI and QR code.
	r = s.do(t, http.MethodPost, "/api/auth/2fa/setup", first.AccessToken, nil)
	expectStatus(t, r, http.StatusOK, "setup")
	var setup struct {
		Secret      string    `json:"secret"`
		URI         string    `json:"otpauth_uri"`
		QR          string    `json:"qr_png_base64"`
		ExpiresAt   time.Time `json:"expires_at"`
		MFARequired *bool     `json:"mfa_required"`
	}
	r.json(t, &setup)
	seen.add(setup.Secret)
	if len(setup.Secret) != 32 || !strings.HasPrefix(setup.URI, "otpauth://totp/") || !strings.Contains(setup.URI, "secret="+setup.Secret) ||
		!strings.Contains(setup.URI, "mfa.alice") || setup.ExpiresAt.Before(time.Now()) {
		t.Fatalf("setup answered %s", r.body)
	}
	pngBytes, err := base64.StdEncoding.DecodeString(setup.QR)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("the QR code is no PNG image: %v", err)
	}

	// Verify: bad requests change nothing; a wrong code is refused.
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/2fa/verify", first.AccessToken, `{"code":`), http.StatusBadRequest, "malformed verify")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/2fa/verify", first.AccessToken, map[string]string{"code": "123456", "enabled": "true"}),
		http.StatusBadRequest, "verify with an unknown field")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/2fa/verify", first.AccessToken, `{"code":"1"}`, "Content-Type", "text/plain"),
		http.StatusUnsupportedMediaType, "verify as text")
	code0 := mfaOathtool(t, setup.Secret, time.Now())
	seen.code(code0)
	wrong := "000000"
	if wrong == code0 {
		wrong = "111111"
	}
	expectCode(s.do(t, http.MethodPost, "/api/auth/2fa/verify", first.AccessToken, map[string]string{"code": wrong}),
		http.StatusForbidden, "mfa_code_invalid", "verify with a wrong code")
	p, r = signIn(creds)
	tokensOf("sign in while the setup is pending", p, r)

	// The code of the authenticator turns 2FA on and shows ten recovery codes, once.
	r = s.do(t, http.MethodPost, "/api/auth/2fa/verify", first.AccessToken, map[string]string{"code": code0})
	expectStatus(t, r, http.StatusOK, "verify")
	var on struct {
		Enabled       bool     `json:"enabled"`
		RecoveryCodes []string `json:"recovery_codes"`
		Version       int64    `json:"version"`
		Position      int64    `json:"position"`
	}
	r.json(t, &on)
	if !on.Enabled || len(on.RecoveryCodes) != 10 || on.Position == 0 {
		t.Fatalf("verify answered %s", r.body)
	}
	seen.add(on.RecoveryCodes...)
	expectCode(s.do(t, http.MethodPost, "/api/auth/2fa/setup", first.AccessToken, nil), http.StatusConflict, "mfa_already_enabled", "setup while on")
	if me(first.AccessToken) != http.StatusOK {
		t.Fatal("turning 2FA on ended the session")
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/logout", first.AccessToken, nil), http.StatusNoContent, "logout")
	if me(first.AccessToken) != http.StatusUnauthorized {
		t.Fatal("the access token works after logout")
	}

	// Step one now answers an MFA token, and no tokens.
	p, r = signIn(creds)
	expectStatus(t, r, http.StatusOK, "password step")
	if !p.MFARequired || p.MFAToken == "" || strings.Join(p.Methods, ",") != "totp,recovery_code" || p.ExpiresIn <= 0 || p.ExpiresIn > 300 ||
		bytes.Contains(r.body, []byte("access_token")) || bytes.Contains(r.body, []byte("refresh_token")) {
		t.Fatalf("password step answered %s", r.body)
	}
	mfaTok := p.MFAToken
	// The MFA token is no access token, nor a refresh token.
	expectStatus(t, s.do(t, http.MethodGet, "/api/auth/me", mfaTok, nil), http.StatusUnauthorized, "mfa token as access token")
	expectStatus(t, s.do(t, http.MethodGet, "/api/cases", mfaTok, nil), http.StatusUnauthorized, "mfa token on a tenant route")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/2fa/setup", mfaTok, nil), http.StatusUnauthorized, "mfa token on a 2FA route")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/refresh", "", map[string]string{"refresh_token": mfaTok}), http.StatusUnauthorized, "mfa token as refresh token")
	// Step two: bad input, a wrong code, then the code of the next step
	// (within the window, and after the step the setup used).
	expectCode(s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"mfa_token": mfaTok}), http.StatusBadRequest, "code_required", "no code")
	expectCode(s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"code": code0}), http.StatusBadRequest, "mfa_token_required", "no token")
	expectCode(s.do(t, http.MethodPost, "/api/auth/login/mfa", "", map[string]string{"mfa_token": mfaTok, "code": "1", "recovery_code": "2"}),
		http.StatusBadRequest, "one_code_only", "two codes")
	_, r = second(map[string]string{"mfa_token": mfaTok, "code": wrong})
	expectCode(r, http.StatusUnauthorized, "mfa_code_invalid", "wrong code")
	next := mfaOathtool(t, setup.Secret, time.Now().Add(30*time.Second))
	seen.code(next)
	p, r = second(map[string]string{"mfa_token": mfaTok, "code": next})
	viaTOTP := tokensOf("second step with a TOTP code", p, r)
	// The MFA token works once; the code too.
	_, r = second(map[string]string{"mfa_token": mfaTok, "recovery_code": on.RecoveryCodes[0]})
	expectCode(r, http.StatusUnauthorized, "mfa_token_invalid", "mfa token reused")
	p, r = signIn(creds)
	expectStatus(t, r, http.StatusOK, "password step")
	_, r = second(map[string]string{"mfa_token": p.MFAToken, "code": next})
	expectCode(r, http.StatusUnauthorized, "mfa_code_invalid", "TOTP code replayed")
	// An access token is no MFA token.
	_, r = second(map[string]string{"mfa_token": viaTOTP.AccessToken, "code": mfaOathtool(t, setup.Secret, time.Now())})
	expectCode(r, http.StatusUnauthorized, "mfa_token_invalid", "access token as mfa token")

	// A recovery code instead, once.
	p, r = second(map[string]string{"mfa_token": p.MFAToken, "recovery_code": strings.ToUpper(on.RecoveryCodes[0])})
	viaRecovery := tokensOf("second step with a recovery code", p, r)
	p, r = signIn(creds)
	expectStatus(t, r, http.StatusOK, "password step")
	_, r = second(map[string]string{"mfa_token": p.MFAToken, "recovery_code": on.RecoveryCodes[0]})
	expectCode(r, http.StatusUnauthorized, "mfa_code_invalid", "recovery code reused")

	// As the original API: the code in the sign-in request itself.
	p, r = signIn(map[string]string{"username": "mfa.alice", "password": pwAlice, "totp_code": on.RecoveryCodes[1]})
	tokensOf("one request with totp_code", p, r)
	form := url.Values{"grant_type": {"password"}, "username": {"mfa.alice"}, "password": {pwAlice}, "scope": {on.RecoveryCodes[2] + " openid"}}
	p, r = signIn(form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	tokensOf("OAuth2 form with the code in scope", p, r)
	form.Set("scope", "openid profile")
	p, r = signIn(form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusOK || !p.MFARequired {
		t.Fatalf("a form whose scope holds no code: %d %s", r.status, r.body)
	}

	// New recovery codes, proven with a recovery code; the old ones stop working.
	expectCode(s.do(t, http.MethodPost, "/api/auth/2fa/recovery-codes", viaTOTP.AccessToken, map[string]string{"code": ""}),
		http.StatusBadRequest, "code_required", "regenerate without a code")
	r = s.do(t, http.MethodPost, "/api/auth/2fa/recovery-codes", viaTOTP.AccessToken, map[string]string{"code": on.RecoveryCodes[3]})
	expectStatus(t, r, http.StatusOK, "regenerate recovery codes")
	var fresh struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	r.json(t, &fresh)
	seen.add(fresh.RecoveryCodes...)
	if len(fresh.RecoveryCodes) != 10 {
		t.Fatalf("regenerate answered %s", r.body)
	}
	p, r = signIn(map[string]string{"username": "mfa.alice", "password": pwAlice, "totp_code": on.RecoveryCodes[4]})
	expectCode(r, http.StatusUnauthorized, "mfa_code_invalid", "an old recovery code after regenerating")

	// Disable: the password and a code; other sessions end, this one stays.
	expectCode(s.do(t, http.MethodPost, "/api/auth/2fa/disable", viaTOTP.AccessToken, map[string]string{"password": "not the password at all", "code": fresh.RecoveryCodes[0]}),
		http.StatusForbidden, "current_password_wrong", "disable with a wrong password")
	r = s.do(t, http.MethodPost, "/api/auth/2fa/disable", viaTOTP.AccessToken, map[string]string{"password": pwAlice, "code": fresh.RecoveryCodes[0]})
	expectStatus(t, r, http.StatusOK, "disable")
	if !bytes.Contains(r.body, []byte(`"enabled":false`)) {
		t.Fatalf("disable answered %s", r.body)
	}
	if me(viaTOTP.AccessToken) != http.StatusOK || me(viaRecovery.AccessToken) != http.StatusUnauthorized {
		t.Fatal("disabling 2FA must end the other sessions and keep this one")
	}
	expectCode(s.do(t, http.MethodPost, "/api/auth/2fa/disable", viaTOTP.AccessToken, map[string]string{"password": pwAlice, "code": fresh.RecoveryCodes[1]}),
		http.StatusConflict, "mfa_not_enabled", "disable again")
	p, r = signIn(creds)
	tokensOf("sign in after disabling", p, r)

	// Per-address throttling: failures from one address, for a real account
	// and made-up names alike, end in 429 for that address only.
	const attacker, other = "127.0.0.61", "127.0.0.62"
	var throttled response
	for i := 0; i < 20 && throttled.status == 0; i++ {
		name := []string{"mfa.alice", "nobody" + strconv.Itoa(i)}[i%2]
		r := s.mfaDoFrom(t, attacker, "/api/auth/login", map[string]string{"username": name, "password": "a wrong password " + strconv.Itoa(i)})
		switch r.status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			throttled = r
		default:
			t.Fatalf("failed sign-in %d answered %d %s", i, r.status, r.body)
		}
	}
	if throttled.status == 0 || throttled.errorCode(t) != "too_many_attempts" {
		t.Fatal("20 failed sign-ins from one address were never throttled")
	}
	if after, err := strconv.Atoi(throttled.header.Get("Retry-After")); err != nil || after < 1 || after > 300 {
		t.Fatalf("Retry-After %q", throttled.header.Get("Retry-After"))
	}
	r = s.mfaDoFrom(t, attacker, "/api/auth/login", creds)
	expectCode(r, http.StatusTooManyRequests, "too_many_attempts", "the right password from the throttled address")
	r = s.mfaDoFrom(t, attacker, "/api/auth/login", map[string]string{"username": "nobody-else", "password": "x"})
	expectCode(r, http.StatusTooManyRequests, "too_many_attempts", "an unknown name from the throttled address")
	r = s.mfaDoFrom(t, other, "/api/auth/login", creds)
	expectStatus(t, r, http.StatusOK, "the right password from another address")

	// The records: the events and the audit trail tell what happened, and no
	// secret appears in them or in the server's output.
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
	counts := map[string]int{}
	var all strings.Builder
	for rows.Next() {
		var name, payload, md string
		if err := rows.Scan(&name, &payload, &md); err != nil {
			t.Fatal(err)
		}
		counts[name]++
		if v := seen.leaked(payload + "\n" + md); v != "" {
			t.Fatalf("event %s carries a secret", name)
		}
		if strings.HasPrefix(name, "user.") {
			all.WriteString(payload + "\n")
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for _, want := range []string{"user.mfa_enabled", "user.mfa_failed", "user.mfa_recovery_code_used", "user.mfa_recovery_codes_regenerated", "user.mfa_disabled"} {
		if counts[want] == 0 {
			t.Errorf("no %s event; have %v", want, counts)
		}
	}
	for _, want := range []string{`"password+totp"`, `"password+recovery_code"`, `"bad_code"`, `"replayed_code"`, `"factor": "password"`} {
		if !strings.Contains(all.String(), want) && !strings.Contains(all.String(), strings.ReplaceAll(want, ": ", ":")) {
			t.Errorf("no user event carries %s", want)
		}
	}
	waitCaughtUp(t, s, "auditlog.v1")
	var audit string
	if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(row_to_json(x)::text, E'\n'), '') FROM `+
		pgx.Identifier{s.schema(), "audit_log"}.Sanitize()+` x`).Scan(&audit); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(audit, "user.mfa_failed") || !strings.Contains(audit, "user.mfa_disabled") {
		t.Fatal("the audit trail lacks the 2FA entries")
	}
	if v := seen.leaked(audit); v != "" {
		t.Fatal("an audit entry carries a secret")
	}
	var sealed []byte
	if err := conn.QueryRow(ctx, `SELECT coalesce(sealed_secret, '') FROM `+pgx.Identifier{s.schema(), "mfa_totp"}.Sanitize()).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) != 0 {
		t.Fatal("the secret was kept after disabling")
	}
	stdout, stderr := s.output()
	if v := seen.leaked(stdout + stderr); v != "" {
		t.Fatal("the server's output carries a secret")
	}
	if !strings.Contains(stderr, "secrets at rest are sealed with the master key") {
		t.Error("the server did not log which master key seals")
	}
}

// TestMasterKeyringMFA covers where the master key comes from: the
// environment, a key generated into the data directory in the embedded
// development set-up, or, in production without one, none (2FA setup then
// answers 503 mfa_unavailable) with a warning.
func TestMasterKeyringMFA(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))

	// Production without a key.
	kr, err := masterKeyring(config{KafkaBrokers: []string{"kafka:9092"}, DataDir: t.TempDir()}, log)
	if err != nil || kr != nil {
		t.Fatalf("production without a key: %v, %v", kr, err)
	}
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), "VC_MASTER_KEY is not set") {
		t.Fatalf("no warning: %s", logs.String())
	}

	// Development: generated once, kept, and reused.
	dir := t.TempDir()
	dev := config{DataDir: dir}
	a, err := masterKeyring(dev, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := masterKeyring(dev, log)
	if err != nil {
		t.Fatal(err)
	}
	if a.CurrentKeyID() != b.CurrentKeyID() {
		t.Fatal("the development key changed between starts")
	}
	info, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master.key: %v %v", info, err)
	}

	// From the environment, with a retired key that still opens.
	keyA := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	keyB := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	old, err := masterKeyring(config{MasterKey: keyA, KafkaBrokers: []string{"kafka:9092"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal("tenant", "totp", []byte("JBSWY3DPEHPK3PXP"))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := masterKeyring(config{MasterKey: keyB, MasterKeyOld: keyA, KafkaBrokers: []string{"kafka:9092"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := rotated.Open("tenant", "totp", sealed); err != nil || string(plain) != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("the retired key does not open: %v", err)
	}
	if strings.Contains(logs.String(), keyA) || strings.Contains(logs.String(), keyB) {
		t.Fatal("a master key was logged")
	}
	if _, err := masterKeyring(config{MasterKey: "not base64!"}, log); err == nil {
		t.Fatal("a malformed key was accepted")
	}

	// Validation names the setting and never the value.
	for _, c := range []config{{MasterKey: "c2hvcnQ="}, {MasterKey: keyA, MasterKeyOld: "c2hvcnQ="}} {
		c.TOTPIssuer, c.LogLevel, c.SessionIdleTimeout, c.SessionLifetime = "VelociCompanion", "info", time.Hour, time.Hour
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), "VC_MASTER_KEY") || strings.Contains(err.Error(), "c2hvcnQ=") {
			t.Fatalf("validate(%+v) = %v", c.MasterKey, err)
		}
	}
	bad := config{TOTPIssuer: "Velo:ci", LogLevel: "info", SessionIdleTimeout: time.Hour, SessionLifetime: time.Hour}
	if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "VC_TOTP_ISSUER") {
		t.Fatalf("an issuer with a colon: %v", err)
	}
}
