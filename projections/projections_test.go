package projections_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/adapters/kafka"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
)

// fastRelay polls often, to keep the tests quick.
var fastRelay = eventstore.RelayOptions{Idle: 5 * time.Millisecond}

var tenants = []domain.TenantID{"tenant-a", "tenant-b", "tenant-c"}

// TestRedeliveryChangesNothing publishes every event twice: the second copies
// are counted as duplicates and the read model is what one delivery gives.
func TestRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	c := newCounter("count.redelivery")
	w.migrate(t, c)
	n := w.fill(t, tenants, 4, 5, 5)

	// ReadAll shows events once no older transaction runs (other tests'
	// included).
	var envs []eventstore.Envelope
	eventually(t, 30*time.Second, "every event to be readable", func() bool {
		var err error
		envs, err = w.store.ReadAll(context.Background(), eventstore.Checkpoint{}, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		return len(envs) == n
	})
	pub, err := kafka.NewPublisher(w.kcfg, w.log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for range 2 {
		if err := pub.Publish(context.Background(), envs); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	rn := w.startRunner(t, c)
	eventually(t, 30*time.Second, "every event and its copy to be consumed", func() bool {
		return rn.metric(t, "velocicompanion_projection_applied_total", c.Name()) == float64(n) &&
			rn.metric(t, "velocicompanion_projection_duplicates_total", c.Name()) == float64(n)
	})
	if got, want := tables(w.dump(t, c.Name())), w.expected(t); diff(got, want) != "" {
		t.Fatalf("read model after redelivery:\n%s", diff(got, want))
	}
	if got := w.seenCount(t, c.Name()); got != n {
		t.Fatalf("projector_seen has %d positions, want %d", got, n)
	}
	if lag := rn.metric(t, "velocicompanion_projection_lag_seconds", c.Name()); lag <= 0 {
		t.Errorf("lag gauge %v, want > 0", lag)
	}
}

// TestKilledMidStreamMatchesRebuild stops the runner in the middle of a stream
// of events and starts another: the read model equals the one computed from
// the store and a full rebuild changes nothing.
func TestKilledMidStreamMatchesRebuild(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 4)
	c := newCounter("count.killed")
	w.migrate(t, c)
	w.startRelay(t, fastRelay)

	// Append in the background while the runner is killed and restarted.
	var appended atomic.Int64
	appendDone := make(chan struct{})
	go func() {
		defer close(appendDone)
		for i := range 400 {
			for _, tenant := range tenants {
				w.ping(t, tenant, []string{"s-1", "s-2", "s-3", "s-4", "s-5"}[i%5], i, i+1)
				appended.Add(2)
			}
		}
	}()

	rn := w.startRunner(t, c)
	eventually(t, 30*time.Second, "the runner to apply some events", func() bool { return w.seenCount(t, c.Name()) >= 300 })
	rn.stop(t)
	before := w.seenCount(t, c.Name())
	if before >= 2400 {
		t.Logf("the runner applied all %d events before it was stopped", before)
	}

	// A crash loses the consumer's uncommitted offsets: Kafka delivers again
	// what was applied. Simulate it by publishing the first events again.
	first, err := w.store.ReadAll(context.Background(), eventstore.Checkpoint{}, 200)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kafka.NewPublisher(w.kcfg, w.log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(context.Background(), first); err != nil {
		t.Fatal(err)
	}

	rn2 := w.startRunner(t, c)
	<-appendDone
	n := int(appended.Load())
	eventually(t, 60*time.Second, "the restarted runner to catch up", func() bool { return w.seenCount(t, c.Name()) == n })
	t.Logf("stopped after %d of %d events", before, n)
	rn2.stop(t)

	live := w.dump(t, c.Name())
	if d := diff(tables(live), w.expected(t)); d != "" {
		t.Fatalf("live read model differs from the store:\n%s", d)
	}
	if dups := rn2.metric(t, "velocicompanion_projection_duplicates_total", c.Name()); dups < float64(len(first)) {
		t.Errorf("the restarted runner skipped %v redelivered events, want at least %d", dups, len(first))
	}
	// Rebuild through Apply alone (TestRebuildWhileLive uses ApplyBatch).
	if err := projections.Rebuild(context.Background(), w.owner, w.store, applyOnly{c}, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if d := diff(w.dump(t, c.Name()), live); d != "" {
		t.Fatalf("rebuilt read model differs from the live one:\n%s", d)
	}
}

// applyOnly hides the counter's ApplyBatch.
type applyOnly struct{ projections.Projector }

// TestRebuildWhileLive rebuilds while events keep coming and queries keep
// running: the queries never fail nor see the model shrink, the progress
// callback ends at the total, and afterwards the live runner's model, the
// rebuilt model and the store agree.
func TestRebuildWhileLive(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	c := newCounter("count.rebuild")
	w.migrate(t, c)
	n := w.fill(t, tenants, 10, 40, 8)
	w.startRelay(t, fastRelay)
	rn := w.startRunner(t, c)
	eventually(t, 60*time.Second, "the runner to catch up", func() bool { return w.seenCount(t, c.Name()) == n })
	liveBefore := w.dump(t, c.Name())
	if d := diff(tables(liveBefore), w.expected(t)); d != "" {
		t.Fatalf("live model differs from the store:\n%s", d)
	}

	// Readers query tenant-a's counts as the app role, under RLS.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var queries atomic.Int64
	var wg sync.WaitGroup
	queryErr := make(chan error, 4)
	for range 2 {
		wg.Go(func() {
			last := int64(0)
			for ctx.Err() == nil {
				var rows, total int64
				err := pgx.BeginFunc(ctx, w.db.App, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', 'tenant-a', true)`); err != nil {
						return err
					}
					return tx.QueryRow(ctx, `SELECT count(*), coalesce(sum(events), 0) FROM stream_counts`).Scan(&rows, &total)
				})
				if err != nil {
					if ctx.Err() == nil {
						queryErr <- err
					}
					return
				}
				if rows != 10 || total < last {
					queryErr <- errors.New("a query saw a partial read model")
					return
				}
				last = total
				queries.Add(1)
			}
		})
	}
	// Writers keep appending while the rebuild runs.
	wg.Go(func() {
		for i := 0; ctx.Err() == nil && i < 1000; i++ {
			w.ping(t, tenants[i%3], "s-000", 1)
		}
	})

	var calls []int64
	var total int64
	err := projections.Rebuild(context.Background(), w.owner, w.store, c, func(done, tot int64) {
		calls = append(calls, done)
		total = tot
	})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	cancel()
	wg.Wait()
	close(queryErr)
	for err := range queryErr {
		t.Errorf("query during rebuild: %v", err)
	}
	if queries.Load() == 0 {
		t.Error("no query ran during the rebuild")
	}
	if len(calls) < 2 || !slices.IsSorted(calls) || calls[len(calls)-1] != total || total < int64(n) {
		t.Errorf("progress calls %v, total %d, want increasing to the total >= %d", calls, total, n)
	}

	// The live runner picks up where the rebuild left; everything agrees.
	var count int
	if err := w.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the runner to catch up after the rebuild", func() bool { return w.seenCount(t, c.Name()) == count })
	rn.stop(t)
	live := w.dump(t, c.Name())
	if d := diff(tables(live), w.expected(t)); d != "" {
		t.Fatalf("model after rebuild differs from the store:\n%s", d)
	}
	if err := projections.Rebuild(context.Background(), w.owner, w.store, c, nil); err != nil {
		t.Fatalf("second rebuild: %v", err)
	}
	if d := diff(w.dump(t, c.Name()), live); d != "" {
		t.Fatalf("rebuilt model differs from the live one:\n%s", d)
	}
	if n := w.shadows(t); n != 0 {
		t.Errorf("%d shadow schemas left", n)
	}
}

// TestWaitFor waits for the runner to apply an appended event, then reads it.
func TestWaitFor(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	c := newCounter("count.waitfor")
	w.migrate(t, c)
	ctx := context.Background()

	if err := projections.WaitFor(ctx, w.db.App, c.Name(), "tenant-a", 0, time.Hour); err != nil {
		t.Fatalf("WaitFor(position 0): %v", err)
	}
	res := w.ping(t, "tenant-a", "s-1", 7)
	start := time.Now()
	err := projections.WaitFor(ctx, w.db.App, c.Name(), "tenant-a", res.Position, 50*time.Millisecond)
	if !errors.Is(err, projections.ErrNotCaughtUp) || domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("WaitFor without a runner: %v, want ErrNotCaughtUp (unavailable)", err)
	}
	if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
		t.Errorf("WaitFor gave up after %v, want about 50ms", el)
	}

	// A later write applied before an earlier one of another stream of the
	// tenant is not caught up yet; another tenant's earlier write does not
	// count.
	first := w.ping(t, "tenant-a", "s-2", 1)
	w.ping(t, "tenant-b", "s-9", 1)
	second := w.ping(t, "tenant-a", "s-3", 1)
	markSeen := func(r eventstore.AppendResult, tenant string) {
		t.Helper()
		if _, err := w.db.Owner.Exec(ctx, `INSERT INTO projector_seen (projector, position, event_id, tenant_id)
			VALUES ($1, $2, gen_random_uuid(), $3)`, c.Name(), r.Position, tenant); err != nil {
			t.Fatal(err)
		}
	}
	markSeen(res, "tenant-a")
	markSeen(second, "tenant-a")
	if err := projections.WaitFor(ctx, w.db.App, c.Name(), "tenant-a", second.Position, 20*time.Millisecond); !errors.Is(err, projections.ErrNotCaughtUp) {
		t.Fatalf("WaitFor with an earlier write of the tenant not applied: %v, want ErrNotCaughtUp", err)
	}
	markSeen(first, "tenant-a")
	if err := projections.WaitFor(ctx, w.db.App, c.Name(), "tenant-a", second.Position, time.Second); err != nil {
		t.Fatalf("WaitFor with the tenant's earlier writes applied: %v", err)
	}
	if _, err := w.db.Owner.Exec(ctx, `DELETE FROM projector_seen WHERE projector = $1`, c.Name()); err != nil {
		t.Fatal(err)
	}

	w.startRelay(t, fastRelay)
	w.startRunner(t, c)
	res = w.ping(t, "tenant-a", "s-1", 8)
	if err := projections.WaitFor(ctx, w.db.App, c.Name(), "tenant-a", res.Position, 30*time.Second); err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	var events, total int64
	err = pgx.BeginFunc(ctx, w.db.App, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', 'tenant-a', true)`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT events, total FROM stream_counts WHERE stream_id = 's-1'`).Scan(&events, &total)
	})
	if err != nil || events != 2 || total != 15 {
		t.Fatalf("after WaitFor the read model has events=%d total=%d (%v), want 2 and 15", events, total, err)
	}
	// Another tenant cannot observe tenant-a's positions.
	err = projections.WaitFor(ctx, w.db.App, c.Name(), "tenant-b", res.Position, 20*time.Millisecond)
	if !errors.Is(err, projections.ErrNotCaughtUp) {
		t.Fatalf("WaitFor as another tenant: %v, want ErrNotCaughtUp", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := projections.WaitFor(cctx, w.db.App, c.Name(), "tenant-a", res.Position+1000, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor with a cancelled context: %v", err)
	}
}

// TestFailuresAndShutdown: an event that always fails goes to the poison queue
// after the retries, without touching projector_seen, and so does a message
// that is no event; the others are applied. An event interrupted by a
// shutdown is not poisoned but applied by the next runner.
func TestFailuresAndShutdown(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	c := newCounter("count.failures")
	c.block.Store(true)
	w.migrate(t, c)
	w.startRelay(t, fastRelay)
	bad := w.ping(t, "tenant-a", "s-1", failN)
	w.ping(t, "tenant-a", "s-2", 1)
	blocked := w.ping(t, "tenant-b", "s-1", blockN)

	// A message that is not an event at all.
	mp, err := kafka.NewMessagePublisher(w.kcfg, w.log)
	if err != nil {
		t.Fatal(err)
	}
	garbage := message.NewMessage(watermill.NewUUID(), []byte("not an event"))
	garbage.Metadata.Set(eventstore.HeaderStreamID, "s-1")
	if err := mp.Publish(w.kcfg.Topic, garbage); err != nil {
		t.Fatal(err)
	}
	_ = mp.Close()

	rn := w.startRunner(t, c)
	select {
	case <-c.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking event never reached Apply")
	}
	rn.stop(t)
	want := []string{garbage.UUID, bad.EventIDs[0]}
	if got := w.poison.list(); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("poisoned %v, want %v", got, want)
	}

	c.block.Store(false)
	rn2 := w.startRunner(t, c)
	if err := projections.WaitFor(context.Background(), w.db.App, c.Name(), "tenant-b", blocked.Position, 30*time.Second); err != nil {
		t.Fatalf("the interrupted event was not applied after a restart: %v", err)
	}
	rn2.stop(t)
	if got := w.poison.list(); len(got) != 2 {
		t.Fatalf("poisoned %v after the restart, want still %v", got, want)
	}
	if got := w.seenCount(t, c.Name()); got != 2 {
		t.Fatalf("projector_seen has %d positions, want 2 (the failed event is not seen)", got)
	}
}

