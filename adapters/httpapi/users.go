package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/projections/userlist"
)

// userRead is an account as the API shows it: the original's UserRead plus
// status and times. It never carries a password hash or secret.
type userRead struct {
	ID            domain.UserID   `json:"id"`
	Username      string          `json:"username"`
	Email         string          `json:"email"`
	Role          users.Role      `json:"role"`
	TenantID      domain.TenantID `json:"tenant_id"`
	IsActive      bool            `json:"is_active"`
	EmailVerified bool            `json:"email_verified"`
	TOTPEnabled   bool            `json:"totp_enabled"`
	CreatedAt     time.Time       `json:"created_at"`
	LastLoginAt   *time.Time      `json:"last_login_at"`
	Version       int64           `json:"version"`
	Position      int64           `json:"position,omitempty" doc:"global position of the write; pass it as min_position to read your own write"`
}

type createUserRequest struct {
	Username string          `json:"username"`
	Password string          `json:"password"`
	Email    string          `json:"email,omitempty"`
	Role     users.Role      `json:"role,omitempty" doc:"admin, analyst or viewer (default viewer)"`
	TenantID domain.TenantID `json:"tenant_id,omitempty" doc:"platform administrators only: the tenant to create the user in"`
}

type updateUserRequest struct {
	Username        *string     `json:"username,omitempty"`
	Email           *string     `json:"email,omitempty"`
	Password        *string     `json:"password,omitempty"`
	CurrentPassword *string     `json:"current_password,omitempty" doc:"required when changing your own password"`
	Role            *users.Role `json:"role,omitempty" doc:"administrators only"`
	IsActive        *bool       `json:"is_active,omitempty" doc:"administrators only"`
}

func userFromState(v commands.View[users.State]) userRead {
	u := userRead{ID: v.State.ID, Username: v.State.Username, Email: v.State.Email, Role: v.State.Role,
		TenantID: v.State.Tenant, IsActive: !v.State.Disabled, EmailVerified: v.State.EmailVerified,
		CreatedAt: v.CreatedAt.UTC(), Version: v.Version}
	if !v.State.LastLoginAt.IsZero() {
		t := v.State.LastLoginAt.UTC()
		u.LastLoginAt = &t
	}
	return u
}

func userFromRow(r userlist.User) userRead {
	u := userRead{ID: r.ID, Username: r.Username, Email: r.Email, Role: r.Role, TenantID: r.Tenant,
		IsActive: r.Status == "active", EmailVerified: r.EmailVerified, TOTPEnabled: r.TOTPEnabled,
		CreatedAt: r.CreatedAt.UTC(), Version: r.Version}
	if r.LastLoginAt != nil {
		t := r.LastLoginAt.UTC()
		u.LastLoginAt = &t
	}
	return u
}

// respondUser answers a write with the account as of that write.
func (s *Server) respondUser(c *gin.Context, status int, tenant domain.TenantID, res commands.Result) {
	v, err := s.deps.Commands.UserView(c.Request.Context(), tenant, domain.UserID(res.ID))
	if err != nil {
		fail(c, err)
		return
	}
	out := userFromState(v)
	out.Position = res.Position
	c.Header("ETag", etag(v.Version))
	c.JSON(status, out)
}

// targetTenant is the tenant a user-management request acts in: the caller's
// own, or for a platform administrator the tenant named by ?tenant_id=.
func targetTenant(c *gin.Context, p Principal) domain.TenantID {
	if t := c.Query("tenant_id"); t != "" && p.IsPlatformAdmin() {
		return domain.TenantID(t)
	}
	return p.Tenant
}

func (s *Server) createUser(c *gin.Context) {
	var req createUserRequest
	if !bindJSON(c, &req) {
		return
	}
	s.createUserFor(c, mustPrincipal(c), req)
}

var errTenantNotAllowed = domain.Forbidden("tenant_not_allowed",
	"tenant_id may only be given by platform administrators; users are created in your own tenant")

