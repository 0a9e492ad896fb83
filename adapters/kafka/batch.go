package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
)

// BatchOptions configures a BatchSubscriber. Zero values select the defaults.
type BatchOptions struct {
	// MaxSize bounds the messages of one batch. Default 256.
	MaxSize int
	// Linger is how long a batch that is not full waits for more messages
	// after its first one arrived. Default 5ms; a negative value hands on at
	// once what has already been fetched.
	Linger time.Duration
	// RetryPause is the wait before a batch whose handler failed is handed
	// again. Default 100ms. A consumer that lost the brokers rejoins after a
	// second.
	RetryPause time.Duration
}

func (o BatchOptions) withDefaults() BatchOptions {
	if o.MaxSize <= 0 {
		o.MaxSize = 256
	}
	if o.Linger == 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.RetryPause <= 0 {
		o.RetryPause = 100 * time.Millisecond
	}
	return o
}

// BatchSubscriber reads a topic in a consumer group with sarama directly and
// hands its messages to a handler in batches, unlike NewSubscriber's
// watermill subscriber, which hands on a partition's next message only after
// the previous one was acked. Use it where a consumer gains from handling
// many messages at once (one network write per batch, say).
type BatchSubscriber struct {
	cfg    Config
	group  string
	opts   BatchOptions
	logger *slog.Logger
}

// NewBatchSubscriber returns a BatchSubscriber in consumer group group. Like
// NewSubscriber, a group without a committed offset starts at the oldest
// message, and delivery is at least once.
//
// WARNING: group is durable: renaming it makes the consumer read the topic
// again from the beginning.
func NewBatchSubscriber(cfg Config, group string, opts BatchOptions, logger *slog.Logger) (*BatchSubscriber, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if group == "" {
		return nil, errors.New("kafka: consumer group must not be empty")
	}
	if err := validate(SaramaConfig(cfg.ClientID)); err != nil {
		return nil, err
	}
	return &BatchSubscriber{cfg: cfg, group: group, opts: opts.withDefaults(), logger: defaultLogger(logger)}, nil
}

// ConsumeBatches reads topic until ctx ends, then returns ctx.Err(). Each
// batch holds up to MaxSize messages of one partition in offset order, and
// the batches of a partition are handed one after another; batches of
// different partitions may be handled concurrently. A batch's offsets are
// marked for commit only when handle returns nil; a batch whose handler
// fails is handed again after RetryPause, so nothing after it is marked
// either. A rebalance or a lost broker ends the session without marking the
// batch in hand, so it is read again: delivery is at least once. A message
// that does not unmarshal is logged and skipped. Errors reaching the brokers
// are logged and retried; ConsumeBatches itself fails only on a
// configuration error. handle must not keep msgs after it returns.
func (s *BatchSubscriber) ConsumeBatches(ctx context.Context, topic string, handle func(ctx context.Context, msgs []*message.Message) error) error {
	sc := SaramaConfig(s.cfg.ClientID)
	log := s.logger.With(slog.String("group", s.group), slog.String("topic", topic))
	h := &batchHandler{opts: s.opts, handle: handle, unmarshal: Marshaler(), log: log}
	for ctx.Err() == nil {
		err := s.consume(ctx, sc, topic, h)
		if ctx.Err() != nil {
			break
		}
		var cfgErr sarama.ConfigurationError
		if errors.As(err, &cfgErr) {
			return fmt.Errorf("kafka: consume %s in %s: %w", topic, s.group, err)
		}
		if err != nil {
			log.Warn("kafka consumer group stopped; rejoining", slog.String("error", err.Error()))
		}
		if !pause(ctx, rejoinPause) {
			break
		}
	}
	return ctx.Err()
}

// rejoinPause is the wait before a consumer that lost the brokers rejoins.
const rejoinPause = time.Second

// consume runs group sessions until ctx ends or joining fails.
func (s *BatchSubscriber) consume(ctx context.Context, sc *sarama.Config, topic string, h *batchHandler) error {
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.group, sc)
	if err != nil {
		return err
	}
	errs := make(chan struct{})
	go func() {
		defer close(errs)
		for err := range group.Errors() {
			h.log.Warn("kafka consumer", slog.String("error", err.Error()))
		}
	}()
	defer func() {
		if err := group.Close(); err != nil {
			h.log.Warn("kafka consumer group close", slog.String("error", err.Error()))
		}
		<-errs
	}()
	for ctx.Err() == nil {
		// Consume returns at every rebalance; join again.
		if err := group.Consume(ctx, []string{topic}, h); err != nil {
			return err
		}
	}
	return nil
}

type batchHandler struct {
	opts      BatchOptions
	handle    func(ctx context.Context, msgs []*message.Message) error
	unmarshal interface {
		Unmarshal(*sarama.ConsumerMessage) (*message.Message, error)
	}
	log *slog.Logger
}

func (h *batchHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *batchHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim collects a partition's messages into batches and marks each
// batch's offsets once its handler succeeded.
func (h *batchHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	in := claim.Messages()
	raw := make([]*sarama.ConsumerMessage, 0, h.opts.MaxSize)
	msgs := make([]*message.Message, 0, h.opts.MaxSize)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	for {
		raw = raw[:0]
		select {
		case m, ok := <-in:
			if !ok {
				return nil
			}
			raw = append(raw, m)
		case <-ctx.Done():
			return nil
		}
		closed := false
		raw, closed = drain(in, raw, h.opts.MaxSize)
		if !closed && len(raw) < h.opts.MaxSize && h.opts.Linger > 0 {
			linger.Reset(h.opts.Linger)
		collect:
			for len(raw) < h.opts.MaxSize {
				select {
				case m, ok := <-in:
					if !ok {
						closed = true
						break collect
					}
					raw = append(raw, m)
				case <-linger.C:
					break collect
				case <-ctx.Done():
					return nil
				}
			}
			linger.Stop()
		}
		msgs = msgs[:0]
		for _, m := range raw {
			msg, err := h.unmarshal.Unmarshal(m)
			if err != nil {
				h.log.Warn("kafka message skipped", slog.Int("partition", int(m.Partition)),
					slog.Int64("offset", m.Offset), slog.String("error", err.Error()))
				continue
			}
			msg.SetContext(ctx)
			msgs = append(msgs, msg)
		}
		if !h.handleUntilDone(ctx, msgs) {
			return nil // the session ended: the batch is read again
		}
		sess.MarkMessage(raw[len(raw)-1], "")
		if closed {
			return nil
		}
	}
}

// handleUntilDone hands msgs to the handler until it succeeds, reporting
// false if ctx ended first.
func (h *batchHandler) handleUntilDone(ctx context.Context, msgs []*message.Message) bool {
	if len(msgs) == 0 {
		return true
	}
	for {
		err := h.handle(ctx, msgs)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		h.log.Warn("kafka batch handler failed; handing the batch again", slog.Int("messages", len(msgs)),
			slog.String("error", err.Error()))
		if !pause(ctx, h.opts.RetryPause) {
			return false
		}
	}
}

// drain appends to raw what in already holds, up to limit messages, and
// reports whether in was closed.
func drain(in <-chan *sarama.ConsumerMessage, raw []*sarama.ConsumerMessage, limit int) ([]*sarama.ConsumerMessage, bool) {
	for len(raw) < limit {
		select {
		case m, ok := <-in:
			if !ok {
				return raw, true
			}
			raw = append(raw, m)
		default:
			return raw, false
		}
	}
	return raw, false
}

// pause waits d, reporting false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
