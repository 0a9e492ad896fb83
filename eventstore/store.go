package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
)

// ErrDuplicateEventID is returned by Append when an event id of the request is
// already stored but not as this very append (another stream, other versions or
// another event name): retrying cannot succeed, unlike ErrVersionConflict.
var ErrDuplicateEventID = domain.Conflict("duplicate_event_id", "an event with this id was already recorded differently")

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	codec *Codec
	now   func() time.Time
	heads *headCache // nil when disabled

	// afterInsert, if set (by tests only), runs in an Append that has an Also
	// callback after its events are inserted and before the commit.
	afterInsert func(ctx context.Context, key Key)
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithClock makes the Store take recorded_at from now instead of time.Now.
func WithClock(now func() time.Time) StoreOption {
	return func(s *Store) { s.now = now }
}

// DefaultHeadCache is the number of stream heads a Store remembers by default.
const DefaultHeadCache = 16384

// WithHeadCache sets how many stream heads (version and hash of a stream's last
// event, learnt from Load and Append) the Store remembers; 0 disables the cache.
// A remembered head lets Append skip reading the stream's head before inserting.
// Heads are immutable facts, so a remembered head is never wrong, only possibly
// outdated, and an outdated one only ever makes Append report a conflict that
// is real.
func WithHeadCache(n int) StoreOption {
	return func(s *Store) {
		if n <= 0 {
			s.heads = nil
			return
		}
		s.heads = newHeadCache(n)
	}
}