// TestRebuildFailureLeavesLiveAlone: a rebuild that fails leaves the live
// model as it was and no shadow schema behind.
func TestRebuildFailureLeavesLiveAlone(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	c := newCounter("count.failing")
	w.migrate(t, c)
	w.fill(t, tenants, 3, 10, 5)
	if err := projections.Rebuild(context.Background(), w.owner, w.store, c, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	before := w.dump(t, c.Name())
	bad := w.ping(t, "tenant-b", "s-001", failN)
	eventually(t, 30*time.Second, "the failing event to be readable", func() bool {
		envs, err := w.store.ReadAll(context.Background(), eventstore.Checkpoint{}, 10_000)
		return err == nil && envs[len(envs)-1].Position == bad.Position
	})
	err := projections.Rebuild(context.Background(), w.owner, w.store, c, nil)
	if err == nil {
		t.Fatal("rebuild over an event that fails to apply succeeded")
	}
	if d := diff(w.dump(t, c.Name()), before); d != "" {
		t.Fatalf("a failed rebuild changed the live model:\n%s", d)
	}
	if n := w.shadows(t); n != 0 {
		t.Fatalf("%d shadow schemas left after a failed rebuild", n)
	}
}

// TestRebuildAsTableOwner rebuilds as a role that is not a superuser, so that
// FORCE ROW LEVEL SECURITY applies to it as in production: every event must be
// applied under its own tenant. The app role then reads the swapped tables.
func TestRebuildAsTableOwner(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 0)
	ctx := context.Background()
	for _, q := range []string{
		`DO $$ BEGIN CREATE ROLE vc_test_owner NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`,
		`GRANT CREATE ON DATABASE ` + pgx.Identifier{w.dbName(t)}.Sanitize() + ` TO vc_test_owner`,
		`ALTER SCHEMA ` + pgx.Identifier{w.db.Schema}.Sanitize() + ` OWNER TO vc_test_owner`,
		`ALTER TABLE ` + pgx.Identifier{w.db.Schema, "schema_migrations"}.Sanitize() + ` OWNER TO vc_test_owner`,
	} {
		if _, err := w.db.Owner.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg, err := eventstore.OwnerPoolConfig(w.db.URL, w.db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["role"] = "vc_test_owner"
	owner, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	w.owner = owner

	c := newCounter("count.owner")
	w.migrate(t, c)
	w.fill(t, tenants, 4, 12, 3)
	eventually(t, 30*time.Second, "every event to be readable", func() bool {
		return len(w.expected(t)) == 4*len(tenants)+len(tenants)
	})
	if err := projections.Rebuild(ctx, w.owner, w.store, c, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if d := diff(tables(w.dump(t, c.Name())), w.expected(t)); d != "" {
		t.Fatalf("rebuilt model differs from the store:\n%s", d)
	}
	if err := projections.Rebuild(ctx, w.owner, w.store, applyOnly{c}, nil); err != nil {
		t.Fatalf("rebuild through Apply: %v", err)
	}
	if d := diff(tables(w.dump(t, c.Name())), w.expected(t)); d != "" {
		t.Fatalf("model rebuilt through Apply differs from the store:\n%s", d)
	}
	var rows int
	err = pgx.BeginFunc(ctx, w.db.App, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', 'tenant-c', true)`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM stream_counts`).Scan(&rows)
	})
	if err != nil || rows != 4 {
		t.Fatalf("the app role sees %d rows of tenant-c (%v), want 4", rows, err)
	}
}
