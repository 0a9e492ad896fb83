package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func mustAppend(t *testing.T, s *eventstore.Store, key eventstore.Key, expected eventstore.Version, n int) eventstore.AppendResult {
	t.Helper()
	events := make([]domain.Event, n)
	for i := range events {
		events[i] = storeNoted{Note: fmt.Sprintf("%s #%d", key.ID, int(expected)+i+1), N: i}
	}
	res, err := s.Append(context.Background(), eventstore.AppendRequest{Key: key, Expected: expected, Events: events})
	if err != nil {
		t.Fatalf("Append(%s): %v", key, err)
	}
	return res
}

// TestAppRoleCannotRewriteEvents checks the grants: the application role may
// read and append events but not update, delete or truncate them, nor disable
// the append-only trigger; even the owner is stopped by the trigger.
func TestAppRoleCannotRewriteEvents(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	s := eventstore.NewStore(db.App, newStoreCodec())
	key := eventstore.Key{Tenant: "t", Type: "x", ID: "1"}
	mustAppend(t, s, key, eventstore.NoStream, 2)

	var role string
	if err := db.App.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil || role != eventstore.AppRole {
		t.Fatalf("app pool runs as %q (%v), want %s", role, err, eventstore.AppRole)
	}
	for _, stmt := range []string{
		`UPDATE events SET name = 'forged'`,
		`UPDATE events SET payload = '{}' WHERE version = 1`,
		`DELETE FROM events WHERE version = 2`,
		`TRUNCATE events`,
		`ALTER TABLE events DISABLE TRIGGER events_append_only`,
		`DELETE FROM relay_checkpoints`,
		`DELETE FROM schema_migrations`,
		`CREATE TABLE sneaky (x int)`,
	} {
		_, err := db.App.Exec(ctx, stmt)
		if got := sqlState(err); got != "42501" {
			t.Errorf("as %s, %q: got %v (SQLSTATE %q), want permission denied (42501)", eventstore.AppRole, stmt, err, got)
		}
	}
	// What the relay needs on its checkpoints is allowed.
	if _, err := db.App.Exec(ctx, `INSERT INTO relay_checkpoints (name, tx_id, position) VALUES ('r', '5', 7)
		ON CONFLICT (name) DO UPDATE SET position = 8`); err != nil {
		t.Errorf("vc_app cannot write relay_checkpoints: %v", err)
	}
	if _, err := db.App.Exec(ctx, `UPDATE relay_checkpoints SET position = 9 WHERE name = 'r'`); err != nil {
		t.Errorf("vc_app cannot update relay_checkpoints: %v", err)
	}
	// The owner is stopped by the trigger.
	for _, stmt := range []string{`UPDATE events SET name = 'forged'`, `DELETE FROM events`, `TRUNCATE events`} {
		_, err := db.Owner.Exec(ctx, stmt)
		if got := sqlState(err); got != "23001" {
			t.Errorf("as owner, %q: got %v, want the append-only trigger's restrict_violation", stmt, err)
		}
	}
	if envs, err := s.Load(ctx, key); err != nil || len(envs) != 2 || envs[0].Name != "storetest.noted" {
		t.Fatalf("events changed: %v %v", envs, err)
	}
}

