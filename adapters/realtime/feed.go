package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/kafka"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/projections/notifications"
)

// NewLiveSubscriber returns a subscriber to cfg's brokers that reads every
// partition of a topic from its newest offset, outside any consumer group:
// it commits nothing and leaves nothing behind in the cluster, and after a
// reconnect it goes on from the then newest offset. Messages are delivered one
// at a time per partition, the next after the previous one's ack.
func NewLiveSubscriber(cfg kafka.Config, logger *slog.Logger) (message.Subscriber, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("realtime: no Kafka brokers configured")
	}
	id := cfg.ClientID
	if id == "" {
		id = "velocicompanion"
	}
	sc := kafka.SaramaConfig(id + "-live")
	sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	// Without a group the partition consumers' errors channel is never
	// read; sarama logs the errors instead.
	sc.Consumer.Return.Errors = false
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("realtime: sarama config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               cfg.Brokers,
		Unmarshaler:           kafka.Marshaler(),
		OverwriteSaramaConfig: sc,
		ReconnectRetrySleep:   time.Second,
	}, watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}))
}

// FeedConfig is what a Feed needs; Pool, Kafka and Hub are required.
type FeedConfig struct {
	// Pool is the application pool on the schema of the read models.
	Pool *pgxpool.Pool
	// Kafka names the brokers and the events topic, which the Feed reads
	// with a NewLiveSubscriber.
	Kafka kafka.Config
	// Hub receives the notifications.
	Hub *Hub
	// MaxWait bounds how long an event waits for the notifications projector
	// to apply it; after that its notifications are not pushed (they are
	// still listed). Default 5 s.
	MaxWait time.Duration
	// Logger defaults to slog.Default.
	Logger *slog.Logger
	// Registerer, if not nil, receives the Feed's metrics.
	Registerer prometheus.Registerer
}

// Feed pushes the notifications of newly recorded events to the Hub.
type Feed struct {
	cfg     FeedConfig
	log     *slog.Logger
	ready   chan struct{}
	started atomic.Bool
	expired prometheus.Counter
	lookups prometheus.Counter
}

// NewFeed returns a Feed for cfg.
func NewFeed(cfg FeedConfig) (*Feed, error) {
	switch {
	case cfg.Pool == nil, len(cfg.Kafka.Brokers) == 0, cfg.Kafka.Topic == "", cfg.Hub == nil:
		return nil, errors.New("realtime: a feed needs a pool, Kafka brokers and topic, and a hub")
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Feed{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "realtime"),
		ready: make(chan struct{}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "velocicompanion_ws_events_expired_total",
			Help: "Events whose notifications were not pushed because the projector did not apply them in time.",
		}),
		lookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "velocicompanion_ws_lookups_total",
			Help: "Read-model lookups of the notifications of pending events.",
		}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(f.expired); err != nil {
			return nil, fmt.Errorf("realtime: %w", err)
		}
		if err := cfg.Registerer.Register(f.lookups); err != nil {
			return nil, fmt.Errorf("realtime: %w", err)
		}
	}
	return f, nil
}

// Ready is closed once the Feed consumes: events recorded after that reach
// their recipients' open connections.
func (f *Feed) Ready() <-chan struct{} { return f.ready }

// pending is an event whose notifications are still to be looked up.
type pending struct {
	tenant   domain.TenantID
	position int64
	deadline time.Time
}

// The lookup backoff: the projector usually applies an event within
// milliseconds of the Feed receiving it.
const (
	lookupFirst = time.Millisecond
	lookupMax   = 20 * time.Millisecond
)

