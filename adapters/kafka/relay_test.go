package kafka_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// These tests run the relay against real PostgreSQL (a fresh schema each) and
// the embedded kfake broker over TCP, and read the topic back with a franz-go
// client: what a consumer sees is what they check.

type noted struct {
	N int `json:"n"`
}

func (noted) EventName() string { return "kafkatest.noted" }

func newStore(t *testing.T) *eventstore.Store {
	t.Helper()
	codec := eventstore.NewCodec()
	eventstore.Register[noted](codec, 1)
	return eventstore.NewStore(pgtest.New(t).App, codec)
}

// ledger collects the ids of every event appended, concurrently.
type ledger struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (l *ledger) add(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[string]bool{}
	}
	for _, id := range ids {
		l.ids[id] = true
	}
}

func (l *ledger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// check fails t unless recs hold exactly the ledger's events (each at least
// once) and returns how many records were duplicates.
func (l *ledger) check(t *testing.T, recs []record) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	got := distinct(recs)
	for id := range l.ids {
		if got[id] == 0 {
			t.Errorf("event %s appended but never delivered", id)
		}
	}
	for id := range got {
		if !l.ids[id] {
			t.Errorf("event %s delivered but never appended", id)
		}
	}
	return len(recs) - len(got)
}

// writer appends batches of 1-3 events to random streams of its own set until
// stop is closed or it has done max appends (max <= 0: no limit).
func writer(ctx context.Context, t *testing.T, s *eventstore.Store, l *ledger, w, streams, max int, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	for i := 0; max <= 0 || i < max; i++ {
		select {
		case <-stop:
			return
		default:
		}
		n := 1 + rng.IntN(3)
		events := make([]domain.Event, n)
		for j := range events {
			events[j] = noted{N: i}
		}
		key := eventstore.Key{Tenant: domain.TenantID(fmt.Sprintf("tenant-%d", w%3)), Type: "host",
			ID: fmt.Sprintf("w%d-s%d", w, rng.IntN(streams))}
		res, err := s.Append(ctx, eventstore.AppendRequest{Key: key, Expected: eventstore.Any, Events: events})
		if errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("writer %d: append: %v", w, err)
			}
			return
		}
		l.add(res.EventIDs)
	}
}

// insertEarly inserts a first event of stream id directly, the way Append
// would, so that the transaction holds an allocated position while it waits.
func insertEarly(ctx context.Context, tx pgx.Tx, eventID, streamID string, position *int64) error {
	sum := sha256.Sum256([]byte(eventID))
	return tx.QueryRow(ctx, `INSERT INTO events (event_id, tenant_id, stream_type, stream_id, version, name, schema,
		payload, metadata, recorded_at, prev_hash, hash)
		VALUES ($1, 'tenant-held', 'host', $2, 1, 'kafkatest.noted', 1, '{"n": 0}', '{}', now(), $3, $4)
		RETURNING position`, eventID, streamID, make([]byte, 32), sum[:]).Scan(position)
}

