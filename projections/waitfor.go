package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
)

// ErrNotCaughtUp is returned by WaitFor when the read model has not applied
// the awaited position in time. Callers decide whether to serve stale data or
// answer 503.
var ErrNotCaughtUp = domain.Unavailable("not_caught_up", "the read model has not caught up with the latest changes yet")

// The polling backoff of WaitFor: it starts small because the runner usually
// applies an event within milliseconds of the command's response.
const (
	waitFirst = time.Millisecond
	waitMax   = 25 * time.Millisecond
)

// recentWindow is how many global positions before the awaited one WaitFor
// also waits for (those of the tenant).
const recentWindow = 5000

// WaitFor gives read-your-writes: it returns nil once projector has applied
// the event at position (an event of tenant) and the tenant's events just
// before it, or ErrNotCaughtUp after max. The projector consumes Kafka
// partitions in parallel, so a later write can be applied before an earlier
// one of another stream: a client that deleted one artifact and then added
// another, and waits for the add, must not see the deleted one. "Just
// before" is the last recentWindow positions: older events were applied
// long ago in practice, and the check stays one short index scan.
// Position 0 (or less) returns nil at once. pool may be the app pool: the
// check runs scoped to tenant, so a tenant can only wait for its own events.
func WaitFor(ctx context.Context, pool *pgxpool.Pool, projector string, tenant domain.TenantID, position int64, max time.Duration) error {
	if position <= 0 {
		return nil
	}
	deadline := time.Now().Add(max)
	wait := waitFirst
	var timer *time.Timer
	for {
		ok, err := seen(ctx, pool, projector, tenant, position)
		if err != nil {
			return fmt.Errorf("wait for %s to apply position %d: %w", projector, position, err)
		}
		if ok {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ErrNotCaughtUp
		}
		if timer == nil {
			timer = time.NewTimer(min(wait, left))
			defer timer.Stop()
		} else {
			timer.Reset(min(wait, left))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		wait = min(2*wait, waitMax)
	}
}

// seen reports whether projector_seen has (projector, position) for tenant,
// and every position of tenant's events in the recentWindow before it.
// Both statements go in one round trip, which Postgres runs as one implicit
// transaction, so the transaction-local tenant applies to the query.
func seen(ctx context.Context, pool *pgxpool.Pool, projector string, tenant domain.TenantID, position int64) (bool, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('app.tenant_id', $1::text, true)`, string(tenant))
	b.Queue(`SELECT EXISTS (SELECT 1 FROM projector_seen WHERE projector = $1 AND position = $2)
		AND NOT EXISTS (SELECT 1 FROM events e
			WHERE e.position < $2 AND e.position >= $2 - $4::bigint AND e.tenant_id = $3
				AND NOT EXISTS (SELECT 1 FROM projector_seen s WHERE s.projector = $1 AND s.position = e.position))`,
		projector, position, string(tenant), recentWindow)
	br := pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return false, err
	}
	var ok bool
	if err := br.QueryRow().Scan(&ok); err != nil {
		return false, err
	}
	return ok, br.Close()
}
