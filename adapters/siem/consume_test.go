package siem_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"velocicompanion/adapters/kafka"
	"velocicompanion/adapters/siem"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

var quiet = slog.New(slog.DiscardHandler)

// stuckSender never delivers.
type stuckSender struct {
	mu    sync.Mutex
	calls int
}

func (s *stuckSender) Send(context.Context, ...[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return errors.New("destination down")
}

func (s *stuckSender) Close() error { return nil }

func (s *fakeSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// TestConsumeFromKafka runs three destinations, each its own consumer group
// on the embedded broker: a healthy one of tenant t1, a broken one of t1 with
// long back-off, and one that dead-letters at once. The healthy destination
// receives every t1 event and none of t2 while the broken one is stuck, and
// the dead-lettered events land on the dead-letter topic.
func TestConsumeFromKafka(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster, err := kafka.Embedded(ctx, "", 0, "events", 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cfg := cluster.Config("siem-test")

	const perTenant = 40
	var envs []eventstore.Envelope
	for i := range 2 * perTenant {
		tenant := domain.TenantID("t1")
		if i%2 == 1 {
			tenant = "t2"
		}
		env := envelope(tenant, uuid.Must(uuid.NewV7()).String(), "user.registered", `{}`)
		env.StreamID = fmt.Sprintf("u%d", i%7)
		env.Position = int64(i + 1)
		envs = append(envs, env)
	}
	pub, err := kafka.NewPublisher(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, envs); err != nil {
		t.Fatal(err)
	}

	deadPub, err := kafka.NewMessagePublisher(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer deadPub.Close()
	deadTopic := cfg.PoisonTopic // the embedded broker seeds it; kfake creates no topic on demand
	render := func(ev siem.Event) ([]byte, error) { return []byte(ev.ID), nil }

	good := &fakeSender{}
	broken := &stuckSender{}
	run := func(f *siem.Forwarder) {
		sub, err := kafka.NewBatchSubscriber(cfg, siem.Group(f.ID), kafka.BatchOptions{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = siem.Consume(ctx, sub, cfg.Topic, f) }()
	}
	run(&siem.Forwarder{ID: "good", Tenant: "t1", Sender: good, Render: render, Dead: siem.KafkaDeadLetter(deadPub, deadTopic)})
	run(&siem.Forwarder{ID: "broken", Tenant: "t1", Sender: broken, Render: render,
		Retry: siem.Backoff{Attempts: 1000, Initial: time.Hour, Max: time.Hour}, Dead: siem.KafkaDeadLetter(deadPub, deadTopic)})
	run(&siem.Forwarder{ID: "hopeless", Tenant: "t2", Sender: &stuckSender{}, Render: render,
		Retry: siem.Backoff{Attempts: 2, Initial: time.Millisecond}, Dead: siem.KafkaDeadLetter(deadPub, deadTopic)})

	eventually(t, 30*time.Second, func() bool { return good.count() >= perTenant },
		func() string { return fmt.Sprintf("good destination got %d of %d", good.count(), perTenant) })
	want := map[string]bool{}
	for _, env := range envs {
		if env.Tenant == "t1" {
			want[env.EventID] = true
		}
	}
	good.mu.Lock()
	for _, id := range good.sent {
		if !want[id] {
			t.Errorf("good destination got %s, not an event of t1", id)
		}
	}
	good.mu.Unlock()
	broken.mu.Lock()
	if broken.calls > 3 {
		t.Errorf("broken destination tried %d times; its back-off is an hour", broken.calls)
	}
	broken.mu.Unlock()

	// Every t2 event was dead-lettered by the hopeless destination.
	deadSub, err := kafka.NewSubscriber(kafka.Config{Brokers: cfg.Brokers, Topic: deadTopic, ClientID: "siem-test"}, "siem-test-dead", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer deadSub.Close()
	msgs, err := deadSub.Subscribe(ctx, deadTopic)
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(dead) < perTenant {
		select {
		case msg := <-msgs:
			if msg.Metadata.Get(siem.DeadDestination) != "hopeless" || msg.Metadata.Get(siem.DeadReason) == "" {
				t.Errorf("dead letter metadata %v", msg.Metadata)
			}
			dead[msg.UUID] = true
			msg.Ack()
		case <-deadline:
			t.Fatalf("%d of %d events dead-lettered", len(dead), perTenant)
		}
	}
}

// recordingSender records each Send, failing the calls listed in fail, and
// blocks every call from blockFrom on (when set) until its context ends.
type recordingSender struct {
	mu        sync.Mutex
	fail      map[int]bool
	blockFrom int
	calls     int
	batches   [][]string
}

func (s *recordingSender) Send(ctx context.Context, msgs ...[]byte) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	block := s.blockFrom > 0 && call >= s.blockFrom
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if s.fail[call] {
		return fmt.Errorf("send %d failed", call)
	}
	batch := make([]string, len(msgs))
	for i, m := range msgs {
		batch[i] = string(m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, batch)
	return nil
}

func (s *recordingSender) Close() error { return nil }

// delivered returns the ids sent, in order, with repeats.
func (s *recordingSender) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, b := range s.batches {
		ids = append(ids, b...)
	}
	return ids
}

func (s *recordingSender) distinct() int {
	seen := map[string]bool{}
	for _, id := range s.delivered() {
		seen[id] = true
	}
	return len(seen)
}

// consumeFixture is an embedded broker whose events topic (3 partitions)
// holds n events of tenant t1 over 17 streams, positions 1..n.
type consumeFixture struct {
	cfg  kafka.Config
	envs []eventstore.Envelope
	byID map[string]eventstore.Envelope
}

func newConsumeFixture(t *testing.T, n int) *consumeFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cluster, err := kafka.Embedded(ctx, "", 0, "events", 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	fx := &consumeFixture{cfg: cluster.Config("siem-test"), byID: map[string]eventstore.Envelope{}}
	for i := range n {
		env := envelope("t1", uuid.Must(uuid.NewV7()).String(), "user.registered", `{}`)
		env.StreamID = fmt.Sprintf("u%d", i%17)
		env.Position = int64(i + 1)
		fx.envs = append(fx.envs, env)
		fx.byID[env.EventID] = env
	}
	pub, err := kafka.NewPublisher(fx.cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := 0; i < n; i += 500 {
		if err := pub.Publish(ctx, fx.envs[i:min(i+500, n)]); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

// consume runs Consume for f in group siem.v1.<f.ID> until the returned stop
// is called; stop returns Consume's error.
func (fx *consumeFixture) consume(t *testing.T, f *siem.Forwarder, opts kafka.BatchOptions) (stop func() error) {
	t.Helper()
	sub, err := kafka.NewBatchSubscriber(fx.cfg, siem.Group(f.ID), opts, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- siem.Consume(ctx, sub, fx.cfg.Topic, f) }()
	stopped := false
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Consume did not return within 10s of cancellation")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// checkOrder fails unless, within every stream, the events' first deliveries
// come in position order: a partition's batches are handled in offset order.
func (fx *consumeFixture) checkOrder(t *testing.T, ids []string) {
	t.Helper()
	last := map[string]int64{}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		env, ok := fx.byID[id]
		if !ok {
			t.Fatalf("delivered unknown event %s", id)
		}
		if env.Position <= last[env.StreamID] {
			t.Fatalf("stream %s: position %d delivered after %d", env.StreamID, env.Position, last[env.StreamID])
		}
		last[env.StreamID] = env.Position
	}
}

func idRender(ev siem.Event) ([]byte, error) { return []byte(ev.ID), nil }

// TestConsumeBatches: a backlog is handed to the forwarder in batches of up
// to MaxSize, every event exactly once (nothing fails, so nothing repeats),
// in order within each stream.
func TestConsumeBatches(t *testing.T) {
	const n = 3000
	fx := newConsumeFixture(t, n)
	sender := &recordingSender{}
	f := &siem.Forwarder{ID: "batches", Tenant: "t1", Sender: sender, Render: idRender,
		Dead: func(_ context.Context, env eventstore.Envelope, _ string, reason error) error {
			t.Errorf("dead-lettered %s: %v", env.EventID, reason)
			return nil
		}}
	stop := fx.consume(t, f, kafka.BatchOptions{MaxSize: 100, Linger: 10 * time.Millisecond})
	eventually(t, 30*time.Second, func() bool { return sender.distinct() >= n },
		func() string { return fmt.Sprintf("%d of %d events delivered", sender.distinct(), n) })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Consume returned %v, want context.Canceled", err)
	}
	ids := sender.delivered()
	if len(ids) != n {
		t.Errorf("%d deliveries of %d events; without failures each is delivered once", len(ids), n)
	}
	fx.checkOrder(t, ids)
	sender.mu.Lock()
	defer sender.mu.Unlock()
	largest := 0
	for _, b := range sender.batches {
		largest = max(largest, len(b))
	}
	if largest < 2 || largest > 100 || len(sender.batches) > n/2 {
		t.Errorf("%d sends, largest %d events; want batches of up to 100", len(sender.batches), largest)
	}
}

// TestConsumeRedeliversFailedBatch: when HandleBatch fails (the send fails
// and so does the dead-letter receiver), the batch's offsets are not
// committed and it is handed again: every event arrives, in stream order,
// and nothing is dead-lettered.
func TestConsumeRedeliversFailedBatch(t *testing.T) {
	const n = 2000
	fx := newConsumeFixture(t, n)
	sender := &recordingSender{fail: map[int]bool{3: true, 4: true, 9: true}}
	var deadCalls sync.Map
	f := &siem.Forwarder{ID: "flaky", Tenant: "t1", Sender: sender, Render: idRender,
		Retry: siem.Backoff{Attempts: 1, Initial: time.Millisecond},
		Dead: func(_ context.Context, env eventstore.Envelope, _ string, _ error) error {
			deadCalls.Store(env.EventID, true)
			return errors.New("dead-letter topic down")
		}}
	fx.consume(t, f, kafka.BatchOptions{MaxSize: 64, RetryPause: 5 * time.Millisecond})
	eventually(t, 30*time.Second, func() bool { return sender.distinct() >= n },
		func() string { return fmt.Sprintf("%d of %d events delivered", sender.distinct(), n) })
	fx.checkOrder(t, sender.delivered())
	sender.mu.Lock()
	calls := sender.calls
	sender.mu.Unlock()
	if calls < len(sender.fail)+1 {
		t.Errorf("%d sends; the failing ones were not reached", calls)
	}
	failed := 0
	deadCalls.Range(func(any, any) bool { failed++; return true })
	if failed == 0 {
		t.Error("no batch failed: the test did not exercise redelivery")
	}
}

// TestConsumeCancel: cancelling the context while the destination hangs
// returns promptly; a consumer started again in the same group delivers
// what the first did not, so nothing is lost, and it resumes from the
// committed offsets rather than from the start.
func TestConsumeCancel(t *testing.T) {
	const n = 1500
	fx := newConsumeFixture(t, n)
	first := &recordingSender{blockFrom: 4}
	f := &siem.Forwarder{ID: "restart", Tenant: "t1", Sender: first, Render: idRender,
		Dead: func(context.Context, eventstore.Envelope, string, error) error {
			return errors.New("unexpected dead letter")
		}}
	opts := kafka.BatchOptions{MaxSize: 50}
	stop := fx.consume(t, f, opts)
	eventually(t, 30*time.Second, func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		return first.calls >= 4
	}, func() string { return "the destination was never reached 4 times" })
	start := time.Now()
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Consume returned %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Consume took %v to return after cancellation", d)
	}
	before := first.distinct()
	if before == 0 || before >= n {
		t.Fatalf("first consumer delivered %d of %d", before, n)
	}

	second := &recordingSender{}
	f2 := *f
	f2.Sender = second
	fx.consume(t, &f2, opts)
	all := func() int {
		seen := map[string]bool{}
		for _, id := range append(first.delivered(), second.delivered()...) {
			seen[id] = true
		}
		return len(seen)
	}
	eventually(t, 30*time.Second, func() bool { return all() >= n },
		func() string { return fmt.Sprintf("%d of %d events delivered over both runs", all(), n) })
	fx.checkOrder(t, second.delivered())
	if again := len(second.delivered()) - (n - before); again >= before {
		t.Errorf("second run redelivered %d of the %d events the first delivered; offsets were not committed", again, before)
	}
}
