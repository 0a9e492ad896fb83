package eventstore

import (
	"context"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
)

// ErrVersionConflict is returned by Append when the stream's version is not the
// expected one. Command handlers retry a few times, then surface it as 409.
var ErrVersionConflict = domain.Conflict("version_conflict", "the resource was changed concurrently; retry")

// AppendRequest is one atomic append to one stream.
type AppendRequest struct {
	Key      Key
	Expected Version        // Any, NoStream or an exact version >= 1
	Events   []domain.Event // at least one
	// EventIDs optionally fixes the event ids (UUIDv7 strings), one per event.
	// Appending events whose ids are already stored, with the same stream and
	// versions, is an idempotent success that returns the original result.
	EventIDs []string
	Metadata Metadata
	// Also, if set, runs in the same transaction before the events are inserted:
	// it writes the secrets (credential tables) the events mention but never carry.
	Also func(ctx context.Context, tx pgx.Tx) error
}

// AppendResult reports where the last appended event landed.
type AppendResult struct {
	Version  Version
	Position int64
	EventIDs []string
}

// Checkpoint is a reader's place in the global order (transaction id, position).
// Readers only ever see rows whose writing transactions are all finished, so
// a Checkpoint never moves past an event that commits later.
type Checkpoint struct {
	TxID     uint64 `json:"tx_id"`
	Position int64  `json:"position"`
}
