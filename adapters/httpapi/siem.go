package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/siem"
	"velocicompanion/projections/readmodel"
)

// SIEMDeps are the collaborators of the SIEM destination routes.
type SIEMDeps struct {
	// Destinations executes the destination commands; without it the routes
	// answer 503.
	Destinations *commands.SIEM
	// Test delivers one synthetic event to a destination with its secret and
	// reports whether it arrived; without it the test route answers 503.
	Test func(ctx context.Context, d commands.SIEMDestination, secret string) error
}

var errSIEMUnavailable = domain.Unavailable("siem_unavailable", "SIEM forwarding is not configured on this server")

// siemDestinationRequest is the body of POST /api/siem/destinations.
type siemDestinationRequest struct {
	Name       string      `json:"name" doc:"1 to 100 characters"`
	Enabled    *bool       `json:"enabled" doc:"forward to it; default true"`
	Config     siem.Config `json:"config" doc:"kind (syslog, splunk_hec, elastic) and how to reach it"`
	Filter     siem.Filter `json:"filter" doc:"event types (names or stream.*) and minimum threat class; empty forwards all"`
	TLPCeiling string      `json:"tlp_ceiling" doc:"most restricted TLP marking that may leave: clear (default), green, amber, amber+strict, red"`
	Secret     string      `json:"secret" doc:"write-only: Splunk HEC token or Elastic API key; stored encrypted, never returned"`
}

// siemDestinationPatch is the body of PATCH /api/siem/destinations/{id};
// absent fields stay as they are.
type siemDestinationPatch struct {
	Name       *string      `json:"name"`
	Enabled    *bool        `json:"enabled"`
	Config     *siem.Config `json:"config" doc:"replaces the whole config"`
	Filter     *siem.Filter `json:"filter" doc:"replaces the whole filter"`
	TLPCeiling *string      `json:"tlp_ceiling"`
	Secret     *string      `json:"secret" doc:"write-only: a new secret, or \"\" to remove it"`
}

