package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// benchRecorded is a typical event of about 500 bytes of JSON.
type benchRecorded struct {
	CaseID   string   `json:"case_id"`
	Host     string   `json:"host"`
	Artifact string   `json:"artifact"`
	Analyst  string   `json:"analyst"`
	Summary  string   `json:"summary"`
	Tags     []string `json:"tags"`
	Severity int      `json:"severity"`
	Score    float64  `json:"score"`
}

func (benchRecorded) EventName() string { return "bench.recorded" }

func newBenchEvent(i int) benchRecorded {
	return benchRecorded{
		CaseID:   "c-0192f1a4-7d3e-7b6a-9c1d-2e4f5a6b7c8d",
		Host:     "WKS-FINANCE-" + strconv.Itoa(i%997),
		Artifact: "Windows.EventLogs.EvtxHunter",
		Analyst:  "u-0192f1a4-aaaa-7b6a-9c1d-2e4f5a6b7c8d",
		Summary: "Suspicious PowerShell execution with encoded command observed after a phishing e-mail; " +
			"parent process winword.exe spawned powershell.exe -enc, outbound connection to a rare domain, " +
			"scheduled task created for persistence. Collected event logs and prefetch for triage #" + strconv.Itoa(i),
		Tags:     []string{"phishing", "powershell", "persistence", "T1059.001"},
		Severity: 3,
		Score:    87.5,
	}
}

var benchMeta = eventstore.Metadata{Actor: "u-0192f1a4-aaaa-7b6a-9c1d-2e4f5a6b7c8d", ActorType: "user", Role: "analyst",
	SourceIP: "203.0.113.9", UserAgent: "velocicompanion-bench", RequestID: "req-0192f1a4", CorrelationID: "corr-0192f1a4"}

// benchDB opens a schema for a benchmark with pools large enough for 8 writers.
func benchDB(b *testing.B) *pgtest.DB {
	db := pgtest.New(b)
	cfg, err := eventstore.AppPoolConfig(db.URL, db.Schema)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	db.App = pool
	return db
}

// runWriters runs op(writer, i) for i in [0, n) over writers goroutines and
// returns the elapsed time.
func runWriters(writers, n int, op func(w, i int) error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return elapsed, <-errs
}

// appender is one side of BenchmarkAppend: op appends n events as writer w.
type appender struct {
	name    string
	op      func(w, i int) error
	elapsed time.Duration
	ops     int // measured appends
	next    int // index of the next append, counting the warm-up ones
}

