package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fill takes every hashing slot of h and returns a func that frees them.
func fill(h *Hasher) (free func()) {
	for range cap(h.slots) {
		h.slots <- struct{}{}
	}
	return func() {
		for range cap(h.slots) {
			<-h.slots
		}
	}
}

func TestBusyHasherAnswersErrBusy(t *testing.T) {
	h, err := NewHasher(HasherOptions{Params: MinimumParams, MaxConcurrent: 2, MaxWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	encoded, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	free := fill(h)
	if _, err := h.Hash(ctx, "correct horse battery"); !errors.Is(err, ErrBusy) {
		t.Errorf("Hash while busy: %v, want ErrBusy", err)
	}
	if _, err := h.Verify(ctx, "correct horse battery", encoded); !errors.Is(err, ErrBusy) {
		t.Errorf("Verify while busy: %v, want ErrBusy", err)
	}
	if err := h.DummyVerify(ctx, "correct horse battery"); !errors.Is(err, ErrBusy) {
		t.Errorf("DummyVerify while busy: %v, want ErrBusy", err)
	}
	free()
	if ok, err := h.Verify(ctx, "correct horse battery", encoded); !ok || err != nil {
		t.Errorf("Verify after the slots were freed = %v, %v", ok, err)
	}
}

func TestWaitingForSlotHonoursContext(t *testing.T) {
	h, err := NewHasher(HasherOptions{Params: MinimumParams, MaxConcurrent: 1, MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	free := fill(h)
	defer free()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(ctx, "correct horse battery")
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Hash after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Hash kept waiting after its context was cancelled")
	}
}

func TestQueuedCallerGetsFreedSlot(t *testing.T) {
	h, err := NewHasher(HasherOptions{Params: MinimumParams, MaxConcurrent: 1, MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	free := fill(h)
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(context.Background(), "correct horse battery")
		done <- err
	}()
	free()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued Hash never got the freed slot")
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	const limit = 2
	h, err := NewHasher(HasherOptions{Params: MinimumParams, MaxConcurrent: limit, MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // samples the number of slots taken while the hashes run
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(len(h.slots)); n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := h.Hash(context.Background(), "correct horse battery"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	if p := peak.Load(); p > limit || p == 0 {
		t.Fatalf("peak of %d concurrent hashes, want 1..%d", p, limit)
	}
}

func TestDefaultConcurrency(t *testing.T) {
	h, err := NewHasher(HasherOptions{Params: MinimumParams})
	if err != nil {
		t.Fatal(err)
	}
	if cap(h.slots) < 1 {
		t.Fatalf("default concurrency %d", cap(h.slots))
	}
	if h.maxWait <= 0 {
		t.Fatalf("default wait %v", h.maxWait)
	}
}
