package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/projections/auditlog"
)

// IntegrityFunc verifies a tenant's events up to its latest signed audit
// checkpoint; eventstore.IntegrityChecker.Check is one.
type IntegrityFunc func(ctx context.Context, tenant domain.TenantID) (eventstore.IntegrityReport, error)

// auditRead is one audit entry: the original API's AuditLogRead fields plus
// actor type, role, result, request and correlation ids and global position.
type auditRead struct {
	ID            string          `json:"id" doc:"the id of the event the entry records"`
	TenantID      domain.TenantID `json:"tenant_id"`
	UserID        string          `json:"user_id" doc:"the actor: a user id, an API key id or system"`
	ActorType     string          `json:"actor_type" doc:"user, api_key, system or self_registration"`
	Role          string          `json:"role" doc:"the actor's role at the time"`
	Action        string          `json:"action" doc:"the event type, e.g. user.role_changed"`
	ResourceType  string          `json:"resource_type"`
	ResourceID    string          `json:"resource_id"`
	Result        string          `json:"result" doc:"success, or failure for a failed or refused attempt (user.login_failed …)"`
	IPAddress     string          `json:"ip_address" doc:"the client's address (X-Forwarded-For only from trusted proxies)"`
	UserAgent     string          `json:"user_agent"`
	RequestID     string          `json:"request_id"`
	CorrelationID string          `json:"correlation_id"`
	Position      int64           `json:"position" doc:"global position of the event"`
	Details       json.RawMessage `json:"details" doc:"redacted summary of the change; never carries a secret"`
	CreatedAt     time.Time       `json:"created_at" doc:"when the event was recorded (UTC)"`
}

func auditFromEntry(e auditlog.Entry) auditRead {
	return auditRead{ID: e.ID, TenantID: e.Tenant, UserID: e.Actor, ActorType: e.ActorType, Role: e.Role,
		Action: e.Action, ResourceType: e.ResourceType, ResourceID: e.ResourceID, Result: e.Result,
		IPAddress: e.SourceIP, UserAgent: e.UserAgent, RequestID: e.RequestID, CorrelationID: e.CorrelationID,
		Position: e.Position, Details: e.Details, CreatedAt: e.Time.UTC()}
}

// integrityRead is the tenant's latest signed checkpoint and the result of
// verifying the tenant's events up to it.
type integrityRead struct {
	TenantID            domain.TenantID `json:"tenant_id"`
	Status              string          `json:"status" doc:"ok, broken, or no_checkpoint before the first checkpoint"`
	VerifiedAt          time.Time       `json:"verified_at" doc:"when the verification ran (results are cached briefly)"`
	CheckpointsVerified int             `json:"checkpoints_verified"`
	EventsVerified      int64           `json:"events_verified" doc:"events covered by the verified checkpoints"`
	LatestCheckpoint    *checkpointRead `json:"latest_checkpoint"`
	Break               *breakRead      `json:"break" doc:"the first thing that failed to verify; null when status is not broken"`
}

type checkpointRead struct {
	Seq          int64     `json:"seq"`
	UpToPosition int64     `json:"up_to_position"`
	UpToTxID     uint64    `json:"up_to_tx_id"`
	Events       int64     `json:"events" doc:"the tenant's events covered since the first checkpoint"`
	Digest       string    `json:"digest" doc:"hex SHA-256 running digest"`
	SignedAt     time.Time `json:"signed_at"`
	KeyID        string    `json:"key_id"`
	Signature    string    `json:"signature" doc:"base64 Ed25519 signature"`
}

type breakRead struct {
	CheckpointSeq int64  `json:"checkpoint_seq" doc:"the checkpoint that failed; 0 after the latest"`
	Position      int64  `json:"position"`
	EventID       string `json:"event_id,omitempty"`
	Reason        string `json:"reason"`
}

var (
	errAuditFormat = domain.Invalid("invalid_format", "format must be json, csv or jsonl")
	errAuditTime   = domain.Invalid("invalid_time", "start and end must be RFC 3339 times such as 2024-05-01T12:00:00Z, or dates such as 2024-05-01")
	errAuditFilter = domain.Invalid("invalid_filter", "a filter value is at most 256 characters")
	errNoIntegrity = domain.Unavailable("integrity_unavailable", "audit checkpoints are not verified by this server")
	auditCSVHeader = []string{"id", "created_at", "tenant_id", "user_id", "actor_type", "role", "action", "resource_type", "resource_id", "result", "ip_address", "user_agent", "request_id", "correlation_id", "position", "details"}
)

