package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// Claims is what an access token asserts. The role in it is informational:
// every request takes the current role from the write side.
type Claims struct {
	User    domain.UserID
	Tenant  domain.TenantID
	Role    string
	Session string
	Epoch   int64
}

// Tokens issues and verifies access tokens; adapters/auth implements it.
type Tokens interface {
	IssueAccess(c Claims) (token string, expires time.Time, err error)
	VerifyAccess(token string) (Claims, error)
}

// Principal is the authenticated caller of a request. It is the only value the
// auth middleware puts into the request context.
//
// For an API key, User is "apikey:<key id>" (the actor recorded on what the
// key does), Username the key's name, Session empty and APIKey the key id.
type Principal struct {
	User     domain.UserID
	Tenant   domain.TenantID
	Role     users.Role
	Username string
	Session  string
	APIKey   string
}

// IsAPIKey reports whether p is an API key rather than a signed-in person.
func (p Principal) IsAPIKey() bool { return p.APIKey != "" }

// Actor returns the principal as the domain sees an actor.
func (p Principal) Actor() users.Actor {
	return users.Actor{User: p.User, Tenant: p.Tenant, Role: p.Role}
}

// IsPlatformAdmin reports whether p administers the whole installation.
func (p Principal) IsPlatformAdmin() bool {
	return p.Role == users.RolePlatformAdmin && p.Tenant == domain.PlatformTenant
}

func principalOf(c *gin.Context) (Principal, bool) {
	v, ok := c.Get(ctxPrincipal)
	if !ok {
		return Principal{}, false
	}
	return v.(Principal), true
}

// mustPrincipal returns the principal of an authenticated route.
func mustPrincipal(c *gin.Context) Principal {
	p, ok := principalOf(c)
	if !ok {
		panic("httpapi: route without authentication asked for the principal")
	}
	return p
}

var (
	errNoToken      = domain.Unauthenticated("not_authenticated", "an access token is required")
	errBadToken     = domain.Unauthenticated("token_invalid", "the access token is not valid")
	errTokenRevoked = domain.Unauthenticated("token_revoked", "the access token is no longer valid; sign in again")
	errForbidden    = domain.Forbidden("forbidden", "your role does not allow this")
	errAPIKeyRoute  = domain.Forbidden("api_key_not_allowed", "API keys cannot use this route; it needs a signed-in user")
)

// bearer extracts the token from the Authorization header. Tokens are never
// read from the query string or a cookie.
func bearer(c *gin.Context) (string, bool) {
	h := c.GetHeader("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// resolve authenticates the request's bearer credential: an access token or
// an API key.
func (s *Server) resolve(c *gin.Context) (Principal, error) {
	token, ok := bearer(c)
	if !ok {
		return Principal{}, errNoToken
	}
	return s.authenticateBearer(c.Request.Context(), token)
}

// authenticateBearer checks a bearer credential against the write side.
//
// An API key ("vck_…") must be known, match, be unexpired and unrevoked, and
// its tenant active; it acts with its own role.
//
// An access token must verify, and in one query the account must exist and be
// active in an active tenant, the token's session must be open (logout,
// revocation and expiry end it), and nothing that revokes tokens (password,
// role or status change) may have happened since it was issued (the epoch).
// The role is the account's current one, not the token's.
func (s *Server) authenticateBearer(ctx context.Context, token string) (Principal, error) {
	if commands.IsAPIKey(token) {
		k, err := s.deps.Commands.AuthenticateAPIKey(ctx, token)
		if err != nil {
			return Principal{}, err
		}
		return Principal{User: k.Actor(), Tenant: k.Tenant, Role: k.Role, Username: k.Name, APIKey: string(k.ID)}, nil
	}
	claims, err := s.deps.Tokens.VerifyAccess(token)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) && de.Kind == domain.KindUnauthenticated {
			return Principal{}, err
		}
		return Principal{}, errBadToken
	}
	if claims.Session == "" {
		return Principal{}, errTokenRevoked
	}
	id, err := s.deps.Commands.Authenticate(ctx, claims.User, claims.Session)
	if errors.Is(err, domain.ErrNotFound) || errors.Is(err, commands.ErrSessionEnded) {
		return Principal{}, errTokenRevoked
	}
	if err != nil {
		return Principal{}, err
	}
	if !id.Usable() || id.Tenant != claims.Tenant || id.Epoch != claims.Epoch {
		return Principal{}, errTokenRevoked
	}
	return Principal{User: id.User, Tenant: id.Tenant, Role: id.Role, Username: id.Username, Session: claims.Session}, nil
}

// personOnly returns the caller of a route that needs a signed-in person (a
// session); for an API key it answers 403 and returns false.
func personOnly(c *gin.Context) (Principal, bool) {
	p := mustPrincipal(c)
	if p.IsAPIKey() {
		fail(c, errAPIKeyRoute)
		return p, false
	}
	return p, true
}

// authenticate is the middleware of every non-public route.
func (s *Server) authenticate(o op) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, err := s.resolve(c)
		if err != nil {
			fail(c, err)
			return
		}
		if o.access == roleList && !slices.Contains(o.roles, string(p.Role)) {
			fail(c, errForbidden)
			return
		}
		c.Set(ctxPrincipal, p)
		c.Next()
	}
}

