package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Publisher delivers committed events to the message broker. Publish returns
// nil only after the broker acknowledged every envelope of envs (acks=all);
// on error some of them may have been delivered, and the relay publishes the
// whole batch again, so delivery is at least once. Publish must keep the order
// of envs among envelopes of the same stream.
type Publisher interface {
	Publish(ctx context.Context, envs []Envelope) error
}

// RelayOptions configures a Relay. Zero values select the defaults.
type RelayOptions struct {
	// Name identifies the relay's checkpoint row and its leader lock. Relays
	// with the same Name on the same schema elect one leader among them.
	// Default "kafka".
	//
	// WARNING: changing Name starts a new checkpoint and republishes every event.
	Name string
	// Batch is the most events read and published at once. Default 1000.
	Batch int
	// Idle is how long the leader waits before polling again once it has
	// caught up. Default 20ms.
	Idle time.Duration
	// Election is how often a follower tries to become leader, and how often an
	// idle leader checks that its lock session is alive. Default 1s.
	Election time.Duration
	// MaxBackoff caps the exponential back-off between failed attempts to
	// publish a batch (or to read or checkpoint one). Default 2s.
	MaxBackoff time.Duration
	// Logger receives leadership changes and errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer, if not nil, receives the relay's Prometheus metrics, labelled
	// with relay=Name.
	Registerer prometheus.Registerer
}

