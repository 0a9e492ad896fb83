package siem

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// Sender delivers rendered messages to one destination. A nil error means
// the destination took them all; any error means none may be counted as
// delivered. SyslogSender implements it.
type Sender interface {
	Send(ctx context.Context, msgs ...[]byte) error
	Close() error
}

// Render turns an event's common shape into the bytes a Sender sends.
type Render func(Event) ([]byte, error)

// SyslogRender renders events as RFC 5424 messages with body.
func SyslogRender(h SyslogHeader, body Body, p Product) Render {
	return func(ev Event) ([]byte, error) { return RFC5424(h, body, p, ev) }
}

// DeadLetter receives an event a destination gave up on, with the reason.
type DeadLetter func(ctx context.Context, env eventstore.Envelope, destination string, reason error) error

// Backoff bounds the retries of one delivery: Attempts tries in all, waiting
// Initial after the first failure and doubling up to Max.
type Backoff struct {
	Attempts     int
	Initial, Max time.Duration
}

// DefaultBackoff tries 8 times over about a minute.
var DefaultBackoff = Backoff{Attempts: 8, Initial: 250 * time.Millisecond, Max: 15 * time.Second}

// Metrics are the forwarders' Prometheus metrics, labelled by destination.
type Metrics struct {
	delivered, skipped, retried, dead *prometheus.CounterVec
	lag                               *prometheus.GaugeVec
}

// NewMetrics registers the forwarding metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "velocicompanion", Subsystem: "siem",
			Name: name, Help: help}, []string{"destination"})
	}
	m := &Metrics{
		delivered: counter("delivered_total", "Events delivered to a SIEM destination."),
		skipped:   counter("skipped_total", "Events a SIEM destination's tenant, filter or TLP ceiling held back."),
		retried:   counter("retries_total", "Failed delivery attempts that were retried."),
		dead:      counter("dead_lettered_total", "Events sent to the dead-letter topic after the last attempt failed."),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "velocicompanion", Subsystem: "siem",
			Name: "lag_seconds", Help: "Time from recording to delivery of the last event a SIEM destination handled."},
			[]string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.delivered, m.skipped, m.retried, m.dead, m.lag)
	}
	return m
}

// Forwarder delivers one tenant's events to one destination, at least once:
// Handle returns only when the event was delivered, held back by the filter,
// or handed to the dead-letter receiver after the last attempt, so its
// consumer may commit the offset; it returns an error (and the consumer must
// not commit) only when ctx ends or the dead-letter receiver fails.
//
// Each destination has its own Forwarder and its own consumer, so a slow or
// broken destination delays only itself.
type Forwarder struct {
	ID     string          // destination id, the metrics label
	Tenant domain.TenantID // the only tenant whose events it forwards
	Filter Filter
	Render Render
	Sender Sender
	Dead   DeadLetter
	Retry  Backoff
	// Metrics may be nil.
	Metrics *Metrics
	// Now and Sleep default to the real clock; tests make them fast.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (f *Forwarder) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Forwarder) sleep(ctx context.Context, d time.Duration) error {
	if f.Sleep != nil {
		return f.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Handle forwards env if it is for this destination.
func (f *Forwarder) Handle(ctx context.Context, env eventstore.Envelope) error {
	return f.HandleBatch(ctx, []eventstore.Envelope{env})
}

// HandleBatch forwards those of envs that are for this destination in one
// Send, so a receiver gets them in one write: the batch is delivered or
// retried as a whole, and after the last attempt each of its events is
// dead-lettered. Like Handle, it returns nil only when every event was
// delivered, held back or dead-lettered, so its consumer may then commit
// them all.
func (f *Forwarder) HandleBatch(ctx context.Context, envs []eventstore.Envelope) error {
	msgs := make([][]byte, 0, len(envs))
	sent := make([]eventstore.Envelope, 0, len(envs))
	for _, env := range envs {
		// The tenant in the envelope comes from the stored event, not the
		// Kafka key: another tenant's event is never forwarded.
		if env.Tenant != f.Tenant || f.Tenant == "" {
			f.count(func(m *Metrics) *prometheus.CounterVec { return m.skipped })
			continue
		}
		ev := FromEnvelope(env)
		if !f.Filter.Allows(ev) {
			f.count(func(m *Metrics) *prometheus.CounterVec { return m.skipped })
			continue
		}
		msg, err := f.Render(ev)
		if err != nil {
			if err := f.deadLetter(ctx, env, fmt.Errorf("render: %w", err)); err != nil {
				return err
			}
			continue
		}
		msgs, sent = append(msgs, msg), append(sent, env)
	}
	if len(msgs) == 0 {
		return nil
	}
	retry := f.Retry
	if retry.Attempts <= 0 {
		retry = DefaultBackoff
	}
	wait := retry.Initial
	var lastErr error
	for attempt := 1; attempt <= retry.Attempts; attempt++ {
		if lastErr = f.Sender.Send(ctx, msgs...); lastErr == nil {
			for range sent {
				f.count(func(m *Metrics) *prometheus.CounterVec { return m.delivered })
			}
			if f.Metrics != nil {
				f.Metrics.lag.WithLabelValues(f.ID).Set(f.now().Sub(sent[len(sent)-1].RecordedAt).Seconds())
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == retry.Attempts {
			break
		}
		f.count(func(m *Metrics) *prometheus.CounterVec { return m.retried })
		if err := f.sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, max(retry.Max, retry.Initial))
	}
	for _, env := range sent {
		if err := f.deadLetter(ctx, env, fmt.Errorf("after %d attempts: %w", retry.Attempts, lastErr)); err != nil {
			return err
		}
	}
	return nil
}

func (f *Forwarder) deadLetter(ctx context.Context, env eventstore.Envelope, reason error) error {
	if f.Dead == nil {
		return errors.Join(errors.New("siem: no dead-letter receiver"), reason)
	}
	if err := f.Dead(ctx, env, f.ID, reason); err != nil {
		return fmt.Errorf("dead-letter %s for %s: %w", env.EventID, f.ID, err)
	}
	f.count(func(m *Metrics) *prometheus.CounterVec { return m.dead })
	return nil
}

func (f *Forwarder) count(which func(*Metrics) *prometheus.CounterVec) {
	if f.Metrics != nil {
		which(f.Metrics).WithLabelValues(f.ID).Inc()
	}
}