// meta describes the request for the events a command records.
func meta(c *gin.Context) eventstore.Metadata {
	m := eventstore.Metadata{
		SourceIP:      c.ClientIP(),
		UserAgent:     truncate(c.Request.UserAgent(), 512),
		RequestID:     requestID(c),
		CorrelationID: requestID(c),
	}
	if id := c.GetHeader("X-Correlation-ID"); requestIDPattern.MatchString(id) {
		m.CorrelationID = id
	}
	if p, ok := principalOf(c); ok {
		m.Actor, m.ActorType, m.Role = string(p.User), "user", string(p.Role)
		if p.IsAPIKey() {
			m.ActorType = "api_key"
		}
	}
	return m
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8Start(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func utf8Start(b byte) bool { return b < 0x80 || b >= 0xC0 }

// loginRequest is the JSON form of a sign-in; the OAuth2 password form
// (application/x-www-form-urlencoded with grant_type=password) is accepted too.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTPCode string `json:"totp_code,omitempty" doc:"for accounts with two-factor authentication: a code (or recovery code) to sign in in one request; the OAuth2 form takes it as the first word of scope"`
}

type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token" doc:"single use: exchange it at POST /api/auth/refresh for a new pair; presenting it twice ends the session"`
	TokenType        string `json:"token_type" doc:"always bearer"`
	ExpiresIn        int64  `json:"expires_in" doc:"lifetime of the access token in seconds"`
	RefreshExpiresIn int64  `json:"refresh_expires_in" doc:"seconds until the session ends unless refreshed before (never beyond its absolute end)"`
}

func (s *Server) login(c *gin.Context) {
	var req loginRequest
	mt := c.ContentType()
	switch {
	case mt == "application/x-www-form-urlencoded":
		if err := c.Request.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				abortJSON(c, http.StatusRequestEntityTooLarge, errBodyTooLarge.Code, errBodyTooLarge.Message)
				return
			}
			fail(c, domain.Invalid("invalid_form", "malformed form body"))
			return
		}
		if gt := c.Request.PostForm.Get("grant_type"); gt != "" && gt != "password" {
			fail(c, domain.Invalid("unsupported_grant_type", "grant_type must be password"))
			return
		}
		req.Username, req.Password = c.Request.PostForm.Get("username"), c.Request.PostForm.Get("password")
		req.TOTPCode = scopeCode(c.Request.PostForm.Get("scope"))
	case isJSON(c.Request):
		if !bindJSON(c, &req) {
			return
		}
	default:
		abortJSON(c, http.StatusUnsupportedMediaType, errUnsupportedMedia.Code,
			"request body must be application/json or application/x-www-form-urlencoded")
		return
	}
	if req.Username == "" || req.Password == "" {
		fail(c, domain.Invalid("credentials_required", "username and password are required"))
		return
	}
	s.signInWithPassword(c, req.Username, req.Password, req.TOTPCode)
}

// respondTokens answers a sign-in or refresh with a new access token for
// sess and its refresh token. The refresh token appears in this response
// only: never in a log, an event or any other response.
func (s *Server) respondTokens(c *gin.Context, sess commands.Session) {
	id := sess.Identity
	token, exp, err := s.deps.Tokens.IssueAccess(Claims{
		User: id.User, Tenant: id.Tenant, Role: string(id.Role), Session: sess.ID, Epoch: id.Epoch,
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, tokenResponse{AccessToken: token, RefreshToken: sess.RefreshToken, TokenType: "bearer",
		ExpiresIn: int64(time.Until(exp).Seconds()), RefreshExpiresIn: int64(time.Until(sess.IdleExpiresAt).Seconds())})
}

func (s *Server) me(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	v, err := s.deps.Commands.UserMFAView(c.Request.Context(), p.Tenant, p.User)
	if err != nil {
		fail(c, err)
		return
	}
	out := userFromState(commands.View[users.State]{State: v.State.State, Version: v.Version, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt})
	out.TOTPEnabled = v.State.MFAEnabled
	c.Header("ETag", etag(v.Version))
	c.JSON(http.StatusOK, out)
}

// registerRequest is the body of POST /api/auth/register.
type registerRequest struct {
	Username string          `json:"username"`
	Password string          `json:"password"`
	Email    string          `json:"email,omitempty"`
	TenantID domain.TenantID `json:"tenant_id,omitempty" doc:"the tenant to join; required for self-registration"`
	Role     users.Role      `json:"role,omitempty" doc:"only a tenant or platform administrator may set a role other than viewer"`
}

// register creates an account. An administrator's call acts like POST
// /api/users. An anonymous call is accepted only when self-registration is
// enabled, joins an existing active tenant, and always yields a viewer.
func (s *Server) register(c *gin.Context) {
	var req registerRequest
	if !bindJSON(c, &req) {
		return
	}
	if _, hasToken := bearer(c); hasToken {
		p, err := s.resolve(c)
		if err != nil {
			fail(c, err)
			return
		}
		c.Set(ctxPrincipal, p)
		s.createUserFor(c, p, createUserRequest{Username: req.Username, Password: req.Password, Email: req.Email,
			TenantID: req.TenantID, Role: req.Role})
		return
	}
	if !s.deps.AllowSelfRegistration {
		fail(c, domain.Forbidden("registration_closed", "self-registration is disabled; ask an administrator for an account"))
		return
	}
	if req.Role != "" && req.Role != users.RoleViewer {
		fail(c, domain.Forbidden("role_not_allowed", "self-registered accounts are viewers"))
		return
	}
	if req.TenantID == "" || req.TenantID == domain.PlatformTenant {
		fail(c, domain.Invalid("tenant_required", "tenant_id must name the tenant to join"))
		return
	}
	res, err := s.deps.Commands.SelfRegister(c.Request.Context(), commands.SelfRegister{
		Tenant: req.TenantID, Username: req.Username, Email: req.Email, Password: req.Password, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	s.respondUser(c, http.StatusCreated, req.TenantID, res)
}
