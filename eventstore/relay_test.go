package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// relayNoted is the event the relay tests append.
type relayNoted struct {
	N int `json:"n"`
}

func (relayNoted) EventName() string { return "relaytest.noted" }

func newRelayStore(t testing.TB) (*eventstore.Store, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	codec := eventstore.NewCodec()
	eventstore.Register[relayNoted](codec, 1)
	return eventstore.NewStore(db.App, codec), db
}

// appendN appends n events, one append per event, round-robin over streams.
func appendN(t *testing.T, s *eventstore.Store, streams, n, from int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		res, err := s.Append(t.Context(), eventstore.AppendRequest{
			Key:      eventstore.Key{Tenant: "tenant-1", Type: "relaytest", ID: fmt.Sprintf("s-%d", (from+i)%streams)},
			Expected: eventstore.Any,
			Events:   []domain.Event{relayNoted{N: from + i}},
		})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		ids = append(ids, res.EventIDs...)
	}
	return ids
}

// fakePublisher records what it is given; while failing is set it fails.
type fakePublisher struct {
	mu       sync.Mutex
	batches  [][]eventstore.Envelope // acknowledged batches
	attempts []string                // first event id of every attempt
	failing  atomic.Bool
}

func (p *fakePublisher) Publish(ctx context.Context, envs []eventstore.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts = append(p.attempts, envs[0].EventID)
	if p.failing.Load() {
		return errors.New("broker unavailable")
	}
	p.batches = append(p.batches, append([]eventstore.Envelope(nil), envs...))
	return nil
}

func (p *fakePublisher) published() []eventstore.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []eventstore.Envelope
	for _, b := range p.batches {
		all = append(all, b...)
	}
	return all
}

func (p *fakePublisher) attemptCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.attempts)
}

// runRelay runs r until the test ends.
func runRelay(t *testing.T, r *eventstore.Relay) (stopRelay func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay Run: %v", err)
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return func() { once.Do(stop) }
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func storedCheckpoint(t *testing.T, db *pgtest.DB, name string) eventstore.Checkpoint {
	t.Helper()
	var cp eventstore.Checkpoint
	err := db.Owner.QueryRow(t.Context(), `SELECT tx_id, position FROM relay_checkpoints WHERE name = $1`, name).
		Scan(&cp.TxID, &cp.Position)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("read checkpoint: %v", err)
	}
	return cp
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestRelayPublishesInOrderAndCheckpointsAfterAck(t *testing.T) {
	t.Parallel()
	store, db := newRelayStore(t)
	ids := appendN(t, store, 7, 50, 0)
	pub := &fakePublisher{}
	pub.failing.Store(true)
	reg := prometheus.NewRegistry()
	r := eventstore.NewRelay(store, pub, eventstore.RelayOptions{Name: "kafka", Batch: 20, Idle: 5 * time.Millisecond,
		Election: 50 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Registerer: reg})
	runRelay(t, r)

	// While the broker fails, the relay retries the same first batch and never
	// moves its checkpoint.
	eventually(t, 10*time.Second, "several failed attempts", func() bool { return pub.attemptCount() >= 4 })
	pub.mu.Lock()
	for _, first := range pub.attempts {
		if first != ids[0] {
			t.Errorf("attempt started at %s, want the first event %s", first, ids[0])
		}
	}
	pub.mu.Unlock()
	if cp := storedCheckpoint(t, db, "kafka"); cp != (eventstore.Checkpoint{}) {
		t.Fatalf("checkpoint moved to %+v before any ack", cp)
	}
	if got := metricValue(t, reg, "velocicompanion_relay_errors_total"); got < 3 {
		t.Fatalf("errors_total = %v, want >= 3", got)
	}

	pub.failing.Store(false)
	head, err := store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "checkpoint at the head", func() bool { return storedCheckpoint(t, db, "kafka") == head })
	got := pub.published()
	if len(got) != len(ids) {
		t.Fatalf("published %d events, appended %d", len(got), len(ids))
	}
	for i, e := range got {
		if e.EventID != ids[i] {
			t.Fatalf("event %d published is %s, appended %s", i, e.EventID, ids[i])
		}
	}
	if r.Checkpoint() != head || !r.Leader() {
		t.Fatalf("relay checkpoint %+v leader %v, want %+v and leading", r.Checkpoint(), r.Leader(), head)
	}
	if v := metricValue(t, reg, "velocicompanion_relay_events_total"); v != float64(len(ids)) {
		t.Fatalf("events_total = %v, want %d", v, len(ids))
	}
	if v := metricValue(t, reg, "velocicompanion_relay_leader"); v != 1 {
		t.Fatalf("leader gauge = %v", v)
	}

	// New events follow, from the checkpoint on.
	more := appendN(t, store, 7, 5, 50)
	eventually(t, 10*time.Second, "new events published", func() bool { return len(pub.published()) == len(ids)+len(more) })
}

