package projections_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/kafka"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
)

// Test events. pinged is what the counter projects; ignored is an event the
// runner's codec does not know (the store's does), to exercise Event == nil.
type (
	pinged struct {
		N int `json:"n"`
	}
	ignored struct {
		Why string `json:"why"`
	}
)

func (pinged) EventName() string  { return "test.pinged" }
func (ignored) EventName() string { return "test.ignored" }

// Special values of pinged.N that the counter reacts to.
const (
	failN  = -1 // Apply fails
	blockN = -2 // Apply blocks until its context ends (when counter.block is set)
)

// counter is the test projector: per stream, the number of pinged events, the
// highest version and the sum of N, plus a per-tenant total, both under
// forced row-level security. Apply is deliberately NOT idempotent (it adds 1),
// so that any event applied twice shows in the read model: only projector_seen
// stands between a redelivery and a wrong count. ApplyBatch aggregates a batch
// into one statement per table, a different code path from Apply that Rebuild
// uses, so comparing the two also checks the live path.
type counter struct {
	name    string
	block   atomic.Bool   // blockN blocks
	entered chan struct{} // receives when Apply blocks on blockN
}

func newCounter(name string) *counter { return &counter{name: name, entered: make(chan struct{}, 16)} }

func (c *counter) Name() string     { return c.name }
func (c *counter) Tables() []string { return []string{"stream_counts", "tenant_totals"} }

func (c *counter) Migrations() fs.FS {
	return fstest.MapFS{
		"001_stream_counts.sql": {Data: []byte(`
CREATE TABLE stream_counts (
	tenant_id    text   NOT NULL,
	stream_type  text   NOT NULL,
	stream_id    text   NOT NULL,
	events       bigint NOT NULL,
	last_version bigint NOT NULL,
	total        bigint NOT NULL,
	PRIMARY KEY (tenant_id, stream_type, stream_id)
);
CREATE INDEX stream_counts_total_idx ON stream_counts (tenant_id, total);
ALTER TABLE stream_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY stream_counts_tenant ON stream_counts
	USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON stream_counts TO vc_app;
`)},
		"002_tenant_totals.sql": {Data: []byte(`
CREATE TABLE tenant_totals (
	tenant_id text   PRIMARY KEY,
	events    bigint NOT NULL
);
ALTER TABLE tenant_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_totals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_totals_tenant ON tenant_totals
	USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON tenant_totals TO vc_app;
`)},
	}
}

func (c *counter) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	e, ok := env.Event.(pinged)
	if !ok {
		return nil
	}
	switch {
	case e.N == failN:
		return errors.New("counter: this event always fails")
	case e.N == blockN && c.block.Load():
		c.entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	if _, err := tx.Exec(ctx, `INSERT INTO stream_counts AS s (tenant_id, stream_type, stream_id, events, last_version, total)
		VALUES ($1, $2, $3, 1, $4, $5)
		ON CONFLICT (tenant_id, stream_type, stream_id) DO UPDATE
		SET events = s.events + 1, last_version = greatest(s.last_version, excluded.last_version), total = s.total + excluded.total`,
		string(env.Tenant), env.StreamType, env.StreamID, int64(env.Version), e.N); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO tenant_totals AS t (tenant_id, events) VALUES ($1, 1)
		ON CONFLICT (tenant_id) DO UPDATE SET events = t.events + 1`, string(env.Tenant))
	return err
}

func (c *counter) ApplyBatch(ctx context.Context, tx pgx.Tx, envs []eventstore.Envelope) error {
	type agg struct{ events, version, total int64 }
	type key struct{ typ, id string }
	per := map[key]*agg{}
	var order []key
	var n int64
	for _, env := range envs {
		e, ok := env.Event.(pinged)
		if !ok {
			continue
		}
		if e.N == failN {
			return errors.New("counter: this event always fails")
		}
		k := key{env.StreamType, env.StreamID}
		a := per[k]
		if a == nil {
			a = &agg{}
			per[k] = a
			order = append(order, k)
		}
		a.events++
		a.version = max(a.version, int64(env.Version))
		a.total += int64(e.N)
		n++
	}
	if n == 0 {
		return nil
	}
	types, ids := make([]string, len(order)), make([]string, len(order))
	events, versions, totals := make([]int64, len(order)), make([]int64, len(order)), make([]int64, len(order))
	for i, k := range order {
		a := per[k]
		types[i], ids[i], events[i], versions[i], totals[i] = k.typ, k.id, a.events, a.version, a.total
	}
	tenant := string(envs[0].Tenant)
	if _, err := tx.Exec(ctx, `INSERT INTO stream_counts AS s (tenant_id, stream_type, stream_id, events, last_version, total)
		SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
		ON CONFLICT (tenant_id, stream_type, stream_id) DO UPDATE
		SET events = s.events + excluded.events, last_version = greatest(s.last_version, excluded.last_version),
			total = s.total + excluded.total`,
		tenant, types, ids, events, versions, totals); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO tenant_totals AS t (tenant_id, events) VALUES ($1, $2)
		ON CONFLICT (tenant_id) DO UPDATE SET events = t.events + excluded.events`, tenant, n)
	return err
}

