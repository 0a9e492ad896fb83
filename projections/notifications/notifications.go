// Package notifications projects events into every user's inbox, the
// notifications read model behind GET /api/notifications and the live
// WebSocket feed, and owns the pure mapping from events to notifications
// (Notify).
//
// A notification's id is derived from its source event, its recipient and its
// kind, so a redelivered or replayed event writes the same rows. The projector
// keeps helper tables of its own with what it must know to address
// notifications that an event alone cannot: case_assignees and
// case_task_assignees (a status change does not name the case's assignee),
// velociraptor_requests (who asked for a collection, hunt, quarantine or
// release, which its end does not name) and host_names (to name the host of
// a quarantine).
//
// Reading a notification is not an event. It is a per-user flag of the read
// model that MarkRead and MarkAllRead set directly, because it is presentation
// state rather than a fact about a case: no decision depends on it, it has no
// audit value, and recording it would append an event to the store (and to
// Kafka, for every consumer) each time a user opens the inbox. The price is
// that rebuilding this read model (velocicompanion replay) marks every
// notification unread again; rebuilds happen when the projector changes, and
// if read state ever has to survive them, record notification.read events and
// let Apply set the flag.
//
// Package notifications imports eventstore, domain and projections/readmodel;
// it must not import commands or any adapter.
package notifications

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the tables and replays the topic.
const Name = "notifications.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains notifications and its helper tables.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the tables the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string {
	return []string{"notifications", "case_assignees", "case_task_assignees", "velociraptor_requests", "host_names"}
}

// Apply records the notifications one event gives rise to and keeps the
// helper tables current. Applying an event twice changes nothing: a case's
// helper row remembers the version of the last event applied to it, an event
// not newer than that is skipped, and notification ids are derived from the
// event.
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	var assignee, title *string // the case's new values, if the event changes them
	var task *taskChange
	switch e := env.Event.(type) {
	case cases.Opened:
		assignee, title = ptr(string(e.Assignee)), &e.Title
	case cases.Updated:
		title = e.Title
	case cases.Assigned:
		assignee = ptr(string(e.To))
	case cases.StatusChanged, cases.Closed, cases.Reopened:
	case cases.TaskAdded:
		task = &taskChange{id: e.Task, assignee: ptr(string(e.Assignee)), title: &e.Title}
	case cases.TaskUpdated:
		task = &taskChange{id: e.Task, title: e.Title}
		if e.Assignee != nil {
			task.assignee = ptr(string(*e.Assignee))
		}
	default:
		return applyVelociraptor(ctx, tx, env)
	}
	tenant, id, v := string(env.Tenant), env.StreamID, int64(env.Version)
	f, applied, err := loadFacts(ctx, tx, env, task)
	if err != nil || applied {
		return err
	}
	if err := insert(ctx, tx, Notify(env, f)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO case_assignees AS c (tenant_id, case_id, assignee, title, version)
		VALUES ($1, $2, coalesce($3, ''), coalesce($4, ''), $5)
		ON CONFLICT (tenant_id, case_id) DO UPDATE
		SET assignee = coalesce($3, c.assignee), title = coalesce($4, c.title), version = $5 WHERE c.version < $5`,
		tenant, id, assignee, title, v); err != nil {
		return fmt.Errorf("record case %s: %w", id, err)
	}
	if task == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO case_task_assignees AS t (tenant_id, case_id, task_id, assignee, title, version)
		VALUES ($1, $2, $3, coalesce($4, ''), coalesce($5, ''), $6)
		ON CONFLICT (tenant_id, case_id, task_id) DO UPDATE
		SET assignee = coalesce($4, t.assignee), title = coalesce($5, t.title), version = $6 WHERE t.version < $6`,
		tenant, id, string(task.id), task.assignee, task.title, v); err != nil {
		return fmt.Errorf("record task %s of case %s: %w", task.id, id, err)
	}
	return nil
}

// taskChange is what a task event changes of its task.
type taskChange struct {
	id              cases.TaskID
	assignee, title *string
}

func ptr[T any](v T) *T { return &v }

