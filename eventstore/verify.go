package eventstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"velocicompanion/domain"
)

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Tenant  domain.TenantID // the tenant verified; "" for all
	Streams int64           // streams walked
	Events  int64           // events read
	Breaks  []ChainBreak    // the first break of each broken stream, in stream order
}

// OK reports whether every chain verified.
func (r VerifyReport) OK() bool { return len(r.Breaks) == 0 }

// ChainBreak is where the hash chain of one stream first fails to verify.
type ChainBreak struct {
	Key      Key
	Version  Version // version of the first event that does not verify
	Position int64
	Reason   string
}

// String describes the break for people: stream, version, position and reason.
func (b ChainBreak) String() string {
	return fmt.Sprintf("%s version %d (position %d): %s", b.Key, b.Version, b.Position, b.Reason)
}

const verifySQL = `SELECT position, event_id, tenant_id, stream_type, stream_id, version, name, schema,
	payload, metadata, recorded_at, prev_hash, hash
FROM events`

// Verify walks the hash chain of every stream of tenant (of every tenant if
// tenant is "") and reports, per stream, the first event that breaks it: a
// version missing from 1..n, content whose hash is not the stored one (a
// modified or reordered event), or a prev_hash that is not the previous event's
// hash.
//
// A chain proves that a stream's events were not changed, removed or reordered
// since they were written, except that it cannot reveal the removal of a
// stream's last events, nor a rewrite by someone who recomputed every later
// hash; an external copy of the heads (such as the Kafka topic) anchors those.
func (s *Store) Verify(ctx context.Context, tenant domain.TenantID) (VerifyReport, error) {
	rep := VerifyReport{Tenant: tenant}
	q, args := verifySQL, []any(nil)
	if tenant != "" {
		q, args = q+` WHERE tenant_id = $1`, []any{string(tenant)}
	}
	q += ` ORDER BY tenant_id, stream_type, stream_id, version`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()

	var (
		cur      Key
		started  bool
		broken   bool
		next     Version
		prevHash [hashSize]byte

		position int64
		id       [16]byte
		tenantID string
		key      Key
		version  int64
		name     string
		schema   int32
		payload  []byte
		meta     []byte
		recorded time.Time
		prev     []byte
		sum      []byte

		payloadCanon, metaCanon, scratch []byte
	)
	for rows.Next() {
		if err := rows.Scan(&position, &id, &tenantID, &key.Type, &key.ID, &version, &name, &schema,
			&payload, &meta, &recorded, &prev, &sum); err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		key.Tenant = domain.TenantID(tenantID)
		rep.Events++
		if !started || key != cur {
			started, cur, broken, next, prevHash = true, key, false, 1, zeroHash
			rep.Streams++
		}
		if broken {
			continue
		}
		fail := func(format string, args ...any) {
			rep.Breaks = append(rep.Breaks, ChainBreak{
				Key: key, Version: Version(version), Position: position, Reason: fmt.Sprintf(format, args...),
			})
			broken = true
		}
		if Version(version) != next {
			fail("version gap: expected version %d", next)
			continue
		}
		var perr, merr error
		payloadCanon, perr = canonicalJSON(payloadCanon[:0], payload)
		metaCanon, merr = canonicalJSON(metaCanon[:0], meta)
		if perr != nil || merr != nil {
			fail("stored JSON does not parse")
			continue
		}
		in := hashInput{
			eventID: id, tenant: tenantID, streamType: key.Type, streamID: key.ID,
			version: version, name: name, schema: int64(schema),
			payload: payloadCanon, metadata: metaCanon, recordedAt: recorded.UnixMicro(),
		}
		var want [hashSize]byte
		want, scratch = eventHash(scratch, prev, &in)
		if !bytes.Equal(sum, want[:]) {
			fail("hash does not match the event's contents")
			continue
		}
		if !bytes.Equal(prev, prevHash[:]) {
			if next == 1 {
				fail("prev_hash of the first event is not zero")
			} else {
				fail("prev_hash is not the hash of version %d", next-1)
			}
			continue
		}
		next++
		copy(prevHash[:], sum)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}
