package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"velocicompanion/eventstore"
)

// Publisher publishes event batches for the relay; it implements
// eventstore.Publisher.
//
// Why not watermill-kafka's Publisher: its Publish(topic, msgs...) calls
// SyncProducer.SendMessage once per message and waits for each acknowledgement
// before sending the next, so a batch costs one broker round trip per event
// (a few thousand events/s on loopback). Publisher instead hands the whole batch
// to sarama's SyncProducer.SendMessages, which feeds the async pipeline and lets
// sarama pack many records per produce request, then waits for every ack. The
// records are built by the same watermill-kafka marshaler (Marshaler), so the
// wire format, headers and keys are exactly what watermill subscribers expect.
//
// Publisher connects lazily: NewPublisher succeeds while Kafka is down, and
// Publish fails until it is back. After any failed batch the producer is
// discarded and the next Publish starts a fresh one (new idempotent producer
// id), which recovers from broker restarts and fatal sequence errors alike.
type Publisher struct {
	cfg       Config
	sc        *sarama.Config
	marshaler kafka.Marshaler
	log       *slog.Logger

	mu       sync.Mutex // serialises Publish; guards producer and closed
	producer sarama.SyncProducer
	closed   bool
}

var _ eventstore.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher to cfg.Topic. It does not connect.
func NewPublisher(cfg Config, logger *slog.Logger) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sc := SaramaConfig(cfg.ClientID)
	if err := validate(sc); err != nil {
		return nil, err
	}
	return &Publisher{
		cfg:       cfg,
		sc:        sc,
		marshaler: Marshaler(),
		log:       defaultLogger(logger).With("component", "kafka.publisher", "topic", cfg.Topic),
	}, nil
}

// Publish sends envs to the events topic, keyed by stream id, and returns once
// the brokers acknowledged all of them. On error some may have been delivered.
// If ctx ends first, Publish returns ctx.Err() while the batch may still be in
// flight.
func (p *Publisher) Publish(ctx context.Context, envs []eventstore.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, len(envs))
	for i, env := range envs {
		m, err := eventstore.ToMessage(env)
		if err != nil {
			return err
		}
		if msgs[i], err = p.marshaler.Marshal(p.cfg.Topic, m); err != nil {
			return fmt.Errorf("marshal event %s: %w", env.EventID, err)
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("kafka: publisher closed")
	}
	if p.producer == nil {
		producer, err := sarama.NewSyncProducer(p.cfg.Brokers, p.sc)
		if err != nil {
			return fmt.Errorf("connect to kafka %v: %w", p.cfg.Brokers, err)
		}
		p.producer = producer
	}
	producer := p.producer
	done := make(chan error, 1)
	go func() { done <- producer.SendMessages(msgs) }()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		p.discardLocked(nil)
		return fmt.Errorf("publish to %s: %w", p.cfg.Topic, summarize(err, len(msgs)))
	case <-ctx.Done():
		p.discardLocked(done)
		return ctx.Err()
	}
}

// discardLocked drops the current producer and closes it in the background,
// once its pending SendMessages (if pending is not nil) has returned.
func (p *Publisher) discardLocked(pending chan error) {
	producer := p.producer
	p.producer = nil
	go func() {
		if pending != nil {
			<-pending
		}
		if err := producer.Close(); err != nil {
			p.log.Debug("close discarded producer", "err", err)
		}
	}()
}

// summarize turns sarama's per-message errors into one error.
func summarize(err error, total int) error {
	var pe sarama.ProducerErrors
	if errors.As(err, &pe) && len(pe) > 0 {
		return fmt.Errorf("%d of %d messages failed: %w", len(pe), total, pe[0].Err)
	}
	return err
}

// Close closes the producer. Publish fails afterwards.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.producer == nil {
		return nil
	}
	err := p.producer.Close()
	p.producer = nil
	return err
}

// NewMessagePublisher returns a watermill publisher for any topic (the poison
// topic, commands or notifications between processes) with our marshaler:
// messages are keyed by their stream_id header. It connects lazily, on the
// first Publish, and retries the connection on later calls if that fails.
// Publish sends one message at a time; the relay uses Publisher instead.
func NewMessagePublisher(cfg Config, logger *slog.Logger) (message.Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sc := SaramaConfig(cfg.ClientID)
	if err := validate(sc); err != nil {
		return nil, err
	}
	return &lazyPublisher{
		config: kafka.PublisherConfig{Brokers: cfg.Brokers, Marshaler: Marshaler(), OverwriteSaramaConfig: sc},
		logger: LoggerAdapter(logger),
	}, nil
}

// lazyPublisher creates watermill-kafka's Publisher on first use, because
// kafka.NewPublisher fails when no broker answers.
type lazyPublisher struct {
	config kafka.PublisherConfig
	logger watermill.LoggerAdapter

	mu     sync.Mutex
	pub    *kafka.Publisher
	closed bool
}

func (l *lazyPublisher) Publish(topic string, msgs ...*message.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("kafka: publisher closed")
	}
	if l.pub == nil {
		pub, err := kafka.NewPublisher(l.config, l.logger)
		if err != nil {
			return err
		}
		l.pub = pub
	}
	return l.pub.Publish(topic, msgs...)
}

func (l *lazyPublisher) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.pub == nil {
		return nil
	}
	return l.pub.Close()
}
