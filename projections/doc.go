// Package projections runs read-model projectors: it owns the runner that feeds
// each projector from its own Kafka consumer group, the projector_seen table
// that makes redelivery harmless, read-your-writes waiting (WaitFor), and the
// rebuild of a read model from the event store into a shadow schema that is
// swapped in while queries keep working.
//
// The read models themselves live in sub-packages (projections/<readmodel>),
// each implementing Projector.
//
// Package projections imports eventstore and domain; it must not import
// commands or any adapter. The Kafka subscriber and the retry and poison-queue
// middleware reach it as injected values (SubscriberFactory,
// []message.HandlerMiddleware).
package projections