// BenchmarkAppend compares Append with plain INSERTs of the same rows into a
// table with the same columns, constraints and indexes ("baseline"): one
// single-row INSERT (autocommit) per event for events=1, one multi-row INSERT
// per batch for events=100. synchronous_commit stays on.
//
// The sides are measured in alternating phases (b.N appends each, in ten
// rounds), so that load from elsewhere and checkpoints weigh on all of them
// alike; ns/op covers one append of every side. Metrics: events/s of each side
// and the ratios store/baseline and store-nocache/baseline, where
// store-nocache disables the head cache so every Append first reads the head.
func BenchmarkAppend(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	if _, err := db.Owner.Exec(ctx, `CREATE TABLE events_baseline (LIKE events INCLUDING ALL);
		GRANT SELECT, INSERT ON events_baseline TO vc_app`); err != nil {
		b.Fatal(err)
	}
	var sc string
	if err := db.App.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&sc); err != nil || sc != "on" {
		b.Fatalf("synchronous_commit is %q (%v), want on", sc, err)
	}
	var run atomic.Int64 // keeps stream ids unique across the benchmark's runs
	for _, writers := range []int{1, 8} {
		for _, n := range []int{1, 100} {
			b.Run(fmt.Sprintf("writers=%d/events=%d", writers, n), func(b *testing.B) {
				r := run.Add(1)
				sides := []*appender{
					{name: "baseline", op: baselineOp(db, writers, n, r)},
					{name: "store", op: storeOp(db, writers, n, r, nil)},
					{name: "store-nocache", op: storeOp(db, writers, n, r, []eventstore.StoreOption{eventstore.WithHeadCache(0)})},
				}
				// Warm up: open the connections, prepare the statements.
				for _, side := range sides {
					if _, err := runWriters(writers, 2*writers, side.op); err != nil {
						b.Fatalf("%s: %v", side.name, err)
					}
					side.next = 2 * writers
				}
				const rounds = 10
				b.ResetTimer()
				for round := range rounds {
					ops := b.N/rounds + btoi(round < b.N%rounds)
					for _, side := range sides {
						from := side.next
						elapsed, err := runWriters(writers, ops, func(w, i int) error { return side.op(w, from+i) })
						if err != nil {
							b.Fatalf("%s: %v", side.name, err)
						}
						side.elapsed += elapsed
						side.ops += ops
						side.next += ops
					}
				}
				b.StopTimer()
				eps := map[string]float64{}
				for _, side := range sides {
					eps[side.name] = float64(side.ops*n) / side.elapsed.Seconds()
					b.ReportMetric(eps[side.name], side.name+"_events/s")
				}
				b.ReportMetric(eps["store"]/eps["baseline"], "store/baseline")
				b.ReportMetric(eps["store-nocache"]/eps["baseline"], "nocache/baseline")
			})
		}
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// storeOp returns an op that appends n events to one of the writer's streams,
// at the exact version it reached last time, as a command handler would.
func storeOp(db *pgtest.DB, writers, n int, run int64, opts []eventstore.StoreOption) func(w, i int) error {
	ctx := context.Background()
	codec := eventstore.NewCodec()
	eventstore.Register[benchRecorded](codec, 1)
	s := eventstore.NewStore(db.App, codec, opts...)
	const streamsPerWriter = 16
	versions := make([][]eventstore.Version, writers)
	for w := range versions {
		versions[w] = make([]eventstore.Version, streamsPerWriter)
	}
	events := make([]domain.Event, n)
	for i := range events {
		events[i] = newBenchEvent(i)
	}
	tag := fmt.Sprint(len(opts))
	return func(w, i int) error {
		stream := i % streamsPerWriter
		key := eventstore.Key{Tenant: domain.TenantID(fmt.Sprint("tenant-", w%4)), Type: "case",
			ID: fmt.Sprintf("r%d-%s-w%d-s%d", run, tag, w, stream)}
		res, err := s.Append(ctx, eventstore.AppendRequest{Key: key, Expected: versions[w][stream],
			Events: events, Metadata: benchMeta})
		if err != nil {
			return err
		}
		versions[w][stream] = res.Version
		return nil
	}
}

// baselineOp returns an op that inserts the same n rows with plain INSERTs.
func baselineOp(db *pgtest.DB, writers, n int, run int64) func(w, i int) error {
	ctx := context.Background()
	const cols = 12
	var sql strings.Builder
	sql.WriteString(`INSERT INTO events_baseline (event_id, tenant_id, stream_type, stream_id, version, name,
		schema, payload, metadata, recorded_at, prev_hash, hash) VALUES `)
	for r := range n {
		if r > 0 {
			sql.WriteString(", ")
		}
		sql.WriteByte('(')
		for c := range cols {
			if c > 0 {
				sql.WriteString(", ")
			}
			fmt.Fprintf(&sql, "$%d", r*cols+c+1)
		}
		sql.WriteByte(')')
	}
	query := sql.String()
	payloads := make([]string, n)
	for i := range payloads {
		p, _ := json.Marshal(newBenchEvent(i))
		payloads[i] = string(p)
	}
	meta, _ := json.Marshal(benchMeta)
	hash := make([]byte, 32)
	const streamsPerWriter = 16
	versions := make([][]int64, writers)
	for w := range versions {
		versions[w] = make([]int64, streamsPerWriter)
	}
	return func(w, i int) error {
		stream := i % streamsPerWriter
		tenant, id := fmt.Sprint("tenant-", w%4), fmt.Sprintf("r%d-w%d-s%d", run, w, stream)
		args := make([]any, 0, n*cols)
		now := time.Now()
		for r := range n {
			versions[w][stream]++
			args = append(args, uuid.Must(uuid.NewV7()).String(), tenant, "case", id, versions[w][stream],
				"bench.recorded", 1, payloads[r], string(meta), now, hash, hash)
		}
		_, err := db.App.Exec(ctx, query, args...)
		return err
	}
}

// BenchmarkReadAll reads a pre-filled events table from the start through
// ReadAll, decoding every event. VC_BENCH_EVENTS sets the table size (default
// 100000).
func BenchmarkReadAll(b *testing.B) {
	total := 100000
	if v := os.Getenv("VC_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("VC_BENCH_EVENTS=%q: want a positive number", v)
		}
		total = n
	}
	db := benchDB(b)
	ctx := context.Background()
	payload, _ := json.Marshal(newBenchEvent(1))
	meta, _ := json.Marshal(benchMeta)
	const chunk = 50000
	for from := 0; from < total; from += chunk {
		to := min(from+chunk, total)
		// One transaction per chunk, so the table holds many transaction ids.
		if _, err := db.Owner.Exec(ctx, `INSERT INTO events (event_id, tenant_id, stream_type, stream_id, version,
			name, schema, payload, metadata, recorded_at, prev_hash, hash)
			SELECT gen_random_uuid(), 'tenant-' || (g % 7), 'case', (g / 100)::text, g % 100 + 1,
				'bench.recorded', 1, $3::jsonb, $4::jsonb, now(), $5, $5
			FROM generate_series($1::int, $2::int - 1) g`, from, to, string(payload), string(meta), make([]byte, 32)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Owner.Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		b.Fatal(err)
	}
	codec := eventstore.NewCodec()
	eventstore.Register[benchRecorded](codec, 1)
	s := eventstore.NewStore(db.App, codec)
	for _, batch := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("events=%d/batch=%d", total, batch), func(b *testing.B) {
			b.ResetTimer()
			start := time.Now()
			read := 0
			for range b.N {
				var cp eventstore.Checkpoint
				for {
					envs, err := s.ReadAll(ctx, cp, batch)
					if err != nil {
						b.Fatal(err)
					}
					if len(envs) == 0 {
						break
					}
					read += len(envs)
					cp = eventstore.Next(envs, cp)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if read != b.N*total {
				b.Fatalf("read %d events, want %d", read, b.N*total)
			}
			b.ReportMetric(float64(read)/elapsed.Seconds(), "events/s")
		})
	}
}
