package projections_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
)

// envInt reads a positive integer from the environment, or returns def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRebuild replays a pre-filled store (VC_BENCH_EVENTS events,
// default 100000, over 10 tenants and 1000 streams) into a shadow schema and
// swaps it in; it reports events/s and how long the swap held up the live
// runner (the first rebuild, which also fills projector_seen, is logged).
func BenchmarkRebuild(b *testing.B) {
	n := envInt("VC_BENCH_EVENTS", 100_000)
	w := newWorld(b, 0)
	c := newCounter("count.bench")
	w.migrate(b, c)

	const perAppend = 100
	start := time.Now()
	var wg sync.WaitGroup
	appends := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range appends {
				ns := make([]int, min(perAppend, n-i*perAppend))
				for j := range ns {
					ns[j] = j
				}
				w.ping(b, domain.TenantID(fmt.Sprintf("tenant-%d", i%10)), fmt.Sprintf("s-%d", i%1000), ns...)
			}
		})
	}
	for i := 0; i*perAppend < n; i++ {
		appends <- i
	}
	close(appends)
	wg.Wait()
	b.Logf("filled %d events in %v", n, time.Since(start).Round(time.Millisecond))

	// The swap holds the projector's lock exclusively: measure how long a
	// live runner's transaction would wait for it, for a first rebuild (the
	// whole history goes into projector_seen under the lock) and then for
	// rebuilds of a model that is up to date, the usual case.
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var pause time.Duration
	var probe sync.WaitGroup
	probe.Go(func() {
		for ctx.Err() == nil {
			t0 := time.Now()
			err := pgx.BeginFunc(ctx, w.db.App, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(hashtextextended('velocicompanion.projector:' || $1, 0))`, c.Name())
				return err
			})
			if err == nil {
				mu.Lock()
				pause = max(pause, time.Since(t0))
				mu.Unlock()
			}
			<-time.After(time.Millisecond)
		}
	})
	pauseSince := func() float64 {
		mu.Lock()
		defer mu.Unlock()
		p := pause
		pause = 0
		return float64(p.Microseconds()) / 1000
	}
	start = time.Now()
	if err := projections.Rebuild(context.Background(), w.owner, w.store, c, nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("first rebuild: %v, runner paused up to %.1fms", time.Since(start).Round(time.Millisecond), pauseSince())
	for b.Loop() {
		if err := projections.Rebuild(context.Background(), w.owner, w.store, c, nil); err != nil {
			b.Fatal(err)
		}
	}
	cancel()
	probe.Wait()
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(pauseSince(), "max-runner-pause-ms")
	if got := w.seenCount(b, c.Name()); got != n {
		b.Fatalf("projector_seen has %d positions, want %d", got, n)
	}
}

// BenchmarkProjectionLag appends events at a steady rate (VC_BENCH_RATE,
// default 1000/s) for VC_BENCH_SECONDS (default 3) through the whole path
// (store, relay with its default polling, Kafka with VC_BENCH_PARTITIONS
// partitions, default 8, runner)
// and reports the p50, p99 and max lag from recording to applying.
// Run it with -benchtime=1x.
func BenchmarkProjectionLag(b *testing.B) {
	rate := envInt("VC_BENCH_RATE", 1000)
	seconds := envInt("VC_BENCH_SECONDS", 3)
	w := newWorld(b, int32(envInt("VC_BENCH_PARTITIONS", 8)))
	c := newCounter("count.lag")
	w.migrate(b, c)
	w.startRelay(b, eventstore.RelayOptions{})
	w.startRunner(b, c)
	// Warm up: the consumer group has joined once the first event is applied.
	first := w.ping(b, "tenant-0", "warm-up", 0)
	if err := projections.WaitFor(context.Background(), w.db.App, c.Name(), "tenant-0", first.Position, time.Minute); err != nil {
		b.Fatal(err)
	}
	since := time.Now()
	total := 1
	for b.Loop() {
		n := rate * seconds
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		ticks := make(chan int, n)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := range ticks {
					// Pace the appends: event i is due at start + i*interval.
					if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
						time.Sleep(d)
					}
					w.ping(b, domain.TenantID(fmt.Sprintf("tenant-%d", i%5)), fmt.Sprintf("s-%d", i%200), i)
				}
			})
		}
		for i := range n {
			ticks <- i
		}
		close(ticks)
		wg.Wait()
		if late := time.Since(start) - time.Duration(n)*interval; late > 100*time.Millisecond {
			b.Logf("appending %d events took %v longer than the schedule", n, late)
		}
		total += n
		eventually(b, time.Minute, "the runner to apply every event", func() bool { return w.seenCount(b, c.Name()) == total })
	}

	var p50, p99, pmax float64
	err := w.db.Owner.QueryRow(context.Background(), `
		SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)
		FROM (SELECT extract(epoch FROM s.applied_at - e.recorded_at) * 1000 AS lag
		      FROM projector_seen s JOIN events e USING (position)
		      WHERE s.projector = $1 AND e.recorded_at >= $2) l`, c.Name(), since).Scan(&p50, &p99, &pmax)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(p50, "p50-lag-ms")
	b.ReportMetric(p99, "p99-lag-ms")
	b.ReportMetric(pmax, "max-lag-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRunnerCatchUp measures how fast a runner works through a Kafka
// backlog (VC_BENCH_CATCHUP_EVENTS, default 20000, on VC_BENCH_PARTITIONS
// partitions, default 8): the rate after downtime, or for a new projector
// that was not rebuilt first. It reports events/s.
func BenchmarkRunnerCatchUp(b *testing.B) {
	n := envInt("VC_BENCH_CATCHUP_EVENTS", 20_000)
	w := newWorld(b, int32(envInt("VC_BENCH_PARTITIONS", 8)))
	for i := 0; i*100 < n; i++ {
		ns := make([]int, min(100, n-i*100))
		w.ping(b, domain.TenantID(fmt.Sprintf("tenant-%d", i%10)), fmt.Sprintf("s-%d", i%1000), ns...)
	}
	w.startRelay(b, eventstore.RelayOptions{})
	var busy time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		c := newCounter(fmt.Sprintf("count.catchup.%d", i))
		w.migrateOnce(b, c)
		b.StartTimer()
		rn := w.startRunner(b, c)
		// Joining the consumer group takes seconds (the broker's initial
		// rebalance delay); time the work from the first applied event.
		eventually(b, time.Minute, "the consumer group to start", func() bool { return w.seenCount(b, c.Name()) > 0 })
		t0 := time.Now()
		eventually(b, 5*time.Minute, "the runner to catch up", func() bool { return w.seenCount(b, c.Name()) == n })
		busy += time.Since(t0)
		b.StopTimer()
		rn.stop(b)
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/busy.Seconds(), "events/s")
}