func (s *Server) createUserFor(c *gin.Context, p Principal, req createUserRequest) {
	tenant := p.Tenant
	switch {
	case p.IsPlatformAdmin() && req.TenantID != "":
		tenant = req.TenantID
	case req.TenantID != "" && req.TenantID != p.Tenant:
		fail(c, errTenantNotAllowed)
		return
	}
	role := req.Role
	if role == "" {
		role = users.RoleViewer
		if tenant == domain.PlatformTenant {
			role = users.RolePlatformAdmin
		}
	}
	res, err := s.deps.Commands.RegisterUser(c.Request.Context(), commands.RegisterUser{
		Tenant: tenant, Username: req.Username, Email: req.Email, Password: req.Password, Role: role,
		By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/users/"+res.ID)
	s.respondUser(c, http.StatusCreated, tenant, res)
}

func (s *Server) listUsers(c *gin.Context) {
	p := mustPrincipal(c)
	page, ok := s.pageParams(c, userlist.Name)
	if !ok {
		return
	}
	rows, err := userlist.List(c.Request.Context(), s.deps.Reads, targetTenant(c, p), page)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]userRead, 0, len(rows))
	for _, r := range rows {
		out = append(out, userFromRow(r))
	}
	if len(rows) == page.Limit {
		setNextCursor(c, userlist.Cursor(rows[len(rows)-1]))
	}
	c.JSON(http.StatusOK, out)
}

// mayView reports whether p may read or edit the account id in tenant: their
// own, or any of their tenant's as an administrator.
func mayView(p Principal, tenant domain.TenantID, id domain.UserID) bool {
	switch {
	case p.IsPlatformAdmin():
		return true
	case tenant != p.Tenant:
		return false
	}
	return id == p.User || p.Role == users.RoleAdmin
}

func (s *Server) getUser(c *gin.Context) {
	p := mustPrincipal(c)
	tenant, id := targetTenant(c, p), domain.UserID(c.Param("id"))
	if !mayView(p, tenant, id) {
		fail(c, domain.ErrNotFound)
		return
	}
	if !s.waitMinPosition(c, userlist.Name) {
		return
	}
	u, err := userlist.Get(c.Request.Context(), s.deps.Reads, tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(u.Version))
	c.JSON(http.StatusOK, userFromRow(u))
}

var errCurrentPassword = domain.Forbidden("current_password_required", "changing your own password needs your current password")

func (s *Server) updateUser(c *gin.Context) {
	var req updateUserRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	tenant, id := targetTenant(c, p), domain.UserID(c.Param("id"))
	if !mayView(p, tenant, id) {
		fail(c, domain.ErrNotFound)
		return
	}
	if req.Username == nil && req.Email == nil && req.Password == nil && req.Role == nil && req.IsActive == nil {
		fail(c, domain.Invalid("empty_update", "nothing to change"))
		return
	}
	if req.Password != nil && id == p.User {
		if req.CurrentPassword == nil {
			fail(c, errCurrentPassword)
			return
		}
		if err := s.deps.Commands.CheckPassword(c.Request.Context(), p.User, *req.CurrentPassword); err != nil {
			fail(c, err)
			return
		}
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	res, err := s.deps.Commands.UpdateUser(c.Request.Context(), commands.UpdateUser{
		Tenant: tenant, User: id, Username: req.Username, Email: req.Email, Password: req.Password,
		Role: req.Role, Active: req.IsActive, IfMatch: ifMatch, By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	res.ID = string(id)
	s.respondUser(c, http.StatusOK, tenant, res)
}

func (s *Server) deleteUser(c *gin.Context) {
	p := mustPrincipal(c)
	tenant, id := targetTenant(c, p), domain.UserID(c.Param("id"))
	if !mayView(p, tenant, id) {
		fail(c, domain.ErrNotFound)
		return
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	_, err := s.deps.Commands.DeleteUser(c.Request.Context(), commands.DeleteUser{
		Tenant: tenant, User: id, IfMatch: ifMatch, By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
