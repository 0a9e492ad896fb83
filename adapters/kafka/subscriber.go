package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// NewSubscriber returns a watermill subscriber in consumer group group. A
// group without a committed offset starts at the oldest message, so a new
// consumer reads the whole topic. Messages of one partition are delivered one
// at a time, the next after the previous was acked; offsets are committed
// after the ack, so delivery is at least once and consumers must be idempotent.
//
// WARNING: group is durable: renaming it makes the consumer read the topic
// again from the beginning.
func NewSubscriber(cfg Config, group string, logger *slog.Logger) (message.Subscriber, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if group == "" {
		return nil, errors.New("kafka: consumer group must not be empty")
	}
	sc := SaramaConfig(cfg.ClientID)
	if err := validate(sc); err != nil {
		return nil, err
	}
	return kafka.NewSubscriber(kafka.SubscriberConfig{
		Brokers:               cfg.Brokers,
		Unmarshaler:           Marshaler(),
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         group,
		NackResendSleep:       100 * time.Millisecond,
		ReconnectRetrySleep:   time.Second,
	}, LoggerAdapter(logger))
}

// RouterOptions configures ConsumerMiddleware and NewRouter. Zero values select
// the defaults.
type RouterOptions struct {
	// MaxRetries is how often a failing handler is retried before its message
	// goes to the poison topic. Default 5.
	MaxRetries int
	// InitialInterval is the first back-off; it doubles up to MaxInterval.
	// Defaults 100ms and 5s.
	InitialInterval, MaxInterval time.Duration
	// MaxElapsed bounds the total time spent retrying one message. Default 1m.
	MaxElapsed time.Duration
	// CloseTimeout bounds how long Close waits for running handlers. Default 30s.
	CloseTimeout time.Duration
	// Poison, if set, receives poisoned messages instead of a Kafka publisher
	// to cfg.PoisonTopic (tests, or a database dead-letter table).
	Poison message.Publisher
}

// ConsumerMiddleware returns the handler middleware every consumer of ours
// uses, outermost first:
//   - PoisonQueue: a message whose handler still fails after the retries is
//     published to cfg.PoisonTopic (same key and headers, plus the reason and
//     handler in its metadata) and acked, so that its partition moves on. An
//     error matching context.Canceled (the consumer is stopping) is passed
//     through instead: the message is nacked and consumed again after a restart.
//   - Retry: bounded exponential back-off; errors marked Permanent and
//     cancellations are not retried.
//   - Recoverer: a panicking handler returns an error instead.
//
// The returned close function closes the poison publisher; call it after the
// routers using the middleware have stopped.
func ConsumerMiddleware(cfg Config, opts RouterOptions, logger *slog.Logger) ([]message.HandlerMiddleware, func() error, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 5
	}
	if opts.InitialInterval <= 0 {
		opts.InitialInterval = 100 * time.Millisecond
	}
	if opts.MaxInterval <= 0 {
		opts.MaxInterval = 5 * time.Second
	}
	if opts.MaxElapsed <= 0 {
		opts.MaxElapsed = time.Minute
	}
	poison := opts.Poison
	if poison == nil {
		if poison, err = NewMessagePublisher(cfg, logger); err != nil {
			return nil, nil, err
		}
	}
	pq, err := middleware.PoisonQueueWithFilter(poison, cfg.PoisonTopic, func(err error) bool {
		return !errors.Is(err, context.Canceled)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: poison queue: %w", err)
	}
	retry := middleware.Retry{
		MaxRetries:          opts.MaxRetries,
		InitialInterval:     opts.InitialInterval,
		MaxInterval:         opts.MaxInterval,
		Multiplier:          2,
		MaxElapsedTime:      opts.MaxElapsed,
		RandomizationFactor: 0.2,
		ShouldRetry: func(p middleware.RetryParams) bool {
			return !IsPermanent(p.Err) && !errors.Is(p.Err, context.Canceled)
		},
		ResetContextOnRetry: true,
		Logger:              LoggerAdapter(logger),
	}
	return []message.HandlerMiddleware{pq, retry.Middleware, middleware.Recoverer}, poison.Close, nil
}

// Router is a watermill router whose handlers are all wrapped in
// ConsumerMiddleware. Close also closes the poison publisher.
type Router struct {
	*message.Router
	closePoison func() error
	topic       string
}

// NewRouter returns a Router for handlers consuming cfg's topics. Add handlers
// with AddConsumerHandler (or AddHandler), then Run it.
func NewRouter(cfg Config, opts RouterOptions, logger *slog.Logger) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	mw, closePoison, err := ConsumerMiddleware(cfg, opts, logger)
	if err != nil {
		return nil, err
	}
	mr, err := message.NewRouter(message.RouterConfig{CloseTimeout: opts.CloseTimeout}, LoggerAdapter(logger))
	if err != nil {
		_ = closePoison()
		return nil, fmt.Errorf("kafka: new router: %w", err)
	}
	mr.AddMiddleware(mw...)
	return &Router{Router: mr, closePoison: closePoison, topic: cfg.PoisonTopic}, nil
}

// PoisonTopic returns the topic that receives poisoned messages.
func (r *Router) PoisonTopic() string { return r.topic }

// Close stops the router, waiting for running handlers, then closes the poison
// publisher.
func (r *Router) Close() error {
	return errors.Join(r.Router.Close(), r.closePoison())
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a payload that does not
// decode, an event that breaks an invariant): the Router sends the message to
// the poison topic without retrying. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
