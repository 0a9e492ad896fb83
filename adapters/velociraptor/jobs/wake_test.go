package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"velocicompanion/adapters/kafka"
	"velocicompanion/adapters/realtime"
	"velocicompanion/adapters/velociraptor/jobs"
	vr "velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
)

// TestWakeStartsWorkAtOnce runs the worker with an hour between polls: a
// collection requested after its first look starts once it is woken.
func TestWakeStartsWorkAtOnce(t *testing.T) {
	w := newWorld(t)
	w.worker.Poll = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.worker.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	c := w.collect(w.a, w.adminA, winClient, "Generic.Client.Info")
	deadline := time.Now().Add(30 * time.Second)
	for w.collection(w.a, c.ID).FlowID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the woken worker did not start the collection: %+v", w.collection(w.a, c.ID))
		}
		w.worker.Wake()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWakesFromKafka reads the events topic live: an event that asks for
// work wakes the worker, any other does not.
func TestWakesFromKafka(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster, err := kafka.Embedded(ctx, "", 0, "events", 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cfg := cluster.Config("wake-test")
	sub, err := realtime.NewLiveSubscriber(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var woken atomic.Int64
	done := make(chan error, 1)
	go func() { done <- jobs.Wakes(ctx, sub, cfg.Topic, func() { woken.Add(1) }) }()

	pub, err := kafka.NewPublisher(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	position := int64(0)
	event := func(name string) eventstore.Envelope {
		position++
		return eventstore.Envelope{EventID: uuid.Must(uuid.NewV7()).String(), Tenant: "t1", StreamType: "collection", StreamID: "c1",
			Version: eventstore.Version(position), Name: name, Payload: json.RawMessage(`{}`), RecordedAt: time.Now(), Position: position}
	}
	// The live subscription reads from the newest offset once it is
	// subscribed: publish until the first wake-up arrives.
	deadline := time.Now().Add(30 * time.Second)
	for woken.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no wake-up from Kafka")
		}
		if err := pub.Publish(ctx, []eventstore.Envelope{event(vr.EventCollectionRequested)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let the probes drain (the count stays put for a while), then an event
	// that asks for nothing and one that asks for work, in one stream (one
	// partition, in order).
	before := woken.Load()
	for {
		time.Sleep(300 * time.Millisecond)
		if now := woken.Load(); now != before {
			before = now
			continue
		}
		break
	}
	if err := pub.Publish(ctx, []eventstore.Envelope{event(vr.EventCollectionScheduled), event(vr.EventHuntRequested)}); err != nil {
		t.Fatal(err)
	}
	for woken.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no wake-up for hunt.requested")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := woken.Load(); got != before+1 {
		t.Fatalf("%d wake-ups for one event that asks for work and one that does not", got-before)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wakes: %v", err)
	}
}