// auditFlushEvery is how many exported entries are sent at a time.
const auditFlushEvery = 500

// auditRoutes are the audit log's routes: read only, for tenant
// administrators (and platform administrators, for any tenant).
func (s *Server) auditRoutes() []op {
	tenantParam := param{Name: "tenant_id", In: "query", Desc: "platform administrators only: the tenant whose log to read (default: their own)"}
	filters := []param{
		tenantParam,
		{Name: "actor", In: "query", Desc: "only entries of this actor (user id, API key id or system)"},
		{Name: "user_id", In: "query", Desc: "the original API's name of actor"},
		{Name: "action", In: "query", Desc: "only this event type, e.g. user.login_failed"},
		{Name: "resource_type", In: "query", Desc: "only this resource type, e.g. user, case"},
		{Name: "resource_id", In: "query", Desc: "only this resource"},
		{Name: "result", In: "query", Desc: "success or failure"},
		{Name: "start", In: "query", Desc: "entries recorded at or after this RFC 3339 time (or date)"},
		{Name: "end", In: "query", Desc: "entries recorded at or before this RFC 3339 time (or until the end of this date)"},
		{Name: "start_date", In: "query", Desc: "the original API's name of start"},
		{Name: "end_date", In: "query", Desc: "the original API's name of end"},
		{Name: "format", In: "query", Desc: "json (default): a page as a JSON array; csv or jsonl: the whole filtered range " +
			"(at most 100000 entries) as an attachment, newest first"},
	}
	return []op{
		{method: http.MethodGet, path: "/api/audit", summary: "List the tenant's audit log, newest first, or export it (format=csv|jsonl)", tag: "audit", access: roleList, roles: admins, query: append(filters, pageParams...), resp: []auditRead{}, handler: s.listAudit},
		{method: http.MethodGet, path: "/api/audit/integrity", summary: "The latest signed audit checkpoint and the verification of the tenant's events up to it", tag: "audit", access: roleList, roles: admins, query: []param{tenantParam}, resp: integrityRead{}, handler: s.auditIntegrity},
		{method: http.MethodGet, path: "/api/audit/:id", summary: "Get an audit entry (by event id)", tag: "audit", access: roleList, roles: admins, query: append([]param{tenantParam}, minPositionParam...), resp: auditRead{}, handler: s.getAudit},
	}
}

// auditTime parses an RFC 3339 time, or a date: its first instant, or with
// end its last microsecond.
func auditTime(v string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, errAuditTime
	}
	if end {
		d = d.AddDate(0, 0, 1).Add(-time.Microsecond)
	}
	return d, nil
}

// auditFilter reads the filter parameters.
func auditFilter(c *gin.Context) (auditlog.Filter, bool) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := c.Query(n); v != "" {
				return v
			}
		}
		return ""
	}
	f := auditlog.Filter{
		Actor:        first("actor", "user_id"),
		Action:       c.Query("action"),
		ResourceType: c.Query("resource_type"),
		ResourceID:   c.Query("resource_id"),
		Result:       c.Query("result"),
	}
	for _, v := range []string{f.Actor, f.Action, f.ResourceType, f.ResourceID, f.Result} {
		if len(v) > 256 {
			fail(c, errAuditFilter)
			return f, false
		}
	}
	var err error
	if v := first("start", "start_date"); v != "" {
		if f.Start, err = auditTime(v, false); err != nil {
			fail(c, err)
			return f, false
		}
	}
	if v := first("end", "end_date"); v != "" {
		if f.End, err = auditTime(v, true); err != nil {
			fail(c, err)
			return f, false
		}
	}
	if err := f.Validate(); err != nil {
		fail(c, err)
		return f, false
	}
	return f, true
}

func (s *Server) listAudit(c *gin.Context) {
	tenant := targetTenant(c, mustPrincipal(c))
	f, ok := auditFilter(c)
	if !ok {
		return
	}
	switch format := c.DefaultQuery("format", "json"); format {
	case "json":
	case "csv", "jsonl":
		s.exportAudit(c, tenant, f, format)
		return
	default:
		fail(c, errAuditFormat)
		return
	}
	page, ok := s.pageParams(c, auditlog.Name)
	if !ok {
		return
	}
	rows, err := auditlog.List(c.Request.Context(), s.deps.Reads, tenant, f, page)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]auditRead, 0, len(rows))
	for _, e := range rows {
		out = append(out, auditFromEntry(e))
	}
	if len(rows) == page.Limit {
		setNextCursor(c, auditlog.Cursor(rows[len(rows)-1]))
	}
	c.JSON(http.StatusOK, out)
}

