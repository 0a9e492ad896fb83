package httpapi

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/domain"
	"velocicompanion/projections/readmodel"
)

// WaitFunc blocks until projector has applied tenant's event at position, or
// max has passed; it returns an error in the latter case.
type WaitFunc func(ctx context.Context, projector string, tenant domain.TenantID, position int64, max time.Duration) error

var errBadMinPosition = domain.Invalid("invalid_min_position", "min_position must be a non-negative integer")

// waitMinPosition honours ?min_position=N: it waits, at most the configured
// read wait, until projector's read model includes the write at N. A read model
// still behind after that is served anyway and marked with X-Read-Stale.
func (s *Server) waitMinPosition(c *gin.Context, projector string) bool {
	raw := c.Query("min_position")
	if raw == "" {
		return true
	}
	pos, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || pos < 0 {
		fail(c, errBadMinPosition)
		return false
	}
	if pos == 0 || s.deps.WaitFor == nil {
		return true
	}
	p, _ := principalOf(c)
	if err := s.deps.WaitFor(c.Request.Context(), projector, p.Tenant, pos, s.cfg.ReadWait); err != nil {
		if c.Request.Context().Err() != nil {
			fail(c, domain.Unavailable("request_cancelled", "request cancelled"))
			return false
		}
		c.Header("X-Read-Stale", "true")
	}
	return true
}

const defaultLimit = 100

// queryLimit reads the limit query parameter: def when absent, else 1 to
// most; it answers 400 otherwise.
func queryLimit(c *gin.Context, def, most int) (int, bool) {
	raw := c.Query("limit")
	if raw == "" {
		return def, true
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > most {
		fail(c, domain.Invalid("invalid_limit", "limit must be an integer from 1 to %d", most))
		return 0, false
	}
	return n, true
}

// pageParams reads limit and cursor, and honours min_position for projector.
func (s *Server) pageParams(c *gin.Context, projector string) (readmodel.Page, bool) {
	page := readmodel.Page{Limit: defaultLimit}
	limit, ok := queryLimit(c, defaultLimit, readmodel.MaxLimit)
	if !ok {
		return page, false
	}
	page.Limit = limit
	cur, err := readmodel.DecodeCursor(c.Query("cursor"))
	if err != nil {
		fail(c, err)
		return page, false
	}
	page.Cursor = cur
	return page, s.waitMinPosition(c, projector)
}

// setNextCursor announces the next page in X-Next-Cursor and a Link header;
// the body stays a bare array as in the original API.
func setNextCursor(c *gin.Context, cursor string) {
	c.Header("X-Next-Cursor", cursor)
	q := url.Values{}
	for k, v := range c.Request.URL.Query() {
		if k != "cursor" && k != "min_position" {
			q[k] = v
		}
	}
	q.Set("cursor", cursor)
	c.Header("Link", "<"+c.Request.URL.Path+"?"+q.Encode()+`>; rel="next"`)
}

var errBadIfMatch = domain.Invalid("invalid_if_match", `If-Match must be one entity tag such as "3"`)

// ifMatchVersion parses If-Match into a stream version; 0 means absent.
func ifMatchVersion(c *gin.Context) (int64, bool) {
	raw := strings.TrimSpace(c.GetHeader("If-Match"))
	if raw == "" || raw == "*" {
		return 0, true
	}
	raw = strings.TrimPrefix(raw, "W/")
	v, err := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64)
	if err != nil || v < 1 {
		fail(c, errBadIfMatch)
		return 0, false
	}
	return v, true
}
