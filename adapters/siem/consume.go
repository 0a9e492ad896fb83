package siem

import (
	"context"
	"errors"
	"fmt"

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

// Consume reads topic through sub (a subscriber in the destination's own
// consumer group) and hands every event to f, acknowledging a message only
// when f is done with it, so delivery is at least once. A message that does
// not decode is skipped: it has no trustworthy tenant, so it belongs to no
// destination. Consume returns when ctx ends or the subscription closes.
func Consume(ctx context.Context, sub message.Subscriber, topic string, f *Forwarder) error {
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		return fmt.Errorf("subscribe %s for %s: %w", topic, f.ID, err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg, ok := <-msgs:
			if !ok {
				return ctx.Err()
			}
			env, err := eventstore.FromMessage(msg, nil)
			if err != nil {
				// Not ours to judge: only a tenant-matched event reaches a
				// destination, and a broken message has no trustworthy tenant.
				msg.Ack()
				continue
			}
			if err := f.Handle(ctx, env); err != nil {
				msg.Nack()
				if errors.Is(err, context.Canceled) || ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			msg.Ack()
		}
	}
}