// NewStore returns a Store on pool (normally an AppPoolConfig pool) that
// encodes and decodes events with codec.
func NewStore(pool *pgxpool.Pool, codec *Codec, opts ...StoreOption) *Store {
	if pool == nil || codec == nil {
		panic("eventstore: NewStore needs a pool and a codec")
	}
	s := &Store{pool: pool, codec: codec, now: time.Now, heads: newHeadCache(DefaultHeadCache)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Codec returns the Store's codec.
func (s *Store) Codec() *Codec { return s.codec }

// Pool returns the Store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// maxAnyAttempts bounds how often an Append with Expected Any re-reads the head
// after losing a race for the next version.
const maxAnyAttempts = 5

// errHeadMoved reports that an Any append lost a race and may be retried.
var errHeadMoved = errors.New("stream head moved")

// streamHead is the version and hash of a stream's last event.
type streamHead struct {
	version Version
	hash    [hashSize]byte
}

// pendingAppend is an AppendRequest encoded once, whatever the attempt.
type pendingAppend struct {
	key        Key
	expected   Version
	ids        []string // canonical text form
	uuids      [][16]byte
	names      []string
	schemas    []int32
	payloads   []string
	canon      [][]byte // canonicalJSON of each payload
	meta       string   // JSON of the metadata
	metaCanon  []byte
	recordedAt time.Time
	givenIDs   bool
}

// Append atomically appends req.Events to the stream req.Key if its version is
// req.Expected (or whatever it is, for Any), in one transaction that also runs
// req.Also. It fails with ErrVersionConflict if the stream is not at the
// expected version.
//
// Idempotency: when req.EventIDs names events that are all already stored in
// this stream, with the same names, at the versions this request would give
// them, Append inserts nothing (and does not run Also) and returns the original
// result. If only some are stored, or elsewhere, it fails with
// ErrDuplicateEventID.
//
// With Any, an append that loses the race for the next version to another one
// is retried a few times against the new head (running Also again, in a new
// transaction) before it reports ErrVersionConflict.
//
// Without Also, Append is one INSERT statement (its own transaction) preceded,
// unless the stream head is known, by one read of the head. That read may run
// outside the INSERT's transaction because events are immutable: the row at the
// expected version can only have been followed by later ones, and the unique
// (stream, version) key rejects the insert if it was.
func (s *Store) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	p, err := s.prepare(req)
	if err != nil {
		return AppendResult{}, fmt.Errorf("append to %s: %w", req.Key, err)
	}
	for attempt := 1; ; attempt++ {
		var res AppendResult
		if req.Also != nil {
			res, err = s.appendTx(ctx, p, req.Also)
		} else {
			res, err = s.appendDirect(ctx, p)
		}
		if errors.Is(err, errHeadMoved) {
			if attempt < maxAnyAttempts {
				continue
			}
			err = ErrVersionConflict
		}
		if err != nil {
			return AppendResult{}, fmt.Errorf("append to %s at version %d: %w", req.Key, req.Expected, err)
		}
		return res, nil
	}
}

// prepare validates and encodes req.
func (s *Store) prepare(req AppendRequest) (*pendingAppend, error) {
	switch {
	case req.Key.Tenant == "" || req.Key.Type == "" || req.Key.ID == "":
		return nil, errors.New("incomplete stream key")
	case len(req.Events) == 0:
		return nil, errors.New("no events")
	case req.Expected < Any:
		return nil, fmt.Errorf("invalid expected version %d", req.Expected)
	case req.EventIDs != nil && len(req.EventIDs) != len(req.Events):
		return nil, fmt.Errorf("%d event ids for %d events", len(req.EventIDs), len(req.Events))
	}
	n := len(req.Events)
	p := &pendingAppend{
		key:        req.Key,
		expected:   req.Expected,
		ids:        make([]string, n),
		uuids:      make([][16]byte, n),
		names:      make([]string, n),
		schemas:    make([]int32, n),
		payloads:   make([]string, n),
		canon:      make([][]byte, n),
		recordedAt: s.now().Truncate(time.Microsecond),
		givenIDs:   req.EventIDs != nil,
	}
	for i := range n {
		var id uuid.UUID
		var err error
		if p.givenIDs {
			if id, err = uuid.Parse(req.EventIDs[i]); err != nil {
				return nil, fmt.Errorf("event id %q: %w", req.EventIDs[i], err)
			}
		} else if id, err = uuid.NewV7(); err != nil {
			return nil, fmt.Errorf("new event id: %w", err)
		}
		p.uuids[i] = id
		p.ids[i] = id.String()
	}
	if p.givenIDs {
		seen := make(map[[16]byte]struct{}, n)
		for _, id := range p.uuids {
			if _, dup := seen[id]; dup {
				return nil, fmt.Errorf("event id %s given twice", uuid.UUID(id))
			}
			seen[id] = struct{}{}
		}
	}
	var canon []byte
	offsets := make([]int, n+1)
	for i, e := range req.Events {
		name, schema, payload, err := s.codec.Encode(e)
		if err != nil {
			return nil, err
		}
		p.names[i], p.schemas[i], p.payloads[i] = name, int32(schema), string(payload)
		if canon, err = canonicalJSON(canon, payload); err != nil {
			return nil, fmt.Errorf("encode %s: %w", name, err)
		}
		offsets[i+1] = len(canon)
	}
	for i := range n {
		p.canon[i] = canon[offsets[i]:offsets[i+1]:offsets[i+1]]
	}
	meta, err := json.Marshal(req.Metadata)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	p.meta = string(meta)
	if p.metaCanon, err = canonicalJSON(nil, meta); err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return p, nil
}

// cachedHead returns what the head cache tells about the stream before an
// append at p.expected: the head to append after (ok), or that the stream is
// already past the expected version (conflict), or nothing.
func (s *Store) cachedHead(p *pendingAppend) (head streamHead, ok, conflict bool) {
	if p.expected == NoStream {
		if s.heads != nil {
			if _, found := s.heads.get(p.key); found {
				return streamHead{}, false, true
			}
		}
		return streamHead{}, true, false
	}
	if s.heads == nil {
		return streamHead{}, false, false
	}
	h, found := s.heads.get(p.key)
	switch {
	case !found:
		return streamHead{}, false, false
	case p.expected == Any || h.version == p.expected:
		return h, true, false
	case h.version > p.expected:
		return streamHead{}, false, true
	}
	return streamHead{}, false, false // the cache lags behind: read the head
}

// appendDirect appends p without an explicit transaction: at most one read of
// the head, then one INSERT statement.
func (s *Store) appendDirect(ctx context.Context, p *pendingAppend) (AppendResult, error) {
	head, ok, conflict := s.cachedHead(p)
	if conflict {
		return s.conflict(ctx, p)
	}
	if !ok {
		var err error
		if head, err = readHead(ctx, s.pool, p.key); err != nil {
			return AppendResult{}, err
		}
		s.remember(p.key, head)
		if p.expected != Any && head.version != p.expected {
			return s.conflict(ctx, p)
		}
	}
	res, last, err := insertEvents(ctx, s.pool, p, head)
	if isVersionOrIDConflict(err) {
		s.forget(p.key, head.version)
		return s.conflict(ctx, p)
	}
	if err != nil {
		return AppendResult{}, err
	}
	s.remember(p.key, last)
	return res, nil
}

// appendTx appends p in an explicit transaction that runs also before the
// insert. The begin, the head read and the idempotency check share one round
// trip.
func (s *Store) appendTx(ctx context.Context, p *pendingAppend, also func(context.Context, pgx.Tx) error) (res AppendResult, err error) {
	head, ok, conflict := s.cachedHead(p)
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	// Lock first, before also can give the transaction an id: see horizon.go.
	b.Queue(lockEventsSQL)
	readsHead := !ok && !conflict
	if readsHead {
		b.Queue(selectHeadSQL, string(p.key.Tenant), p.key.Type, p.key.ID)
	}
	if p.givenIDs {
		b.Queue(selectByIDsSQL, p.ids)
	}
	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer func() {
		if rbErr := tx.Rollback(ctx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) && err == nil {
			err = rbErr
		}
	}()
	for range 2 { // BEGIN, LOCK TABLE
		if _, err := br.Exec(); err != nil {
			br.Close()
			return AppendResult{}, err
		}
	}
	if readsHead {
		if head, err = scanHead(br.QueryRow()); err != nil {
			br.Close()
			return AppendResult{}, err
		}
	}
	var existing []storedEvent
	if p.givenIDs {
		rows, err := br.Query()
		if err == nil {
			existing, err = scanStoredEvents(rows)
		}
		if err != nil {
			br.Close()
			return AppendResult{}, err
		}
	}
	if err := br.Close(); err != nil {
		return AppendResult{}, err
	}
	if len(existing) > 0 {
		return matchExisting(p, existing)
	}
	if readsHead {
		s.remember(p.key, head)
		if p.expected != Any && head.version != p.expected {
			return AppendResult{}, ErrVersionConflict
		}
	}
	if conflict {
		return AppendResult{}, ErrVersionConflict
	}

	if err := also(ctx, tx); err != nil {
		return AppendResult{}, fmt.Errorf("also: %w", err)
	}
	res, last, err := insertEvents(ctx, tx, p, head)
	if isVersionOrIDConflict(err) {
		tx.Rollback(ctx)
		s.forget(p.key, head.version)
		return s.conflict(ctx, p)
	}
	if err != nil {
		return AppendResult{}, err
	}
	if s.afterInsert != nil {
		s.afterInsert(ctx, p.key)
	}
	if err := tx.Commit(ctx); err != nil {
		return AppendResult{}, fmt.Errorf("commit: %w", err)
	}
	s.remember(p.key, last)
	return res, nil
}

// conflict decides what an append that found the stream elsewhere than expected
// means: the original result of the same append retried, a duplicate event id,
// a lost race to retry (Any), or a version conflict.
func (s *Store) conflict(ctx context.Context, p *pendingAppend) (AppendResult, error) {
	if p.givenIDs {
		rows, err := s.pool.Query(ctx, selectByIDsSQL, p.ids)
		if err != nil {
			return AppendResult{}, err
		}
		existing, err := scanStoredEvents(rows)
		if err != nil {
			return AppendResult{}, err
		}
		if len(existing) > 0 {
			return matchExisting(p, existing)
		}
	}
	if p.expected == Any {
		return AppendResult{}, errHeadMoved
	}
	return AppendResult{}, ErrVersionConflict
}

// storedEvent is what the idempotency check needs of a stored event.
type storedEvent struct {
	id       string
	key      Key
	version  Version
	name     string
	position int64
}

// matchExisting returns the original result if existing (the stored events
// sharing ids with p) is exactly p as appended before, and ErrDuplicateEventID
// otherwise.
func matchExisting(p *pendingAppend, existing []storedEvent) (AppendResult, error) {
	if len(existing) != len(p.ids) {
		return AppendResult{}, ErrDuplicateEventID
	}
	byID := make(map[string]storedEvent, len(existing))
	for _, e := range existing {
		byID[e.id] = e
	}
	first, ok := byID[p.ids[0]]
	if !ok {
		return AppendResult{}, ErrDuplicateEventID
	}
	switch {
	case p.expected == NoStream && first.version != 1,
		p.expected > 0 && first.version != p.expected+1:
		return AppendResult{}, ErrDuplicateEventID
	}
	res := AppendResult{EventIDs: append([]string(nil), p.ids...)}
	for i, id := range p.ids {
		e, ok := byID[id]
		if !ok || e.key != p.key || e.name != p.names[i] || e.version != first.version+Version(i) {
			return AppendResult{}, ErrDuplicateEventID
		}
		res.Version, res.Position = e.version, e.position
	}
	return res, nil
}

// isVersionOrIDConflict reports whether err is the INSERT hitting the unique
// (stream, version) or event id key.
func isVersionOrIDConflict(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return false
	}
	return pgErr.ConstraintName == "events_stream_version_key" || pgErr.ConstraintName == "events_event_id_key"
}

