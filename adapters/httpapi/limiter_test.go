package httpapi

import (
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(3, 10*time.Second)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if !l.allow("192.0.2.1", now) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.allow("192.0.2.1", now) {
		t.Fatal("a request beyond the burst was allowed")
	}
	if !l.allow("192.0.2.2", now) {
		t.Fatal("another address was throttled too")
	}
	if l.allow("192.0.2.1", now.Add(9*time.Second)) {
		t.Fatal("allowed before a token refilled")
	}
	if !l.allow("192.0.2.1", now.Add(11*time.Second)) {
		t.Fatal("refused after a token refilled")
	}
	// Idle addresses are forgotten once their bucket is full again.
	l.allow("192.0.2.9", now.Add(2*time.Minute))
	if _, ok := l.buckets["192.0.2.2"]; ok {
		t.Fatal("an idle, refilled bucket was kept")
	}
}
