package httpapi

import (
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
type Principal struct {
	User     domain.UserID
	Tenant   domain.TenantID
	Role     users.Role
	Username string
	Session  string
}

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

// resolve authenticates the request's bearer token against the write side:
// the account and its tenant must be active, and nothing that revokes tokens
// (password, role or status change) may have happened since it was issued.
func (s *Server) resolve(c *gin.Context) (Principal, error) {
	token, ok := bearer(c)
	if !ok {
		return Principal{}, errNoToken
	}
	claims, err := s.deps.Tokens.VerifyAccess(token)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) && de.Kind == domain.KindUnauthenticated {
			return Principal{}, err
		}
		return Principal{}, errBadToken
	}
	id, err := s.deps.Commands.LookupIdentity(c.Request.Context(), claims.User)
	if errors.Is(err, domain.ErrNotFound) {
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
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type" doc:"always bearer"`
	ExpiresIn   int64  `json:"expires_in" doc:"lifetime of the access token in seconds"`
}

func (s *Server) login(c *gin.Context) {
	var req loginRequest
	mt := c.ContentType()
	switch {
	case mt == "application/x-www-form-urlencoded":
		if err := c.Request.ParseForm(); err != nil {
			fail(c, domain.Invalid("invalid_form", "malformed form body"))
			return
		}
		if gt := c.Request.PostForm.Get("grant_type"); gt != "" && gt != "password" {
			fail(c, domain.Invalid("unsupported_grant_type", "grant_type must be password"))
			return
		}
		req.Username, req.Password = c.Request.PostForm.Get("username"), c.Request.PostForm.Get("password")
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
	id, _, err := s.deps.Commands.Login(c.Request.Context(), commands.Login{
		Username: req.Username, Password: req.Password, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	token, exp, err := s.deps.Tokens.IssueAccess(Claims{
		User: id.User, Tenant: id.Tenant, Role: string(id.Role), Session: newRequestID(), Epoch: id.Epoch,
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, tokenResponse{AccessToken: token, TokenType: "bearer", ExpiresIn: int64(time.Until(exp).Seconds())})
}

func (s *Server) me(c *gin.Context) {
	p := mustPrincipal(c)
	v, err := s.deps.Commands.UserView(c.Request.Context(), p.Tenant, p.User)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(http.StatusOK, userFromState(v))
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