// siemDestinationRead is a destination as the API shows it: never its secret.
type siemDestinationRead struct {
	ID         siem.ID       `json:"id"`
	Name       string        `json:"name"`
	Enabled    bool          `json:"enabled"`
	Config     siem.Config   `json:"config"`
	Filter     siem.Filter   `json:"filter"`
	TLPCeiling string        `json:"tlp_ceiling"`
	HasSecret  bool          `json:"has_secret" doc:"whether a secret is stored; the secret itself is never returned"`
	CreatedBy  domain.UserID `json:"created_by"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	Version    int64         `json:"version"`
	Position   int64         `json:"position,omitempty"`
}

// siemTestResult answers POST /api/siem/destinations/{id}/test.
type siemTestResult struct {
	Delivered bool   `json:"delivered"`
	Error     string `json:"error,omitempty" doc:"why the test event was not delivered"`
}

// siemRoutes are the SIEM destination routes: tenant administrators only.
func (s *Server) siemRoutes() []op {
	page := pageParams[:2]
	return []op{
		{method: http.MethodGet, path: "/api/siem/destinations", summary: "List the tenant's SIEM destinations (never their secrets)", tag: "siem", access: roleList, roles: tenantAdmins, query: page, resp: []siemDestinationRead{}, handler: s.listSIEMDestinations},
		{method: http.MethodPost, path: "/api/siem/destinations", summary: "Add a SIEM destination", tag: "siem", access: roleList, roles: tenantAdmins, req: siemDestinationRequest{}, resp: siemDestinationRead{}, status: http.StatusCreated, handler: s.createSIEMDestination},
		{method: http.MethodPatch, path: "/api/siem/destinations/:id", summary: "Change a SIEM destination (If-Match honoured)", tag: "siem", access: roleList, roles: tenantAdmins, req: siemDestinationPatch{}, resp: siemDestinationRead{}, handler: s.updateSIEMDestination},
		{method: http.MethodDelete, path: "/api/siem/destinations/:id", summary: "Remove a SIEM destination and its secret", tag: "siem", access: roleList, roles: tenantAdmins, status: http.StatusNoContent, handler: s.deleteSIEMDestination},
		{method: http.MethodPost, path: "/api/siem/destinations/:id/test", summary: "Deliver a synthetic test event to a SIEM destination", tag: "siem", access: roleList, roles: tenantAdmins, resp: siemTestResult{}, handler: s.testSIEMDestination},
	}
}

func siemRead(d commands.SIEMDestination, pos int64) siemDestinationRead {
	return siemDestinationRead{ID: d.ID, Name: d.Settings.Name, Enabled: d.Settings.Enabled, Config: d.Settings.Config,
		Filter: d.Settings.Filter, TLPCeiling: d.Settings.TLPCeiling, HasSecret: d.HasSecret, CreatedBy: d.CreatedBy,
		CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(), Version: d.Version, Position: pos}
}

// siemDestinations returns the destination commands, or answers 503.
func (s *Server) siemDestinations(c *gin.Context) (*commands.SIEM, bool) {
	if s.deps.SIEM.Destinations == nil {
		fail(c, errSIEMUnavailable)
		return nil, false
	}
	return s.deps.SIEM.Destinations, true
}

func (s *Server) listSIEMDestinations(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	dests, ok := s.siemDestinations(c)
	if !ok {
		return
	}
	limit, after, ok := listPage(c)
	if !ok {
		return
	}
	list, err := dests.List(c.Request.Context(), p.Tenant, after, limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]siemDestinationRead, 0, len(list))
	for _, d := range list {
		out = append(out, siemRead(d, 0))
	}
	if len(list) == limit {
		setNextCursor(c, readmodel.EncodeCursor(string(list[len(list)-1].ID)))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) createSIEMDestination(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	dests, ok := s.siemDestinations(c)
	if !ok {
		return
	}
	var req siemDestinationRequest
	if !bindJSON(c, &req) {
		return
	}
	enabled := req.Enabled == nil || *req.Enabled
	d, res, err := dests.Create(c.Request.Context(), commands.CreateSIEMDestination{
		Tenant: p.Tenant, Secret: req.Secret, By: p.Actor(), Meta: meta(c),
		Settings: siem.Settings{Name: req.Name, Enabled: enabled, Config: req.Config, Filter: req.Filter, TLPCeiling: req.TLPCeiling},
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("Location", "/api/siem/destinations/"+string(d.ID))
	c.Header("ETag", etag(res.Version))
	c.JSON(http.StatusCreated, siemRead(d, res.Position))
}

func (s *Server) updateSIEMDestination(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	dests, ok := s.siemDestinations(c)
	if !ok {
		return
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	var req siemDestinationPatch
	if !bindJSON(c, &req) {
		return
	}
	d, res, err := dests.Update(c.Request.Context(), commands.UpdateSIEMDestination{
		Tenant: p.Tenant, ID: siem.ID(c.Param("id")), Name: req.Name, Enabled: req.Enabled, Config: req.Config,
		Filter: req.Filter, TLPCeiling: req.TLPCeiling, Secret: req.Secret, IfMatch: ifMatch, By: p.Actor(), Meta: meta(c),
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", etag(res.Version))
	c.JSON(http.StatusOK, siemRead(d, res.Position))
}

func (s *Server) deleteSIEMDestination(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	dests, ok := s.siemDestinations(c)
	if !ok {
		return
	}
	ifMatch, ok := ifMatchVersion(c)
	if !ok {
		return
	}
	if _, err := dests.Delete(c.Request.Context(), commands.DeleteSIEMDestination{
		Tenant: p.Tenant, ID: siem.ID(c.Param("id")), IfMatch: ifMatch, By: p.Actor(), Meta: meta(c),
	}); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// siemTestTimeout bounds a test delivery.
const siemTestTimeout = 15 * time.Second

func (s *Server) testSIEMDestination(c *gin.Context) {
	p, ok := personOnly(c)
	if !ok {
		return
	}
	dests, ok := s.siemDestinations(c)
	if !ok {
		return
	}
	if s.deps.SIEM.Test == nil {
		fail(c, errSIEMUnavailable)
		return
	}
	ctx := c.Request.Context()
	id := siem.ID(c.Param("id"))
	d, err := dests.Get(ctx, p.Tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	secret, err := dests.Secret(ctx, p.Tenant, id)
	if err != nil {
		fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, siemTestTimeout)
	defer cancel()
	if err := s.deps.SIEM.Test(ctx, d, secret); err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			fail(c, err)
			return
		}
		c.JSON(http.StatusOK, siemTestResult{Error: err.Error()})
		return
	}
	c.JSON(http.StatusOK, siemTestResult{Delivered: true})
}
