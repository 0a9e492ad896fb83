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
		sub, err := kafka.NewSubscriber(cfg, siem.Group(f.ID), quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
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
