package realtime_test

import (
	"errors"
	"testing"
	"time"

	"velocicompanion/adapters/realtime"
	"velocicompanion/domain"
	"velocicompanion/projections/notifications"
)

func note(tenant domain.TenantID, user domain.UserID, id string) notifications.Notification {
	return notifications.Notification{ID: id, Tenant: tenant, User: user, CreatedAt: time.Now()}
}

func TestHubDelivers(t *testing.T) {
	h := realtime.NewHub(realtime.Options{MaxConnsPerUser: 2}, nil)
	a1, err := h.Subscribe("acme", "bob")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := h.Subscribe("acme", "bob")
	other, _ := h.Subscribe("globex", "bob") // the same user id in another tenant
	if _, err := h.Subscribe("acme", "bob"); !errors.Is(err, realtime.ErrTooManyConnections) {
		t.Fatalf("third subscription: %v", err)
	}
	if !h.Watching("acme") || !h.Watching("globex") || h.Watching("initech") || h.Connections() != 3 {
		t.Fatal("Watching or Connections is wrong")
	}
	if n := h.Deliver(note("acme", "bob", "n1")); n != 2 {
		t.Fatalf("queued on %d subscriptions, want 2", n)
	}
	if n := h.Deliver(note("acme", "alice", "n2")); n != 0 {
		t.Fatalf("queued alice's on %d subscriptions", n)
	}
	for _, s := range []*realtime.Subscription{a1, a2} {
		if got := <-s.C(); got.ID != "n1" {
			t.Fatalf("got %s", got.ID)
		}
	}
	select {
	case n := <-other.C():
		t.Fatalf("another tenant's subscription got %s", n.ID)
	default:
	}
	// Closing frees a place; closing twice is harmless.
	a1.Close()
	a1.Close()
	if _, err := h.Subscribe("acme", "bob"); err != nil {
		t.Fatalf("after a close: %v", err)
	}
	other.Close()
	if h.Watching("globex") {
		t.Fatal("still watching a tenant without subscriptions")
	}
}

func TestHubDropsSlowSubscriptions(t *testing.T) {
	h := realtime.NewHub(realtime.Options{SendBuffer: 2}, nil)
	slow, _ := h.Subscribe("acme", "bob")
	fast, _ := h.Subscribe("acme", "bob")
	for i := range 3 {
		h.Deliver(note("acme", "bob", "n"))
		if i < 2 {
			<-fast.C()
		}
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("the slow subscription was not dropped")
	}
	if !errors.Is(slow.Err(), realtime.ErrFellBehind) || fast.Err() != nil {
		t.Fatalf("reasons: %v, %v", slow.Err(), fast.Err())
	}
	if h.Connections() != 1 {
		t.Fatalf("%d connections, want 1", h.Connections())
	}
}

func TestHubClose(t *testing.T) {
	h := realtime.NewHub(realtime.Options{}, nil)
	s, _ := h.Subscribe("acme", "bob")
	h.Close()
	<-s.Done()
	if !errors.Is(s.Err(), realtime.ErrClosed) {
		t.Fatalf("reason %v", s.Err())
	}
	if _, err := h.Subscribe("acme", "bob"); !errors.Is(err, realtime.ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	s.Close()
}

func TestOptionsDefaults(t *testing.T) {
	o := realtime.NewHub(realtime.Options{}, nil).Options()
	if o.MaxConnsPerUser != 5 || o.MaxMessageBytes != 4096 || o.AuthTimeout != 5*time.Second || o.Recheck != 10*time.Second ||
		o.SendBuffer <= 0 || o.WriteTimeout <= 0 || o.PingInterval <= 0 || o.MessagesPerSecond <= 0 {
		t.Fatalf("defaults %+v", o)
	}
}
