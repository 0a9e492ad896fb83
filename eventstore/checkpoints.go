package eventstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/domain"
)

// Signed audit checkpoints.
//
// The per-stream hash chain (hash.go) proves each stream's history, but not the
// order of events across streams, nor that a stream's last events were not
// removed. Checkpoints close both gaps, per tenant: a running digest over the
// tenant's events in the global (tx_id, position) order, signed with Ed25519 at
// intervals by a key the database never sees.
//
// The digest of checkpoint k of a tenant is
//
//	d_k = SHA-256(lp("velocicompanion.audit.digest.v1") || d_(k-1) || lp(tenant_id) || e_1 || ... || e_n)
//
// where d_0 is 32 zero bytes, e_1 ... e_n are the tenant's events after the
// event checkpoint k-1 ends at, up to and including the one checkpoint k ends at
// (up_to), in (tx_id, position) order, each encoded as
//
//	be64(tx_id) || be64(position) || event_id (16 bytes) || hash (32 bytes)
//
// (be64 and lp as in hash.go). Because each event's hash covers its content and
// its predecessor in the stream, the digest pins every event's content, its
// place in the global order and the set of events: an edited, removed, inserted
// or reordered event changes it.
//
// A checkpoint row is signed over
//
//	lp("velocicompanion.audit.checkpoint.v1") || lp(tenant_id) || be64(seq)
//	|| be64(up_to_tx_id) || be64(up_to_position) || be64(events) || lp(digest)
//	|| be64(signed_at) || lp(key_id)
//
// with signed_at in microseconds since the Unix epoch, events the number of the
// tenant's events covered since the first, and key_id KeyID of the public key.
//
// Checkpoints only ever cover events below the read horizon (horizon.go): every
// transaction that could still add an event at or before up_to has finished, so
// a row that later appears at or before a checkpoint was put there by hand.
//
// What checkpoints cannot show on their own: the removal of the newest
// checkpoints together with the events after the remaining ones. Compare the
// latest checkpoint with a copy kept elsewhere (the Kafka topic, a SIEM, a
// printed sequence number) to anchor the head.
const (
	digestFormatTag     = "velocicompanion.audit.digest.v1"
	checkpointFormatTag = "velocicompanion.audit.checkpoint.v1"
)

// AuditCheckpoint is one signed checkpoint of a tenant's running digest.
type AuditCheckpoint struct {
	Tenant    domain.TenantID
	Seq       int64      // 1, 2, … per tenant
	UpTo      Checkpoint // the last event covered, in the global order
	Events    int64      // the tenant's events covered since the first checkpoint
	Digest    []byte     // SHA-256, chained from the previous checkpoint's
	SignedAt  time.Time
	KeyID     string
	Signature []byte // Ed25519
}