// querier is what insertEvents and readHead need of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const selectHeadSQL = `SELECT version, hash FROM events
WHERE tenant_id = $1 AND stream_type = $2 AND stream_id = $3
ORDER BY version DESC LIMIT 1`

const selectByIDsSQL = `SELECT event_id::text, tenant_id, stream_type, stream_id, version, name, position
FROM events WHERE event_id = ANY($1::uuid[])`

// insertSQL inserts one append's events in one statement whatever their
// number. WITH ORDINALITY and ORDER BY make the identity follow the versions.
const insertSQL = `INSERT INTO events
	(event_id, tenant_id, stream_type, stream_id, version, name, schema, payload, metadata, recorded_at, prev_hash, hash)
SELECT e.event_id, $1, $2, $3, $4::bigint + e.n, e.name, e.schema, e.payload::jsonb, $5::jsonb, $6, e.prev_hash, e.hash
FROM unnest($7::uuid[], $8::text[], $9::int4[], $10::text[], $11::bytea[], $12::bytea[])
	WITH ORDINALITY AS e(event_id, name, schema, payload, prev_hash, hash, n)
ORDER BY e.n
RETURNING position`

// insertOneSQL is insertSQL for the common append of a single event: a plain
// one-row INSERT costs the server less than unnesting arrays.
const insertOneSQL = `INSERT INTO events
	(event_id, tenant_id, stream_type, stream_id, version, name, schema, payload, metadata, recorded_at, prev_hash, hash)
