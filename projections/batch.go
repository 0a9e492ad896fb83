package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/eventstore"
)

// maxBatch bounds how many messages share a transaction.
const maxBatch = 256

// linger bounds how long a batch waits for the messages that the previous
// batch's acks let through (see run).
const linger = time.Millisecond

// errStopped is returned for a message that arrives after its batcher stopped.
var errStopped = fmt.Errorf("runner stopped: %w", context.Canceled)

// batcher applies one projector's messages, grouping those that wait at the
// same time into one transaction (group commit).
type batcher struct {
	r       *Runner
	p       Projector
	jobs    chan *job
	stopped chan struct{}
	// begin starts each transaction and takes the projector's shared lock
	// in the same round trip.
	begin pgx.TxOptions

	lag        prometheus.Gauge
	applied    prometheus.Counter
	duplicates prometheus.Counter
}

// job is one message waiting to be applied.
type job struct {
	env  eventstore.Envelope
	done chan error // buffered; receives exactly one result
}

func (r *Runner) newBatcher(ctx context.Context, p Projector) (*batcher, error) {
	var key int64
	if err := r.cfg.Pool.QueryRow(ctx, `SELECT `+lockKeySQL, p.Name()).Scan(&key); err != nil {
		return nil, fmt.Errorf("lock key of %s: %w", p.Name(), err)
	}
	return &batcher{
		r:          r,
		p:          p,
		jobs:       make(chan *job),
		stopped:    make(chan struct{}),
		begin:      pgx.TxOptions{BeginQuery: fmt.Sprintf("BEGIN; SELECT pg_advisory_xact_lock_shared(%d)", key)},
		lag:        r.metrics.lag.WithLabelValues(p.Name()),
		applied:    r.metrics.applied.WithLabelValues(p.Name()),
		duplicates: r.metrics.duplicates.WithLabelValues(p.Name()),
	}, nil
}

// handle is the watermill handler: it decodes msg and waits until its
// transaction committed (nil: ack) or failed (an error: nack).
func (b *batcher) handle(msg *message.Message) (err error) {
	ctx := msg.Context()
	defer func() {
		if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %w", context.Canceled, err)
		}
	}()
	env, err := eventstore.FromMessage(msg, b.r.cfg.Codec)
	if err != nil {
		return b.r.cfg.Permanent(fmt.Errorf("projector %s: %w", b.p.Name(), err))
	}
	if env.Position <= 0 {
		return b.r.cfg.Permanent(fmt.Errorf("projector %s: message %s has no position", b.p.Name(), msg.UUID))
	}
	j := &job{env: env, done: make(chan error, 1)}
	select {
	case b.jobs <- j:
	case <-b.stopped:
		return errStopped
	}
	return <-j.done
}

// run applies jobs until ctx ends. Every job it receives gets a result.
//
// One transaction at a time: concurrent transactions of one projector would
// contend on its hot rows (per-tenant totals, say) and could deadlock when
// they hold several tenants' rows; the batch is the concurrency instead.
//
// The subscriber delivers a partition's next message after the previous ack,
// so under a backlog each partition whose message was in the last batch sends
// one again a moment after the commit. A batch therefore waits, at most
// linger, until it has as many messages as the last one had; otherwise the
// first arrival would start a transaction alone and the others would queue
// behind it. Without a backlog batches have about one message and seldom wait.
func (b *batcher) run(ctx context.Context) {
	defer close(b.stopped)
	timer := time.NewTimer(linger)
	expect := 1
	for {
		var batch []*job
		select {
		case <-ctx.Done():
			return
		case j := <-b.jobs:
			batch = append(batch, j)
		}
		timer.Reset(linger)
	gather:
		for len(batch) < maxBatch {
			if len(batch) >= expect {
				select {
				case j := <-b.jobs:
					batch = append(batch, j)
					continue
				default:
					break gather
				}
			}
			select {
			case j := <-b.jobs:
				batch = append(batch, j)
			case <-timer.C:
				break gather
			case <-ctx.Done():
				break gather
			}
		}
		timer.Stop()
		expect = len(batch)
		b.process(ctx, batch)
	}
}

