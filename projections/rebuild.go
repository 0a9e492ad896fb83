package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/eventstore"
)

// rebuildBatch is how many events Rebuild reads per page and applies per
// transaction.
const rebuildBatch = 5000

// swapAttempts bounds how often Rebuild tries the swap when it times out
// waiting for a lock (long queries on the live tables).
const swapAttempts = 3

// Rebuild rebuilds p's read model from the event store (not from Kafka) and
// swaps it in, while queries and the live runner keep using the live tables.
//
// It creates a shadow schema next to the live one (ownerPool's current
// schema), runs p's migrations there and replays every event in large
// transactions, recording their positions in a shadow projector_seen. Then, in
// one transaction holding p's exclusive advisory lock (the live runner waits
// between transactions), it applies the events that became readable since,
// replaces the live tables by the shadow ones (ALTER TABLE ... SET SCHEMA
// keeps their indexes, policies and grants), adds the shadow's positions to
// p's rows of projector_seen and drops the shadow schema.
//
// Why adding suffices: the live runner only applies events that the relay
// published, and the relay reads the store like ReadAll, whose visible set
// only grows; so every position in the live projector_seen is readable when
// the swap catches up, and after the swap p's rows are exactly the events of
// the rebuilt tables. Events that the live runner had not consumed yet stay in
// Kafka, and projector_seen makes them no-ops when they arrive.
//
// ownerPool must connect as the owner role. progress, if not nil, is called
// after each batch with the events applied so far and an estimate of the
// total, and last with done == total.
func Rebuild(ctx context.Context, ownerPool *pgxpool.Pool, store *eventstore.Store, p Projector, progress func(done, total int64)) (err error) {
	if progress == nil {
		progress = func(int64, int64) {}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
	}()
	// The live tables, and their migration records, must exist to be replaced.
	if err := Migrate(ctx, ownerPool, p); err != nil {
		return err
	}
	var live string
	if err := ownerPool.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		return fmt.Errorf("find live schema: %w", err)
	}
	shadow, err := shadowName(live)
	if err != nil {
		return err
	}
	if _, err := ownerPool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{shadow}.Sanitize()); err != nil {
		return fmt.Errorf("create shadow schema: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := ownerPool.Exec(cctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{shadow}.Sanitize()+` CASCADE`); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop shadow schema %s: %w", shadow, derr))
		}
	}()

	spool, err := shadowPool(ctx, ownerPool, shadow)
	if err != nil {
		return err
	}
	defer spool.Close()
	if err := eventstore.Migrate(ctx, spool, p.Name(), p.Migrations()); err != nil {
		return fmt.Errorf("migrate shadow: %w", err)
	}
	if _, err := spool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{shadow, "projector_seen"}.Sanitize()+` (
		position bigint NOT NULL, event_id text NOT NULL, tenant_id text NOT NULL, applied_at timestamptz NOT NULL)`); err != nil {
		return fmt.Errorf("create shadow projector_seen: %w", err)
	}

	var total int64
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		return fmt.Errorf("count events: %w", err)
	}
	rb := &rebuild{p: p, store: store, pool: spool, live: live, shadow: shadow, total: total, progress: progress}
	progress(0, total)
	cp, err := rb.replay(ctx, eventstore.Checkpoint{})
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if err := rb.trimShadowSeen(ctx); err != nil {
			return err
		}
		done := rb.done
		err = rb.swap(ctx, cp)
		if err == nil || attempt == swapAttempts || !isLockTimeout(err) {
			break
		}
		rb.done = done // the swap's catch-up was rolled back
		if cp, err = rb.replay(ctx, cp); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	// total counted events that ReadAll may not show yet (it only reads below
	// the oldest running transaction); the rebuild is complete now.
	progress(rb.done, rb.done)
	return nil
}

// rebuild is the state of one Rebuild.
type rebuild struct {
	p        Projector
	store    *eventstore.Store
	pool     *pgxpool.Pool // owner role, search_path = shadow
	live     string
	shadow   string
	done     int64
	total    int64
	progress func(done, total int64)
}

// page is one read of the event store.
type page struct {
	envs []eventstore.Envelope
	next eventstore.Checkpoint
	err  error
}

