package main

// Helpers shared by the role × route matrix (e2e_matrix_test.go), the attack
// cases (e2e_attacks_test.go) and the canary test (e2e_canary_test.go).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// secUser is an account of a security test: its credentials, id and a token
// of a session that stays open for the whole test.
type secUser struct {
	name, password, email string
	id, tenant            string
	token                 string
}

// secWorld is a platform with two tenants: A with an administrator, an
// analyst, a viewer and a spare viewer (target of user-management calls),
// and B with an administrator; and the platform administrator.
type secWorld struct {
	s                             *server
	tenantA, tenantB              string
	root                          *secUser
	viewer, analyst, admin, spare *secUser // tenant A
	adminB                        *secUser // tenant B
}

// newSecWorld creates the world on s. password gives each account's password
// from its user name.
func newSecWorld(t *testing.T, s *server, password func(name string) string) *secWorld {
	t.Helper()
	w := &secWorld{s: s}
	w.root = &secUser{name: "admin", password: s.bootstrapPassword(t)}
	w.root.token = s.login(t, "admin", w.root.password)
	r := s.do(t, http.MethodGet, "/api/auth/me", w.root.token, nil)
	expectStatus(t, r, http.StatusOK, "platform admin me")
	var me userBody
	r.json(t, &me)
	w.root.id, w.root.tenant = me.ID, me.TenantID
	// The platform administrator gets an address, so that every principal
	// may ask for a verification mail.
	w.root.email = "root@platform.example"
	expectStatus(t, s.do(t, http.MethodPatch, "/api/users/"+w.root.id, w.root.token, map[string]string{"email": w.root.email}),
		http.StatusOK, "platform admin sets an address")

	mkTenant := func(name string) string {
		r := s.do(t, http.MethodPost, "/api/tenants", w.root.token, map[string]string{"name": name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+name)
		var out struct{ ID string }
		r.json(t, &out)
		return out.ID
	}
	w.tenantA, w.tenantB = mkTenant("Acme"), mkTenant("Globex")
	mkUser := func(tenant, name, role string) *secUser {
		u := &secUser{name: name, password: password(name), email: name + "@" + strings.ToLower(name) + ".example", tenant: tenant}
		r := s.do(t, http.MethodPost, "/api/users", w.root.token, map[string]string{
			"username": name, "password": u.password, "email": u.email, "role": role, "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create user "+name)
		var b userBody
		r.json(t, &b)
		u.id = b.ID
		u.token = s.login(t, name, u.password)
		return u
	}
	w.admin = mkUser(w.tenantA, "alice", "admin")
	w.analyst = mkUser(w.tenantA, "carol", "analyst")
	w.viewer = mkUser(w.tenantA, "vic", "viewer")
	w.spare = mkUser(w.tenantA, "tara", "viewer")
	w.adminB = mkUser(w.tenantB, "bob", "admin")
	return w
}

// secSourceClients are HTTP clients whose connections come from a given
// loopback address, so that per-address limits (password-reset requests)
// see distinct clients without believing any header.
var secSourceClients sync.Map // ip → *http.Client

func secClientFrom(ip string) *http.Client {
	if c, ok := secSourceClients.Load(ip); ok {
		return c.(*http.Client)
	}
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
	actual, _ := secSourceClients.LoadOrStore(ip, c)
	return actual.(*http.Client)
}

// secDoFrom is server.do from the loopback address ip ("" is the default).
func (s *server) secDoFrom(t *testing.T, ip, method, path, token string, body any, headers ...string) response {
	t.Helper()
	client := http.DefaultClient
	if ip != "" {
		client = secClientFrom(ip)
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
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
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
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

// secServedRoutes returns every "METHOD /path/{param}" the running server's
// OpenAPI document names (generated from the same table that registers the
// routes; TestOpenAPICoversEveryRoute keeps the two equal).
func secServedRoutes(t *testing.T, s *server) map[string]bool {
	t.Helper()
	r := s.do(t, http.MethodGet, "/openapi.json", "", nil)
	expectStatus(t, r, http.StatusOK, "openapi.json")
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	out := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			out[strings.ToUpper(method)+" "+path] = true
		}
	}
	if len(out) < 10 {
		t.Fatalf("the OpenAPI document names only %d routes", len(out))
	}
	return out
}

// secTwoFactorRoutes are the TOTP routes of issue 3, wired by the 2FA work.
var secTwoFactorRoutes = []string{
	"POST /api/auth/2fa/setup",
	"POST /api/auth/2fa/verify",
	"POST /api/auth/2fa/disable",
	"POST /api/auth/2fa/recovery-codes",
	"POST /api/auth/login/mfa",
}

// secTwoFactorServed reports whether every 2FA route is served.
func secTwoFactorServed(served map[string]bool) bool {
	for _, r := range secTwoFactorRoutes {
		if !served[r] {
			return false
		}
	}
	return true
}

// secPGConn connects to the test database; the connection closes with the test.
func secPGConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// secEnv returns the value of the server's environment variable name.
func (s *server) secEnv(name string) string {
	for _, e := range s.cmd.Env {
		if v, ok := strings.CutPrefix(e, name+"="); ok {
			return v
		}
	}
	return ""
}

func secRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// JWT forging: tokens are built by hand so that every header and claim can be
// chosen, including ones a JWT library refuses to produce.

var secB64 = base64.RawURLEncoding

// secJWTDecode returns the header and claims of a compact JWT, unverified.
func secJWTDecode(t *testing.T, token string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWT: %q", token)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := secB64.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return header, claims
}

// secJWTSigningInput encodes header and claims as the first two parts of a JWT.
func secJWTSigningInput(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return secB64.EncodeToString(h) + "." + secB64.EncodeToString(c)
}

// secJWTHMAC signs header and claims with HMAC over newHash and key, whatever
// the header's alg says.
func secJWTHMAC(t *testing.T, header, claims map[string]any, newHash func() hash.Hash, key []byte) string {
	t.Helper()
	in := secJWTSigningInput(t, header, claims)
	m := hmac.New(newHash, key)
	m.Write([]byte(in))
	return in + "." + secB64.EncodeToString(m.Sum(nil))
}

// secJWTRS256 signs header and claims with RSASSA-PKCS1-v1_5 SHA-256.
func secJWTRS256(t *testing.T, header, claims map[string]any, key *rsa.PrivateKey) string {
	t.Helper()
	in := secJWTSigningInput(t, header, claims)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + secB64.EncodeToString(sig)
}

// secJWTWith returns a copy of m with the given keys set; a nil value deletes the key.
func secJWTWith(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

var (
	secHS256 = sha256.New
	secHS384 = sha512.New384
	secHS512 = sha512.New
)

// secSignIn signs in with the JSON form and returns the token pair.
func (s *server) secSignIn(t *testing.T, name, password string) tokenPair {
	t.Helper()
	r := s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": name, "password": password})
	expectStatus(t, r, http.StatusOK, "sign in "+name)
	var p tokenPair
	r.json(t, &p)
	if p.AccessToken == "" || p.RefreshToken == "" {
		t.Fatalf("sign in %s answered %s", name, r.body)
	}
	return p
}

// secRefresh exchanges a refresh token; the pair is empty unless it answered 200.
func (s *server) secRefresh(t *testing.T, refresh string) (tokenPair, response) {
	t.Helper()
	r := s.do(t, http.MethodPost, "/api/auth/refresh", "", map[string]string{"refresh_token": refresh})
	var p tokenPair
	if r.status == http.StatusOK {
		r.json(t, &p)
	}
	return p, r
}

// secOathtool returns the TOTP code of a base32 secret at a time, computed by
// Debian's oathtool: independently of the server's implementation.
func secOathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	out, err := exec.Command("oathtool", "--totp", "--base32", "--now", "@"+strconv.FormatInt(at.Unix(), 10), secret).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool (apt-get install oathtool): %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}