// csvCell neutralises a cell that a spreadsheet would take for a formula.
func csvCell(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}

func auditCSVRecord(e auditlog.Entry) []string {
	var details bytes.Buffer
	if json.Compact(&details, e.Details) != nil {
		details.Reset()
		details.Write(e.Details)
	}
	rec := []string{e.ID, e.Time.UTC().Format(time.RFC3339Nano), string(e.Tenant), e.Actor, e.ActorType, e.Role,
		e.Action, e.ResourceType, e.ResourceID, e.Result, e.SourceIP, e.UserAgent, e.RequestID, e.CorrelationID,
		strconv.FormatInt(e.Position, 10), details.String()}
	for i, v := range rec {
		rec[i] = csvCell(v)
	}
	return rec
}

// exportAudit streams the filtered range as a CSV or JSON Lines attachment.
// Once the body has started, a failure aborts the connection so that the
// client cannot mistake a cut export for a complete one.
func (s *Server) exportAudit(c *gin.Context, tenant domain.TenantID, f auditlog.Filter, format string) {
	if !s.waitMinPosition(c, auditlog.Name) {
		return
	}
	name := "audit-" + string(tenant) + "-" + time.Now().UTC().Format("20060102T150405Z") + "." + format
	var (
		cw      *csv.Writer
		enc     *json.Encoder
		started bool
		n       int
	)
	begin := func() error {
		started = true
		h := c.Writer.Header()
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		if format == "csv" {
			h.Set("Content-Type", "text/csv; charset=utf-8")
			c.Status(http.StatusOK)
			cw = csv.NewWriter(c.Writer)
			return cw.Write(auditCSVHeader)
		}
		h.Set("Content-Type", "application/x-ndjson")
		c.Status(http.StatusOK)
		enc = json.NewEncoder(c.Writer)
		return nil
	}
	row := func(e auditlog.Entry) error {
		var err error
		if cw != nil {
			err = cw.Write(auditCSVRecord(e))
		} else {
			err = enc.Encode(auditFromEntry(e))
		}
		if n++; err == nil && n%auditFlushEvery == 0 {
			if cw != nil {
				cw.Flush()
				err = cw.Error()
			}
			c.Writer.Flush()
		}
		return err
	}
	err := auditlog.Export(c.Request.Context(), s.deps.Reads, tenant, f, auditlog.MaxExportRows, begin, row)
	if err == nil && cw != nil {
		cw.Flush()
		err = cw.Error()
	}
	switch {
	case err == nil:
	case !started:
		fail(c, err)
	default:
		logger(c).Warn("audit export aborted", slog.Int("rows", n), slog.String("error", err.Error()))
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) getAudit(c *gin.Context) {
	tenant := targetTenant(c, mustPrincipal(c))
	if !s.waitMinPosition(c, auditlog.Name) {
		return
	}
	e, err := auditlog.Get(c.Request.Context(), s.deps.Reads, tenant, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, auditFromEntry(e))
}

func (s *Server) auditIntegrity(c *gin.Context) {
	tenant := targetTenant(c, mustPrincipal(c))
	if s.deps.AuditIntegrity == nil {
		fail(c, errNoIntegrity)
		return
	}
	rep, err := s.deps.AuditIntegrity(c.Request.Context(), tenant)
	if err != nil {
		fail(c, err)
		return
	}
	out := integrityRead{TenantID: tenant, Status: "ok", VerifiedAt: rep.VerifiedAt.UTC(),
		CheckpointsVerified: rep.Verified, EventsVerified: rep.Events}
	if cp := rep.Latest; cp != nil {
		out.LatestCheckpoint = &checkpointRead{Seq: cp.Seq, UpToPosition: cp.UpTo.Position, UpToTxID: cp.UpTo.TxID,
			Events: cp.Events, Digest: hex.EncodeToString(cp.Digest), SignedAt: cp.SignedAt.UTC(), KeyID: cp.KeyID,
			Signature: base64.StdEncoding.EncodeToString(cp.Signature)}
	} else {
		out.Status = "no_checkpoint"
	}
	if b := rep.Break; b != nil {
		out.Status = "broken"
		out.Break = &breakRead{CheckpointSeq: b.Checkpoint, Position: b.Position, EventID: b.EventID, Reason: b.Reason}
	}
	c.JSON(http.StatusOK, out)
}