// process applies batch in one transaction or, if that fails, each job in a
// transaction of its own, and answers every job.
func (b *batcher) process(ctx context.Context, batch []*job) {
	envs := make([]eventstore.Envelope, len(batch))
	for i, j := range batch {
		envs[i] = j.env
	}
	fresh, err := b.apply(ctx, envs)
	if err != nil && len(batch) > 1 && ctx.Err() == nil {
		for _, j := range batch {
			b.process(ctx, []*job{j})
		}
		return
	}
	now := b.r.cfg.Now()
	for i, j := range batch {
		switch {
		case err != nil:
		case fresh[i]:
			b.applied.Inc()
			b.lag.Set(now.Sub(j.env.RecordedAt).Seconds())
		default:
			b.duplicates.Inc()
		}
		j.done <- err
	}
}

// apply applies the events of envs that projector_seen does not have yet, in
// one transaction, and reports which ones it applied.
func (b *batcher) apply(ctx context.Context, envs []eventstore.Envelope) (fresh []bool, err error) {
	name := b.p.Name()
	fresh = make([]bool, len(envs))
	err = pgx.BeginTxFunc(ctx, b.r.cfg.Pool, b.begin, func(tx pgx.Tx) (err error) {
		defer func() {
			// A panicking projector fails its transaction, so that the retry
			// and poison-queue middleware see it.
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		// One round trip records every tenant's positions.
		groups := byTenantIndex(envs)
		q := &pgx.Batch{}
		for _, group := range groups {
			positions := make([]int64, len(group))
			ids := make([]string, len(group))
			for k, i := range group {
				positions[k], ids[k] = envs[i].Position, envs[i].EventID
			}
			tenant := string(envs[group[0]].Tenant)
			q.Queue(`SELECT set_config('app.tenant_id', $1::text, true)`, tenant)
			q.Queue(`INSERT INTO projector_seen (projector, position, event_id, tenant_id)
				SELECT $1, u.position, u.event_id::uuid, $4 FROM unnest($2::bigint[], $3::text[]) AS u(position, event_id)
				ON CONFLICT (projector, position) DO NOTHING RETURNING position`,
				name, positions, ids, tenant)
		}
		todo, err := b.record(ctx, tx, q, envs, groups, fresh)
		if err != nil {
			return err
		}
		// The last tenant's scope is still set: apply its events first.
		for g := len(groups) - 1; g >= 0; g-- {
			if len(todo[g]) == 0 {
				continue
			}
			if g != len(groups)-1 {
				if err := setTenant(ctx, tx, todo[g][0].Tenant); err != nil {
					return err
				}
			}
			if err := applyScoped(ctx, tx, b.p, todo[g]); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case err != nil && len(envs) == 1:
		return nil, fmt.Errorf("projector %s: %w", name, err)
	case err != nil:
		return nil, fmt.Errorf("projector %s: apply a batch of %d events: %w", name, len(envs), err)
	}
	return fresh, nil
}

// record sends q (per tenant group its scope and its projector_seen insert),
// marks in fresh the events whose row is new and returns them per group.
func (b *batcher) record(ctx context.Context, tx pgx.Tx, q *pgx.Batch, envs []eventstore.Envelope, groups [][]int, fresh []bool) (todo [][]eventstore.Envelope, err error) {
	br := tx.SendBatch(ctx, q)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("record positions: %w", cerr)
		}
	}()
	todo = make([][]eventstore.Envelope, len(groups))
	for g, group := range groups {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("set tenant: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("record positions: %w", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, fmt.Errorf("record positions: %w", err)
		}
		isNew := make(map[int64]bool, len(inserted))
		for _, pos := range inserted {
			isNew[pos] = true
		}
		for _, i := range group {
			if isNew[envs[i].Position] {
				delete(isNew, envs[i].Position) // a position twice in a batch is applied once
				fresh[i] = true
				todo[g] = append(todo[g], envs[i])
			}
		}
	}
	return todo, nil
}
