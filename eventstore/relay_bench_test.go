package eventstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// discardPublisher acknowledges everything at once.
type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, []eventstore.Envelope) error { return nil }

// BenchmarkRelayStoreSide measures the relay without a broker: reading,
// decoding and checkpointing. adapters/kafka's BenchmarkRelay adds the broker.
//
//	go test -run '^$' -bench BenchmarkRelayStoreSide -benchtime 3x ./eventstore/
func BenchmarkRelayStoreSide(b *testing.B) {
	const events = 100_000
	db := newBenchStore(b)
	for i := 0; i < events; i += 100 {
		evs := make([]domain.Event, 100)
		for j := range evs {
			evs[j] = relayNoted{N: i + j}
		}
		if _, err := db.Append(context.Background(), eventstore.AppendRequest{
			Key:      eventstore.Key{Tenant: "tenant-1", Type: "relaytest", ID: fmt.Sprintf("s-%d", i/100)},
			Expected: eventstore.NoStream, Events: evs}); err != nil {
			b.Fatal(err)
		}
	}
	head, err := db.Head(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		r := eventstore.NewRelay(db, discardPublisher{}, eventstore.RelayOptions{Name: fmt.Sprintf("bench-%d", i)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		tick := time.NewTicker(time.Millisecond)
		for r.Checkpoint() != head {
			<-tick.C
		}
		elapsed += time.Since(start)
		tick.Stop()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events)*float64(b.N)/elapsed.Seconds(), "events/s")
}

func newBenchStore(b *testing.B) *eventstore.Store {
	b.Helper()
	s, _ := newRelayStore(b)
	return s
}