// loadFacts returns what the helper tables know of env's case (and of the
// task, if not nil), or applied = true when the case's row already reflects
// env's version or a later one.
func loadFacts(ctx context.Context, tx pgx.Tx, env eventstore.Envelope, task *taskChange) (f Facts, applied bool, err error) {
	var assignee string
	var version int64
	err = tx.QueryRow(ctx, `SELECT assignee, title, version FROM case_assignees WHERE tenant_id = $1 AND case_id = $2`,
		string(env.Tenant), env.StreamID).Scan(&assignee, &f.CaseTitle, &version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return f, false, fmt.Errorf("load case %s: %w", env.StreamID, err)
	case version >= int64(env.Version):
		return f, true, nil
	}
	f.CaseAssignee = domain.UserID(assignee)
	if task != nil {
		err := tx.QueryRow(ctx, `SELECT title FROM case_task_assignees WHERE tenant_id = $1 AND case_id = $2 AND task_id = $3`,
			string(env.Tenant), env.StreamID, string(task.id)).Scan(&f.TaskTitle)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return f, false, fmt.Errorf("load task %s of case %s: %w", task.id, env.StreamID, err)
		}
	}
	return f, false, nil
}

// insert records ns; rows that exist already are left as they are (their
// read flag included).
func insert(ctx context.Context, tx pgx.Tx, ns []Notification) error {
	for _, n := range ns {
		var link *string
		if n.Link != "" {
			link = &n.Link
		}
		if _, err := tx.Exec(ctx, `INSERT INTO notifications (tenant_id, id, user_id, kind, notification_type, title,
				message, link, created_at, source_event_id, source_position)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (tenant_id, id) DO NOTHING`,
			string(n.Tenant), n.ID, string(n.User), string(n.Kind), string(n.Type), n.Title, n.Message, link,
			n.CreatedAt, n.SourceEventID, n.SourcePosition); err != nil {
			return fmt.Errorf("insert notification %s: %w", n.ID, err)
		}
	}
	return nil
}

const columns = `tenant_id, id::text, user_id, kind, notification_type, title, message, coalesce(link, ''), is_read,
	read_at, created_at, source_event_id::text, source_position`

func scan(row pgx.Row) (Notification, error) {
	var n Notification
	var tenant, user, kind, typ string
	err := row.Scan(&tenant, &n.ID, &user, &kind, &typ, &n.Title, &n.Message, &n.Link, &n.Read,
		&n.ReadAt, &n.CreatedAt, &n.SourceEventID, &n.SourcePosition)
	n.Tenant, n.User, n.Kind, n.Type = domain.TenantID(tenant), domain.UserID(user), Kind(kind), Type(typ)
	return n, err
}

func scanAll(rows pgx.Rows) ([]Notification, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) { return scan(r) })
}

// Filter selects notifications of an inbox.
type Filter struct {
	Read *bool // nil: all; false: unread only; true: read only
}

// List returns user's notifications in tenant that match f, newest first.
func List(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, user domain.UserID, f Filter, page readmodel.Page) ([]Notification, error) {
	// The conditions are constant SQL, so that the planner sees "NOT is_read"
	// and uses the partial index of unread notifications.
	where := `tenant_id = $1 AND user_id = $2`
	args := []any{string(tenant), string(user), page.Limit}
	switch {
	case f.Read == nil:
	case *f.Read:
		where += ` AND is_read`
	default:
		where += ` AND NOT is_read`
	}
	if len(page.Cursor) > 0 {
		at, pos, id, err := decodeCursor(page.Cursor)
		if err != nil {
			return nil, err
		}
		where += ` AND (created_at, source_position, id) < ($4, $5, $6::uuid)`
		args = append(args, at, pos, id)
	}
	var out []Notification
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM notifications WHERE `+where+`
			ORDER BY created_at DESC, source_position DESC, id DESC LIMIT $3`, args...)
		if err != nil {
			return err
		}
		out, err = scanAll(rows)
		return err
	})
	return out, err
}

// Cursor returns the page cursor after n.
func Cursor(n Notification) string {
	return readmodel.EncodeCursor(n.CreatedAt.UTC().Format(time.RFC3339Nano), strconv.FormatInt(n.SourcePosition, 10), n.ID)
}

func decodeCursor(parts []string) (time.Time, int64, string, error) {
	if len(parts) != 3 {
		return time.Time{}, 0, "", readmodel.ErrBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return time.Time{}, 0, "", readmodel.ErrBadCursor
	}
	pos, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return time.Time{}, 0, "", readmodel.ErrBadCursor
	}
	if _, err := uuid.Parse(parts[2]); err != nil {
		return time.Time{}, 0, "", readmodel.ErrBadCursor
	}
	return at, pos, parts[2], nil
}

// ErrNotFound is returned for a notification that does not exist or is not
// the caller's.
var ErrNotFound = domain.NotFound("notification_not_found", "notification not found")

// Get returns user's notification id in tenant, or ErrNotFound.
func Get(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, user domain.UserID, id string) (Notification, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Notification{}, ErrNotFound
	}
	var n Notification
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		var err error
		n, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM notifications
			WHERE tenant_id = $1 AND user_id = $2 AND id = $3`, string(tenant), string(user), id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Notification{}, ErrNotFound
	}
	return n, err
}

