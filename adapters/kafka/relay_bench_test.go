package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// BenchmarkRelay measures the relay's throughput from PostgreSQL into the
// embedded broker (kfake persisting to a data directory, over TCP): it pre-fills
// the store, then, per iteration, runs a relay under a new name (so from the
// beginning) until its checkpoint reaches the head.
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 3x ./adapters/kafka/
func BenchmarkRelay(b *testing.B) {
	const events = 100_000
	codec := eventstore.NewCodec()
	eventstore.Register[noted](codec, 1)
	store := eventstore.NewStore(pgtest.New(b).App, codec)
	prefill(b, store, events)
	head, err := store.Head(context.Background())
	if err != nil {
		b.Fatal(err)
	}

	for _, batch := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			cluster := embedded(b, b.TempDir(), 0, 8)
			pub := newPublisher(b, cluster.Config("bench"))
			var elapsed time.Duration
			for i := 0; b.Loop(); i++ {
				r := eventstore.NewRelay(store, pub, eventstore.RelayOptions{
					Name: fmt.Sprintf("bench-%d-%d", batch, i), Batch: batch, Idle: 5 * time.Millisecond})
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
		})
	}
}

// prefill appends n events: 4 writers, appends of 1-4 events to 2,000 streams.
func prefill(b *testing.B, s *eventstore.Store, n int) {
	b.Helper()
	var wg sync.WaitGroup
	const writers = 4
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/writers; {
				k := 1 + i%4
				k = min(k, n/writers-i)
				events := make([]domain.Event, k)
				for j := range events {
					events[j] = noted{N: i + j}
				}
				key := eventstore.Key{Tenant: domain.TenantID(fmt.Sprintf("tenant-%d", w)), Type: "host",
					ID: fmt.Sprintf("w%d-%d", w, i%500)}
				if _, err := s.Append(context.Background(), eventstore.AppendRequest{Key: key, Expected: eventstore.Any, Events: events}); err != nil {
					b.Error(err)
					return
				}
				i += k
			}
		}()
	}
	wg.Wait()
}
