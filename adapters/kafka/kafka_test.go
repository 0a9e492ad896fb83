package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"velocicompanion/adapters/kafka"
	"velocicompanion/eventstore"
)

func newPublisher(t testing.TB, cfg kafka.Config) *kafka.Publisher {
	t.Helper()
	pub, err := kafka.NewPublisher(cfg, nil)
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func TestPublishKeysByStreamAndKeepsOrder(t *testing.T) {
	t.Parallel()
	c := embedded(t, "", 0, 4)
	pub := newPublisher(t, c.Config("test"))
	envs := fakeEnvelopes(25, 2000, 1)
	for i := 0; i < len(envs); i += 500 {
		if err := pub.Publish(t.Context(), envs[i:i+500]); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	recs := newConsumer(t, c.Addrs(), "events").until(10*time.Second, atLeast(len(envs)))
	if len(recs) != len(envs) {
		t.Fatalf("read %d records, published %d", len(recs), len(envs))
	}
	checkStreamOrder(t, recs)

	byID := map[string]eventstore.Envelope{}
	for _, e := range envs {
		byID[e.EventID] = e
	}
	partitions := map[int32]bool{}
	for _, r := range recs {
		partitions[r.Partition] = true
		want, ok := byID[r.Env.EventID]
		if !ok {
			t.Fatalf("unexpected event %s", r.Env.EventID)
		}
		got := r.Env
		if got.Tenant != want.Tenant || got.StreamID != want.StreamID || got.Version != want.Version ||
			got.Position != want.Position || got.TxID != want.TxID || !bytes.Equal(got.Hash, want.Hash) ||
			!bytes.Equal(got.PrevHash, want.PrevHash) || !got.RecordedAt.Equal(want.RecordedAt) ||
			got.Metadata != want.Metadata || string(got.Payload) != string(want.Payload) {
			t.Fatalf("event %s round trip:\n got %+v\nwant %+v", want.EventID, got, want)
		}
		for h, v := range map[string]string{
			eventstore.HeaderTenant: string(want.Tenant), eventstore.HeaderEventType: want.Name,
			eventstore.HeaderStreamID: want.StreamID, eventstore.HeaderEventID: want.EventID,
		} {
			if r.Headers[h] != v {
				t.Fatalf("event %s header %s = %q, want %q", want.EventID, h, r.Headers[h], v)
			}
		}
	}
	if len(partitions) < 2 {
		t.Fatalf("25 streams landed in %d partition(s)", len(partitions))
	}
}

func TestPublishFailsWhileBrokerDownThenRecovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := embedded(t, dir, 0, 2)
	cfg := c.Config("test")
	pub := newPublisher(t, cfg)
	envs := fakeEnvelopes(5, 300, 1)
	if err := pub.Publish(t.Context(), envs[:100]); err != nil {
		t.Fatalf("publish: %v", err)
	}
	c.Close()
	if err := kafka.Ping(t.Context(), cfg); err == nil {
		t.Fatal("ping succeeded with the broker down")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, envs[100:200]); err == nil {
		t.Fatal("publish succeeded with the broker down")
	}

	c2 := embedded(t, dir, c.Port(), 2)
	if err := kafka.Ping(t.Context(), cfg); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	// The failed batch may have been partly delivered; publish it again, as
	// the relay does, then the rest.
	eventually(t, 20*time.Second, "publish after restart", func() bool {
		return pub.Publish(t.Context(), envs[100:200]) == nil
	})
	if err := pub.Publish(t.Context(), envs[200:]); err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	recs := newConsumer(t, c2.Addrs(), "events").until(10*time.Second, atLeast(len(envs)))
	checkStreamOrder(t, recs)
	if d := len(recs) - len(envs); d != 0 {
		t.Logf("%d duplicate records after the restart", d)
	}
}

func TestRouterRetriesThenPoisons(t *testing.T) {
	t.Parallel()
	c := embedded(t, "", 0, 3)
	cfg := c.Config("test")
	pub := newPublisher(t, cfg)
	envs := fakeEnvelopes(6, 60, 1)
	if err := pub.Publish(t.Context(), envs); err != nil {
		t.Fatalf("publish: %v", err)
	}

	sub, err := kafka.NewSubscriber(cfg, "router-test", nil)
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	router, err := kafka.NewRouter(cfg, kafka.RouterOptions{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	var (
		mu       sync.Mutex
		handled  = map[string]int{} // event id -> attempts
		poisoned = "stream-0001"    // its events always fail (transiently)
		broken   = "stream-0002"    // its events fail permanently
	)
	router.AddConsumerHandler("test", cfg.Topic, sub, func(msg *message.Message) error {
		env, err := eventstore.FromMessage(msg, nil)
		if err != nil {
			return kafka.Permanent(err)
		}
		mu.Lock()
		handled[env.EventID]++
		mu.Unlock()
		switch env.StreamID {
		case poisoned:
			return errors.New("projection store unavailable")
		case broken:
			return kafka.Permanent(errors.New("event breaks an invariant"))
		}
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = router.Close()
		<-runDone
	})

	poison := newConsumer(t, c.Addrs(), kafka.PoisonTopic(cfg.Topic)).until(30*time.Second, atLeast(20))
	eventually(t, 30*time.Second, "all events handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == len(envs)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range envs {
		want := 1
		if e.StreamID == poisoned {
			want = 3 // first attempt + MaxRetries
		}
		if got := handled[e.EventID]; got < want {
			t.Fatalf("event %s of %s handled %d times, want >= %d", e.EventID, e.StreamID, got, want)
		}
	}
	for _, r := range poison {
		if r.Env.StreamID != poisoned && r.Env.StreamID != broken {
			t.Fatalf("event of %s poisoned", r.Env.StreamID)
		}
		if r.Key != r.Env.StreamID {
			t.Fatalf("poisoned record key %q, stream %q", r.Key, r.Env.StreamID)
		}
		if reason := r.Headers[middleware.ReasonForPoisonedKey]; !strings.Contains(reason, "projection store unavailable") &&
			!strings.Contains(reason, "invariant") {
			t.Fatalf("poison reason %q", reason)
		}
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	c := embedded(t, "", 0, 1)
	if err := kafka.Ping(t.Context(), c.Config("test")); err != nil {
		t.Fatalf("ping: %v", err)
	}
	cfg := c.Config("test")
	cfg.Topic = "missing"
	if err := kafka.Ping(t.Context(), cfg); err == nil {
		t.Fatal("ping succeeded for a missing topic")
	}
}
