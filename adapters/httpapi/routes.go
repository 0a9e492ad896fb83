package httpapi

import (
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/realtime"
	"velocicompanion/commands"
	"velocicompanion/domain/users"
)

// Deps are the collaborators of the HTTP API.
type Deps struct {
	Commands              *commands.Handler
	Reads                 *pgxpool.Pool // application-role pool for read models
	Tokens                Tokens
	WaitFor               WaitFunc
	Ready                 map[string]Checker
	AllowSelfRegistration bool
	// Live is this process's hub of notification WebSockets; without it
	// GET /api/notifications/ws answers 503.
	Live *realtime.Hub
	// TokenExpiry returns when a verified access token expires, so that its
	// WebSockets close then; nil leaves that to the periodic session check.
	TokenExpiry func(token string) (time.Time, error)
	// Sessions bounds sessions and refresh tokens (lifetime, idle timeout,
	// reuse grace).
	Sessions commands.SessionPolicy
	// AuditIntegrity verifies a tenant against its latest signed audit
	// checkpoint; without it GET /api/audit/integrity answers 503.
	AuditIntegrity IntegrityFunc
	// MFATokens issues and verifies the tokens of a two-step sign-in;
	// without it accounts with a second factor cannot sign in (503).
	MFATokens MFATokens
	// SIEM manages the tenant's SIEM destinations (siem.go).
	SIEM SIEMDeps
	// Velociraptor connects tenants to their Velociraptor servers (velociraptor.go).
	Velociraptor VelociraptorDeps
}

var (
	platformOnly = []string{string(users.RolePlatformAdmin)}
	admins       = []string{string(users.RoleAdmin), string(users.RolePlatformAdmin)}
)

// routes is the API's route table: every route the server answers, with what
// the OpenAPI document says about it. Each feature contributes its group.
func (s *Server) routes(g prometheus.Gatherer) []op {
	var all []op
	for _, group := range [][]op{
		s.identityRoutes(g),
		s.recoveryRoutes(),
		s.hostRoutes(),
		s.caseRoutes(),
		s.artifactRoutes(),
		s.notificationRoutes(),
		s.auditRoutes(),
		s.siemRoutes(),
		s.velociraptorRoutes(),
	} {
		all = append(all, group...)
	}
	return all
}

// Shared query parameters.
var (
	pageParams = []param{
		{Name: "limit", In: "query", Type: "integer", Desc: "page size, 1 to 500 (default 100)"},
		{Name: "cursor", In: "query", Desc: "opaque cursor from the previous page's X-Next-Cursor header"},
		{Name: "min_position", In: "query", Type: "integer", Desc: "wait until the read model includes this write position"},
	}
	minPositionParam = pageParams[2:]
)

