package siem_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/siem"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// fakeSender records what it was sent and fails the first failures sends.
type fakeSender struct {
	mu       sync.Mutex
	failures int
	sent     []string
	calls    int
}

func (s *fakeSender) Send(_ context.Context, msgs ...[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failures > 0 {
		s.failures--
		return errors.New("connection refused")
	}
	for _, m := range msgs {
		s.sent = append(s.sent, string(m))
	}
	return nil
}

func (s *fakeSender) Close() error { return nil }

type deadLetters struct {
	mu   sync.Mutex
	envs []string
	why  []error
}

func (d *deadLetters) receive(_ context.Context, env eventstore.Envelope, _ string, reason error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.envs, d.why = append(d.envs, env.EventID), append(d.why, reason)
	return nil
}

func envelope(tenant domain.TenantID, id, name string, payload string) eventstore.Envelope {
	return eventstore.Envelope{EventID: id, Tenant: tenant, StreamType: strings.Split(name, ".")[0], StreamID: "s1",
		Name: name, Payload: json.RawMessage(payload), RecordedAt: when, Position: 1,
		Metadata: eventstore.Metadata{Actor: "u1", SourceIP: "192.0.2.1"}}
}

func noSleep(waits *[]time.Duration) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
}

func TestForwarderTenantAndFilter(t *testing.T) {
	sender := &fakeSender{}
	reg := prometheus.NewRegistry()
	f := &siem.Forwarder{ID: "d1", Tenant: "t1", Sender: sender, Metrics: siem.NewMetrics(reg),
		Filter: siem.Filter{Types: []string{"user.*"}, TLPCeiling: "green"},
		Render: func(ev siem.Event) ([]byte, error) { return []byte(ev.ID), nil }, Dead: (&deadLetters{}).receive,
		Now: func() time.Time { return when.Add(2 * time.Second) }}
	ctx := context.Background()
	for _, env := range []eventstore.Envelope{
		envelope("t1", "ok", "user.registered", `{}`),
		envelope("t2", "other-tenant", "user.registered", `{}`),
		envelope("t1", "filtered-type", "host.registered", `{}`),
		envelope("t1", "case", "user.note", `{"tlp":"amber"}`),
	} {
		if err := f.Handle(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(sender.sent) != "[ok]" {
		t.Fatalf("sent %v", sender.sent)
	}
	if got := siemMetric(t, reg, "velocicompanion_siem_skipped_total"); got != 3 {
		t.Errorf("skipped = %v", got)
	}
	if got := siemMetric(t, reg, "velocicompanion_siem_lag_seconds"); got != 2 {
		t.Errorf("lag = %v", got)
	}
}

// siemMetric returns the value of the one sample of name.
func siemMetric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestForwarderRetriesWithBackoff(t *testing.T) {
	sender := &fakeSender{failures: 3}
	var waits []time.Duration
	dead := &deadLetters{}
	f := &siem.Forwarder{ID: "d1", Tenant: "t1", Sender: sender, Dead: dead.receive, Sleep: noSleep(&waits),
		Retry:  siem.Backoff{Attempts: 5, Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		Render: func(ev siem.Event) ([]byte, error) { return []byte(ev.ID), nil }}
	if err := f.Handle(context.Background(), envelope("t1", "e1", "user.registered", `{}`)); err != nil {
		t.Fatal(err)
	}
	if sender.calls != 4 || fmt.Sprint(sender.sent) != "[e1]" || len(dead.envs) != 0 {
		t.Fatalf("calls=%d sent=%v dead=%v", sender.calls, sender.sent, dead.envs)
	}
	if fmt.Sprint(waits) != "[100ms 200ms 300ms]" {
		t.Errorf("waits = %v", waits)
	}
}

func TestForwarderDeadLettersAfterLastAttempt(t *testing.T) {
	sender := &fakeSender{failures: 100}
	var waits []time.Duration
	dead := &deadLetters{}
	f := &siem.Forwarder{ID: "d1", Tenant: "t1", Sender: sender, Dead: dead.receive, Sleep: noSleep(&waits),
		Retry:  siem.Backoff{Attempts: 3, Initial: time.Millisecond, Max: time.Second},
		Render: func(ev siem.Event) ([]byte, error) { return []byte(ev.ID), nil }}
	if err := f.Handle(context.Background(), envelope("t1", "e1", "user.registered", `{}`)); err != nil {
		t.Fatal(err)
	}
	if sender.calls != 3 || len(dead.envs) != 1 || !strings.Contains(dead.why[0].Error(), "after 3 attempts") {
		t.Fatalf("calls=%d dead=%v %v", sender.calls, dead.envs, dead.why)
	}
	// Without a dead-letter receiver the event is not acknowledged.
	f.Dead = nil
	if err := f.Handle(context.Background(), envelope("t1", "e2", "user.registered", `{}`)); err == nil {
		t.Fatal("handled without a dead-letter receiver")
	}
}

func TestForwarderStopsOnCancel(t *testing.T) {
	sender := &fakeSender{failures: 100}
	ctx, cancel := context.WithCancel(context.Background())
	f := &siem.Forwarder{ID: "d1", Tenant: "t1", Sender: sender, Dead: (&deadLetters{}).receive,
		Sleep: func(context.Context, time.Duration) error { cancel(); return context.Canceled },
		Retry: siem.Backoff{Attempts: 5, Initial: time.Millisecond}, Render: func(siem.Event) ([]byte, error) { return nil, nil }}
	if err := f.Handle(ctx, envelope("t1", "e1", "user.registered", `{}`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestForwarderToRsyslogSurvivesRestart stops the real receiver mid-stream
// and starts it again: every event arrives at least once (counted by event
// id), and none is dead-lettered.
func TestForwarderToRsyslogSurvivesRestart(t *testing.T) {
	rs := startRsyslog(t, nil)
	sender, err := siem.NewSyslogSender(siem.SyslogConfig{Transport: siem.TransportTCP, Addr: rs.addr(),
		DialTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	dead := &deadLetters{}
	// While the receiver is down, the forwarder retries; after a few failed
	// attempts the receiver comes back (in the test goroutine, which runs Handle).
	down, failed := false, 0
	f := &siem.Forwarder{ID: "rsyslog", Tenant: "t1", Sender: sender, Dead: dead.receive,
		Retry:  siem.Backoff{Attempts: 20, Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		Render: siem.SyslogRender(siem.SyslogHeader{Hostname: "vc"}, siem.BodyJSON, siem.DefaultProduct),
		Sleep: func(ctx context.Context, d time.Duration) error {
			if failed++; down && failed >= 3 {
				rs.start(mustLook(t))
				down = false
			}
			return ctx.Err()
		}}
	ctx := context.Background()
	const n = 60
	for i := range n {
		if i == n/2 {
			rs.stop()
			down = true
		}
		if err := f.Handle(ctx, envelope("t1", fmt.Sprintf("e%03d", i), "user.registered", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if down || failed < 3 {
		t.Fatalf("the outage was not noticed: down=%v failed=%d", down, failed)
	}
	seen := map[string]int{}
	eventually(t, 15*time.Second, func() bool {
		clear(seen)
		for _, line := range rs.lines("fields.log") {
			f := strings.Split(line, "\t")
			var j siem.JSON
			if json.Unmarshal([]byte(strings.TrimSpace(f[len(f)-1])), &j) == nil {
				seen[j.ID]++
			}
		}
		return len(seen) == n
	}, func() string { return fmt.Sprintf("%d distinct events of %d arrived", len(seen), n) })
	if len(dead.envs) != 0 {
		t.Errorf("dead-lettered %v", dead.envs)
	}
}
