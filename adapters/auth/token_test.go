package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"velocicompanion/adapters/auth"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

var (
	keyA = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	keyB = []byte("fedcba9876543210fedcba9876543210")
	t0   = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

	alice = auth.Subject{
		User:    "0190c7a4-6a38-7f1e-9a49-0000000a11ce",
		Tenant:  "0190c7a4-6a38-7f1e-9a49-00000000acme",
		Role:    users.RoleAnalyst,
		Session: "0190c7a4-6a38-7f1e-9a49-000000005e55",
		Epoch:   3,
	}
)

// clock is a settable clock for an Issuer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newIssuer(c *clock) *auth.Issuer {
	return &auth.Issuer{
		Key: keyA, KeyID: "2026-11", Issuer: "velocicompanion", Audience: "velocicompanion-api",
		TTL: 15 * time.Minute, Now: c.now,
	}
}

// forge signs claims with any method and key, with header kid when not empty.
func forge(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("forge %s: %v", method.Alg(), err)
	}
	return s
}

// validClaims are the claims IssueAccess would write at t0.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "velocicompanion", "aud": []string{"velocicompanion-api"}, "sub": string(alice.User),
		"iat": t0.Unix(), "exp": t0.Add(15 * time.Minute).Unix(), "jti": "J5QXQ2LDMNTG2ZDYMFSGK4DEMI",
		"tid": string(alice.Tenant), "role": string(alice.Role), "sid": alice.Session, "epoch": alice.Epoch, "typ": "access",
	}
}

func with(c jwt.MapClaims, key string, value any) jwt.MapClaims {
	c[key] = value
	return c
}

func without(c jwt.MapClaims, key string) jwt.MapClaims {
	delete(c, key)
	return c
}

func TestIssueAndParseAccess(t *testing.T) {
	c := &clock{t0}
	iss := newIssuer(c)
	if err := iss.Validate(); err != nil {
		t.Fatal(err)
	}
	token, issued, err := iss.IssueAccess(alice)
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Claims{Subject: alice, Type: auth.TokenAccess, ID: issued.ID, IssuedAt: t0, ExpiresAt: t0.Add(15 * time.Minute)}
	if issued != want || len(issued.ID) < 20 {
		t.Fatalf("issued claims = %+v, want %+v", issued, want)
	}
	c.t = t0.Add(14 * time.Minute)
	got, err := iss.Parse(token, auth.TokenAccess)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("times = %v, %v; want %v, %v", got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt)
	}
	got.IssuedAt, got.ExpiresAt = want.IssuedAt, want.ExpiresAt
	if got != want {
		t.Fatalf("parsed claims = %+v, want %+v", got, want)
	}

	header, payload := decodeParts(t, token)
	if header["alg"] != "HS256" || header["kid"] != "2026-11" {
		t.Errorf("header = %v", header)
	}
	for _, claim := range []string{"iss", "aud", "sub", "iat", "exp", "jti", "tid", "role", "sid", "epoch", "typ"} {
		if _, ok := payload[claim]; !ok {
			t.Errorf("payload lacks %q: %v", claim, payload)
		}
	}

	other, _, err := iss.IssueAccess(alice)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := iss.Parse(other, auth.TokenAccess); o.ID == got.ID {
		t.Error("two tokens share a jti")
	}
}