// identityRoutes are the service, authentication, tenant and user routes.
func (s *Server) identityRoutes(g prometheus.Gatherer) []op {
	page, minPos := pageParams, minPositionParam
	tenantParam := param{Name: "tenant_id", In: "query", Desc: "platform administrators only: the tenant to act in"}
	return []op{
		{method: http.MethodGet, path: "/", summary: "Service banner", tag: "meta", access: public, resp: rootResponse{}, handler: s.root},
		{method: http.MethodGet, path: "/health", summary: "Liveness: the process serves HTTP", tag: "meta", access: public, resp: healthResponse{}, handler: s.health},
		{method: http.MethodGet, path: "/ready", summary: "Readiness: PostgreSQL and Kafka reachable", tag: "meta", access: public, resp: readyResponse{}, handler: s.ready},
		{method: http.MethodGet, path: "/metrics", summary: "Prometheus metrics (a bearer token when the server sets VC_METRICS_TOKEN)", tag: "meta", access: public, raw: "text/plain", handler: metricsHandler(g, s.cfg.MetricsToken)},
		{method: http.MethodGet, path: "/openapi.json", summary: "This OpenAPI document", tag: "meta", access: public, raw: "application/json", handler: s.openapi},
		{method: http.MethodGet, path: "/docs", summary: "Interactive API documentation", tag: "meta", access: public, raw: "text/html", handler: s.docs},

		{method: http.MethodPost, path: "/api/auth/register", summary: "Create an account (administrators; anonymous only when self-registration is enabled)", tag: "auth", access: public, req: registerRequest{}, resp: userRead{}, status: http.StatusCreated, handler: s.register},
		{method: http.MethodPost, path: "/api/auth/login", summary: "Sign in with username and password (an account with two-factor authentication answers mfa_required and an mfa_token for POST /api/auth/login/mfa instead of tokens, unless totp_code came along)", tag: "auth", access: public, req: loginRequest{}, form: true, resp: tokenResponse{}, handler: s.login},
		{method: http.MethodPost, path: "/api/auth/login/mfa", summary: "Second step of a two-factor sign-in: the mfa_token with a TOTP code or a recovery code, for the access and refresh tokens", tag: "auth", access: public, req: mfaLoginRequest{}, resp: tokenResponse{}, handler: s.loginMFA},
		{method: http.MethodPost, path: "/api/auth/2fa/setup", summary: "Start setting up TOTP two-factor authentication: a new secret with its otpauth URI and QR code (shown once)", tag: "auth", access: anyUser, resp: totpSetupResponse{}, handler: s.setupTOTP},
		{method: http.MethodPost, path: "/api/auth/2fa/verify", summary: "Turn two-factor authentication on with a code of the new secret; answers ten recovery codes, once", tag: "auth", access: anyUser, req: totpCodeRequest{}, resp: mfaStatusResponse{}, handler: s.verifyTOTP},
		{method: http.MethodPost, path: "/api/auth/2fa/disable", summary: "Turn two-factor authentication off with the password and a code (or a recovery code); ends your other sessions", tag: "auth", access: anyUser, req: totpDisableRequest{}, resp: mfaStatusResponse{}, handler: s.disableTOTP},
		{method: http.MethodPost, path: "/api/auth/2fa/recovery-codes", summary: "Replace your recovery codes with ten new ones (shown once), proven with a code", tag: "auth", access: anyUser, req: totpCodeRequest{}, resp: recoveryCodesResponse{}, handler: s.regenerateRecoveryCodes},
		{method: http.MethodGet, path: "/api/auth/me", summary: "The signed-in account", tag: "auth", access: anyUser, resp: userRead{}, handler: s.me},
		{method: http.MethodPost, path: "/api/auth/refresh", summary: "Exchange a refresh token for a new access and refresh token (single use; a replay ends the session)", tag: "auth", access: public, req: refreshRequest{}, form: true, resp: tokenResponse{}, handler: s.refresh},
		{method: http.MethodPost, path: "/api/auth/logout", summary: "End the current session: its access and refresh tokens stop working", tag: "auth", access: anyUser, status: http.StatusNoContent, handler: s.logout},
		{method: http.MethodGet, path: "/api/auth/sessions", summary: "Your open sessions, newest first (never tokens)", tag: "auth", access: anyUser, query: listParams, resp: []sessionRead{}, handler: s.listOwnSessions},
		{method: http.MethodDelete, path: "/api/auth/sessions/:id", summary: "End one of your sessions", tag: "auth", access: anyUser, status: http.StatusNoContent, handler: s.revokeOwnSession},
		{method: http.MethodGet, path: "/api/apikeys", summary: "List the tenant's API keys (never their secrets)", tag: "apikeys", access: roleList, roles: tenantAdmins, query: listParams, resp: []apiKeyRead{}, handler: s.listAPIKeys},
		{method: http.MethodPost, path: "/api/apikeys", summary: "Create an API key for automation; the key is shown only in this response", tag: "apikeys", access: roleList, roles: tenantAdmins, req: createAPIKeyRequest{}, resp: createdAPIKey{}, status: http.StatusCreated, handler: s.createAPIKey},
		{method: http.MethodDelete, path: "/api/apikeys/:id", summary: "Revoke an API key; it stops working at once", tag: "apikeys", access: roleList, roles: tenantAdmins, status: http.StatusNoContent, handler: s.revokeAPIKey},

		{method: http.MethodGet, path: "/api/tenants", summary: "List tenants (platform administrators: all; others: their own)", tag: "tenants", access: anyUser, query: page, resp: []tenantRead{}, handler: s.listTenants},
		{method: http.MethodPost, path: "/api/tenants", summary: "Create a tenant", tag: "tenants", access: roleList, roles: platformOnly, req: createTenantRequest{}, resp: tenantRead{}, status: http.StatusCreated, handler: s.createTenant},
		{method: http.MethodGet, path: "/api/tenants/:id", summary: "Get a tenant", tag: "tenants", access: anyUser, query: minPos, resp: tenantRead{}, handler: s.getTenant},
		{method: http.MethodPatch, path: "/api/tenants/:id", summary: "Rename, describe, deactivate or reactivate a tenant (If-Match supported)", tag: "tenants", access: roleList, roles: platformOnly, req: updateTenantRequest{}, resp: tenantRead{}, handler: s.updateTenant},

		{method: http.MethodGet, path: "/api/users", summary: "List the tenant's users", tag: "users", access: roleList, roles: admins, query: append([]param{tenantParam}, page...), resp: []userRead{}, handler: s.listUsers},
		{method: http.MethodPost, path: "/api/users", summary: "Create a user", tag: "users", access: roleList, roles: admins, req: createUserRequest{}, resp: userRead{}, status: http.StatusCreated, handler: s.createUser},
		{method: http.MethodGet, path: "/api/users/:id", summary: "Get a user (yourself, or any of your tenant's as an administrator)", tag: "users", access: anyUser, query: append([]param{tenantParam}, minPos...), resp: userRead{}, handler: s.getUser},
		{method: http.MethodPatch, path: "/api/users/:id", summary: "Change a user (If-Match supported)", tag: "users", access: anyUser, query: []param{tenantParam}, req: updateUserRequest{}, resp: userRead{}, handler: s.updateUser},
		{method: http.MethodDelete, path: "/api/users/:id", summary: "Delete a user (soft: history is kept)", tag: "users", access: roleList, roles: admins, query: []param{tenantParam}, status: http.StatusNoContent, handler: s.deleteUser},
		{method: http.MethodGet, path: "/api/users/:id/sessions", summary: "A user's open sessions (administrators)", tag: "users", access: roleList, roles: admins, query: append([]param{tenantParam}, listParams...), resp: []sessionRead{}, handler: s.listUserSessions},
		{method: http.MethodDelete, path: "/api/users/:id/sessions", summary: "End every session of a user (administrators)", tag: "users", access: roleList, roles: admins, query: []param{tenantParam}, status: http.StatusNoContent, handler: s.revokeUserSessions},
	}
}