func appendLP(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// signedMessage returns the bytes cp's signature covers.
func (cp *AuditCheckpoint) signedMessage() []byte {
	b := make([]byte, 0, 160+len(cp.Tenant)+len(cp.KeyID))
	b = appendLP(b, checkpointFormatTag)
	b = appendLP(b, string(cp.Tenant))
	b = binary.BigEndian.AppendUint64(b, uint64(cp.Seq))
	b = binary.BigEndian.AppendUint64(b, cp.UpTo.TxID)
	b = binary.BigEndian.AppendUint64(b, uint64(cp.UpTo.Position))
	b = binary.BigEndian.AppendUint64(b, uint64(cp.Events))
	b = appendLP(b, string(cp.Digest))
	b = binary.BigEndian.AppendUint64(b, uint64(cp.SignedAt.UnixMicro()))
	b = appendLP(b, cp.KeyID)
	return b
}

// KeyID names an Ed25519 public key: "ed25519:" and the first 8 bytes of its
// SHA-256 in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// CheckpointSigner signs audit checkpoints with an Ed25519 private key.
type CheckpointSigner struct {
	key ed25519.PrivateKey
	id  string
}

// NewCheckpointSigner returns a signer for key: a 32-byte Ed25519 seed or a
// 64-byte private key (seed followed by its public key).
func NewCheckpointSigner(key []byte) (*CheckpointSigner, error) {
	var priv ed25519.PrivateKey
	switch len(key) {
	case ed25519.SeedSize:
		priv = ed25519.NewKeyFromSeed(key)
	case ed25519.PrivateKeySize:
		priv = ed25519.NewKeyFromSeed(key[:ed25519.SeedSize])
		if !bytes.Equal(priv, key) {
			return nil, errors.New("audit signing key: the public half does not belong to the seed")
		}
	default:
		return nil, fmt.Errorf("audit signing key: want a %d-byte Ed25519 seed or a %d-byte private key, have %d bytes",
			ed25519.SeedSize, ed25519.PrivateKeySize, len(key))
	}
	return &CheckpointSigner{key: priv, id: KeyID(priv.Public().(ed25519.PublicKey))}, nil
}

// PublicKey returns the key that verifies s's signatures.
func (s *CheckpointSigner) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// KeyID returns KeyID of s's public key.
func (s *CheckpointSigner) KeyID() string { return s.id }

// sign sets cp's KeyID and Signature.
func (s *CheckpointSigner) sign(cp *AuditCheckpoint) {
	cp.KeyID = s.id
	cp.Signature = ed25519.Sign(s.key, cp.signedMessage())
}

// CheckpointKeys are the public keys that verify checkpoints, by KeyID: the
// current signing key's and those rotated out.
type CheckpointKeys map[string]ed25519.PublicKey

// NewCheckpointKeys indexes pubs by KeyID.
func NewCheckpointKeys(pubs ...ed25519.PublicKey) CheckpointKeys {
	k := make(CheckpointKeys, len(pubs))
	for _, p := range pubs {
		k[KeyID(p)] = p
	}
	return k
}

// verify returns "" if cp's signature verifies with its key, else why not.
func (k CheckpointKeys) verify(cp *AuditCheckpoint) string {
	if len(k) == 0 {
		return "no public key is configured to verify the checkpoint signatures"
	}
	pub, ok := k[cp.KeyID]
	if !ok {
		return fmt.Sprintf("checkpoint %d is signed by key %q, which is not among the verification keys", cp.Seq, cp.KeyID)
	}
	if !ed25519.Verify(pub, cp.signedMessage(), cp.Signature) {
		return fmt.Sprintf("the signature of checkpoint %d does not verify: the checkpoint was altered or forged", cp.Seq)
	}
	return ""
}

// runningDigest computes one checkpoint's digest.
type runningDigest struct {
	h   hash.Hash
	buf []byte
}

func newRunningDigest(tenant domain.TenantID, prev []byte) *runningDigest {
	d := &runningDigest{h: sha256.New(), buf: make([]byte, 0, 64+len(tenant))}
	d.buf = appendLP(d.buf, digestFormatTag)
	d.buf = append(d.buf, prev...)
	d.buf = appendLP(d.buf, string(tenant))
	d.h.Write(d.buf)
	return d
}

func (d *runningDigest) add(txID uint64, position int64, eventID [16]byte, sum []byte) {
	d.buf = binary.BigEndian.AppendUint64(d.buf[:0], txID)
	d.buf = binary.BigEndian.AppendUint64(d.buf, uint64(position))
	d.buf = append(d.buf, eventID[:]...)
	d.buf = append(d.buf, sum...)
	d.h.Write(d.buf)
}

func (d *runningDigest) sum() []byte { return d.h.Sum(nil) }

// execQuerier is a pool or a connection.
type execQuerier interface {
	querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

const checkpointColumns = `tenant_id, seq, up_to_tx_id, up_to_position, events, digest, signed_at, key_id, signature`

func scanCheckpoint(row pgx.Row) (AuditCheckpoint, error) {
	var cp AuditCheckpoint
	var tenant string
	err := row.Scan(&tenant, &cp.Seq, &cp.UpTo.TxID, &cp.UpTo.Position, &cp.Events, &cp.Digest, &cp.SignedAt,
		&cp.KeyID, &cp.Signature)
	cp.Tenant = domain.TenantID(tenant)
	cp.SignedAt = cp.SignedAt.UTC()
	return cp, err
}

// LatestAuditCheckpoint returns the newest checkpoint of tenant; ok is false
// when it has none.
func (s *Store) LatestAuditCheckpoint(ctx context.Context, tenant domain.TenantID) (cp AuditCheckpoint, ok bool, err error) {
	return latestCheckpoint(ctx, s.pool, tenant)
}

func latestCheckpoint(ctx context.Context, db querier, tenant domain.TenantID) (AuditCheckpoint, bool, error) {
	cp, err := scanCheckpoint(db.QueryRow(ctx, `SELECT `+checkpointColumns+` FROM audit_checkpoints
		WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, string(tenant)))
	if errors.Is(err, pgx.ErrNoRows) {
		return AuditCheckpoint{}, false, nil
	}
	if err != nil {
		return AuditCheckpoint{}, false, fmt.Errorf("latest audit checkpoint of %s: %w", tenant, err)
	}
	return cp, true, nil
}

// AuditCheckpoints returns every checkpoint of tenant in sequence order.
func (s *Store) AuditCheckpoints(ctx context.Context, tenant domain.TenantID) ([]AuditCheckpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+checkpointColumns+` FROM audit_checkpoints
		WHERE tenant_id = $1 ORDER BY seq`, string(tenant))
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints of %s: %w", tenant, err)
	}
	cps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditCheckpoint, error) { return scanCheckpoint(r) })
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints of %s: %w", tenant, err)
	}
	return cps, nil
}

// distinctTenantsSQL lists the tenants of a table with a loose index scan
// (one index probe per tenant rather than a scan of every row). %s is a
// constant table name whose index leads with tenant_id.
const distinctTenantsSQL = `WITH RECURSIVE t(tenant_id) AS (
	(SELECT tenant_id FROM %[1]s ORDER BY tenant_id LIMIT 1)
	UNION ALL
	SELECT (SELECT x.tenant_id FROM %[1]s x WHERE x.tenant_id > t.tenant_id ORDER BY x.tenant_id LIMIT 1)
	FROM t WHERE t.tenant_id IS NOT NULL
)
SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL`

var (
	eventTenantsSQL = fmt.Sprintf(distinctTenantsSQL, "events")
	auditTenantsSQL = `SELECT tenant_id FROM (` + eventTenantsSQL + `) e UNION ` +
		`SELECT tenant_id FROM (` + fmt.Sprintf(distinctTenantsSQL, "audit_checkpoints") + `) c ORDER BY 1`
)

func queryTenants(ctx context.Context, db querier, sql string) ([]domain.TenantID, error) {
	rows, err := db.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out := make([]domain.TenantID, len(ids))
	for i, id := range ids {
		out[i] = domain.TenantID(id)
	}
	return out, nil
}

// AuditTenants lists every tenant that has events or checkpoints, in order.
// A tenant whose events were all removed still has its checkpoints.
func (s *Store) AuditTenants(ctx context.Context) ([]domain.TenantID, error) {
	return queryTenants(ctx, s.pool, auditTenantsSQL)
}

// CheckpointerOptions configures a Checkpointer. Zero values select the
// defaults.
type CheckpointerOptions struct {
	// Interval is how often the leader makes checkpoints (for the tenants
	// with new events). Default 1 minute.
	Interval time.Duration
	// MaxEvents is the most events one checkpoint covers; a tenant with more
	// new events gets several. Default 100,000.
	MaxEvents int
	// Election is how often a follower tries to become leader. Default 5s.
	Election time.Duration
	// Logger receives leadership changes and errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer, if not nil, receives the checkpointer's metrics.
	Registerer prometheus.Registerer
}

func (o CheckpointerOptions) withDefaults() CheckpointerOptions {
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 100_000
	}
	if o.Election <= 0 {
		o.Election = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// checkpointPage is how many events a checkpoint reads per query.
const checkpointPage = 5000

// Checkpointer makes signed audit checkpoints. Any number of replicas may run
// one: the one that holds a session-level advisory lock on a dedicated
// connection makes the checkpoints, through that connection, every Interval;
// the others retry every Election.
type Checkpointer struct {
	store  *Store
	signer *CheckpointSigner
	opts   CheckpointerOptions
	log    *slog.Logger
	m      *checkpointMetrics
	leader atomic.Bool
}

// NewCheckpointer returns a checkpointer over store that signs with signer. It
// panics if either is nil.
func NewCheckpointer(store *Store, signer *CheckpointSigner, opts CheckpointerOptions) *Checkpointer {
	if store == nil || signer == nil {
		panic("eventstore: NewCheckpointer needs a store and a signer")
	}
	opts = opts.withDefaults()
	return &Checkpointer{
		store:  store,
		signer: signer,
		opts:   opts,
		log:    opts.Logger.With("component", "audit-checkpoints"),
		m:      newCheckpointMetrics(opts.Registerer),
	}
}

// Leader reports whether c currently holds the leader lock.
func (c *Checkpointer) Leader() bool { return c.leader.Load() }

// Once makes one round of checkpoints through the store's pool, outside the
// leader election, and returns how many it made: one (or more, beyond
// MaxEvents) for each tenant with events after its latest checkpoint. Running
// it concurrently with a leader fails one of the two writes, never corrupts.
func (c *Checkpointer) Once(ctx context.Context) (int, error) {
	return c.round(ctx, c.store.pool)
}

// Run competes for leadership and, while leader, makes checkpoints until ctx
// is cancelled. Failures are logged, counted and retried; Run returns nil once
// ctx is done.
func (c *Checkpointer) Run(ctx context.Context) error {
	for {
		conn, err := c.elect(ctx)
		if err != nil {
			return nil // ctx is done
		}
		c.leader.Store(true)
		c.m.leader.Set(1)
		c.log.Info("audit checkpointer is leader", "key_id", c.signer.KeyID(), "interval", c.opts.Interval)
		err = c.lead(ctx, conn)
		c.leader.Store(false)
		c.m.leader.Set(0)
		closeConn(conn)
		if ctx.Err() != nil {
			return nil
		}
		c.m.errors.Inc()
		c.log.Warn("audit checkpointer stepped down", "err", err)
		if !sleep(ctx, c.opts.Election) {
			return nil
		}
	}
}

// checkpointLockSQL takes the leader lock; the key includes the schema, as
// the relay's does.
const checkpointLockSQL = `SELECT pg_try_advisory_lock(hashtextextended(
	coalesce(current_schema(), '') || ':velocicompanion.audit-checkpoints', 0))`

// elect blocks until c holds the leader lock and returns the connection that
// holds it, or returns ctx.Err(). A follower keeps its connection between
// attempts.
func (c *Checkpointer) elect(ctx context.Context) (*pgx.Conn, error) {
	var conn *pgx.Conn
	for first := true; ; first = false {
		if !first && !sleep(ctx, c.opts.Election) {
			if conn != nil {
				closeConn(conn)
			}
			return nil, ctx.Err()
		}
		if conn == nil {
			var err error
			if conn, err = pgx.ConnectConfig(ctx, c.store.pool.Config().ConnConfig.Copy()); err != nil {
				conn = nil
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				c.m.errors.Inc()
				c.log.Warn("audit checkpointer cannot connect for the leader lock", "err", err)
				continue
			}
		}
		var ok bool
		if err := conn.QueryRow(ctx, checkpointLockSQL).Scan(&ok); err != nil {
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			c.m.errors.Inc()
			c.log.Warn("audit checkpointer cannot try the leader lock", "err", err)
			continue
		}
		if ok {
			return conn, nil
		}
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// lead makes checkpoints every Interval while conn holds the lock. It returns
// when ctx is done or the lock session fails.
func (c *Checkpointer) lead(ctx context.Context, conn *pgx.Conn) error {
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		if _, err := c.round(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.m.errors.Inc()
			c.log.Warn("audit checkpoint round failed", "err", err)
			if perr := conn.Ping(ctx); perr != nil {
				return fmt.Errorf("%w: %w", errLostLock, perr)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// round makes the checkpoints of every tenant with new events through db.
func (c *Checkpointer) round(ctx context.Context, db execQuerier) (int, error) {
	h, err := c.store.horizon(ctx)
	if err != nil {
		return 0, err
	}
	tenants, err := queryTenants(ctx, db, eventTenantsSQL)
	if err != nil {
		return 0, err
	}
	made := 0
	for _, t := range tenants {
		n, err := c.checkpointTenant(ctx, db, t, h)
		made += n
		if err != nil {
			return made, err
		}
	}
	return made, nil
}

// checkpointTenant checkpoints tenant's events below the read horizon h that
// follow its latest checkpoint.
func (c *Checkpointer) checkpointTenant(ctx context.Context, db execQuerier, tenant domain.TenantID, h uint64) (int, error) {
	last, found, err := latestCheckpoint(ctx, db, tenant)
	if err != nil {
		return 0, err
	}
	for made := 0; ; {
		prev, after, seq, events := zeroHash[:], Checkpoint{}, int64(0), int64(0)
		if found {
			prev, after, seq, events = last.Digest, last.UpTo, last.Seq, last.Events
		}
		d := newRunningDigest(tenant, prev)
		n, upTo, err := feedDigest(ctx, db, d, tenant, after, h, c.opts.MaxEvents)
		if err != nil || n == 0 {
			return made, err
		}
		cp := AuditCheckpoint{
			Tenant: tenant, Seq: seq + 1, UpTo: upTo, Events: events + n, Digest: d.sum(),
			SignedAt: c.store.now().UTC().Truncate(time.Microsecond),
		}
		c.signer.sign(&cp)
		if _, err := db.Exec(ctx, `INSERT INTO audit_checkpoints (`+checkpointColumns+`)
			VALUES ($1, $2, $3::xid8, $4, $5, $6, $7, $8, $9)`,
			string(cp.Tenant), cp.Seq, cp.UpTo.TxID, cp.UpTo.Position, cp.Events, cp.Digest, cp.SignedAt,
			cp.KeyID, cp.Signature); err != nil {
			return made, fmt.Errorf("write audit checkpoint %d of %s: %w", cp.Seq, tenant, err)
		}
		made++
		c.m.checkpoints.Inc()
		last, found = cp, true
		if n < int64(c.opts.MaxEvents) {
			return made, nil
		}
	}
}

// tenantHashesSQL reads one tenant's events in the global order below the
// read horizon $4, like ReadAll. The row comparison spans the columns of
// events_tenant_idx from the first, which makes it an index condition: a
// tenant without new events costs one index probe.
const tenantHashesSQL = `SELECT tx_id, position, event_id, hash FROM events
WHERE tenant_id = $1 AND (tenant_id, tx_id, position) > ($1, $2::xid8, $3::bigint) AND tx_id < $4::xid8
ORDER BY tx_id, position
LIMIT $5`

// feedDigest adds to d up to maxEvents of tenant's events after `after` and below h,
// and returns how many and where the last one is.
func feedDigest(ctx context.Context, db querier, d *runningDigest, tenant domain.TenantID, after Checkpoint,
	h uint64, maxEvents int) (int64, Checkpoint, error) {
	var n int64
	for n < int64(maxEvents) {
		limit := min(checkpointPage, int64(maxEvents)-n)
		rows, err := db.Query(ctx, tenantHashesSQL, string(tenant), after.TxID, after.Position, h, limit)
		if err != nil {
			return n, after, fmt.Errorf("read events of %s: %w", tenant, err)
		}
		var (
			got  int64
			id   [16]byte
			sum  []byte
			next Checkpoint
		)
		_, err = pgx.ForEachRow(rows, []any{&next.TxID, &next.Position, &id, &sum}, func() error {
			d.add(next.TxID, next.Position, id, sum)
			after = next
			got++
			return nil
		})
		if err != nil {
			return n, after, fmt.Errorf("read events of %s: %w", tenant, err)
		}
		n += got
		if got < limit {
			break
		}
	}
	return n, after, nil
}

// checkpointMetrics are the checkpointer's Prometheus metrics.
type checkpointMetrics struct {
	checkpoints prometheus.Counter
	errors      prometheus.Counter
	leader      prometheus.Gauge
}

func newCheckpointMetrics(reg prometheus.Registerer) *checkpointMetrics {
	m := &checkpointMetrics{
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "velocicompanion", Subsystem: "audit", Name: "checkpoints_total",
			Help: "Signed audit checkpoints written.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "velocicompanion", Subsystem: "audit", Name: "checkpoint_errors_total",
			Help: "Failed audit checkpoint rounds and leadership failures.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "velocicompanion", Subsystem: "audit", Name: "checkpointer_leader",
			Help: "1 while this replica makes the audit checkpoints, else 0.",
		}),
	}
	if reg == nil {
		return m
	}
	m.checkpoints = register(reg, m.checkpoints)
	m.errors = register(reg, m.errors)
	m.leader = register(reg, m.leader)
	return m
}

// IntegrityReport is the outcome of VerifyCheckpoints for one tenant.
type IntegrityReport struct {
	Tenant      domain.TenantID
	Checkpoints int   // checkpoints of the tenant when the verification started
	Verified    int   // checkpoints verified in sequence before the first break
	Events      int64 // the tenant's events covered by the last verified checkpoint
	// Unanchored counts the events after the latest checkpoint (their
	// content was checked, their set and order are not signed yet). It stays
	// 0 when only the events up to the latest checkpoint were walked.
	Unanchored int64
	Latest     *AuditCheckpoint // the newest checkpoint when the verification started; nil if none
	Break      *IntegrityBreak  // the first break; nil if everything verified
	VerifiedAt time.Time
}

// OK reports whether nothing failed to verify.
func (r IntegrityReport) OK() bool { return r.Break == nil }

// IntegrityBreak is the first thing that fails to verify for a tenant.
type IntegrityBreak struct {
	Checkpoint int64  // sequence number of the checkpoint that fails to verify; 0 after the latest
	Position   int64  // position of the event concerned or the end of the checkpoint
	EventID    string // the event whose content does not match its hash, if that is the break
	Reason     string
}

// String describes the break for people.
func (b IntegrityBreak) String() string {
	return fmt.Sprintf("%s [position %d]", b.Reason, b.Position)
}

// VerifyOptions selects what VerifyCheckpoints reads.
type VerifyOptions struct {
	// UpToLatest reads only the events the latest checkpoint covers;
	// otherwise the events after it are checked too and counted as
	// Unanchored.
	UpToLatest bool
	// After, if not nil, is a checkpoint of the tenant that an earlier
	// verification found intact: the walk starts after it, trusting it and
	// the events it covers (an incremental check).
	After *AuditCheckpoint
}

// walkSQL reads what is needed to recompute the hashes of one tenant's events
// and their digest, in the global order.
const walkSQL = `SELECT tx_id, position, event_id, stream_type, stream_id, version, name, schema,
	payload, metadata, recorded_at, prev_hash, hash
FROM events`

// checkpointBatch is how many checkpoints the walk reads at a time.
const checkpointBatch = 1000

// VerifyCheckpoints checks tenant's events against its signed checkpoints and
// reports the first break: a checkpoint missing from the sequence, signed by
// an unknown key or whose signature does not verify; an event whose content
// does not match its stored hash (edited); or a checkpoint whose digest or
// event count the events no longer reproduce (events removed, inserted,
// changed or reordered). Events and checkpoints are streamed, so memory does
// not grow with the history.
//
// The per-stream chains (prev_hash) are Verify's concern; together the two
// cover every event.
func (s *Store) VerifyCheckpoints(ctx context.Context, tenant domain.TenantID, keys CheckpointKeys, opts VerifyOptions) (IntegrityReport, error) {
	rep := IntegrityReport{Tenant: tenant, VerifiedAt: time.Now().UTC()}
	// Only the checkpoints that exist before the events are read count: a
	// later one may cover events committed after the read's snapshot.
	latest, found, err := s.LatestAuditCheckpoint(ctx, tenant)
	if err != nil {
		return rep, err
	}
	v := &checkpointWalk{store: s, rep: &rep, keys: keys, tenant: tenant, prev: opts.After}
	if found {
		rep.Latest, v.stopAt = &latest, latest.Seq
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints WHERE tenant_id = $1`,
			string(tenant)).Scan(&rep.Checkpoints); err != nil {
			return rep, fmt.Errorf("count audit checkpoints of %s: %w", tenant, err)
		}
	}
	if a := opts.After; a != nil {
		v.count, rep.Events = a.Events, a.Events
	}
	if opts.UpToLatest && (!found || (opts.After != nil && opts.After.Seq >= latest.Seq)) {
		return rep, nil // nothing (new) is signed
	}
	if ok, err := v.open(ctx); !ok || err != nil {
		return rep, err
	}

	conds, args := `tenant_id = $1`, []any{string(tenant)}
	if a := opts.After; a != nil {
		args = append(args, a.UpTo.TxID, a.UpTo.Position)
		conds += ` AND (tenant_id, tx_id, position) > ($1, $2::xid8, $3::bigint)`
	}
	if opts.UpToLatest {
		args = append(args, latest.UpTo.TxID, latest.UpTo.Position)
		conds += fmt.Sprintf(` AND (tenant_id, tx_id, position) <= ($1, $%d::xid8, $%d::bigint)`, len(args)-1, len(args))
	}
	rows, err := s.pool.Query(ctx, walkSQL+` WHERE `+conds+` ORDER BY tx_id, position`, args...)
	if err != nil {
		return rep, fmt.Errorf("verify checkpoints of %s: %w", tenant, err)
	}
	defer rows.Close()
	var (
		e                                walkedEvent
		payloadCanon, metaCanon, scratch []byte
	)
	for rows.Next() {
		if err := rows.Scan(&e.txID, &e.position, &e.id, &e.streamType, &e.streamID, &e.version, &e.name,
			&e.schema, &e.payload, &e.meta, &e.recorded, &e.prev, &e.sum); err != nil {
			return rep, fmt.Errorf("verify checkpoints of %s: %w", tenant, err)
		}
		// Close the checkpoints that end before e.
		for v.cur != nil && isAfter(e.txID, e.position, v.cur.UpTo) {
			if ok, err := v.close(ctx); !ok || err != nil {
				return rep, err
			}
		}
		var perr, merr error
		payloadCanon, perr = canonicalJSON(payloadCanon[:0], e.payload)
		metaCanon, merr = canonicalJSON(metaCanon[:0], e.meta)
		ok := perr == nil && merr == nil
		if ok {
			in := hashInput{
				eventID: e.id, tenant: string(tenant), streamType: e.streamType, streamID: e.streamID,
				version: e.version, name: e.name, schema: int64(e.schema),
				payload: payloadCanon, metadata: metaCanon, recordedAt: e.recorded.UnixMicro(),
			}
			var want [hashSize]byte
			want, scratch = eventHash(scratch, e.prev, &in)
			ok = bytes.Equal(want[:], e.sum)
		}
		if !ok {
			seq := int64(0)
			if v.cur != nil {
				seq = v.cur.Seq
			}
			v.fail(IntegrityBreak{Checkpoint: seq, Position: e.position, EventID: uuid.UUID(e.id).String(),
				Reason: fmt.Sprintf("event %s (%s/%s version %d) does not match its stored hash: the event was changed",
					uuid.UUID(e.id), e.streamType, e.streamID, e.version)})
			return rep, nil
		}
		if v.cur == nil {
			rep.Unanchored++
			continue
		}
		v.digest.add(e.txID, e.position, e.id, e.sum)
		v.count++
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("verify checkpoints of %s: %w", tenant, err)
	}
	for v.cur != nil {
		if ok, err := v.close(ctx); !ok || err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// walkedEvent is one row of walkSQL.
type walkedEvent struct {
	txID                 uint64
	position             int64
	id                   [16]byte
	streamType, streamID string
	version              int64
	name                 string
	schema               int32
	payload, meta        []byte
	recorded             time.Time
	prev, sum            []byte
}

// isAfter reports whether the event at (txID, position) comes after cp.
func isAfter(txID uint64, position int64, cp Checkpoint) bool {
	return txID > cp.TxID || (txID == cp.TxID && position > cp.Position)
}

// checkpointWalk is the state of VerifyCheckpoints between events.
type checkpointWalk struct {
	store  *Store
	rep    *IntegrityReport
	keys   CheckpointKeys
	tenant domain.TenantID
	stopAt int64             // the latest checkpoint's seq when the walk started
	buf    []AuditCheckpoint // read ahead, in sequence
	prev   *AuditCheckpoint  // the last checkpoint verified or trusted; nil before the first
	cur    *AuditCheckpoint  // the checkpoint being reproduced; nil past the latest
	digest *runningDigest
	count  int64 // the tenant's events as of the digest
}

func (v *checkpointWalk) fail(b IntegrityBreak) { v.rep.Break = &b }

// fetch returns the checkpoint that follows v.prev, or nil past stopAt.
func (v *checkpointWalk) fetch(ctx context.Context) (*AuditCheckpoint, error) {
	if len(v.buf) == 0 {
		after := int64(0)
		if v.prev != nil {
			after = v.prev.Seq
		}
		if after >= v.stopAt {
			return nil, nil
		}
		rows, err := v.store.pool.Query(ctx, `SELECT `+checkpointColumns+` FROM audit_checkpoints
			WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
			string(v.tenant), after, v.stopAt, checkpointBatch)
		if err != nil {
			return nil, fmt.Errorf("audit checkpoints of %s: %w", v.tenant, err)
		}
		v.buf, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditCheckpoint, error) { return scanCheckpoint(r) })
		if err != nil {
			return nil, fmt.Errorf("audit checkpoints of %s: %w", v.tenant, err)
		}
		if len(v.buf) == 0 {
			return nil, nil
		}
	}
	cp := v.buf[0]
	v.buf = v.buf[1:]
	return &cp, nil
}

// open moves to the next checkpoint, checks its header (sequence, order,
// signature) and starts its digest; it reports false after recording a break.
func (v *checkpointWalk) open(ctx context.Context) (bool, error) {
	prevDigest := zeroHash[:]
	if v.prev != nil {
		prevDigest = v.prev.Digest
	}
	v.digest = newRunningDigest(v.tenant, prevDigest)
	cp, err := v.fetch(ctx)
	if err != nil || cp == nil {
		v.cur = nil
		return err == nil, err
	}
	v.cur = cp
	want := int64(1)
	if v.prev != nil {
		want = v.prev.Seq + 1
	}
	switch {
	case cp.Seq != want:
		v.fail(IntegrityBreak{Checkpoint: want, Position: cp.UpTo.Position,
			Reason: fmt.Sprintf("checkpoint %d is missing (the next one is %d): checkpoints were removed", want, cp.Seq)})
		return false, nil
	case v.prev != nil && !isAfter(cp.UpTo.TxID, cp.UpTo.Position, v.prev.UpTo):
		v.fail(IntegrityBreak{Checkpoint: cp.Seq, Position: cp.UpTo.Position,
			Reason: fmt.Sprintf("checkpoint %d does not end after checkpoint %d", cp.Seq, v.prev.Seq)})
		return false, nil
	}
	if reason := v.keys.verify(cp); reason != "" {
		v.fail(IntegrityBreak{Checkpoint: cp.Seq, Position: cp.UpTo.Position, Reason: reason})
		return false, nil
	}
	return true, nil
}

// close compares the digest so far with the current checkpoint's and opens
// the next; it reports false after recording a break.
func (v *checkpointWalk) close(ctx context.Context) (bool, error) {
	cp := v.cur
	from := int64(0)
	if v.prev != nil {
		from = v.prev.UpTo.Position
	}
	switch {
	case v.count != cp.Events:
		v.fail(IntegrityBreak{Checkpoint: cp.Seq, Position: cp.UpTo.Position, Reason: fmt.Sprintf(
			"checkpoint %d (signed %s) covers %d events up to position %d, but %d are stored: "+
				"events after position %d were removed or inserted",
			cp.Seq, cp.SignedAt.Format(time.RFC3339), cp.Events, cp.UpTo.Position, v.count, from)})
		return false, nil
	case !bytes.Equal(v.digest.sum(), cp.Digest):
		v.fail(IntegrityBreak{Checkpoint: cp.Seq, Position: cp.UpTo.Position, Reason: fmt.Sprintf(
			"checkpoint %d (signed %s): the events after position %d up to position %d do not reproduce the signed digest: "+
				"events were changed, replaced or reordered",
			cp.Seq, cp.SignedAt.Format(time.RFC3339), from, cp.UpTo.Position)})
		return false, nil
	}
	v.rep.Verified++
	v.rep.Events = v.count
	v.prev = cp
	return v.open(ctx)
}

// IntegrityChecker verifies tenants up to their latest checkpoint for the
// integrity route, without walking a tenant's whole history on every call:
// the first call, and the first after Recheck has passed since the last full
// walk, verifies everything; in between, a new checkpoint is verified
// incrementally from the last one found intact, and otherwise the last result
// is returned. A break stays reported until a full walk finds none.
type IntegrityChecker struct {
	store   *Store
	keys    CheckpointKeys
	recheck time.Duration

	mu      sync.Mutex
	tenants map[domain.TenantID]*integrityEntry
}

type integrityEntry struct {
	mu     sync.Mutex
	have   bool
	fullAt time.Time
	report IntegrityReport
}

// NewIntegrityChecker returns a checker over store that verifies signatures
// with keys and walks a tenant's whole history at least every recheck.
func NewIntegrityChecker(store *Store, keys CheckpointKeys, recheck time.Duration) *IntegrityChecker {
	return &IntegrityChecker{store: store, keys: keys, recheck: recheck, tenants: map[domain.TenantID]*integrityEntry{}}
}

// Check returns the verification of tenant up to its latest checkpoint.
func (c *IntegrityChecker) Check(ctx context.Context, tenant domain.TenantID) (IntegrityReport, error) {
	c.mu.Lock()
	e, ok := c.tenants[tenant]
	if !ok {
		e = &integrityEntry{}
		c.tenants[tenant] = e
	}
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.have && time.Since(e.fullAt) < c.recheck {
		old := e.report
		latest, found, err := c.store.LatestAuditCheckpoint(ctx, tenant)
		if err != nil {
			return IntegrityReport{}, err
		}
		if !old.OK() || !found || (old.Latest != nil && old.Latest.Seq == latest.Seq) {
			return old, nil
		}
		rep, err := c.store.VerifyCheckpoints(ctx, tenant, c.keys, VerifyOptions{UpToLatest: true, After: old.Latest})
		if err != nil {
			return IntegrityReport{}, err
		}
		rep.Verified += old.Verified
		e.report = rep
		return rep, nil
	}
	now := time.Now()
	rep, err := c.store.VerifyCheckpoints(ctx, tenant, c.keys, VerifyOptions{UpToLatest: true})
	if err != nil {
		return IntegrityReport{}, err
	}
	e.have, e.fullAt, e.report = true, now, rep
	return rep, nil
}