func TestIssueMFA(t *testing.T) {
	c := &clock{t0}
	iss := newIssuer(c)
	token, claims, err := iss.IssueMFA(alice)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Type != auth.TokenMFA || !claims.ExpiresAt.Equal(t0.Add(auth.DefaultMFATTL)) {
		t.Fatalf("mfa claims = %+v", claims)
	}
	if _, err := iss.Parse(token, auth.TokenMFA); err != nil {
		t.Fatalf("Parse as mfa: %v", err)
	}
	if _, err := iss.Parse(token, auth.TokenAccess); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("mfa token parsed as access: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hs256 := jwt.SigningMethodHS256
	valid := forge(t, hs256, keyA, "2026-11", validClaims())

	for _, tc := range []struct {
		name  string
		token string
		at    time.Time // zero means t0
		want  error
	}{
		{name: "alg_none", token: forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "alg_none_unsigned_by_hand", token: unsigned(`{"alg":"none","typ":"JWT","kid":"2026-11"}`, validClaims()), want: auth.ErrTokenInvalid},
		{name: "alg_missing", token: resign(t, `{"typ":"JWT","kid":"2026-11"}`, validClaims(), keyA), want: auth.ErrTokenInvalid},
		{name: "alg_lower_case", token: resign(t, `{"alg":"hs256","typ":"JWT","kid":"2026-11"}`, validClaims(), keyA), want: auth.ErrTokenInvalid},
		{name: "rs256", token: forge(t, jwt.SigningMethodRS256, rsaKey, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "ps256", token: forge(t, jwt.SigningMethodPS256, rsaKey, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "es256", token: forge(t, jwt.SigningMethodES256, ecKey, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "eddsa", token: forge(t, jwt.SigningMethodEdDSA, edKey, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "hs384_same_key", token: forge(t, jwt.SigningMethodHS384, keyA, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "hs512_same_key", token: forge(t, jwt.SigningMethodHS512, keyA, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "other_key_same_kid", token: forge(t, hs256, keyB, "2026-11", validClaims()), want: auth.ErrTokenInvalid},
		{name: "tampered_role", token: tamper(t, valid, "role", "admin"), want: auth.ErrTokenInvalid},
		{name: "tampered_epoch", token: tamper(t, valid, "epoch", 4), want: auth.ErrTokenInvalid},
		{name: "tampered_tenant", token: tamper(t, valid, "tid", "0190c7a4-6a38-7f1e-9a49-0000000globe"), want: auth.ErrTokenInvalid},
		{name: "tampered_expiry", token: tamper(t, valid, "exp", t0.Add(24*time.Hour).Unix()), at: t0.Add(time.Hour), want: auth.ErrTokenInvalid},
		{name: "signature_stripped", token: valid[:strings.LastIndex(valid, ".")+1], want: auth.ErrTokenInvalid},
		{name: "signature_padded", token: valid + "=", want: auth.ErrTokenInvalid},
		{name: "garbage", token: "not.a.jwt", want: auth.ErrTokenInvalid},
		{name: "empty", token: "", want: auth.ErrTokenInvalid},
		{name: "oversized", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "pad", strings.Repeat("x", auth.MaxTokenLen))), want: auth.ErrTokenInvalid},
		{name: "expired", token: valid, at: t0.Add(15*time.Minute + auth.Leeway + time.Second), want: auth.ErrTokenExpired},
		{name: "expired_and_forged_is_invalid_not_expired", token: forge(t, hs256, keyB, "2026-11", validClaims()), at: t0.Add(time.Hour), want: auth.ErrTokenInvalid},
		{name: "missing_exp", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "exp")), want: auth.ErrTokenInvalid},
		{name: "missing_iat", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "iat")), want: auth.ErrTokenInvalid},
		{name: "iat_in_the_future", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "iat", t0.Add(time.Minute).Unix())), want: auth.ErrTokenInvalid},
		{name: "nbf_in_the_future", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "nbf", t0.Add(time.Minute).Unix())), want: auth.ErrTokenInvalid},
		{name: "exp_as_string", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "exp", "tomorrow")), want: auth.ErrTokenInvalid},
		{name: "wrong_issuer", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "iss", "someone-else")), want: auth.ErrTokenInvalid},
		{name: "missing_issuer", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "iss")), want: auth.ErrTokenInvalid},
		{name: "wrong_audience", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "aud", "other-api")), want: auth.ErrTokenInvalid},
		{name: "missing_audience", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "aud")), want: auth.ErrTokenInvalid},
		{name: "typ_mfa_as_access", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "typ", "mfa")), want: auth.ErrTokenInvalid},
		{name: "typ_missing", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "typ")), want: auth.ErrTokenInvalid},
		{name: "typ_refresh", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "typ", "refresh")), want: auth.ErrTokenInvalid},
		{name: "kid_unknown", token: forge(t, hs256, keyA, "2025-01", validClaims()), want: auth.ErrTokenInvalid},
		{name: "kid_missing", token: forge(t, hs256, keyA, "", validClaims()), want: auth.ErrTokenInvalid},
		{name: "kid_not_a_string", token: resign(t, `{"alg":"HS256","typ":"JWT","kid":2026}`, validClaims(), keyA), want: auth.ErrTokenInvalid},
		{name: "missing_subject", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "sub")), want: auth.ErrTokenInvalid},
		{name: "missing_tenant", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "tid")), want: auth.ErrTokenInvalid},
		{name: "missing_jti", token: forge(t, hs256, keyA, "2026-11", without(validClaims(), "jti")), want: auth.ErrTokenInvalid},
		{name: "unknown_role", token: forge(t, hs256, keyA, "2026-11", with(validClaims(), "role", "superuser")), want: auth.ErrTokenInvalid},
		{name: "tenant_id_claim_of_the_original_api", token: forge(t, hs256, keyA, "2026-11", with(without(validClaims(), "tid"), "tenant_id", 1)), want: auth.ErrTokenInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = t0
			}
			c := &clock{at}
			claims, err := newIssuer(c).Parse(tc.token, auth.TokenAccess)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if claims != (auth.Claims{}) {
				t.Fatalf("Parse returned claims with an error: %+v", claims)
			}
			if domain.KindOf(err) != domain.KindUnauthenticated {
				t.Fatalf("error kind = %v, want unauthenticated", domain.KindOf(err))
			}
		})
	}
}