var (
	_ projections.Projector    = (*counter)(nil)
	_ projections.BatchApplier = (*counter)(nil)
)

// testLogger logs to stderr at the level of VC_TEST_LOG (debug, info, warn),
// errors only by default.
func testLogger() *slog.Logger {
	level := slog.LevelError
	switch os.Getenv("VC_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// world is one test's Postgres schema, event store and Kafka cluster.
type world struct {
	db     *pgtest.DB
	owner  *pgxpool.Pool // the owner role: migrations and Rebuild
	store  *eventstore.Store
	kafka  *kafka.EmbeddedCluster
	kcfg   kafka.Config
	log    *slog.Logger
	poison *poisonBox
}

// newWorld sets up a fresh schema with the event store and an embedded Kafka
// cluster with partitions partitions (none if 0).
func newWorld(t testing.TB, partitions int32) *world {
	t.Helper()
	db := pgtest.New(t)
	codec := eventstore.NewCodec()
	eventstore.Register[pinged](codec, 1)
	eventstore.Register[ignored](codec, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &world{
		db:     db,
		store:  eventstore.NewStore(db.App, codec),
		log:    testLogger(),
		poison: &poisonBox{},
	}
	if partitions > 0 {
		kc, err := kafka.Embedded(ctx, "", 0, "events", partitions)
		if err != nil {
			t.Fatalf("embedded kafka: %v", err)
		}
		t.Cleanup(kc.Close)
		w.kafka, w.kcfg = kc, kc.Config(strings.ReplaceAll(t.Name(), "/", "_"))
	}
	w.owner = db.Owner
	return w
}

// migrate runs p's migrations in the live schema.
func (w *world) migrate(t testing.TB, p projections.Projector) {
	t.Helper()
	if err := projections.Migrate(context.Background(), w.owner, p); err != nil {
		t.Fatalf("migrate %s: %v", p.Name(), err)
	}
}

// migrateOnce runs p's migrations unless its tables exist (several
// projectors sharing the counter's tables).
func (w *world) migrateOnce(t testing.TB, p projections.Projector) {
	t.Helper()
	var exists bool
	if err := w.db.Owner.QueryRow(context.Background(), `SELECT to_regclass('stream_counts') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		w.migrate(t, p)
	}
}

// startRelay publishes the store's events to Kafka until the test ends.
func (w *world) startRelay(t testing.TB, opts eventstore.RelayOptions) {
	t.Helper()
	pub, err := kafka.NewPublisher(w.kcfg, w.log)
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	opts.Logger = w.log
	relay := eventstore.NewRelay(w.store, pub, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = pub.Close()
	})
}

// runnerCodec knows pinged but not ignored.
func runnerCodec() *eventstore.Codec {
	c := eventstore.NewCodec()
	eventstore.Register[pinged](c, 1)
	return c
}

// runner is a running projections.Runner.
type runner struct {
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startRunner runs ps with the Kafka adapter's consumer middleware (poison
// queue, 3 quick retries, recoverer), whose poison topic is w.poison. It
// stops when the test ends, or earlier with stop.
func (w *world) startRunner(t testing.TB, ps ...projections.Projector) *runner {
	t.Helper()
	mw, closeMW, err := kafka.ConsumerMiddleware(w.kcfg, kafka.RouterOptions{
		MaxRetries: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Poison: w.poison,
	}, w.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeMW() })
	reg := prometheus.NewRegistry()
	r, err := projections.NewRunner(projections.RunnerConfig{
		Pool:  w.db.App,
		Codec: runnerCodec(),
		Topic: w.kcfg.Topic,
		Subscribe: func(group string) (message.Subscriber, error) {
			return kafka.NewSubscriber(w.kcfg, group, w.log)
		},
		Middleware: mw,
		Permanent:  kafka.Permanent,
		Registerer: reg,
		Logger:     w.log,
	}, ps...)
	if err != nil {
		t.Fatalf("new runner: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &runner{reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- r.Run(ctx) }()
	select {
	case <-r.Running():
	case err := <-rn.done:
		t.Fatalf("runner stopped at once: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("runner did not start")
	}
	t.Cleanup(func() { rn.stop(t) })
	return rn
}

// stop cancels the runner and waits for Run to return; it is idempotent.
func (rn *runner) stop(t testing.TB) {
	t.Helper()
	rn.cancel()
	select {
	case err, ok := <-rn.done:
		if ok && err != nil {
			t.Errorf("runner: %v", err)
		}
		if ok {
			close(rn.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("runner did not stop")
	}
}

// metric returns the value of the runner's metric name for projector.
func (rn *runner) metric(t testing.TB, name, projector string) float64 {
	t.Helper()
	mfs, err := rn.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "projector" && l.GetValue() == projector {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// poisonBox is the poison-queue publisher of the tests: it keeps the UUIDs.
type poisonBox struct {
	mu   sync.Mutex
	uuid []string
}

func (p *poisonBox) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.uuid = append(p.uuid, m.UUID)
	}
	return nil
}

func (p *poisonBox) Close() error { return nil }

func (p *poisonBox) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.uuid)
}

// ping appends pinged{N: n} to stream id of tenant.
func (w *world) ping(t testing.TB, tenant domain.TenantID, id string, ns ...int) eventstore.AppendResult {
	t.Helper()
	events := make([]domain.Event, len(ns))
	for i, n := range ns {
		events[i] = pinged{N: n}
	}
	res, err := w.store.Append(context.Background(), eventstore.AppendRequest{
		Key:    eventstore.Key{Tenant: tenant, Type: "ping", ID: id},
		Events: events, Expected: eventstore.Any,
	})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res
}

// fill appends perStream events to each of streams streams per tenant, a few
// per append, interleaving streams and tenants, plus one ignored event per
// tenant. It returns the number of events appended.
func (w *world) fill(t testing.TB, tenants []domain.TenantID, streams, perStream, chunk int) int {
	t.Helper()
	total := 0
	for done := 0; done < perStream; done += chunk {
		for s := range streams {
			for _, tenant := range tenants {
				ns := make([]int, 0, chunk)
				for i := done; i < min(done+chunk, perStream); i++ {
					ns = append(ns, i+s)
				}
				w.ping(t, tenant, fmt.Sprintf("s-%03d", s), ns...)
				total += len(ns)
			}
		}
	}
	for _, tenant := range tenants {
		_, err := w.store.Append(context.Background(), eventstore.AppendRequest{
			Key:    eventstore.Key{Tenant: tenant, Type: "other", ID: "x"},
			Events: []domain.Event{ignored{Why: "not a ping"}}, Expected: eventstore.Any,
		})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		total++
	}
	return total
}

// dump returns the full contents of the counter's tables and of its
// projector_seen rows, read as the owner, one line per row.
func (w *world) dump(t testing.TB, name string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, q := range []string{
		`SELECT 'stream_counts', tenant_id, stream_type, stream_id, events, last_version, total FROM stream_counts ORDER BY 2, 3, 4`,
		`SELECT 'tenant_totals', tenant_id, events FROM tenant_totals ORDER BY 2`,
		`SELECT 'seen', position, event_id::text, tenant_id FROM projector_seen WHERE projector = '` + name + `' ORDER BY 2`,
	} {
		rows, err := w.db.Owner.Query(ctx, q)
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatalf("dump: %v", err)
			}
			out = append(out, fmt.Sprint(vals...))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump: %v", err)
		}
	}
	return out
}

// expected computes the counter's tables from the event store, in Go.
func (w *world) expected(t testing.TB) []string {
	t.Helper()
	type agg struct{ events, version, total int64 }
	streams := map[[3]string]*agg{}
	tenants := map[string]int64{}
	var cp eventstore.Checkpoint
	for {
		envs, err := w.store.ReadAll(context.Background(), cp, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == 0 {
			break
		}
		cp = eventstore.Next(envs, cp)
		for _, env := range envs {
			e, ok := env.Event.(pinged)
			if !ok {
				continue
			}
			k := [3]string{string(env.Tenant), env.StreamType, env.StreamID}
			a := streams[k]
			if a == nil {
				a = &agg{}
				streams[k] = a
			}
			a.events++
			a.version = max(a.version, int64(env.Version))
			a.total += int64(e.N)
			tenants[string(env.Tenant)]++
		}
	}
	var out []string
	for _, k := range slices.SortedFunc(func(yield func([3]string) bool) {
		for k := range streams {
			if !yield(k) {
				return
			}
		}
	}, func(a, b [3]string) int {
		return strings.Compare(strings.Join(a[:], "\x00"), strings.Join(b[:], "\x00"))
	}) {
		a := streams[k]
		out = append(out, fmt.Sprint("stream_counts", k[0], k[1], k[2], a.events, a.version, a.total))
	}
	for _, tenant := range slices.Sorted(func(yield func(string) bool) {
		for k := range tenants {
			if !yield(k) {
				return
			}
		}
	}) {
		out = append(out, fmt.Sprint("tenant_totals", tenant, tenants[tenant]))
	}
	return out
}

// tables drops the "seen" lines of a dump.
func tables(dump []string) []string {
	return slices.DeleteFunc(slices.Clone(dump), func(s string) bool { return strings.HasPrefix(s, "seen") })
}

// seenCount returns how many positions projector_seen has for name.
func (w *world) seenCount(t testing.TB, name string) int {
	t.Helper()
	var n int
	if err := w.db.Owner.QueryRow(context.Background(),
		`SELECT count(*) FROM projector_seen WHERE projector = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-time.After(wait)
	}
}

// diff describes how two dumps differ, or returns "".
func diff(got, want []string) string {
	if slices.Equal(got, want) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows, want %d\n", len(got), len(want))
	g, wt := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		wt[s] = true
	}
	n := 0
	for _, s := range got {
		if !wt[s] && n < 10 {
			fmt.Fprintf(&b, "+ %s\n", s)
			n++
		}
	}
	for _, s := range want {
		if !g[s] && n < 20 {
			fmt.Fprintf(&b, "- %s\n", s)
			n++
		}
	}
	return b.String()
}

// shadows counts the shadow schemas of the test's schema (whose name Rebuild
// cuts to fit "_rb_" and 8 hex digits in 63 bytes).
func (w *world) shadows(t testing.TB) int {
	t.Helper()
	var n int
	if err := w.db.Owner.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1`, w.db.Schema[:min(len(w.db.Schema), 63-12)]+`%\_rb\_%`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// dbName is the current database's name.
func (w *world) dbName(t testing.TB) string {
	t.Helper()
	var name string
	if err := w.db.Owner.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}
