package eventstore_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// TestLeadOneAtATime runs three contenders for one lock: fn never runs in
// two of them at once, and when the leader stops another takes over.
func TestLeadOneAtATime(t *testing.T) {
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var running, maxRunning, runs atomic.Int32
	started := make(chan int, 16)
	ctxs := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i := range ctxs {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			eventstore.Lead(ctx, db.App, "test", 20*time.Millisecond, log, func(ctx context.Context) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
				}
				runs.Add(1)
				started <- i
				<-ctx.Done()
				return nil
			})
		}()
	}
	first := <-started
	time.Sleep(200 * time.Millisecond) // the others keep trying meanwhile
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d leaders ran while the first held the lock", n)
	}
	ctxs[first]()
	select {
	case next := <-started:
		if next == first {
			t.Fatalf("contender %d led again after it stopped", next)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no contender took over from the stopped leader")
	}
	for _, cancel := range ctxs {
		cancel()
	}
	wg.Wait()
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("%d leaders ran at once", m)
	}
}
