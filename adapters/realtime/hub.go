// Package realtime delivers notifications to the live connections of this
// process: the Hub keeps each user's open subscriptions (one per WebSocket)
// and the Feed pushes into it the notifications that events produce, within
// moments of their recording.
//
// Several replicas may serve the API. Each runs its own Feed, which reads
// every partition of the events topic from the newest offset without a
// consumer group (nothing to commit, nothing to clean up, and a restarted
// replica does not replay the past: clients fetch what they missed with GET
// /api/notifications). For each event that may notify a user of a tenant with
// an open connection here, the Feed waits until the notifications projector
// has applied the event and hands the rows it made to the Hub, which queues
// them on the recipients' subscriptions. The WebSocket protocol itself lives in
// adapters/httpapi.
//
// Package realtime imports projections/notifications, eventstore, domain and
// the Kafka adapter; it must not import commands or cmd.
package realtime

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/domain"
	"velocicompanion/projections/notifications"
)

// Options are the limits of live connections. Zero values select the
// defaults.
type Options struct {
	// MaxConnsPerUser bounds the open subscriptions of one user in this
	// process. Default 5.
	MaxConnsPerUser int
	// SendBuffer is how many notifications may wait for one slow
	// connection; a connection that falls further behind is dropped (its
	// client reconnects and lists what it missed). Default 64.
	SendBuffer int
	// AuthTimeout is how long a WebSocket may stay unauthenticated. Default 5 s.
	AuthTimeout time.Duration
	// Recheck is how often an open connection's session is verified again
	// (sign-out, disabled account, role change). Default 10 s.
	Recheck time.Duration
	// MaxMessageBytes bounds a message from a client. Default 4 KiB.
	MaxMessageBytes int64
	// WriteTimeout bounds each write to a client. Default 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often the server pings an idle client; a client
	// that does not answer within two intervals is disconnected. Default 30 s.
	PingInterval time.Duration
	// MessagesPerSecond bounds what a client may send, with bursts of as
	// many; a client sending faster is disconnected. Default 10.
	MessagesPerSecond int
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxConnsPerUser, 5)
	def(&o.SendBuffer, 64)
	def(&o.MessagesPerSecond, 10)
	defDur(&o.AuthTimeout, 5*time.Second)
	defDur(&o.Recheck, 10*time.Second)
	defDur(&o.WriteTimeout, 10*time.Second)
	defDur(&o.PingInterval, 30*time.Second)
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 4 << 10
	}
	return o
}

// ErrTooManyConnections is returned by Subscribe when the user has
// Options.MaxConnsPerUser subscriptions open already.
var ErrTooManyConnections = domain.TooMany("too_many_connections", "too many open notification connections for this user")

// ErrClosed is returned by Subscribe after Close, and is the reason of the
// subscriptions Close ended.
var ErrClosed = domain.Unavailable("live_closed", "live notifications are shutting down")

// ErrFellBehind is the reason of a subscription that the Hub dropped because
// its connection did not keep up.
var ErrFellBehind = errors.New("the connection fell behind")

type userKey struct {
	tenant domain.TenantID
	user   domain.UserID
}

// Hub is the registry of this process's live subscriptions. It is safe for
// concurrent use.
type Hub struct {
	opts    Options
	mu      sync.Mutex
	closed  bool
	users   map[userKey]map[*Subscription]struct{}
	tenants map[domain.TenantID]int

	open      prometheus.Gauge
	queued    prometheus.Counter
	dropped   prometheus.Counter
	refused   prometheus.Counter
	delivered prometheus.Histogram
}