// replay applies the events after cp to the shadow, one transaction per page,
// until it has caught up with the store, and returns the new checkpoint. The
// next page is read while the current one is applied.
func (rb *rebuild) replay(ctx context.Context, cp eventstore.Checkpoint) (eventstore.Checkpoint, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		next := cp
		for {
			envs, err := rb.store.ReadAll(ctx, next, rebuildBatch)
			if err == nil && len(envs) > 0 {
				next = eventstore.Next(envs, next)
			}
			select {
			case pages <- page{envs: envs, next: next, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(envs) < rebuildBatch {
				return
			}
		}
	}()
	for pg := range pages {
		if pg.err != nil {
			return cp, fmt.Errorf("read events after %d: %w", cp.Position, pg.err)
		}
		if len(pg.envs) == 0 {
			continue
		}
		err := pgx.BeginFunc(ctx, rb.pool, func(tx pgx.Tx) error { return rb.apply(ctx, tx, pg.envs) })
		if err != nil {
			return cp, err
		}
		cp = pg.next
		rb.done += int64(len(pg.envs))
		rb.progress(rb.done, max(rb.total, rb.done))
	}
	return cp, ctx.Err()
}

// apply applies envs to the shadow read model in tx and records their
// positions in the shadow projector_seen.
func (rb *rebuild) apply(ctx context.Context, tx pgx.Tx, envs []eventstore.Envelope) (err error) {
	defer func() {
		// A panicking projector fails the rebuild, which drops its shadow.
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	for _, group := range byTenant(envs) {
		if err := applyTenant(ctx, tx, rb.p, group); err != nil {
			return err
		}
	}
	now := time.Now()
	_, err = tx.CopyFrom(ctx, pgx.Identifier{rb.shadow, "projector_seen"},
		[]string{"position", "event_id", "tenant_id", "applied_at"},
		pgx.CopyFromSlice(len(envs), func(i int) ([]any, error) {
			return []any{envs[i].Position, envs[i].EventID, string(envs[i].Tenant), now}, nil
		}))
	if err != nil {
		return fmt.Errorf("record %d positions: %w", len(envs), err)
	}
	return nil
}

// trimShadowSeen deletes from the shadow projector_seen the positions that
// the live one has, so that the swap, which holds the lock that pauses the
// live runner, merges only the few events the live runner has not applied
// yet rather than the whole history. The live rows only ever grow, so they
// still have these positions at the swap.
func (rb *rebuild) trimShadowSeen(ctx context.Context) error {
	_, err := rb.pool.Exec(ctx, `DELETE FROM `+pgx.Identifier{rb.shadow, "projector_seen"}.Sanitize()+` s
		USING `+pgx.Identifier{rb.live, "projector_seen"}.Sanitize()+` l
		WHERE l.projector = $1 AND l.position = s.position`, rb.p.Name())
	if err != nil {
		return fmt.Errorf("trim shadow projector_seen: %w", err)
	}
	return nil
}

// swap catches up and replaces the live read model with the shadow one, in
// one transaction that holds the projector's exclusive lock.
func (rb *rebuild) swap(ctx context.Context, cp eventstore.Checkpoint) error {
	liveSchema := pgx.Identifier{rb.live}.Sanitize()
	return pgx.BeginFunc(ctx, rb.pool, func(tx pgx.Tx) error {
		// Bound the waits for the runner's transactions and for readers of
		// the live tables; Rebuild retries the swap after a timeout.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+lockKeySQL+`)`, rb.p.Name()); err != nil {
			return fmt.Errorf("lock projector: %w", err)
		}
		// Every event the live runner applied was published by the relay,
		// which reads in the same committed order as ReadAll: reading up to
		// the head now, under the lock, covers all of them.
		for {
			envs, err := rb.store.ReadAll(ctx, cp, rebuildBatch)
			if err != nil {
				return fmt.Errorf("catch up after %d: %w", cp.Position, err)
			}
			if len(envs) == 0 {
				break
			}
			if err := rb.apply(ctx, tx, envs); err != nil {
				return err
			}
			cp = eventstore.Next(envs, cp)
			rb.done += int64(len(envs))
		}

		tables := rb.p.Tables()
		liveTables := make([]string, len(tables))
		for i, t := range tables {
			liveTables[i] = pgx.Identifier{rb.live, t}.Sanitize()
		}
		if len(tables) > 0 {
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+strings.Join(liveTables, ", ")); err != nil {
				return fmt.Errorf("drop live tables: %w", err)
			}
		}
		for _, t := range tables {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+pgx.Identifier{rb.shadow, t}.Sanitize()+` SET SCHEMA `+liveSchema); err != nil {
				return fmt.Errorf("move table %s: %w", t, err)
			}
		}
		// The live rows are a subset of the shadow's (see Rebuild), and
		// trimShadowSeen dropped most of the shadow rows they already have.
		if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{rb.live, "projector_seen"}.Sanitize()+`
			(projector, position, event_id, tenant_id, applied_at)
			SELECT $1, position, event_id::uuid, tenant_id, applied_at FROM `+pgx.Identifier{rb.shadow, "projector_seen"}.Sanitize()+`
			ON CONFLICT (projector, position) DO NOTHING`,
			rb.p.Name()); err != nil {
			return fmt.Errorf("merge projector_seen: %w", err)
		}
		// What is left in the shadow schema is ours; anything else is a
		// projector migration that created more than its tables, and
		// RESTRICT makes that an error rather than breaking the live tables.
		if _, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{rb.shadow, "projector_seen"}.Sanitize()+`, `+
			pgx.Identifier{rb.shadow, "schema_migrations"}.Sanitize()); err != nil {
			return fmt.Errorf("drop shadow bookkeeping: %w", err)
		}
		if _, err := tx.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{rb.shadow}.Sanitize()+` RESTRICT`); err != nil {
			return fmt.Errorf("drop shadow schema (do the migrations create objects other than Tables()?): %w", err)
		}
		return nil
	})
}

// shadowPool returns a small owner pool whose search_path is schema only, so
// that the projector's unqualified SQL lands in the shadow.
func shadowPool(ctx context.Context, ownerPool *pgxpool.Pool, schema string) (*pgxpool.Pool, error) {
	cfg := ownerPool.Config()
	cfg.MinConns = 0
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	// An AfterConnect hook of the owner pool may set its own search_path;
	// ours comes last.
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, conn); err != nil {
				return err
			}
		}
		_, err := conn.Exec(ctx, `SELECT set_config('search_path', $1, false)`, pgx.Identifier{schema}.Sanitize())
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to shadow schema: %w", err)
	}
	return pool, nil
}

// shadowName returns a fresh shadow schema name for live, within Postgres'
// 63-byte identifier limit.
func shadowName(live string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	suffix := "_rb_" + hex.EncodeToString(b[:])
	if len(live)+len(suffix) > 63 {
		live = live[:63-len(suffix)]
	}
	return live + suffix, nil
}

// isLockTimeout reports whether err is Postgres' lock_not_available.
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}