func TestRelayResumesFromStoredCheckpoint(t *testing.T) {
	t.Parallel()
	store, _ := newRelayStore(t)
	first := appendN(t, store, 3, 30, 0)
	pub1 := &fakePublisher{}
	r1 := eventstore.NewRelay(store, pub1, eventstore.RelayOptions{Batch: 8, Idle: 5 * time.Millisecond})
	stop := runRelay(t, r1)
	eventually(t, 10*time.Second, "first relay caught up", func() bool { return len(pub1.published()) == len(first) })
	stop()

	second := appendN(t, store, 3, 10, 30)
	pub2 := &fakePublisher{}
	r2 := eventstore.NewRelay(store, pub2, eventstore.RelayOptions{Batch: 8, Idle: 5 * time.Millisecond})
	runRelay(t, r2)
	eventually(t, 10*time.Second, "second relay caught up", func() bool { return len(pub2.published()) == len(second) })
	for i, e := range pub2.published() {
		if e.EventID != second[i] {
			t.Fatalf("second relay published %s at %d, want %s", e.EventID, i, second[i])
		}
	}
}

// TestRelayStepsDownWhenLockSessionDies kills the leader's lock session; the
// relay must notice, re-elect (itself: it is alone) and carry on without losing
// events.
func TestRelayStepsDownWhenLockSessionDies(t *testing.T) {
	t.Parallel()
	store, db := newRelayStore(t)
	ids := appendN(t, store, 4, 20, 0)
	pub := &fakePublisher{}
	reg := prometheus.NewRegistry()
	r := eventstore.NewRelay(store, pub, eventstore.RelayOptions{Name: "kafka", Batch: 10, Idle: 5 * time.Millisecond,
		Election: 20 * time.Millisecond, Registerer: reg})
	runRelay(t, r)
	eventually(t, 10*time.Second, "caught up", func() bool { return len(pub.published()) == len(ids) })

	// The advisory lock key is split over classid (high half) and objid.
	var killed bool
	err := db.Owner.QueryRow(t.Context(), `SELECT pg_terminate_backend(l.pid)
		FROM (SELECT hashtextextended(current_schema() || ':velocicompanion.relay:kafka', 0) AS k) k,
		     pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.classid = ((k.k >> 32) & 4294967295)::oid AND l.objid = (k.k & 4294967295)::oid
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed)
	if err != nil || !killed {
		t.Fatalf("terminate the lock session: %v (killed %v)", err, killed)
	}
	more := appendN(t, store, 4, 20, 20)
	eventually(t, 10*time.Second, "events after the lost session", func() bool {
		seen := map[string]bool{}
		for _, e := range pub.published() {
			seen[e.EventID] = true
		}
		for _, id := range append(ids, more...) {
			if !seen[id] {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "leader again", r.Leader)
	if v := metricValue(t, reg, "velocicompanion_relay_errors_total"); v < 1 {
		t.Fatalf("errors_total = %v, want the lost leadership counted", v)
	}
}