// NewHub returns a Hub with opts. reg, if not nil, receives its metrics.
func NewHub(opts Options, reg prometheus.Registerer) *Hub {
	h := &Hub{
		opts:    opts.withDefaults(),
		users:   map[userKey]map[*Subscription]struct{}{},
		tenants: map[domain.TenantID]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "velocicompanion_ws_connections",
			Help: "Authenticated notification WebSockets open in this process.",
		}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "velocicompanion_ws_notifications_queued_total",
			Help: "Notifications queued on live connections.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "velocicompanion_ws_connections_dropped_total",
			Help: "Live connections dropped because they fell behind.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "velocicompanion_ws_connections_refused_total",
			Help: "Connections refused because their user had the maximum open.",
		}),
		delivered: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "velocicompanion_ws_delivery_seconds",
			Help:    "Time from recording an event to queueing its notification on a live connection.",
			Buckets: []float64{.005, .01, .025, .05, .1, .2, .5, 1, 2.5, 5},
		}),
	}
	if reg != nil {
		reg.MustRegister(h.open, h.queued, h.dropped, h.refused, h.delivered)
	}
	return h
}

// Options returns the hub's options, defaults filled in.
func (h *Hub) Options() Options { return h.opts }

// Subscription is one live connection's queue of notifications.
type Subscription struct {
	hub    *Hub
	key    userKey
	c      chan notifications.Notification
	done   chan struct{}
	once   sync.Once
	reason error
}

// Subscribe opens a subscription to user's notifications in tenant, or
// returns ErrTooManyConnections. Close it when the connection ends.
func (h *Hub) Subscribe(tenant domain.TenantID, user domain.UserID) (*Subscription, error) {
	k := userKey{tenant, user}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if len(h.users[k]) >= h.opts.MaxConnsPerUser {
		h.refused.Inc()
		return nil, ErrTooManyConnections
	}
	s := &Subscription{hub: h, key: k, c: make(chan notifications.Notification, h.opts.SendBuffer), done: make(chan struct{})}
	if h.users[k] == nil {
		h.users[k] = map[*Subscription]struct{}{}
	}
	h.users[k][s] = struct{}{}
	h.tenants[tenant]++
	h.open.Inc()
	return s, nil
}

// C returns the notifications queued for the subscription.
func (s *Subscription) C() <-chan notifications.Notification { return s.c }

// Done is closed when the subscription ends: closed by its owner, or dropped
// by the hub (Err says why).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the hub dropped the subscription, or nil.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.reason
	default:
		return nil
	}
}

// Close ends the subscription; it is idempotent.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.remove(s, nil)
}

// remove unregisters s; h.mu is held.
func (h *Hub) remove(s *Subscription, reason error) {
	s.once.Do(func() {
		s.reason = reason
		close(s.done)
		subs := h.users[s.key]
		delete(subs, s)
		if len(subs) == 0 {
			delete(h.users, s.key)
		}
		if h.tenants[s.key.tenant]--; h.tenants[s.key.tenant] <= 0 {
			delete(h.tenants, s.key.tenant)
		}
		h.open.Dec()
	})
}

// Close ends every subscription with ErrClosed and refuses new ones: the
// process is shutting down.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, subs := range h.users {
		for s := range subs {
			h.remove(s, ErrClosed)
		}
	}
}

// Watching reports whether any user of tenant has a subscription here.
func (h *Hub) Watching(tenant domain.TenantID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tenants[tenant] > 0
}

// Connections returns the number of open subscriptions.
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, subs := range h.users {
		n += len(subs)
	}
	return n
}

// Deliver queues n on every subscription of its recipient and returns on how
// many. It never blocks: a subscription whose queue is full is dropped with
// ErrFellBehind.
func (h *Hub) Deliver(n notifications.Notification) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	queued := 0
	for s := range h.users[userKey{n.Tenant, n.User}] {
		select {
		case s.c <- n:
			queued++
		default:
			h.dropped.Inc()
			h.remove(s, ErrFellBehind)
		}
	}
	if queued > 0 {
		h.queued.Add(float64(queued))
		if !n.CreatedAt.IsZero() {
			h.delivered.Observe(time.Since(n.CreatedAt).Seconds())
		}
	}
	return queued
}