func startRelay(t *testing.T, s *eventstore.Store, pub eventstore.Publisher, name string) (*eventstore.Relay, func()) {
	t.Helper()
	r := eventstore.NewRelay(s, pub, eventstore.RelayOptions{Name: name, Batch: 500, Idle: 5 * time.Millisecond,
		Election: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay %s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// TestRelayDeliversEveryEventExactlyOnce is the no-skip proof: concurrent
// writers, plus transactions that take their transaction id early and commit
// late (after events with larger positions were committed), while the relay
// runs. Every event must arrive exactly once, each stream in one partition in
// version order.
func TestRelayDeliversEveryEventExactlyOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := newStore(t)
	cluster := embedded(t, "", 0, 8)
	pub := newPublisher(t, cluster.Config("relay-test"))
	startRelay(t, store, pub, "kafka")
	var l ledger

	// Held transactions: each inserts one event (taking a small position),
	// then waits for release before Append inserts two more and commits.
	const held = 4
	release := make(chan struct{})
	var holding sync.WaitGroup
	holding.Add(held)
	var heldDone sync.WaitGroup
	heldPositions := make([]int64, held)
	for h := range held {
		heldDone.Add(1)
		go func() {
			defer heldDone.Done()
			var once sync.Once
			early := uuid.Must(uuid.NewV7()).String()
			res, err := store.Append(ctx, eventstore.AppendRequest{
				Key:      eventstore.Key{Tenant: "tenant-held", Type: "host", ID: fmt.Sprintf("held-%d", h)},
				Expected: eventstore.NoStream,
				Events:   []domain.Event{noted{N: -1}, noted{N: -2}},
				Also: func(ctx context.Context, tx pgx.Tx) error {
					if err := insertEarly(ctx, tx, early, fmt.Sprintf("early-%d", h), &heldPositions[h]); err != nil {
						return err
					}
					once.Do(holding.Done)
					select {
					case <-release:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				},
			})
			if err != nil {
				t.Errorf("held append %d: %v", h, err)
				return
			}
			l.add(append(res.EventIDs, early))
		}()
	}
	holding.Wait()

	const writers = 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writer(ctx, t, store, &l, w, 40, 150, nil)
		}()
	}
	wg.Wait()
	// The writers' events, at larger positions, are committed while the held
	// ones are not: a reader that trusts positions alone would have passed the
	// held events' positions by now and skip them for good.
	var maxCommitted int64
	if err := store.Pool().QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&maxCommitted); err != nil {
		t.Fatal(err)
	}
	for h, p := range heldPositions {
		if p >= maxCommitted {
			t.Fatalf("held event %d at position %d, committed events reach %d: the test proves nothing", h, p, maxCommitted)
		}
	}
	close(release)
	heldDone.Wait()
	if t.Failed() {
		t.FailNow()
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	total := l.len()
	recs := newConsumer(t, cluster.Addrs(), "events").until(60*time.Second, atLeast(total))
	if dups := l.check(t, recs); dups != 0 {
		t.Errorf("%d duplicate deliveries, want none", dups)
	}
	checkStreamOrder(t, recs)
	t.Logf("%d events from %d writers and %d late transactions (first events at positions %v, committed after position %d) delivered exactly once; head %+v",
		total, writers, held, heldPositions, maxCommitted, head)
}

// TestRelaySurvivesBrokerRestart stops the broker while writers append, keeps
// appending (commands only need PostgreSQL), then starts a new broker on the
// same port and data directory. Nothing may be lost; a batch that was acked
// but not checkpointed may be delivered twice.
func TestRelaySurvivesBrokerRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := newStore(t)
	dir := t.TempDir()
	cluster := embedded(t, dir, 0, 4)
	cfg := cluster.Config("relay-test")
	pub := &countingPublisher{Publisher: newPublisher(t, cfg)}
	relay, _ := startRelay(t, store, pub, "kafka")
	var l ledger

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writer(ctx, t, store, &l, w, 20, 0, stop)
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	cons := newConsumer(t, cluster.Addrs(), "events")
	cons.until(30*time.Second, atLeast(300))
	cluster.Close()
	downAt := relay.Checkpoint()
	before := l.len()
	eventually(t, 30*time.Second, "appends while the broker is down", func() bool { return l.len() >= before+300 })
	eventually(t, 30*time.Second, "publishing failing while the broker is down", func() bool { return pub.failures.Load() >= 2 })
	stalled := relay.Checkpoint()
	eventually(t, 30*time.Second, "more appends while the broker is down", func() bool { return l.len() >= before+600 })
	if cp := relay.Checkpoint(); cp != stalled {
		t.Fatalf("checkpoint moved from %+v to %+v while the broker was down", stalled, cp)
	}

	cluster2 := embedded(t, dir, cluster.Port(), 4)
	_ = cluster2
	eventually(t, 30*time.Second, "relay moving again", func() bool { return relay.Checkpoint().Position > downAt.Position })
	close(stop)
	wg.Wait()

	total := l.len()
	recs := cons.until(60*time.Second, atLeast(total))
	dups := l.check(t, recs)
	checkStreamOrder(t, recs)
	t.Logf("%d events, %d appended after the broker stopped; %d failed batches; %d duplicate deliveries after the restart",
		total, total-before, pub.failures.Load(), dups)
}

// countingPublisher counts the events a relay's publisher acknowledged and
// the batches it failed.
type countingPublisher struct {
	eventstore.Publisher
	n        atomic.Int64
	failures atomic.Int64
}

func (c *countingPublisher) Publish(ctx context.Context, envs []eventstore.Envelope) error {
	if err := c.Publisher.Publish(ctx, envs); err != nil {
		c.failures.Add(1)
		return err
	}
	c.n.Add(int64(len(envs)))
	return nil
}

// TestTwoRelaysOneLeader runs two relays (two replicas) on one store: one
// publishes, the other waits; cancelling the leader hands over to the other.
func TestTwoRelaysOneLeader(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := newStore(t)
	cluster := embedded(t, "", 0, 4)
	cfg := cluster.Config("relay-test")
	pubA := &countingPublisher{Publisher: newPublisher(t, cfg)}
	pubB := &countingPublisher{Publisher: newPublisher(t, cfg)}
	relayA, stopA := startRelay(t, store, pubA, "kafka")
	relayB, stopB := startRelay(t, store, pubB, "kafka")
	eventually(t, 10*time.Second, "a leader", func() bool { return relayA.Leader() || relayB.Leader() })

	var l ledger
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writer(ctx, t, store, &l, w, 10, 100, nil)
		}()
	}
	wg.Wait()
	cons := newConsumer(t, cluster.Addrs(), "events")
	recs := cons.until(30*time.Second, atLeast(l.len()))
	if dups := l.check(t, recs); dups != 0 {
		t.Fatalf("%d duplicates with two relays running", dups)
	}
	if relayA.Leader() == relayB.Leader() {
		t.Fatalf("leaders: A %v, B %v", relayA.Leader(), relayB.Leader())
	}
	leader, follower, stopLeader, followerPub := relayA, relayB, stopA, pubB
	if relayB.Leader() {
		leader, follower, stopLeader, followerPub = relayB, relayA, stopB, pubA
	}
	if followerPub.n.Load() != 0 {
		t.Fatalf("the follower published %d events", followerPub.n.Load())
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "leader checkpoint at the head", func() bool { return leader.Checkpoint() == head })

	stopLeader()
	eventually(t, 10*time.Second, "the follower takes over", follower.Leader)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writer(ctx, t, store, &l, w+4, 10, 50, nil)
		}()
	}
	wg.Wait()
	recs = cons.until(30*time.Second, atLeast(l.len()))
	if dups := l.check(t, recs); dups != 0 {
		t.Fatalf("%d duplicates after a clean hand-over", dups)
	}
	checkStreamOrder(t, recs)
	if followerPub.n.Load() == 0 {
		t.Fatal("the new leader published nothing")
	}
}
