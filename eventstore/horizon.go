package eventstore

import (
	"context"
	"fmt"
)

// The read horizon.
//
// Identity values are taken at insert, not at commit, so a reader that only
// remembered the last position it saw would skip a row whose transaction
// commits late. Readers therefore order by the writing transaction's id and
// read only below a horizon H: a transaction id such that every transaction
// below it that ever wrote to events has finished.
//
// The simplest H is the xmin of a snapshot, the oldest transaction still
// running anywhere in the cluster; but then any long write transaction, of
// any database on the server (or a test in another schema), stalls every
// reader. The horizon here considers only our own writers:
//
//  1. Every writer locks events in ROW EXCLUSIVE mode before it has a
//     transaction id: an INSERT takes its relation lock when the statement
//     starts, before its first row assigns the id, and an explicit append
//     transaction takes it with LOCK TABLE as its first statement.
//  2. The horizon query reads S, the xmax of its snapshot (every id below S
//     is already assigned), then the lock table once, and takes
//     H = min(S, ids of the transactions holding ROW EXCLUSIVE on events).
//
// A writer with an id x < S took its lock before x was assigned, so before S
// was read, and keeps it until it ends: if it is still running it is seen, and
// H <= x. A writer not seen gets its id after S was read, so x >= S >= H.
// Lock release follows commit, so every transaction below H that is not seen
// has committed (or aborted), and a statement that starts after the horizon
// query sees its rows. ReadAll therefore runs the horizon query and the read
// as two statements, each with its own snapshot.
//
// Transaction ids in pg_locks are 32-bit; they are widened to xid8 against S,
// which is within 2^31 of every running transaction by PostgreSQL's
// wraparound protection. Writers that took their ids after the snapshot (at or
// above S, seen because the lock table is read later) do not lower H.
const horizonSQL = `WITH snap AS (
	SELECT pg_snapshot_xmax(pg_current_snapshot())::text::numeric AS s
), locks AS MATERIALIZED (
	SELECT locktype, relation, mode, granted, virtualtransaction, transactionid FROM pg_locks
), writers AS (
	SELECT DISTINCT x.transactionid::text::numeric AS x
	FROM locks r
	JOIN locks x ON x.virtualtransaction = r.virtualtransaction
		AND x.locktype = 'transactionid' AND x.mode = 'ExclusiveLock' AND x.granted
	WHERE r.locktype = 'relation' AND r.relation = 'events'::regclass
		AND r.mode = 'RowExclusiveLock' AND r.granted
)
SELECT (s - COALESCE(max(d) FILTER (WHERE d BETWEEN 1 AND 2147483647), 0))::text::xid8
FROM snap LEFT JOIN LATERAL (SELECT mod(mod(s, 4294967296) - x + 4294967296, 4294967296) AS d FROM writers) w ON true
GROUP BY s`

// lockEventsSQL is the first statement of an explicit append transaction; see
// the read horizon above.
const lockEventsSQL = `LOCK TABLE events IN ROW EXCLUSIVE MODE`

// horizon returns the read horizon: every transaction below it that wrote
// events has finished.
func (s *Store) horizon(ctx context.Context) (uint64, error) {
	var h uint64
	if err := s.pool.QueryRow(ctx, horizonSQL).Scan(&h); err != nil {
		return 0, fmt.Errorf("read horizon: %w", err)
	}
	return h, nil
}
