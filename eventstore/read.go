package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
)

// DefaultReadLimit is the page size ReadAll uses for a limit <= 0.
const DefaultReadLimit = 1000

const envelopeColumns = `position, tx_id, event_id, tenant_id, stream_type, stream_id, version,
	name, schema, payload, metadata, recorded_at, prev_hash, hash`

const loadSQL = `SELECT ` + envelopeColumns + ` FROM events
WHERE tenant_id = $1 AND stream_type = $2 AND stream_id = $3
ORDER BY version`

// readAllSQL reads in (tx_id, position) order and only below the read
// horizon $4 (see horizon.go): every transaction below it that wrote events has
// finished, and any writer still running, or starting later, has an id at or
// above it and so sorts after every row returned. A reader that resumes after
// the last row it saw therefore never skips a row that commits late. Both
// conditions are index conditions on events_tx_position_idx.
const readAllSQL = `SELECT ` + envelopeColumns + ` FROM events
WHERE (tx_id, position) > ($1::xid8, $2::bigint)
	AND tx_id < $4::xid8
ORDER BY tx_id, position
LIMIT $3`

const headSQL = `SELECT tx_id, position FROM events
WHERE tx_id < $1::xid8
ORDER BY tx_id DESC, position DESC
LIMIT 1`

// Load returns the events of the stream key in version order, decoded and
// upcast. A stream without events yields no envelopes and no error. Events whose
// names the codec does not know are returned with a nil Event.
func (s *Store) Load(ctx context.Context, key Key) ([]Envelope, error) {
	rows, err := s.pool.Query(ctx, loadSQL, string(key.Tenant), key.Type, key.ID)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", key, err)
	}
	envs, err := s.scanEnvelopes(rows, 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", key, err)
	}
	if n := len(envs); n > 0 {
		last := envs[n-1]
		if len(last.Hash) == hashSize {
			h := streamHead{version: last.Version}
			copy(h.hash[:], last.Hash)
			s.remember(key, h)
		}
	}
	return envs, nil
}

// ReadAll returns up to limit events (DefaultReadLimit if limit <= 0) that
// follow after in the global order (tx_id, position), decoded and upcast, from
// transactions that have all finished. Pass Next(envs, after) to the next call.
// Events whose names the codec does not know are returned with a nil Event.
//
// ReadAll cannot pass an append transaction of this schema that is still
// open and took its transaction id before the events it would return: a long
// append delays readers (never makes them skip). Transactions that do not
// append to this schema's events, in this database or another, do not. A known event that fails to decode (a broken
// upcaster, say) fails the call rather than being skipped.
func (s *Store) ReadAll(ctx context.Context, after Checkpoint, limit int) ([]Envelope, error) {
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	h, err := s.horizon(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, readAllSQL, after.TxID, after.Position, limit, h)
	if err != nil {
		return nil, fmt.Errorf("read all after %d/%d: %w", after.TxID, after.Position, err)
	}
	envs, err := s.scanEnvelopes(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("read all after %d/%d: %w", after.TxID, after.Position, err)
	}
	return envs, nil
}

// Head returns the checkpoint of the last event ReadAll can return now, or the
// zero Checkpoint if there is none.
func (s *Store) Head(ctx context.Context) (Checkpoint, error) {
	var cp Checkpoint
	h, err := s.horizon(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	err = s.pool.QueryRow(ctx, headSQL, h).Scan(&cp.TxID, &cp.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, nil
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("read head: %w", err)
	}
	return cp, nil
}

// Next returns the checkpoint after the last of envs, which ReadAll returned for
// cp, or cp itself if envs is empty.
func Next(envs []Envelope, cp Checkpoint) Checkpoint {
	if len(envs) == 0 {
		return cp
	}
	last := envs[len(envs)-1]
	return Checkpoint{TxID: last.TxID, Position: last.Position}
}

// scanEnvelopes reads and decodes rows of envelopeColumns.
func (s *Store) scanEnvelopes(rows pgx.Rows, sizeHint int) ([]Envelope, error) {
	defer rows.Close()
	envs := make([]Envelope, 0, min(sizeHint, 1024))
	var (
		id        [16]byte
		tenant    string
		version   int64
		schema    int32
		payload   []byte
		meta      []byte
		recorded  time.Time
		prev, sum []byte
	)
	for rows.Next() {
		var e Envelope
		if err := rows.Scan(&e.Position, &e.TxID, &id, &tenant, &e.StreamType, &e.StreamID, &version,
			&e.Name, &schema, &payload, &meta, &recorded, &prev, &sum); err != nil {
			return nil, err
		}
		e.EventID = uuid.UUID(id).String()
		e.Tenant = domain.TenantID(tenant)
		e.Version = Version(version)
		e.Schema = int(schema)
		e.Payload = json.RawMessage(payload)
		e.RecordedAt = recorded
		e.PrevHash, e.Hash = prev, sum
		if len(meta) > 0 {
			if err := json.Unmarshal(meta, &e.Metadata); err != nil {
				return nil, fmt.Errorf("event %s: metadata: %w", e.EventID, err)
			}
		}
		ev, err := s.codec.Decode(e.Name, e.Schema, e.Payload)
		var unknown *UnknownEventError
		switch {
		case errors.As(err, &unknown):
			// Kept with a nil Event: never drop an event.
		case err != nil:
			return nil, fmt.Errorf("event %s at position %d: %w", e.EventID, e.Position, err)
		default:
			e.Event = ev
		}
		envs = append(envs, e)
		payload, meta, prev, sum = nil, nil, nil, nil
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return envs, nil
}
