package siem

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"velocicompanion/eventstore"
)

// GroupPrefix starts the Kafka consumer group of every destination, followed
// by the destination id: each destination is its own consumer, with its own
// offsets, so a slow or broken destination delays only itself.
//
// WARNING: durable: changing it makes every destination read the topic again
// from the beginning.
const GroupPrefix = "siem.v1."

// Group returns the consumer group of the destination id.
func Group(id string) string { return GroupPrefix + id }

// Metadata keys a dead-lettered message carries besides the event's headers.
const (
	DeadDestination = "siem_destination"
	DeadReason      = "siem_reason"
)

// KafkaDeadLetter returns a DeadLetter that publishes the event, as the relay
// wrote it, to topic with the destination and the reason in its metadata.
func KafkaDeadLetter(pub message.Publisher, topic string) DeadLetter {
	return func(_ context.Context, env eventstore.Envelope, destination string, reason error) error {
		msg, err := eventstore.ToMessage(env)
		if err != nil {
			return err
		}
		msg.Metadata.Set(DeadDestination, destination)
		msg.Metadata.Set(DeadReason, reason.Error())
		return pub.Publish(topic, msg)
	}
}

// BatchSubscriber reads a topic in the destination's own consumer group and
// hands its messages to handle in batches: each batch holds messages of one
// partition in offset order, a partition's batches come one after another,
// and a batch counts as consumed only when handle returns nil (otherwise it
// is handed again), so delivery is at least once. ConsumeBatches returns
// when ctx ends. adapters/kafka's BatchSubscriber implements it.
type BatchSubscriber interface {
	ConsumeBatches(ctx context.Context, topic string, handle func(ctx context.Context, msgs []*message.Message) error) error
}

// Consume reads topic through sub and hands the events of each batch to f in
// one HandleBatch call, one batch at a time, so a syslog destination gets
// them in one write. A batch is consumed only when f is done with all of its
// events, so delivery is at least once, in order within a partition (and so
// within a stream). A message that does not decode is skipped: it has no
// trustworthy tenant, so it belongs to no destination. Consume returns when
// ctx ends.
func Consume(ctx context.Context, sub BatchSubscriber, topic string, f *Forwarder) error {
	var mu sync.Mutex // one HandleBatch at a time: one Send at a time per destination
	err := sub.ConsumeBatches(ctx, topic, func(ctx context.Context, msgs []*message.Message) error {
		envs := make([]eventstore.Envelope, 0, len(msgs))
		for _, msg := range msgs {
			env, err := eventstore.FromMessage(msg, nil)
			if err != nil {
				// Not ours to judge: only a tenant-matched event reaches a
				// destination, and a broken message has no trustworthy tenant.
				continue
			}
			envs = append(envs, env)
		}
		if len(envs) == 0 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		return f.HandleBatch(ctx, envs)
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("consume %s for %s: %w", topic, f.ID, err)
	}
	return ctx.Err()
}
