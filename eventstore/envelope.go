// Package eventstore owns the PostgreSQL event store: the append-only events table
// (which is also the outbox), optimistic concurrency, the per-stream hash chain,
// the event codec with its upcasters, gap-free global reads, and the relay that
// publishes committed events to Kafka.
//
// Package eventstore imports domain and no other package of ours; it must not
// import commands, projections or adapters.
package eventstore

import (
	"encoding/json"
	"time"

	"velocicompanion/domain"
)

// Key names one stream: an aggregate instance within a tenant.
type Key struct {
	Tenant domain.TenantID
	Type   string // stream type, e.g. "user", "tenant", "case"
	ID     string
}

func (k Key) String() string { return string(k.Tenant) + "/" + k.Type + "/" + k.ID }

// Version is a stream version: the number of events in the stream after an
// append. The first event of a stream has version 1.
type Version int64

// Expected versions accepted by Append besides an exact version (>= 1).
const (
	// Any appends whatever the stream's current version.
	Any Version = -1
	// NoStream appends only if the stream has no events yet.
	NoStream Version = 0
)

// Metadata describes who caused an event and through what request. It never
// carries a secret.
type Metadata struct {
	Actor         string `json:"actor,omitempty"`      // user id, api key id or "system"
	ActorType     string `json:"actor_type,omitempty"` // "user", "api_key", "system"
	Role          string `json:"role,omitempty"`
	SourceIP      string `json:"source_ip,omitempty"`
	UserAgent     string `json:"user_agent,omitempty"`
	RequestID     string `json:"request_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
}

// Envelope is one stored event with everything the store knows about it.
type Envelope struct {
	Position   int64 // global position (identity; allocated at insert, not commit)
	TxID       uint64
	EventID    string // UUIDv7
	Tenant     domain.TenantID
	StreamType string
	StreamID   string
	Version    Version
	Name       string // durable wire name, e.g. "user.registered"
	Schema     int    // schema version of Payload as stored
	Payload    json.RawMessage
	Event      domain.Event // decoded at the current schema; nil for an unknown name
	Metadata   Metadata
	RecordedAt time.Time
	PrevHash   []byte
	Hash       []byte
}

// Key returns the stream key of e.
func (e Envelope) Key() Key { return Key{Tenant: e.Tenant, Type: e.StreamType, ID: e.StreamID} }