func (o RelayOptions) withDefaults() RelayOptions {
	if o.Name == "" {
		o.Name = "kafka"
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Idle <= 0 {
		o.Idle = 20 * time.Millisecond
	}
	if o.Election <= 0 {
		o.Election = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Relay publishes committed events from the store to a Publisher in the store's
// global (transaction id, position) order, and records how far it got in the
// table relay_checkpoints only after the broker has acknowledged a batch.
//
// Any number of replicas may run a Relay with the same Name: one of them holds
// a session-level advisory lock on a dedicated connection and publishes; the
// others retry every Election. The checkpoint is written through the same
// connection, so a relay whose lock session died can no longer move the
// checkpoint; it notices, steps down and competes for the lock again.
type Relay struct {
	store *Store
	pub   Publisher
	opts  RelayOptions
	log   *slog.Logger
	m     *relayMetrics

	leader atomic.Bool
	mu     sync.Mutex
	cp     Checkpoint // last checkpoint this relay persisted or loaded
}

// NewRelay returns a relay from store to pub. It panics if store or pub is nil.
func NewRelay(store *Store, pub Publisher, opts RelayOptions) *Relay {
	if store == nil || pub == nil {
		panic("eventstore: NewRelay needs a store and a publisher")
	}
	opts = opts.withDefaults()
	return &Relay{
		store: store,
		pub:   pub,
		opts:  opts,
		log:   opts.Logger.With("relay", opts.Name),
		m:     newRelayMetrics(opts.Registerer, opts.Name),
	}
}

// Leader reports whether r currently holds the leader lock.
func (r *Relay) Leader() bool { return r.leader.Load() }

// Checkpoint returns the last checkpoint r loaded or persisted while leading.
// Every event up to it has been acknowledged by the broker.
func (r *Relay) Checkpoint() Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cp
}

func (r *Relay) setCheckpoint(cp Checkpoint) {
	r.mu.Lock()
	r.cp = cp
	r.mu.Unlock()
}

// Run competes for leadership and, while leader, relays events until ctx is
// cancelled. Losing the lock session (a dropped connection) makes it step down
// and compete again. Broker and database failures are logged, counted and
// retried with back-off; Run returns nil once ctx is done.
func (r *Relay) Run(ctx context.Context) error {
	for {
		conn, err := r.elect(ctx)
		if err != nil {
			return nil // ctx is done
		}
		r.leader.Store(true)
		r.m.leader.Set(1)
		r.log.Info("relay is leader")
		err = r.lead(ctx, conn)
		r.leader.Store(false)
		r.m.leader.Set(0)
		r.resign(conn)
		if ctx.Err() != nil {
			return nil
		}
		r.m.errors.WithLabelValues("leadership").Inc()
		r.log.Warn("relay stepped down", "err", err)
		if !sleep(ctx, r.opts.Election) {
			return nil
		}
	}
}

// lockSQL takes the leader lock. The key includes the schema so that stores in
// different schemas of one database (tests, several installations) do not
// contend for one lock.
const lockSQL = `SELECT pg_try_advisory_lock(hashtextextended(
	coalesce(current_schema(), '') || ':velocicompanion.relay:' || $1, 0))`

// elect blocks until r holds the leader lock and returns the connection that
// holds it, or returns ctx.Err().
func (r *Relay) elect(ctx context.Context) (*pgx.Conn, error) {
	var conn *pgx.Conn
	first := true
	for {
		if !first && !sleep(ctx, r.opts.Election) {
			if conn != nil {
				r.resign(conn)
			}
			return nil, ctx.Err()
		}
		first = false
		if conn == nil {
			c, err := pgx.ConnectConfig(ctx, r.store.Pool().Config().ConnConfig.Copy())
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r.m.errors.WithLabelValues("leadership").Inc()
				r.log.Warn("relay cannot connect for the leader lock", "err", err)
				continue
			}
			conn = c
		}
		var ok bool
		if err := conn.QueryRow(ctx, lockSQL, r.opts.Name).Scan(&ok); err != nil {
			r.resign(conn)
			conn = nil
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.m.errors.WithLabelValues("leadership").Inc()
			r.log.Warn("relay cannot try the leader lock", "err", err)
			continue
		}
		if ok {
			return conn, nil
		}
	}
}

// resign closes the lock session, which releases the lock.
func (r *Relay) resign(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// errLostLock reports that the lock session is gone.
var errLostLock = errors.New("leader lock session lost")

// lead relays events while conn holds the leader lock. It returns when ctx is
// done or the lock session fails.
//
// Reading and publishing overlap: a reader goroutine reads the next batch
// while the current one is being published (one batch ahead, in order), which
// matters because both take about as long.
func (r *Relay) lead(ctx context.Context, conn *pgx.Conn) error {
	cp, err := loadCheckpoint(ctx, conn, r.opts.Name)
	if err != nil {
		return err
	}
	r.setCheckpoint(cp)

	readCtx, stopReading := context.WithCancel(ctx)
	batches := make(chan []Envelope, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r.readAhead(readCtx, cp, batches)
	}()
	defer func() {
		stopReading()
		<-readDone
	}()

	check := time.NewTicker(r.opts.Election)
	defer check.Stop()
	lastCheck := time.Now() // last proof that the lock session is alive
	var lastHead time.Time  // last lag measurement against Head
	for {
		var envs []Envelope
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			if time.Since(lastCheck) >= r.opts.Election {
				if err := conn.Ping(ctx); err != nil {
					return fmt.Errorf("%w: %w", errLostLock, err)
				}
				lastCheck = time.Now()
			}
			continue
		case envs = <-batches:
		}
		if err := r.publish(ctx, conn, envs); err != nil {
			return err
		}
		next := Next(envs, cp)
		if err := saveCheckpoint(ctx, conn, r.opts.Name, next); err != nil {
			// The batch is published but not recorded: whoever leads next
			// publishes it again (at least once).
			return fmt.Errorf("%w: save checkpoint: %w", errLostLock, err)
		}
		lastCheck = time.Now()
		cp = next
		r.setCheckpoint(cp)
		r.m.events.Add(float64(len(envs)))
		r.m.delay.Set(time.Since(envs[len(envs)-1].RecordedAt).Seconds())
		if len(envs) == r.opts.Batch && time.Since(lastHead) >= time.Second {
			lastHead = time.Now()
			if head, err := r.store.Head(ctx); err == nil {
				r.m.lag.Set(float64(max(head.Position-cp.Position, 0)))
			}
		}
	}
}

// readAhead reads batches after cp and sends them to out, in order, until ctx
// is done. After a full batch it reads on at once; otherwise it polls every
// Idle. Read errors are counted and retried with back-off.
func (r *Relay) readAhead(ctx context.Context, cp Checkpoint, out chan<- []Envelope) {
	for failures := 0; ; {
		envs, err := r.store.ReadAll(ctx, cp, r.opts.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.m.errors.WithLabelValues("read").Inc()
			r.log.Warn("relay cannot read events", "err", err)
			failures++
			if !sleep(ctx, r.backoffDelay(failures)) {
				return
			}
			continue
		}
		failures = 0
		if len(envs) > 0 {
			select {
			case out <- envs:
			case <-ctx.Done():
				return
			}
			cp = Next(envs, cp)
		} else {
			r.m.lag.Set(0)
		}
		if len(envs) < r.opts.Batch && !sleep(ctx, r.opts.Idle) {
			return
		}
	}
}

// publish publishes envs until the broker acknowledges them all, backing off
// between attempts. It returns early only when ctx is done or the lock
// session is lost.
func (r *Relay) publish(ctx context.Context, conn *pgx.Conn, envs []Envelope) error {
	for attempt := 1; ; attempt++ {
		err := r.pub.Publish(ctx, envs)
		if err == nil {
			if attempt > 1 {
				r.log.Info("relay publishes again", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.m.errors.WithLabelValues("publish").Inc()
		r.log.Warn("relay cannot publish; retrying the batch", "err", err, "attempt", attempt,
			"events", len(envs), "first_position", envs[0].Position)
		if err := r.backoff(ctx, conn, attempt); err != nil {
			return err
		}
	}
}

// backoff waits before the failures'th retry and then checks that the lock session is still alive, so that a
// relay that cannot publish for long notices when it is no longer leader.
func (r *Relay) backoff(ctx context.Context, conn *pgx.Conn, failures int) error {
	if !sleep(ctx, r.backoffDelay(failures)) {
		return ctx.Err()
	}
	if err := conn.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", errLostLock, err)
	}
	return nil
}

// backoffDelay is the wait before the failures'th retry: 50ms doubling up to
// MaxBackoff.
func (r *Relay) backoffDelay(failures int) time.Duration {
	d := 50 * time.Millisecond
	for i := 1; i < failures && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.opts.MaxBackoff)
}

// loadCheckpoint reads the relay's checkpoint; a relay that never ran starts
// from the zero Checkpoint (the beginning).
func loadCheckpoint(ctx context.Context, conn *pgx.Conn, name string) (Checkpoint, error) {
	var cp Checkpoint
	err := conn.QueryRow(ctx,
		`SELECT tx_id, position FROM relay_checkpoints WHERE name = $1`, name).Scan(&cp.TxID, &cp.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, nil
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("load relay checkpoint %s: %w", name, err)
	}
	return cp, nil
}

// saveCheckpoint records cp as the relay's checkpoint.
func saveCheckpoint(ctx context.Context, conn *pgx.Conn, name string, cp Checkpoint) error {
	_, err := conn.Exec(ctx, `INSERT INTO relay_checkpoints (name, tx_id, position, updated_at)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position,
			updated_at = EXCLUDED.updated_at`, name, cp.TxID, cp.Position)
	if err != nil {
		return fmt.Errorf("save relay checkpoint %s: %w", name, err)
	}
	return nil
}

// sleep waits for d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// relayMetrics are the relay's Prometheus metrics.
type relayMetrics struct {
	events prometheus.Counter
	errors *prometheus.CounterVec
	lag    prometheus.Gauge
	delay  prometheus.Gauge
	leader prometheus.Gauge
}

func newRelayMetrics(reg prometheus.Registerer, name string) *relayMetrics {
	labels := prometheus.Labels{"relay": name}
	m := &relayMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "velocicompanion", Subsystem: "relay", Name: "events_total",
			Help:        "Events published to the broker and acknowledged (republished events count again).",
			ConstLabels: labels,
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "velocicompanion", Subsystem: "relay", Name: "errors_total",
			Help:        "Relay failures by stage: read, publish, leadership.",
			ConstLabels: labels,
		}, []string{"stage"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "velocicompanion", Subsystem: "relay", Name: "lag_positions",
			Help:        "Approximate number of committed events not yet published (head position minus checkpoint position).",
			ConstLabels: labels,
		}),
		delay: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "velocicompanion", Subsystem: "relay", Name: "delay_seconds",
			Help:        "Time from recording to acknowledgement of the last published event.",
			ConstLabels: labels,
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "velocicompanion", Subsystem: "relay", Name: "leader",
			Help:        "1 while this replica is the relay leader, else 0.",
			ConstLabels: labels,
		}),
	}
	if reg == nil {
		return m
	}
	m.events = register(reg, m.events)
	m.errors = register(reg, m.errors)
	m.lag = register(reg, m.lag)
	m.delay = register(reg, m.delay)
	m.leader = register(reg, m.leader)
	return m
}

// register registers c, or returns the collector already registered under the
// same description (a second relay with the same name in one process).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("eventstore: register relay metrics: %v", err))
	}
	return c
}
