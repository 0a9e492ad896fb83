package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"velocicompanion/domain/hosts"
	vr "velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
)

// asksForWork holds the events after which the process manager has work at
// once: a request, a cancel or a stop.
var asksForWork = map[string]bool{
	vr.EventCollectionRequested:       true,
	vr.EventCollectionCancelRequested: true,
	vr.EventHuntRequested:             true,
	vr.EventHuntStopRequested:         true,
	hosts.EventQuarantineRequested:    true,
	hosts.EventReleaseRequested:       true,
}

// Wake makes Run look at the due jobs now instead of at its next tick.
func (w *Worker) Wake() {
	select {
	case w.wakeC() <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (w *Worker) wakeC() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	return w.wake
}

// Wakes reads topic through sub (a live subscription: the events topic from
// its newest offset) and calls wake after every event that asks the process
// manager for work, so that a requested collection starts within moments
// rather than at the next poll. The job table stays what the work is decided
// from: a wake-up lost with Kafka only delays a job to the next poll. Wakes
// returns when ctx ends or the subscription does.
func Wakes(ctx context.Context, sub message.Subscriber, topic string, wake func()) error {
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg, ok := <-msgs:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errors.New("the live subscription ended")
			}
			msg.Ack() // a live subscription commits nothing
			if env, err := eventstore.FromMessage(msg, nil); err == nil && asksForWork[env.Name] {
				wake()
			}
		}
	}
}