func TestParseAcceptsForgedButCorrectToken(t *testing.T) {
	// The reference token of TestParseRejects is valid: every rejection above
	// comes from the one thing changed.
	c := &clock{t0}
	if _, err := newIssuer(c).Parse(forge(t, jwt.SigningMethodHS256, keyA, "2026-11", validClaims()), auth.TokenAccess); err != nil {
		t.Fatal(err)
	}
	// So is a hand-built one, which keeps the hand-built rejections honest.
	if _, err := newIssuer(c).Parse(resign(t, `{"alg":"HS256","typ":"JWT","kid":"2026-11"}`, validClaims(), keyA), auth.TokenAccess); err != nil {
		t.Fatal(err)
	}
	// aud may be a single string, or a list that names us among others.
	for _, aud := range []any{"velocicompanion-api", []string{"other", "velocicompanion-api"}} {
		if _, err := newIssuer(c).Parse(forge(t, jwt.SigningMethodHS256, keyA, "2026-11", with(validClaims(), "aud", aud)), auth.TokenAccess); err != nil {
			t.Errorf("aud %v: %v", aud, err)
		}
	}
}

func TestLeeway(t *testing.T) {
	c := &clock{t0}
	iss := newIssuer(c)
	token, claims, err := iss.IssueAccess(alice)
	if err != nil {
		t.Fatal(err)
	}
	c.t = claims.ExpiresAt.Add(auth.Leeway - time.Second)
	if _, err := iss.Parse(token, auth.TokenAccess); err != nil {
		t.Fatalf("within the leeway after exp: %v", err)
	}
	c.t = claims.ExpiresAt.Add(auth.Leeway + time.Second)
	if _, err := iss.Parse(token, auth.TokenAccess); !errors.Is(err, auth.ErrTokenExpired) {
		t.Fatalf("past the leeway: %v, want ErrTokenExpired", err)
	}
	// A verifier whose clock runs a little behind the issuer's accepts the token.
	c.t = t0.Add(-auth.Leeway + time.Second)
	if _, err := iss.Parse(token, auth.TokenAccess); err != nil {
		t.Fatalf("clock slightly behind: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	c := &clock{t0}
	old := &auth.Issuer{Key: keyA, KeyID: "2026-10", Issuer: "velocicompanion", Audience: "velocicompanion-api", Now: c.now}
	token, _, err := old.IssueAccess(alice)
	if err != nil {
		t.Fatal(err)
	}
	rotated := &auth.Issuer{
		Key: keyB, KeyID: "2026-11", VerifyKeys: map[string][]byte{"2026-10": keyA},
		Issuer: "velocicompanion", Audience: "velocicompanion-api", Now: c.now,
	}
	if err := rotated.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := rotated.Parse(token, auth.TokenAccess); err != nil {
		t.Fatalf("token of the retired key during rotation: %v", err)
	}
	fresh, _, err := rotated.IssueAccess(alice)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := decodeParts(t, fresh); h["kid"] != "2026-11" {
		t.Fatalf("new tokens are signed with kid %v", h["kid"])
	}
	if _, err := old.Parse(fresh, auth.TokenAccess); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("the old issuer accepted a token of the new key: %v", err)
	}
	// A retired key may only verify the tokens that name it.
	if _, err := rotated.Parse(forge(t, jwt.SigningMethodHS256, keyA, "2026-11", validClaims()), auth.TokenAccess); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("retired key accepted under the new kid: %v", err)
	}
	done := &auth.Issuer{Key: keyB, KeyID: "2026-11", Issuer: "velocicompanion", Audience: "velocicompanion-api", Now: c.now}
	if _, err := done.Parse(token, auth.TokenAccess); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("token of a removed key: %v", err)
	}
}

