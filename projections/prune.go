package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/eventstore"
)

// seenKeepPositions is how many of the store's newest positions PruneSeen
// never prunes: twice WaitFor's look-back.
var seenKeepPositions int64 = 10_000

// PruneSeen deletes the rows of projector_seen (every projector's) that were
// applied more than keep before now, in batches of batch rows
// (eventstore.DeleteBatches), and returns how many it deleted. keep <= 0
// deletes nothing. owner must be a pool of the owner role (vc_app may not
// delete there).
//
// A row is what makes a redelivered event a no-op, so it may only go once
// its event can no longer be delivered to the projector again. Kafka
// redelivers from a consumer group's committed offset, which trails the
// runner's commits by moments; but a group whose offsets are gone (Kafka
// expires an idle group's offsets after offsets.retention.minutes, 7 days by
// default, kfake too) starts again from the oldest record of the topic,
// because new projectors must read the whole topic. So keep must exceed the
// topic's retention.ms with a margin: an event applied before now-keep was
// published before it too (a message is applied after it is published), and
// is no longer in the topic. A topic that keeps its records forever
// (retention.ms -1) allows no pruning at all: leave keep at zero.
//
// Whatever their age, the rows of the newest seenKeepPositions positions of
// the store stay: WaitFor asks about positions that commands returned moments
// earlier and looks back at a tenant's events a few thousand positions before
// them, which on a quiet installation may have been applied long ago.
// notifications.Delivered asks about recent positions too. Rebuild copes
// with rows that are gone: trimShadowSeen keeps the shadow's rows the live
// table lacks, and the swap merges them back.
func PruneSeen(ctx context.Context, owner *pgxpool.Pool, now time.Time, keep time.Duration, batch int) (int64, error) {
	if keep <= 0 {
		return 0, nil
	}
	var head int64
	if err := owner.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&head); err != nil {
		return 0, fmt.Errorf("prune projector_seen: newest position: %w", err)
	}
	n, err := eventstore.DeleteBatches(ctx, owner, batch, `DELETE FROM projector_seen WHERE (projector, position) IN (
		SELECT projector, position FROM projector_seen WHERE applied_at < $2 AND position <= $3 LIMIT $1)`,
		now.Add(-keep), head-seenKeepPositions)
	if err != nil {
		return n, fmt.Errorf("prune projector_seen: %w", err)
	}
	return n, nil
}