// tamper runs stmts as the owner with the append-only trigger disabled, as an
// attacker with superuser rights could.
func tamper(t *testing.T, db *pgtest.DB, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db.Owner, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE events DISABLE TRIGGER events_append_only`); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		_, err := tx.Exec(ctx, `ALTER TABLE events ENABLE TRIGGER events_append_only`)
		return err
	})
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	s := eventstore.NewStore(db.App, newStoreCodec())
	k := func(tenant, id string) eventstore.Key {
		return eventstore.Key{Tenant: domain.TenantID(tenant), Type: "case", ID: id}
	}
	streams := map[string]eventstore.Key{
		"clean":     k("t1", "clean"),
		"payload":   k("t1", "payload"),
		"deleted":   k("t1", "deleted"),
		"swapped":   k("t1", "swapped"),
		"metadata":  k("t2", "metadata"),
		"first":     k("t2", "first"),
		"relinked":  k("t2", "relinked"),
		"untouched": k("t2", "untouched"),
	}
	for _, key := range streams {
		mustAppend(t, s, key, eventstore.NoStream, 2)
		mustAppend(t, s, key, 2, 3) // versions 3..5, a second transaction
	}
	if rep, err := s.Verify(ctx, ""); err != nil || !rep.OK() || rep.Streams != 8 || rep.Events != 40 {
		t.Fatalf("before tampering: %+v, %v", rep, err)
	}
	where := func(name string, version int) string {
		return fmt.Sprintf("tenant_id = '%s' AND stream_id = '%s' AND version = %d",
			streams[name].Tenant, streams[name].ID, version)
	}
	tamper(t, db,
		`UPDATE events SET payload = jsonb_set(payload, '{note}', '"edited"') WHERE `+where("payload", 3),
		`DELETE FROM events WHERE `+where("deleted", 2),
		// Swap versions 2 and 4 (through a free version: the unique key holds).
		`UPDATE events SET version = 100 WHERE `+where("swapped", 2),
		`UPDATE events SET version = 2 WHERE `+where("swapped", 4),
		`UPDATE events SET version = 4 WHERE `+where("swapped", 100),
		`UPDATE events SET metadata = '{"actor":"someone else"}' WHERE `+where("metadata", 5),
		`DELETE FROM events WHERE `+where("first", 1),
		// A forger who recomputes nothing but the link of the next event.
		`UPDATE events SET prev_hash = '\x`+strings.Repeat("00", 32)+`' WHERE `+where("relinked", 4),
	)
	want := map[string]struct {
		version eventstore.Version
		reason  string
	}{
		"payload":  {3, "hash does not match"},
		"deleted":  {3, "version gap"},
		"swapped":  {2, "hash does not match"},
		"metadata": {5, "hash does not match"},
		"first":    {2, "version gap"},
		"relinked": {4, "hash does not match"},
	}
	rep, err := s.Verify(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 8 || rep.Events != 38 || rep.OK() {
		t.Errorf("report %+v, want 8 streams, 38 events and breaks", rep)
	}
	got := map[eventstore.Key]eventstore.ChainBreak{}
	for _, b := range rep.Breaks {
		if _, dup := got[b.Key]; dup {
			t.Errorf("more than one break reported for %s", b.Key)
		}
		got[b.Key] = b
	}
	if len(got) != len(want) {
		t.Errorf("%d broken streams, want %d: %v", len(got), len(want), rep.Breaks)
	}
	for name, w := range want {
		b, ok := got[streams[name]]
		if !ok {
			t.Errorf("%s: no break reported", name)
			continue
		}
		if b.Version != w.version || !strings.Contains(b.Reason, w.reason) || b.Position <= 0 {
			t.Errorf("%s: break %s, want version %d: %s", name, b, w.version, w.reason)
		}
	}
	rep, err = s.Verify(ctx, "t2")
	if err != nil || rep.Streams != 4 || len(rep.Breaks) != 3 || rep.Tenant != "t2" {
		t.Errorf("Verify(t2): %+v, %v", rep, err)
	}
}

// TestReadAllUsesIndex checks that ReadAll's query walks
// events_tx_position_idx with both of its conditions, for the generic plan
// that a prepared statement settles on as well as for a custom one.
func TestReadAllUsesIndex(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for range 4 {
		if _, err := db.Owner.Exec(ctx, `INSERT INTO events (event_id, tenant_id, stream_type, stream_id, version, name,
			schema, payload, recorded_at, prev_hash, hash)
			SELECT gen_random_uuid(), 't', 'plan', g::text, 1, 'storetest.noted', 1, '{"note":"x"}', now(),
				'\x`+strings.Repeat("00", 32)+`', '\x`+strings.Repeat("00", 32)+`'
			FROM generate_series(1, 5000) g
			ON CONFLICT DO NOTHING`); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.Owner.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `ANALYZE events`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE read_all(xid8, bigint, int, xid8) AS `+eventstore.ReadAllSQL); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `DEALLOCATE read_all; RESET plan_cache_mode`)
	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE read_all('0', 0, 1000, '1000')`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "Index Scan using events_tx_position_idx") ||
			!strings.Contains(plan, `Index Cond: ((ROW(tx_id, "position") > ROW(`) ||
			!strings.Contains(plan, "tx_id < ") || strings.Contains(plan, "Sort") {
			t.Errorf("%s: ReadAll does not walk the index:\n%s", mode, plan)
		}
	}
}

func TestWithClock(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	at := time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.UTC)
	s := eventstore.NewStore(db.App, newStoreCodec(), eventstore.WithClock(func() time.Time { return at }))
	key := eventstore.Key{Tenant: "t", Type: "clock", ID: "1"}
	mustAppend(t, s, key, eventstore.NoStream, 1)
	envs, err := s.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if want := at.Truncate(time.Microsecond); !envs[0].RecordedAt.Equal(want) {
		t.Fatalf("recorded at %v, want %v", envs[0].RecordedAt, want)
	}
	if rep, err := s.Verify(context.Background(), ""); err != nil || !rep.OK() {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

// TestReplicasWithOwnHeadCaches appends to one stream through two Stores, as
// two replicas would: a replica whose cached head is outdated reads the head
// again, and one whose expected version is stale conflicts.
func TestReplicasWithOwnHeadCaches(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	a, b := eventstore.NewStore(db.App, newStoreCodec()), eventstore.NewStore(db.App, newStoreCodec())
	key := eventstore.Key{Tenant: "t", Type: "replica", ID: "1"}
	mustAppend(t, a, key, eventstore.NoStream, 1) // a caches version 1
	mustAppend(t, b, key, 1, 2)                   // b reads the head: version 3
	mustAppend(t, a, key, 3, 1)                   // a's cache lags: it reads the head
	_, err := b.Append(ctx, eventstore.AppendRequest{Key: key, Expected: 3, Events: []domain.Event{storeNoted{}}})
	if !errors.Is(err, eventstore.ErrVersionConflict) {
		t.Fatalf("stale expected version on b: %v", err)
	}
	if res := mustAppend(t, b, key, eventstore.Any, 1); res.Version != 5 {
		t.Fatalf("Any appended at %d, want 5", res.Version)
	}
	if rep, err := a.Verify(ctx, ""); err != nil || !rep.OK() || rep.Events != 5 {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}