// MarkRead sets the read flag of user's notification id in tenant and returns
// the notification as it is now, or ErrNotFound. Marking a notification as
// it already is changes nothing (read_at keeps the first reading).
func MarkRead(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, user domain.UserID, id string, read bool, now time.Time) (Notification, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Notification{}, ErrNotFound
	}
	var n Notification
	err := write(ctx, pool, tenant, func(tx pgx.Tx) error {
		var err error
		n, err = scan(tx.QueryRow(ctx, `UPDATE notifications
			SET is_read = $4, read_at = CASE WHEN NOT $4 THEN NULL WHEN is_read THEN read_at ELSE $5 END
			WHERE tenant_id = $1 AND user_id = $2 AND id = $3
			RETURNING `+columns, string(tenant), string(user), id, read, now))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Notification{}, ErrNotFound
	}
	return n, err
}

// MarkAllRead marks every unread notification of user in tenant read and
// returns how many it marked.
func MarkAllRead(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, user domain.UserID, now time.Time) (int64, error) {
	var n int64
	err := write(ctx, pool, tenant, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE notifications SET is_read = true, read_at = $3
			WHERE tenant_id = $1 AND user_id = $2 AND NOT is_read`, string(tenant), string(user), now)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// Delivered reports which of positions (events of tenant) the projector has
// applied, and returns the notifications those events produced, in position
// order. An event that is applied and produced nothing is in applied without
// rows; one not applied yet is not in applied: ask again later.
//
// The runner records an event in projector_seen in the transaction that
// applies it, and one statement reads both tables from one snapshot, so an
// applied event's rows are all there.
func Delivered(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, positions []int64) (applied []int64, rows []Notification, err error) {
	err = readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		res, err := tx.Query(ctx, `SELECT s.position, n.id IS NOT NULL, `+qualified+`
			FROM projector_seen s
			LEFT JOIN notifications n ON n.tenant_id = $1 AND n.source_position = s.position
			WHERE s.projector = $2 AND s.position = ANY($3) AND s.tenant_id = $1
			ORDER BY s.position, n.id`, string(tenant), Name, positions)
		if err != nil {
			return err
		}
		defer res.Close()
		last := int64(-1)
		for res.Next() {
			var pos int64
			var has bool
			var n Notification
			var tenant, user, kind, typ, id, link, source, title, message *string
			var read *bool
			var created *time.Time
			var sourcePos *int64
			if err := res.Scan(&pos, &has, &tenant, &id, &user, &kind, &typ, &title, &message, &link, &read,
				&n.ReadAt, &created, &source, &sourcePos); err != nil {
				return err
			}
			if pos != last {
				applied = append(applied, pos)
				last = pos
			}
			if !has {
				continue
			}
			n.Tenant, n.ID, n.User, n.Kind, n.Type = domain.TenantID(*tenant), *id, domain.UserID(*user), Kind(*kind), Type(*typ)
			n.Title, n.Message, n.Link, n.Read, n.CreatedAt = *title, *message, *link, *read, *created
			n.SourceEventID, n.SourcePosition = *source, *sourcePos
			rows = append(rows, n)
		}
		return res.Err()
	})
	return applied, rows, err
}

// qualified is columns for the alias n.
const qualified = `n.tenant_id, n.id::text, n.user_id, n.kind, n.notification_type, n.title, n.message,
	coalesce(n.link, ''), n.is_read, n.read_at, n.created_at, n.source_event_id::text, n.source_position`

// write runs fn in a read-write transaction scoped to tenant (row-level
// security), for the read flags.
func write(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true), set_config('app.platform', 'off', true)`,
			string(tenant)); err != nil {
			return err
		}
		return fn(tx)
	})
}
