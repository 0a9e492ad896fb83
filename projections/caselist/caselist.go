// Package caselist projects case events into the case_list read model that
// GET /api/cases filters, sorts and pages.
//
// Package caselist imports eventstore and domain only.
package caselist

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the table and replays the topic.
const Name = "caselist.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains case_list.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the tables the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string { return []string{"case_list", "case_list_tasks"} }

func severityLevel(s cases.Severity) int {
	switch s {
	case cases.SeverityLow:
		return 1
	case cases.SeverityMedium:
		return 2
	case cases.SeverityHigh:
		return 3
	case cases.SeverityCritical:
		return 4
	}
	return 0
}

// Apply updates case_list for one event; rows remember the stream version
// they reflect, so applying an event twice changes nothing.
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	tenant, id, v, at := string(env.Tenant), env.StreamID, int64(env.Version), env.RecordedAt
	set := func(assign string, args ...any) error {
		if assign != "" {
			assign += ", "
		}
		tag, err := tx.Exec(ctx, `UPDATE case_list SET `+assign+`updated_at = $3, version = $4
			WHERE tenant_id = $1 AND case_id = $2 AND version < $4`, append([]any{tenant, id, at, v}, args...)...)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return nil
	}
	// Task counts are recomputed from case_list_tasks, which is keyed by task.
	recount := func() error {
		_, err := tx.Exec(ctx, `UPDATE case_list c SET
				tasks = (SELECT count(*) FROM case_list_tasks t WHERE t.tenant_id = c.tenant_id AND t.case_id = c.case_id AND NOT t.deleted),
				open_tasks = (SELECT count(*) FROM case_list_tasks t WHERE t.tenant_id = c.tenant_id AND t.case_id = c.case_id
					AND NOT t.deleted AND t.status IN ('todo', 'in_progress'))
			WHERE c.tenant_id = $1 AND c.case_id = $2`, tenant, id)
		return err
	}
	switch e := env.Event.(type) {
	case cases.Opened:
		_, err := tx.Exec(ctx, `INSERT INTO case_list (tenant_id, case_id, title, status, severity, severity_level, tlp, pap,
				assignee, tags, techniques, hosts, created_by, created_at, updated_at, version)
			VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)
			ON CONFLICT (tenant_id, case_id) DO NOTHING`,
			tenant, id, e.Title, string(e.Severity), severityLevel(e.Severity), string(e.TLP), string(e.PAP),
			string(e.Assignee), nonNil(e.Tags), nonNil(e.Techniques), hostIDs(e.Hosts), string(e.By), at, v)
		return err
	case cases.Updated:
		var args []any
		assign := ""
		add := func(col string, val any) {
			if assign != "" {
				assign += ", "
			}
			args = append(args, val)
			assign += col + " = $" + strconv.Itoa(4+len(args))
		}
		if e.Title != nil {
			add("title", *e.Title)
		}
		if e.Severity != nil {
			add("severity", string(*e.Severity))
			add("severity_level", severityLevel(*e.Severity))
		}
		if e.TLP != nil {
			add("tlp", string(*e.TLP))
		}
		if e.PAP != nil {
			add("pap", string(*e.PAP))
		}
		return set(assign, args...)
	case cases.StatusChanged:
		return set(`status = $5`, string(e.To))
	case cases.Closed:
		return set(`status = 'closed', resolution_type = $5, closed_at = $3`, string(e.ResolutionType))
	case cases.Reopened:
		return set(`status = $5, resolution_type = '', closed_at = NULL`, string(e.To))
	case cases.Assigned:
		return set(`assignee = $5`, string(e.To))
	case cases.TagsChanged:
		return set(`tags = $5`, nonNil(e.Tags))
	case cases.TechniquesChanged:
		return set(`techniques = $5`, nonNil(e.Techniques))
	case cases.HostLinked:
		return set(`hosts = array(SELECT DISTINCT unnest(hosts || $5::text) ORDER BY 1)`, string(e.Host))
	case cases.HostUnlinked:
		return set(`hosts = array_remove(hosts, $5::text)`, string(e.Host))
	case cases.TaskAdded:
		if _, err := tx.Exec(ctx, `INSERT INTO case_list_tasks (tenant_id, case_id, task_id, status) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, tenant, id, string(e.Task), string(e.Status)); err != nil {
			return err
		}
		if err := set(``); err != nil {
			return err
		}
		return recount()
	case cases.TaskUpdated:
		if e.Status != nil {
			if _, err := tx.Exec(ctx, `UPDATE case_list_tasks SET status = $4 WHERE tenant_id = $1 AND case_id = $2 AND task_id = $3`,
				tenant, id, string(e.Task), string(*e.Status)); err != nil {
				return err
			}
		}
		if err := set(``); err != nil {
			return err
		}
		return recount()
	case cases.TaskDeleted:
		if _, err := tx.Exec(ctx, `UPDATE case_list_tasks SET deleted = true WHERE tenant_id = $1 AND case_id = $2 AND task_id = $3`,
			tenant, id, string(e.Task)); err != nil {
			return err
		}
		if err := set(``); err != nil {
			return err
		}
		return recount()
	case cases.CommentAdded:
		return set(`comments = comments + 1`)
	case cases.CommentDeleted:
		return set(`comments = greatest(comments - 1, 0)`)
	case cases.CommentEdited:
		return set(``)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hostIDs(ids []hosts.ID) []string {
	out := make([]string, 0, len(ids))
	for _, h := range ids {
		out = append(out, string(h))
	}
	return out
}

// Case is one row of the read model.
type Case struct {
	ID             cases.ID
	Tenant         domain.TenantID
	Title          string
	Status         cases.Status
	Severity       cases.Severity
	TLP            cases.TLP
	PAP            cases.PAP
	Assignee       domain.UserID
	Tags           []string
	Techniques     []string
	Hosts          []string
	OpenTasks      int
	Tasks          int
	Comments       int
	ResolutionType cases.ResolutionType
	CreatedBy      domain.UserID
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ClosedAt       *time.Time
	Version        int64
}

// Filter narrows a list; empty fields do not filter.
type Filter struct {
	Status    cases.Status
	Severity  cases.Severity
	Assignee  domain.UserID
	Tag       string
	Technique string
}

// Sort orders a list: a column from Sorts, descending or not.
type Sort struct {
	Field string
	Desc  bool
}

// Sorts maps the sortable fields of the API to their column expressions. Only
// these are ever placed in SQL.
var Sorts = map[string]string{
	"created_at": "created_at",
	"updated_at": "updated_at",
	"severity":   "severity_level",
	"title":      "title",
	"status":     "status",
}

// ErrBadSort answers a sort field that is not in Sorts.
var ErrBadSort = domain.Invalid("invalid_sort", "sort must be one of created_at, updated_at, severity, title, status")

// ErrCursorSort answers a cursor made under another sort order.
var ErrCursorSort = domain.Invalid("invalid_cursor", "the cursor belongs to another sort order")

const columns = `case_id, tenant_id, title, status, severity, tlp, pap, assignee, tags, techniques, hosts,
	open_tasks, tasks, comments, resolution_type, created_by, created_at, updated_at, closed_at, version`

func scan(row pgx.Row) (Case, error) {
	var c Case
	var id, tenant, status, severity, tlp, pap, assignee, resType, by string
	err := row.Scan(&id, &tenant, &c.Title, &status, &severity, &tlp, &pap, &assignee, &c.Tags, &c.Techniques, &c.Hosts,
		&c.OpenTasks, &c.Tasks, &c.Comments, &resType, &by, &c.CreatedAt, &c.UpdatedAt, &c.ClosedAt, &c.Version)
	c.ID, c.Tenant, c.Status, c.Severity = cases.ID(id), domain.TenantID(tenant), cases.Status(status), cases.Severity(severity)
	c.TLP, c.PAP, c.Assignee, c.ResolutionType, c.CreatedBy = cases.TLP(tlp), cases.PAP(pap), domain.UserID(assignee), cases.ResolutionType(resType), domain.UserID(by)
	return c, err
}

// sortValue renders row c's value of the sort column for a cursor.
func sortValue(c Case, field string) string {
	switch field {
	case "updated_at":
		return c.UpdatedAt.UTC().Format(time.RFC3339Nano)
	case "severity":
		return strconv.Itoa(severityLevel(c.Severity))
	case "title":
		return c.Title
	case "status":
		return string(c.Status)
	}
	return c.CreatedAt.UTC().Format(time.RFC3339Nano)
}

// Cursor returns the page cursor after c under sort.
func Cursor(c Case, sort Sort) string {
	dir := "asc"
	if sort.Desc {
		dir = "desc"
	}
	return readmodel.EncodeCursor(sort.Field+":"+dir, sortValue(c, sort.Field), string(c.ID))
}

// List returns the tenant's cases matching f in sort order after the page's
// cursor, at most page.Limit of them.
func List(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, f Filter, sort Sort, page readmodel.Page) ([]Case, error) {
	col, ok := Sorts[sort.Field]
	if !ok {
		return nil, ErrBadSort
	}
	dir, cmp := "ASC", ">"
	if sort.Desc {
		dir, cmp = "DESC", "<"
	}
	args := []any{string(tenant)}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := "tenant_id = $1"
	if f.Status != "" {
		where += " AND status = " + arg(string(f.Status))
	}
	if f.Severity != "" {
		where += " AND severity = " + arg(string(f.Severity))
	}
	if f.Assignee != "" {
		where += " AND assignee = " + arg(string(f.Assignee))
	}
	if f.Tag != "" {
		where += " AND tags @> ARRAY[" + arg(f.Tag) + "]::text[]"
	}
	if f.Technique != "" {
		where += " AND techniques @> ARRAY[" + arg(f.Technique) + "]::text[]"
	}
	if len(page.Cursor) > 0 {
		if len(page.Cursor) != 3 || page.Cursor[0] != sortKey(sort) {
			return nil, ErrCursorSort
		}
		typed, err := cursorValue(col, page.Cursor[1])
		if err != nil {
			return nil, readmodel.ErrBadCursor
		}
		where += fmt.Sprintf(" AND (%s, case_id) %s (%s, %s)", col, cmp, arg(typed), arg(page.Cursor[2]))
	}
	q := `SELECT ` + columns + ` FROM case_list WHERE ` + where +
		` ORDER BY ` + col + ` ` + dir + `, case_id ` + dir + ` LIMIT ` + arg(page.Limit)
	var out []Case
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Case, error) { return scan(r) })
		return err
	})
	return out, err
}

func sortKey(s Sort) string {
	if s.Desc {
		return s.Field + ":desc"
	}
	return s.Field + ":asc"
}

// cursorValue parses a cursor's sort value into the column's type.
func cursorValue(col, v string) (any, error) {
	switch col {
	case "created_at", "updated_at":
		return time.Parse(time.RFC3339Nano, v)
	case "severity_level":
		n, err := strconv.Atoi(v)
		return int16(n), err
	}
	return v, nil
}
