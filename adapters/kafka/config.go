// Package kafka is the Kafka edge of VelociCompanion: the sarama configuration,
// the partitioning marshaler (Kafka key = stream id), the relay's publisher,
// watermill subscribers and routers with Retry and PoisonQueue middleware, a
// health check, and an embedded Kafka-protocol broker (franz-go's kfake) for
// single-binary installations and tests.
//
// Package kafka imports eventstore (the wire format and the Publisher
// interface) and domain; it must not import commands, projections or other
// adapters.
package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
)

// Config says where the events topic lives.
type Config struct {
	// Brokers are the bootstrap brokers, host:port.
	Brokers []string
	// Topic is the events topic. WARNING: renaming it starts an empty topic
	// that every consumer group reads from the beginning.
	Topic string
	// Partitions is the events topic's partition count where this process
	// creates the topic (the embedded broker); real clusters own their topics.
	Partitions int32
	// ClientID names this process to the brokers. Default "velocicompanion".
	ClientID string
	// PoisonTopic receives messages that consumers gave up on. Default
	// PoisonTopic(Topic).
	PoisonTopic string
}

// PoisonTopic returns the default dead-letter topic for topic.
func PoisonTopic(topic string) string { return topic + ".poison" }

func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		return c, errors.New("kafka: no brokers configured")
	}
	if c.Topic == "" {
		return c, errors.New("kafka: no topic configured")
	}
	if c.ClientID == "" {
		c.ClientID = "velocicompanion"
	}
	if c.PoisonTopic == "" {
		c.PoisonTopic = PoisonTopic(c.Topic)
	}
	return c, nil
}

// Version is the Kafka protocol version sarama is configured for. Sarama
// (>= 1.46) negotiates each request down to what the broker advertises, so 3.6
// works with kfake and with Apache Kafka 3.x and 4.x (4.0 dropped the request
// versions older than 2.1 that lower settings would use). Sarama before 1.46
// broke consumer groups against kfake at versions >= 2.4; go.mod pins 1.61.
var Version = sarama.V3_6_0_0

// SaramaConfig returns the sarama configuration shared by publishers and
// subscribers:
//   - producer: acks from all in-sync replicas, idempotent (which needs one
//     in-flight request per broker: that also keeps per-partition order across
//     retries), a few quick retries (the relay retries whole batches on top);
//   - consumer: start from the oldest offset when a group has no committed
//     offset (a new projector reads the whole topic), errors returned.
func SaramaConfig(clientID string) *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = clientID
	sc.Version = Version

	sc.Net.MaxOpenRequests = 1
	sc.Net.DialTimeout = 5 * time.Second

	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond

	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Producer.Retry.Max = 3
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Timeout = 10 * time.Second

	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	return sc
}

// LoggerAdapter adapts an slog logger for watermill. A nil logger means
// slog.Default().
func LoggerAdapter(logger *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLogger(logger)
}

func defaultLogger(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.Default()
	}
	return logger
}

func validate(sc *sarama.Config) error {
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("kafka: sarama config: %w", err)
	}
	return nil
}