func TestDefaultKeyID(t *testing.T) {
	c := &clock{t0}
	iss := &auth.Issuer{Key: keyA, Issuer: "velocicompanion", Audience: "velocicompanion-api", Now: c.now}
	token, claims, err := iss.IssueAccess(alice)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := decodeParts(t, token); h["kid"] != auth.DefaultKeyID {
		t.Fatalf("kid = %v, want %q", h["kid"], auth.DefaultKeyID)
	}
	if !claims.ExpiresAt.Equal(t0.Add(auth.DefaultAccessTTL)) {
		t.Fatalf("default TTL gave exp %v", claims.ExpiresAt)
	}
	if _, err := iss.Parse(token, auth.TokenAccess); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	base := func() *auth.Issuer {
		return &auth.Issuer{Key: keyA, KeyID: "k", Issuer: "velocicompanion", Audience: "velocicompanion-api"}
	}
	for name, edit := range map[string]func(*auth.Issuer){
		"short_key":             func(i *auth.Issuer) { i.Key = keyA[:31] },
		"no_key":                func(i *auth.Issuer) { i.Key = nil },
		"no_issuer":             func(i *auth.Issuer) { i.Issuer = "" },
		"no_audience":           func(i *auth.Issuer) { i.Audience = "" },
		"negative_ttl":          func(i *auth.Issuer) { i.TTL = -time.Minute },
		"short_verify_key":      func(i *auth.Issuer) { i.VerifyKeys = map[string][]byte{"old": []byte("short")} },
		"empty_verify_kid":      func(i *auth.Issuer) { i.VerifyKeys = map[string][]byte{"": keyB} },
		"verify_key_reuses_kid": func(i *auth.Issuer) { i.VerifyKeys = map[string][]byte{"k": keyB} },
	} {
		t.Run(name, func(t *testing.T) {
			i := base()
			edit(i)
			if err := i.Validate(); err == nil {
				t.Fatal("Validate accepted a bad configuration")
			}
			if _, _, err := i.IssueAccess(alice); err == nil {
				t.Fatal("IssueAccess with a bad configuration")
			}
			good, _, err := base().IssueAccess(alice)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := i.Parse(good, auth.TokenAccess); !errors.Is(err, auth.ErrTokenInvalid) {
				t.Fatalf("Parse with a bad configuration: %v", err)
			}
			if strings.Contains(i.Validate().Error(), string(keyA)) {
				t.Fatal("the error mentions the key")
			}
		})
	}
}

func TestIssueRejectsBadSubject(t *testing.T) {
	iss := newIssuer(&clock{t0})
	for name, s := range map[string]auth.Subject{
		"no_user":       {Tenant: alice.Tenant, Role: users.RoleViewer},
		"no_tenant":     {User: alice.User, Role: users.RoleViewer},
		"unknown_role":  {User: alice.User, Tenant: alice.Tenant, Role: "user"},
		"no_role":       {User: alice.User, Tenant: alice.Tenant},
		"mfa_no_tenant": {User: alice.User, Role: users.RoleViewer},
	} {
		t.Run(name, func(t *testing.T) {
			issue := iss.IssueAccess
			if strings.HasPrefix(name, "mfa") {
				issue = iss.IssueMFA
			}
			if token, _, err := issue(s); err == nil {
				t.Fatalf("issued %q", token)
			}
		})
	}
}

// decodeParts returns a token's header and payload as maps.
func decodeParts(t *testing.T, token string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", token, len(parts))
	}
	for i, into := range []*map[string]any{&header, &payload} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}

// tamper rewrites one claim of token and keeps the original signature.
func tamper(t *testing.T, token, claim string, value any) string {
	t.Helper()
	parts := strings.Split(token, ".")
	_, payload := decodeParts(t, token)
	payload[claim] = value
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// unsigned returns header.payload. with an empty signature.
func unsigned(header string, claims jwt.MapClaims) string {
	raw, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(raw) + "."
}

// resign builds a token with a hand-written header and a correct HS256
// signature under key, to show that a valid signature alone is not enough.
func resign(t *testing.T, header string, claims jwt.MapClaims, key []byte) string {
	t.Helper()
	signingInput := strings.TrimSuffix(unsigned(header, claims), ".")
	sig, err := jwt.SigningMethodHS256.Sign(signingInput, key)
	if err != nil {
		t.Fatal(err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}
