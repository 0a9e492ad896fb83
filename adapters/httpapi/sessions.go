package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/projections/readmodel"
)

// listParams are the paging parameters of lists read from the write side,
// which is always current (no min_position).
var listParams = pageParams[:2]

// refreshRequest is the JSON body of POST /api/auth/refresh; the OAuth2 form
// (grant_type=refresh_token) is accepted too. The token is never read from
// the query string.
type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// sessionRead is a session as its user or an administrator sees it. It never
// carries a token.
type sessionRead struct {
	ID            string    `json:"id"`
	CreatedAt     time.Time `json:"created_at"`
	LastUsedAt    time.Time `json:"last_used_at" doc:"the sign-in or the latest refresh"`
	ExpiresAt     time.Time `json:"expires_at" doc:"the absolute end of the session, however often it is refreshed"`
	IdleExpiresAt time.Time `json:"idle_expires_at" doc:"when the session ends unless refreshed before"`
	IP            string    `json:"ip" doc:"where the session signed in from"`
	UserAgent     string    `json:"user_agent"`
	Current       bool      `json:"current" doc:"whether this is the session of the request's access token"`
}

var errRefreshRequired = domain.Invalid("refresh_token_required", "refresh_token is required")

func (s *Server) refresh(c *gin.Context) {
	if token, ok := bearer(c); ok && commands.IsAPIKey(token) {
		fail(c, errAPIKeyRoute)
		return
	}
	var req refreshRequest
	switch {
	case c.ContentType() == "application/x-www-form-urlencoded":
		if err := c.Request.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				abortJSON(c, http.StatusRequestEntityTooLarge, errBodyTooLarge.Code, errBodyTooLarge.Message)
				return
			}
			fail(c, domain.Invalid("invalid_form", "malformed form body"))
			return
		}
		if gt := c.Request.PostForm.Get("grant_type"); gt != "" && gt != "refresh_token" {
			fail(c, domain.Invalid("unsupported_grant_type", "grant_type must be refresh_token"))
			return
		}
		req.RefreshToken = c.Request.PostForm.Get("refresh_token")
	case isJSON(c.Request):
		if !bindJSON(c, &req) {
			return
		}
	default:
		abortJSON(c, http.StatusUnsupportedMediaType, errUnsupportedMedia.Code,
			"request body must be application/json or application/x-www-form-urlencoded")
		return
	}
	if req.RefreshToken == "" {
		fail(c, errRefreshRequired)
		return
	}
	sess, err := s.deps.Commands.Refresh(c.Request.Context(), commands.Refresh{
		Token: req.RefreshToken, Policy: s.deps.Sessions, Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	s.respondTokens(c, sess)
}

func (s *Server) logout(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	if _, err := s.deps.Commands.Logout(c.Request.Context(), commands.Logout{
		Tenant: p.Tenant, User: p.User, Session: p.Session, Meta: meta(c),
	}); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listOwnSessions(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	s.respondSessions(c, p, p.Tenant, p.User)
}

func (s *Server) listUserSessions(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	tenant, id := targetTenant(c, p), domain.UserID(c.Param("id"))
	if !mayView(p, tenant, id) {
		fail(c, domain.ErrNotFound)
		return
	}
	s.respondSessions(c, p, tenant, id)
}

func (s *Server) respondSessions(c *gin.Context, p Principal, tenant domain.TenantID, user domain.UserID) {
	limit, after, ok := listPage(c)
	if !ok {
		return
	}
	list, err := s.deps.Commands.ListSessions(c.Request.Context(), tenant, user, after, limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]sessionRead, 0, len(list))
	for _, x := range list {
		out = append(out, sessionRead{ID: x.ID, CreatedAt: x.CreatedAt.UTC(), LastUsedAt: x.LastUsedAt.UTC(),
			ExpiresAt: x.ExpiresAt.UTC(), IdleExpiresAt: x.IdleEndsAt.UTC(), IP: x.IP, UserAgent: x.UserAgent,
			Current: x.ID == p.Session && user == p.User})
	}
	if len(list) == limit {
		setNextCursor(c, readmodel.EncodeCursor(list[len(list)-1].ID))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) revokeOwnSession(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	id := c.Param("id")
	if id == "" || len(id) > users.MaxSessionIDLen {
		fail(c, domain.ErrNotFound)
		return
	}
	if _, _, err := s.deps.Commands.RevokeSessions(c.Request.Context(), commands.RevokeSessions{
		Tenant: p.Tenant, User: p.User, Session: id, By: p.Actor(), Meta: meta(c),
	}); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) revokeUserSessions(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	tenant, id := targetTenant(c, p), domain.UserID(c.Param("id"))
	if !mayView(p, tenant, id) {
		fail(c, domain.ErrNotFound)
		return
	}
	if _, _, err := s.deps.Commands.RevokeSessions(c.Request.Context(), commands.RevokeSessions{
		Tenant: tenant, User: id, By: p.Actor(), Meta: meta(c),
	}); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// listPage reads limit and cursor for a list keyed by one id column.
func listPage(c *gin.Context) (limit int, after string, ok bool) {
	limit, ok = queryLimit(c, defaultLimit, readmodel.MaxLimit)
	if !ok {
		return 0, "", false
	}
	cur, err := readmodel.DecodeCursor(c.Query("cursor"))
	if err != nil || len(cur) > 1 {
		fail(c, readmodel.ErrBadCursor)
		return 0, "", false
	}
	if len(cur) == 1 {
		after = cur[0]
	}
	return limit, after, true
}
