package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
	"velocicompanion/projections/readmodel"
	"velocicompanion/projections/tenantlist"
)

// tenantRead is a tenant as the API shows it (the original's TenantRead, plus
// status, times and, after a write, where the write landed).
type tenantRead struct {
	ID          domain.TenantID `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Active      bool            `json:"active"`
	// RequireVerifiedEmail is the sign-in policy.
	RequireVerifiedEmail bool      `json:"require_verified_email" doc:"users must verify their e-mail address before they can sign in"`
	CreatedAt            time.Time `json:"created_at"`
	UpdatedAt            time.Time `json:"updated_at"`
	Version              int64     `json:"version"`
	Position             int64     `json:"position,omitempty" doc:"global position of the write; pass it as min_position to read your own write"`
}

type createTenantRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

type updateTenantRequest struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	Active      *bool   `json:"active,omitempty" doc:"false deactivates the tenant: its users can no longer sign in"`
	// RequireVerifiedEmail sets the sign-in policy.
	RequireVerifiedEmail *bool `json:"require_verified_email,omitempty" doc:"true refuses sign-in to users whose e-mail address is not verified (they are mailed a link)"`
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

func tenantFromView(v commands.View[tenants.State], pos int64) tenantRead {
	return tenantRead{ID: v.State.ID, Name: v.State.Name, Description: v.State.Description, Active: v.State.Active,
		RequireVerifiedEmail: v.State.RequireVerifiedEmail,
		CreatedAt:            v.CreatedAt.UTC(), UpdatedAt: v.UpdatedAt.UTC(), Version: v.Version, Position: pos}
}

func tenantFromRow(t tenantlist.Tenant) tenantRead {
	return tenantRead{ID: t.ID, Name: t.Name, Description: t.Description, Active: t.Active,
		RequireVerifiedEmail: t.RequireVerifiedEmail,
		CreatedAt:            t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC(), Version: t.Version}
}

// respondTenant answers a write with the tenant as of that write.
func (s *Server) respondTenant(c *gin.Context, status int, id domain.TenantID, res commands.Result) {
	v, err := s.deps.Commands.TenantView(c.Request.Context(), id)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(v.Version))
	c.JSON(status, tenantFromView(v, res.Position))
}

func (s *Server) createTenant(c *gin.Context) {
	var req createTenantRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	res, err := s.deps.Commands.CreateTenant(c.Request.Context(), commands.CreateTenant{
		Name: req.Name, Description: req.Description, By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/tenants/"+res.ID)
	s.respondTenant(c, http.StatusCreated, domain.TenantID(res.ID), res)
}

func (s *Server) listTenants(c *gin.Context) {
	p := mustPrincipal(c)
	page, ok := s.pageParams(c, tenantlist.Name)
	if !ok {
		return
	}
	rows, err := tenantlist.List(c.Request.Context(), s.deps.Reads, scopeOf(p), page)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]tenantRead, 0, len(rows))
	for _, t := range rows {
		out = append(out, tenantFromRow(t))
	}
	if len(rows) == page.Limit {
		setNextCursor(c, tenantlist.Cursor(rows[len(rows)-1]))
	}
	c.JSON(http.StatusOK, out)
}

// scopeOf is what p may read: platform administrators see every tenant's rows
// in installation-wide listings, everyone else only their own tenant's.
func scopeOf(p Principal) readmodel.Scope {
	return readmodel.Scope{Tenant: p.Tenant, Platform: p.IsPlatformAdmin()}
}

func (s *Server) getTenant(c *gin.Context) {
	p := mustPrincipal(c)
	id := domain.TenantID(c.Param("id"))
	if !p.IsPlatformAdmin() && id != p.Tenant {
		fail(c, domain.ErrNotFound)
		return
	}
	if !s.waitMinPosition(c, tenantlist.Name) {
		return
	}
	t, err := tenantlist.Get(c.Request.Context(), s.deps.Reads, scopeOf(p), id)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(t.Version))
	c.JSON(http.StatusOK, tenantFromRow(t))
}

func (s *Server) updateTenant(c *gin.Context) {
	var req updateTenantRequest
	if !bindJSON(c, &req) {
		return
	}
	p := mustPrincipal(c)
	id := domain.TenantID(c.Param("id"))
	if req.Name == nil && req.Description == nil && req.Active == nil && req.RequireVerifiedEmail == nil {
		fail(c, domain.Invalid("empty_update", "nothing to change: give name, description, active or require_verified_email"))
		return
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	res, err := s.deps.Commands.UpdateTenant(c.Request.Context(), commands.UpdateTenant{
		Tenant: id, Name: req.Name, Description: req.Description, Active: req.Active,
		RequireVerifiedEmail: req.RequireVerifiedEmail, IfMatch: ifMatch,
		By: p.User, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	s.respondTenant(c, http.StatusOK, id, res)
}
