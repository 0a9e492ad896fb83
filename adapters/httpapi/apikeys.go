package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/apikeys"
	"velocicompanion/domain/users"
	"velocicompanion/projections/readmodel"
)

// tenantAdmins may manage a tenant's API keys: its administrators, and not
// the platform administrators, who manage tenants rather than their automation.
var tenantAdmins = []string{string(users.RoleAdmin)}

// createAPIKeyRequest is the body of POST /api/apikeys.
type createAPIKeyRequest struct {
	Name      string     `json:"name" doc:"what the key is for, 1 to 100 characters"`
	Role      users.Role `json:"role" doc:"admin, analyst or viewer; never above yours"`
	ExpiresAt time.Time  `json:"expires_at" doc:"required, RFC 3339; at most one year ahead"`
}

// createdAPIKey answers POST /api/apikeys. Key appears in this response only.
type createdAPIKey struct {
	ID        apikeys.ID `json:"id"`
	Name      string     `json:"name"`
	Role      users.Role `json:"role"`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	Key       string     `json:"key" doc:"the API key, for Authorization: Bearer; shown only now, store it safely"`
	Version   int64      `json:"version"`
	Position  int64      `json:"position"`
}

// apiKeyRead is a key as GET /api/apikeys lists it: never its secret.
type apiKeyRead struct {
	ID        apikeys.ID    `json:"id"`
	Name      string        `json:"name"`
	Role      users.Role    `json:"role"`
	Status    string        `json:"status" doc:"active, expired or revoked"`
	CreatedBy domain.UserID `json:"created_by"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"`
	RevokedAt *time.Time    `json:"revoked_at"`
}

func (s *Server) createAPIKey(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	var req createAPIKeyRequest
	if !bindJSON(c, &req) {
		return
	}
	k, err := s.deps.Commands.CreateAPIKey(c.Request.Context(), commands.CreateAPIKey{
		Tenant: p.Tenant, Name: req.Name, Role: req.Role, ExpiresAt: req.ExpiresAt, By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/apikeys/"+string(k.State.ID))
	c.Header("ETag", etag(k.Result.Version))
	c.JSON(http.StatusCreated, createdAPIKey{ID: k.State.ID, Name: k.State.Name, Role: k.State.Role,
		ExpiresAt: k.State.ExpiresAt.UTC(), CreatedAt: k.State.CreatedAt.UTC(), Key: k.Key,
		Version: k.Result.Version, Position: k.Result.Position})
}

func (s *Server) listAPIKeys(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	limit, after, ok := listPage(c)
	if !ok {
		return
	}
	list, err := s.deps.Commands.ListAPIKeys(c.Request.Context(), p.Tenant, after, limit)
	if err != nil {
		fail(c, err)
		return
	}
	now := time.Now()
	out := make([]apiKeyRead, 0, len(list))
	for _, k := range list {
		r := apiKeyRead{ID: k.ID, Name: k.Name, Role: k.Role, Status: "active", CreatedBy: k.CreatedBy,
			CreatedAt: k.CreatedAt.UTC(), ExpiresAt: k.ExpiresAt.UTC()}
		switch {
		case k.RevokedAt != nil:
			t := k.RevokedAt.UTC()
			r.RevokedAt, r.Status = &t, "revoked"
		case !now.Before(k.ExpiresAt):
			r.Status = "expired"
		}
		out = append(out, r)
	}
	if len(list) == limit {
		setNextCursor(c, readmodel.EncodeCursor(string(list[len(list)-1].ID)))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) revokeAPIKey(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	if _, err := s.deps.Commands.RevokeAPIKey(c.Request.Context(), commands.RevokeAPIKey{
		Tenant: p.Tenant, ID: apikeys.ID(c.Param("id")), By: p.Actor(), Meta: meta(c),
	}); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