VALUES ($7::uuid, $1, $2, $3, $4::bigint + 1, $8, $9, $10::jsonb, $5::jsonb, $6, $11, $12)
RETURNING position`

func readHead(ctx context.Context, q querier, key Key) (streamHead, error) {
	return scanHead(q.QueryRow(ctx, selectHeadSQL, string(key.Tenant), key.Type, key.ID))
}

// scanHead reads a head row; no row is the empty stream.
func scanHead(row pgx.Row) (streamHead, error) {
	var h streamHead
	var v int64
	var hash []byte
	err := row.Scan(&v, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return streamHead{}, nil
	}
	if err != nil {
		return streamHead{}, fmt.Errorf("read stream head: %w", err)
	}
	if len(hash) != hashSize {
		return streamHead{}, fmt.Errorf("read stream head: stored hash has %d bytes", len(hash))
	}
	h.version = Version(v)
	copy(h.hash[:], hash)
	return h, nil
}

func scanStoredEvents(rows pgx.Rows) ([]storedEvent, error) {
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var e storedEvent
		var tenant string
		var v int64
		if err := rows.Scan(&e.id, &tenant, &e.key.Type, &e.key.ID, &v, &e.name, &e.position); err != nil {
			return nil, err
		}
		e.key.Tenant, e.version = domain.TenantID(tenant), Version(v)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up event ids: %w", err)
	}
	return out, nil
}

// insertEvents chains p's events onto head and inserts them.
func insertEvents(ctx context.Context, q querier, p *pendingAppend, head streamHead) (AppendResult, streamHead, error) {
	n := len(p.ids)
	hashes := make([]byte, n*hashSize)
	prevs := make([][]byte, n)
	sums := make([][]byte, n)
	prev := head.hash[:]
	var scratch []byte
	in := hashInput{
		tenant:     string(p.key.Tenant),
		streamType: p.key.Type,
		streamID:   p.key.ID,
		metadata:   p.metaCanon,
		recordedAt: p.recordedAt.UnixMicro(),
	}
	for i := range n {
		in.eventID = p.uuids[i]
		in.version = int64(head.version) + int64(i) + 1
		in.name = p.names[i]
		in.schema = int64(p.schemas[i])
		in.payload = p.canon[i]
		var sum [hashSize]byte
		sum, scratch = eventHash(scratch, prev, &in)
		h := hashes[i*hashSize : (i+1)*hashSize : (i+1)*hashSize]
		copy(h, sum[:])
		prevs[i], sums[i] = prev, h
		prev = h
	}
	var rows pgx.Rows
	var err error
	if n == 1 {
		rows, err = q.Query(ctx, insertOneSQL,
			string(p.key.Tenant), p.key.Type, p.key.ID, int64(head.version), p.meta, p.recordedAt,
			p.ids[0], p.names[0], p.schemas[0], p.payloads[0], prevs[0], sums[0])
	} else {
		rows, err = q.Query(ctx, insertSQL,
			string(p.key.Tenant), p.key.Type, p.key.ID, int64(head.version), p.meta, p.recordedAt,
			p.ids, p.names, p.schemas, p.payloads, prevs, sums)
	}
	if err != nil {
		return AppendResult{}, streamHead{}, err
	}
	var last int64
	for rows.Next() {
		var pos int64
		if err := rows.Scan(&pos); err != nil {
			rows.Close()
			return AppendResult{}, streamHead{}, err
		}
		last = max(last, pos)
	}
	if err := rows.Err(); err != nil {
		return AppendResult{}, streamHead{}, err
	}
	if got := rows.CommandTag().RowsAffected(); got != int64(n) {
		return AppendResult{}, streamHead{}, fmt.Errorf("inserted %d of %d events", got, n)
	}
	top := streamHead{version: head.version + Version(n)}
	copy(top.hash[:], prev)
	return AppendResult{Version: top.version, Position: last, EventIDs: append([]string(nil), p.ids...)}, top, nil
}

func (s *Store) remember(key Key, h streamHead) {
	if s.heads != nil && h.version > 0 {
		s.heads.put(key, h)
	}
}

func (s *Store) forget(key Key, v Version) {
	if s.heads != nil {
		s.heads.drop(key, v)
	}
}
