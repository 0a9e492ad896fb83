package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/eventstore"
)

// SubscriberFactory returns a subscriber to the events topic that consumes as
// the Kafka consumer group named group, from the oldest offset when the group
// has none. The Kafka adapter provides it.
type SubscriberFactory func(group string) (message.Subscriber, error)

// RunnerConfig is what a Runner needs. Pool, Codec, Topic and Subscribe are
// required.
type RunnerConfig struct {
	// Pool is the application pool (role vc_app) whose search_path is the
	// schema of projector_seen and the read models.
	Pool *pgxpool.Pool
	// Codec decodes the events carried by the messages.
	Codec *eventstore.Codec
	// Topic is the events topic.
	Topic string
	// Subscribe makes one subscriber per projector, its consumer group being
	// the projector's Name.
	Subscribe SubscriberFactory
	// Middleware wraps every projector's handler, the first outermost: for
	// example a poison queue, then a bounded exponential retry. A failed
	// message is nacked and, without such middleware, redelivered forever.
	//
	// When the runner stops, a message interrupted mid-transaction fails with
	// an error that matches context.Canceled (errors.Is). A poison-queue
	// middleware must let such errors through (so the message is nacked and
	// consumed again after a restart) instead of moving it to the poison topic.
	Middleware []message.HandlerMiddleware
	// Permanent, if not nil, marks an error that retrying cannot fix (a
	// message that does not decode) so that the retry middleware gives up
	// at once; the Kafka adapter's Permanent fits.
	Permanent func(error) error
	// Registerer receives the runner's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger logs the router's and the runner's messages; nil means slog.Default.
	Logger *slog.Logger
	// Now is the clock used for the lag metric; nil means time.Now.
	Now func() time.Time
	// CloseTimeout bounds how long stopping waits for messages in flight;
	// zero means 10 seconds.
	CloseTimeout time.Duration
}

// Runner feeds projectors from Kafka: one watermill handler and one consumer
// group per projector. Messages are applied in transactions on the app pool
// that take the projector's shared advisory lock (Rebuild's swap takes it
// exclusively), scope each tenant's events with app.tenant_id, record the
// positions in projector_seen and apply only the events whose row is new. A
// message is acked after the commit, so a redelivered event changes nothing.
//
// Messages that arrive together (one per partition at most: the subscriber
// delivers a partition's next message after the previous one's ack) share a
// transaction. If such a transaction fails, each of its messages is applied
// again in a transaction of its own, so that a failing event fails alone.
type Runner struct {
	cfg        RunnerConfig
	projectors []Projector
	metrics    *metrics
	log        *slog.Logger
	running    chan struct{}
	started    atomic.Bool
}

// NewRunner returns a runner for projectors, which must have distinct names.
// Run the projectors' migrations (Migrate) before running it.
func NewRunner(cfg RunnerConfig, projectors ...Projector) (*Runner, error) {
	switch {
	case cfg.Pool == nil:
		return nil, errors.New("new runner: no pool")
	case cfg.Codec == nil:
		return nil, errors.New("new runner: no codec")
	case cfg.Topic == "":
		return nil, errors.New("new runner: no topic")
	case cfg.Subscribe == nil:
		return nil, errors.New("new runner: no subscriber factory")
	case len(projectors) == 0:
		return nil, errors.New("new runner: no projectors")
	}
	seen := map[string]bool{}
	for _, p := range projectors {
		if p.Name() == "" || seen[p.Name()] {
			return nil, fmt.Errorf("new runner: projector name %q is empty or repeated", p.Name())
		}
		seen[p.Name()] = true
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Permanent == nil {
		cfg.Permanent = func(err error) error { return err }
	}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = 10 * time.Second
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new runner: %w", err)
	}
	return &Runner{
		cfg:        cfg,
		projectors: projectors,
		metrics:    m,
		log:        cfg.Logger.With("component", "projections"),
		running:    make(chan struct{}),
	}, nil
}

// Running is closed once every projector's handler has subscribed.
func (r *Runner) Running() <-chan struct{} { return r.running }

// Run consumes until ctx is cancelled or every subscription ends. It returns
// nil after a cancellation. A Runner runs once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("run projectors: the runner already ran")
	}
	// The router logs every subscription and rebalance at info; keep those at debug.
	logger := watermill.NewSlogLoggerWithLevelMapping(r.log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, logger)
	if err != nil {
		return fmt.Errorf("run projectors: %w", err)
	}
	var subs []message.Subscriber
	defer func() {
		for _, s := range subs {
			if err := s.Close(); err != nil {
				r.log.Warn("close subscriber", "error", err)
			}
		}
	}()
	// Cancelling ctx aborts the transactions in flight: their messages are
	// nacked, not acked, and consumed again after a restart. A batcher
	// answers every message it took, and refuses new ones once stopped, so
	// the router's handlers never wait for a batcher that is gone.
	bctx, stopBatchers := context.WithCancel(ctx)
	var batchers sync.WaitGroup
	defer func() {
		stopBatchers()
		batchers.Wait()
	}()
	for _, p := range r.projectors {
		sub, err := r.cfg.Subscribe(p.Name())
		if err != nil {
			return fmt.Errorf("run projectors: subscribe %s: %w", p.Name(), err)
		}
		subs = append(subs, sub)
		b, err := r.newBatcher(ctx, p)
		if err != nil {
			return fmt.Errorf("run projectors: %w", err)
		}
		batchers.Go(func() { b.run(bctx) })
		wh := router.AddConsumerHandler(p.Name(), r.cfg.Topic, sub, b.handle)
		wh.AddMiddleware(r.cfg.Middleware...)
	}

	go func() {
		select {
		case <-router.Running():
			close(r.running)
		case <-ctx.Done():
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- router.Run(ctx) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		if cerr := router.Close(); cerr != nil {
			r.log.Warn("close router", "error", cerr)
		}
		err = <-errc
	}
	if err != nil {
		return fmt.Errorf("run projectors: %w", err)
	}
	return nil
}

// metrics are the runner's Prometheus collectors.
type metrics struct {
	lag        *prometheus.GaugeVec
	applied    *prometheus.CounterVec
	duplicates *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "velocicompanion_projection_lag_seconds",
			Help: "Time from recording to applying the last event each projector applied.",
		}, []string{"projector"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velocicompanion_projection_applied_total",
			Help: "Events applied to read models, per projector.",
		}, []string{"projector"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velocicompanion_projection_duplicates_total",
			Help: "Redelivered events skipped because projector_seen already had them, per projector.",
		}, []string{"projector"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.lag, err = register(reg, m.lag); err != nil {
		return nil, err
	}
	if m.applied, err = register(reg, m.applied); err != nil {
		return nil, err
	}
	if m.duplicates, err = register(reg, m.duplicates); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered in its
// place (several runners may share a registerer).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
