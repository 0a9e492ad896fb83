package eventstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// leaderLockSQL takes a named leader lock; the key includes the schema, as
// the relay's does, so that installations sharing a database do not contend.
const leaderLockSQL = `SELECT pg_try_advisory_lock(hashtextextended(
	coalesce(current_schema(), '') || ':velocicompanion.leader:' || $1, 0))`

// Lead runs fn while this process holds the session-level advisory lock
// called name, so that one replica of a deployment runs it at a time. It
// tries for the lock every `every`; once it holds it, it runs fn with a
// context that ends when ctx does or when the lock's session is lost (checked
// every `every`), and tries again after fn returns. Lead returns when ctx
// ends; fn's errors are logged, not returned, since another try follows.
func Lead(ctx context.Context, pool *pgxpool.Pool, name string, every time.Duration, log *slog.Logger, fn func(context.Context) error) {
	if every <= 0 {
		every = 5 * time.Second
	}
	for first := true; ; first = false {
		if !first && !sleep(ctx, every) {
			return
		}
		conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot connect for the leader lock", "lock", name, "err", err)
			}
			continue
		}
		var ok bool
		if err := conn.QueryRow(ctx, leaderLockSQL, name).Scan(&ok); err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				log.Warn("cannot try the leader lock", "lock", name, "err", err)
			}
			closeConn(conn)
			continue
		}
		lead(ctx, conn, name, every, log, fn)
		closeConn(conn) // releases the lock
	}
}

// lead runs fn until it returns or the session holding the lock fails.
func lead(ctx context.Context, conn *pgx.Conn, name string, every time.Duration, log *slog.Logger, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				log.Warn("leader task stopped", "lock", name, "err", err)
			}
			return
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, every)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				log.Warn("leader lock session lost", "lock", name, "err", err)
				cancel()
				<-done
				return
			}
		case <-ctx.Done():
			<-done
			return
		}
	}
}
