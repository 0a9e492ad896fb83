package kafka

import (
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"velocicompanion/eventstore"
)

// Marshaler returns the marshaler every publisher and subscriber of ours uses:
// watermill-kafka's partitioning marshaler keyed by the stream id header, so all
// events of one stream land in one partition, in order. (watermill-kafka's
// DefaultMarshaler sets no key, which would spread a stream over partitions.)
// Messages without a stream id are keyed by their UUID.
func Marshaler() kafka.MarshalerUnmarshaler {
	return kafka.NewWithPartitioningMarshaler(partitionKey)
}

func partitionKey(_ string, msg *message.Message) (string, error) {
	if id := msg.Metadata.Get(eventstore.HeaderStreamID); id != "" {
		return id, nil
	}
	return msg.UUID, nil
}