// Run consumes until ctx ends and returns nil then. When the subscription
// cannot start (Kafka unreachable) or ends, Run retries with a growing pause;
// events recorded meanwhile are not pushed. A Feed runs once.
func (f *Feed) Run(ctx context.Context) error {
	if !f.started.CompareAndSwap(false, true) {
		return errors.New("realtime: the feed already ran")
	}
	in := make(chan pending, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.dispatch(ctx, in)
	}()
	defer func() { <-done }()
	var ready sync.Once
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		err := f.consume(ctx, in, func() { ready.Do(func() { close(f.ready) }) })
		if ctx.Err() != nil {
			return nil
		}
		f.log.Warn("live notification feed stopped; restarting", slog.String("error", err.Error()), slog.Duration("after", delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// consume runs one live subscription until ctx ends or the subscription
// does, queueing in in the events that may notify someone connected here.
func (f *Feed) consume(ctx context.Context, in chan<- pending, subscribed func()) error {
	sub, err := NewLiveSubscriber(f.cfg.Kafka, f.cfg.Logger)
	if err != nil {
		return err
	}
	defer func() {
		if err := sub.Close(); err != nil {
			f.log.Warn("close live subscriber", slog.String("error", err.Error()))
		}
	}()
	msgs, err := sub.Subscribe(ctx, f.cfg.Kafka.Topic)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", f.cfg.Kafka.Topic, err)
	}
	subscribed()
	for {
		var msg *message.Message
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg, ok = <-msgs:
			if !ok {
				return errors.New("the live subscription ended")
			}
		}
		msg.Ack() // nothing is committed: a live feed never goes back
		env, err := eventstore.FromMessage(msg, nil)
		if err != nil {
			f.log.Warn("undecodable event message", slog.String("error", err.Error()))
			continue
		}
		if env.Position <= 0 || !notifications.MayNotify(env.Name) || !f.cfg.Hub.Watching(env.Tenant) {
			continue
		}
		select {
		case in <- pending{tenant: env.Tenant, position: env.Position, deadline: time.Now().Add(f.cfg.MaxWait)}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// dispatch looks up the notifications of pending events, a round at a time:
// one query per tenant with pending events, for all of them, so that the cost
// does not grow with the rate of events. Applied events' notifications go to
// the Hub in position order; the others wait for the next round.
func (f *Feed) dispatch(ctx context.Context, in <-chan pending) {
	var queue []pending
	wait := lookupFirst
	var next time.Time // when the next round is due, if queue is not empty
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due <-chan time.Time
		if len(queue) > 0 {
			timer.Reset(time.Until(next))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case p := <-in:
			queue = append(queue, p)
			// A new event is looked up soon, whatever the backoff of
			// the older ones; events that arrive meanwhile share the round.
			if soon := time.Now().Add(lookupFirst); len(queue) == 1 || soon.Before(next) {
				next, wait = soon, lookupFirst
			}
			continue
		case <-due:
		}
	drain:
		for {
			select {
			case p := <-in:
				queue = append(queue, p)
			default:
				break drain
			}
		}
		if queue = f.round(ctx, queue); len(queue) > 0 {
			wait = min(2*wait, lookupMax)
			next = time.Now().Add(wait)
		}
	}
}

// round looks up queue's events and returns those still to be looked up.
func (f *Feed) round(ctx context.Context, queue []pending) []pending {
	byTenant := map[domain.TenantID][]int64{}
	for _, p := range queue {
		byTenant[p.tenant] = append(byTenant[p.tenant], p.position)
	}
	done := map[int64]bool{}
	for tenant, positions := range byTenant {
		f.lookups.Inc()
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		applied, rows, err := notifications.Delivered(lctx, f.cfg.Pool, tenant, positions)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn("look up notifications", slog.String("tenant", string(tenant)), slog.String("error", err.Error()))
			}
			continue
		}
		for _, pos := range applied {
			done[pos] = true
		}
		for _, n := range rows { // in position order
			f.cfg.Hub.Deliver(n)
		}
	}
	now := time.Now()
	left := queue[:0]
	for _, p := range queue {
		switch {
		case done[p.position]:
		case now.After(p.deadline):
			f.expired.Inc()
			f.log.Warn("notifications of an event not pushed: the projector did not apply it in time",
				slog.String("tenant", string(p.tenant)), slog.Int64("position", p.position))
		default:
			left = append(left, p)
		}
	}
	return left
}
