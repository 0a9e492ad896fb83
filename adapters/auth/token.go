package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// TokenType tells what a token may be used for; it travels in the "typ" claim.
//
// WARNING: the values are inside every issued token; renaming one logs
// everybody out.
type TokenType string

// The token types.
const (
	// TokenAccess authorises API requests.
	TokenAccess TokenType = "access"
	// TokenMFA proves only that the password was right; it may be exchanged,
	// with a second factor, for an access token, and never passes as one.
	TokenMFA TokenType = "mfa"
)

// Token lifetimes and limits.
const (
	DefaultAccessTTL = 15 * time.Minute
	DefaultMFATTL    = 5 * time.Minute
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway = 30 * time.Second
	// MinKeyLen is the shortest HS256 key accepted, in bytes.
	MinKeyLen = 32
	// MaxTokenLen bounds the tokens Parse reads; ours are far shorter.
	MaxTokenLen = 4096
	// DefaultKeyID is the key id of Issuer.Key when Issuer.KeyID is empty.
	DefaultKeyID = "default"
)

// Errors returned by Parse. Both answer 401; neither says more about why.
var (
	ErrTokenExpired = domain.Unauthenticated("token_expired", "the token has expired")
	ErrTokenInvalid = domain.Unauthenticated("token_invalid", "the token is not valid")
)

// Subject is who a token speaks for.
type Subject struct {
	User    domain.UserID   // "sub"
	Tenant  domain.TenantID // "tid"
	Role    users.Role      // "role"
	Session string          // "sid"; optional
	// Epoch is the account's credential epoch when the token was issued
	// ("epoch"). The edge refuses a token whose epoch is no longer the
	// account's, which revokes all of its tokens at once.
	Epoch int64
}

// Claims are the verified contents of a token.
type Claims struct {
	Subject
	Type      TokenType // "typ"
	ID        string    // "jti": random, unique per token
	IssuedAt  time.Time // "iat", whole seconds
	ExpiresAt time.Time // "exp", whole seconds
}

// Issuer issues and verifies HS256 tokens. Every token names its signing key
// in the "kid" header, so keys can be rotated: sign with a new Key and KeyID,
// and keep the previous key in VerifyKeys until the tokens it signed expired.
// The fields are read on every call; do not change them while in use.
type Issuer struct {
	// Key signs new tokens and verifies tokens whose kid is KeyID. At least
	// MinKeyLen random bytes.
	Key []byte
	// KeyID names Key in the kid header; empty means DefaultKeyID.
	KeyID string
	// VerifyKeys are further keys, by kid, that verify (never sign) tokens:
	// the retired keys during a rotation. Each at least MinKeyLen bytes.
	VerifyKeys map[string][]byte
	// Issuer and Audience are the iss and aud claims, checked on Parse.
	Issuer   string
	Audience string
	// TTL is the lifetime of access tokens; zero means DefaultAccessTTL.
	TTL time.Duration
	// MFATTL is the lifetime of mfa tokens; zero means DefaultMFATTL.
	MFATTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// tokenClaims is the JSON payload of a token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Tenant  domain.TenantID `json:"tid"`
	Role    users.Role      `json:"role"`
	Session string          `json:"sid,omitempty"`
	Epoch   int64           `json:"epoch"`
	Type    TokenType       `json:"typ"`
}

// Validate reports whether the configuration of i is usable. Call it once
// while wiring; the other methods fail the same way when it does not hold.
func (i *Issuer) Validate() error {
	switch {
	case len(i.Key) < MinKeyLen:
		return fmt.Errorf("jwt signing key has %d bytes, want at least %d", len(i.Key), MinKeyLen)
	case i.Issuer == "":
		return errors.New("jwt issuer must not be empty")
	case i.Audience == "":
		return errors.New("jwt audience must not be empty")
	case i.TTL < 0 || i.MFATTL < 0:
		return errors.New("jwt lifetimes must not be negative")
	}
	for kid, key := range i.VerifyKeys {
		switch {
		case kid == "":
			return errors.New("jwt verification key with an empty key id")
		case len(key) < MinKeyLen:
			return fmt.Errorf("jwt verification key %q has %d bytes, want at least %d", kid, len(key), MinKeyLen)
		case kid == i.keyID():
			return fmt.Errorf("jwt verification key %q reuses the signing key's id", kid)
		}
	}
	return nil
}

