package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/projections/readmodel"
)

// Entry is one row of the audit log: one event.
type Entry struct {
	ID            string // the event id
	Tenant        domain.TenantID
	Time          time.Time // when the event was recorded, UTC
	Actor         string    // user id, API key id or "system"
	ActorType     string    // user, api_key, system or self_registration
	Role          string    // the actor's role at the time
	Action        string    // the event's name, e.g. user.role_changed
	ResourceType  string    // the stream type, e.g. user, case
	ResourceID    string    // the stream id
	Result        string    // ResultSuccess or ResultFailure
	SourceIP      string
	UserAgent     string
	RequestID     string
	CorrelationID string
	Position      int64           // global position of the event
	Details       json.RawMessage // redacted summary of the payload (Summarize)
}

// Filter selects entries; empty fields select everything. Start and End
// bound the recording time, both inclusive.
type Filter struct {
	Actor        string
	Action       string
	ResourceType string
	ResourceID   string
	Result       string
	Start, End   time.Time
}

// MaxExportRows is the most entries Export writes.
const MaxExportRows = 100_000

// Errors of the queries.
var (
	ErrExportTooLarge = domain.Unprocessable("export_too_large",
		"the selected range holds more than %d entries; narrow it with start, end or other filters", MaxExportRows)
	ErrBadResult = domain.Invalid("invalid_result", "result must be success or failure")
	ErrBadRange  = domain.Invalid("invalid_range", "start must not be after end")
)

// Validate checks the filter's values.
func (f Filter) Validate() error {
	if f.Result != "" && f.Result != ResultSuccess && f.Result != ResultFailure {
		return ErrBadResult
	}
	if !f.Start.IsZero() && !f.End.IsZero() && f.Start.After(f.End) {
		return ErrBadRange
	}
	return nil
}

const columns = `tenant_id, event_id::text, position, recorded_at, actor, actor_type, role, action, resource_type,
	resource_id, result, source_ip, user_agent, request_id, correlation_id, details`

// newestFirst is the order of every list; the indexes follow it.
const newestFirst = ` ORDER BY recorded_at DESC, position DESC`

func scan(row pgx.Row) (Entry, error) {
	var e Entry
	var tenant string
	var details []byte
	err := row.Scan(&tenant, &e.ID, &e.Position, &e.Time, &e.Actor, &e.ActorType, &e.Role, &e.Action, &e.ResourceType,
		&e.ResourceID, &e.Result, &e.SourceIP, &e.UserAgent, &e.RequestID, &e.CorrelationID, &details)
	e.Tenant, e.Time, e.Details = domain.TenantID(tenant), e.Time.UTC(), json.RawMessage(details)
	return e, err
}

// where returns the SQL conditions of f for tenant and their arguments, $1
// being the tenant. Only constant SQL is concatenated; values are arguments.
func (f Filter) where(tenant domain.TenantID) (string, []any) {
	conds := []string{"tenant_id = $1"}
	args := []any{string(tenant)}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if f.ResourceType != "" {
		add("resource_type = $%d", f.ResourceType)
	}
	if f.ResourceID != "" {
		add("resource_id = $%d", f.ResourceID)
	}
	if f.Result != "" {
		add("result = $%d", f.Result)
	}
	if !f.Start.IsZero() {
		add("recorded_at >= $%d", f.Start)
	}
	if !f.End.IsZero() {
		add("recorded_at <= $%d", f.End)
	}
	return strings.Join(conds, " AND "), args
}

// List returns a page of tenant's entries that match f, newest first.
func List(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, f Filter, page readmodel.Page) ([]Entry, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	cond, args := f.where(tenant)
	if page.Cursor != nil {
		at, pos, err := parseCursor(page.Cursor)
		if err != nil {
			return nil, err
		}
		args = append(args, at, pos)
		cond += fmt.Sprintf(" AND (recorded_at, position) < ($%d, $%d)", len(args)-1, len(args))
	}
	args = append(args, page.Limit)
	q := `SELECT ` + columns + ` FROM audit_log WHERE ` + cond + newestFirst + fmt.Sprintf(" LIMIT $%d", len(args))
	var out []Entry
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) { return scan(r) })
		return err
	})
	return out, err
}

// Cursor returns the page cursor after e.
func Cursor(e Entry) string {
	return readmodel.EncodeCursor(strconv.FormatInt(e.Time.UnixMicro(), 10), strconv.FormatInt(e.Position, 10))
}

func parseCursor(parts []string) (time.Time, int64, error) {
	if len(parts) != 2 {
		return time.Time{}, 0, readmodel.ErrBadCursor
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	pos, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, readmodel.ErrBadCursor
	}
	return time.UnixMicro(us).UTC(), pos, nil
}

// Get returns tenant's entry of event id, or domain.ErrNotFound (also for
// another tenant's event and for an id that is not a UUID).
func Get(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, id string) (Entry, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Entry{}, domain.ErrNotFound
	}
	var e Entry
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		var err error
		e, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM audit_log WHERE tenant_id = $1 AND event_id = $2::uuid`,
			string(tenant), id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, domain.ErrNotFound
	}
	return e, err
}

// Export streams tenant's entries that match f, newest first, in one
// read-only transaction. It first counts them, up to maxRows+1: with more
// than maxRows (at most MaxExportRows; <= 0 means MaxExportRows) it returns
// ErrExportTooLarge before calling anything. Otherwise it calls begin once,
// then row for each entry; an error from either ends the export and is
// returned.
func Export(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, f Filter, maxRows int,
	begin func() error, row func(Entry) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if maxRows <= 0 || maxRows > MaxExportRows {
		maxRows = MaxExportRows
	}
	cond, args := f.where(tenant)
	limit := fmt.Sprintf(" LIMIT $%d", len(args)+1)
	return readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM audit_log WHERE `+cond+limit+`) x`,
			append(args, maxRows+1)...).Scan(&n); err != nil {
			return err
		}
		if n > maxRows {
			return domain.Unprocessable(ErrExportTooLarge.Code,
				"the selected range holds more than %d entries; narrow it with start, end or other filters", maxRows)
		}
		if err := begin(); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM audit_log WHERE `+cond+newestFirst+limit, append(args, maxRows)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scan(rows)
			if err != nil {
				return err
			}
			if err := row(e); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}