// IssueAccess returns a signed access token for s and its claims.
func (i *Issuer) IssueAccess(s Subject) (string, Claims, error) {
	return i.issue(s, TokenAccess, or(i.TTL, DefaultAccessTTL))
}

// IssueMFA returns a signed mfa token for s and its claims: proof of the first
// factor only, short-lived, and refused wherever an access token is wanted.
func (i *Issuer) IssueMFA(s Subject) (string, Claims, error) {
	return i.issue(s, TokenMFA, or(i.MFATTL, DefaultMFATTL))
}

func (i *Issuer) issue(s Subject, typ TokenType, ttl time.Duration) (string, Claims, error) {
	if err := i.Validate(); err != nil {
		return "", Claims{}, err
	}
	switch {
	case s.User == "":
		return "", Claims{}, errors.New("issue token: empty user")
	case s.Tenant == "":
		return "", Claims{}, errors.New("issue token: empty tenant")
	case !s.Role.Valid():
		return "", Claims{}, fmt.Errorf("issue token: invalid role %q", s.Role)
	}
	now := i.now()
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.Issuer,
			Subject:   string(s.User),
			Audience:  jwt.ClaimStrings{i.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        rand.Text(),
		},
		Tenant:  s.Tenant,
		Role:    s.Role,
		Session: s.Session,
		Epoch:   s.Epoch,
		Type:    typ,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = i.keyID()
	signed, err := t.SignedString(i.Key)
	if err != nil {
		return "", Claims{}, fmt.Errorf("sign token: %w", err)
	}
	return signed, c.claims(), nil
}

// Parse verifies token and returns its claims if it is a well-formed HS256
// token signed by a known key, issued by i.Issuer for i.Audience, of type
// want, carrying iat and exp, and not expired (within Leeway). It returns
// ErrTokenExpired for a genuine but expired token, ErrTokenInvalid otherwise.
// A configuration error of i also answers ErrTokenInvalid; Validate finds it.
func (i *Issuer) Parse(token string, want TokenType) (Claims, error) {
	if len(token) > MaxTokenLen || i.Validate() != nil {
		return Claims{}, ErrTokenInvalid
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(i.Issuer),
		jwt.WithAudience(i.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(i.now),
		jwt.WithStrictDecoding(),
	)
	var c tokenClaims
	if _, err := p.ParseWithClaims(token, &c, i.key); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, ErrTokenExpired
		}
		return Claims{}, ErrTokenInvalid
	}
	switch {
	case c.IssuedAt == nil, c.ID == "", c.Subject == "", c.Tenant == "",
		!c.Role.Valid(), c.Type != want:
		return Claims{}, ErrTokenInvalid
	}
	return c.claims(), nil
}

// key finds the verification key named by the kid header of t.
func (i *Issuer) key(t *jwt.Token) (any, error) {
	kid, ok := t.Header["kid"].(string)
	switch {
	case !ok || kid == "":
		return nil, errors.New("no key id")
	case kid == i.keyID():
		return i.Key, nil
	}
	if k, ok := i.VerifyKeys[kid]; ok {
		return k, nil
	}
	return nil, errors.New("unknown key id")
}

func (i *Issuer) keyID() string {
	if i.KeyID == "" {
		return DefaultKeyID
	}
	return i.KeyID
}

func (i *Issuer) now() time.Time {
	if i.Now == nil {
		return time.Now()
	}
	return i.Now()
}

func (c tokenClaims) claims() Claims {
	out := Claims{
		Subject: Subject{User: domain.UserID(c.Subject), Tenant: c.Tenant, Role: c.Role, Session: c.Session, Epoch: c.Epoch},
		Type:    c.Type,
		ID:      c.ID,
	}
	if c.IssuedAt != nil {
		out.IssuedAt = c.IssuedAt.Time
	}
	if c.ExpiresAt != nil {
		out.ExpiresAt = c.ExpiresAt.Time
	}
	return out
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
