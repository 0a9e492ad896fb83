package eventstore

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"

	"velocicompanion/domain"
)

// Message headers that ToMessage sets on every event. Brokers and consumers may
// route or filter on them, but the payload is authoritative: a consumer must take
// the tenant from the decoded Envelope, never from a header or the Kafka key.
//
// WARNING: these names are part of the wire format; never rename them.
const (
	HeaderTenant     = "tenant_id"
	HeaderEventType  = "event_type"
	HeaderSchema     = "schema"
	HeaderPosition   = "position"
	HeaderEventID    = "event_id"
	HeaderStreamType = "stream_type"
	HeaderStreamID   = "stream_id"
	HeaderVersion    = "version"
)

// wireEnvelope is the JSON body of an event message: the whole Envelope except
// the decoded Event. Hashes are lower-case hex. appendEnvelope writes the same
// JSON as json.Marshal of a wireEnvelope, without reflection.
//
// WARNING: the JSON names are the wire format read by every consumer, including
// external ones (SIEM forwarders); fields may be added, never renamed.
type wireEnvelope struct {
	Position   int64           `json:"position"`
	TxID       uint64          `json:"tx_id"`
	EventID    string          `json:"event_id"`
	Tenant     domain.TenantID `json:"tenant_id"`
	StreamType string          `json:"stream_type"`
	StreamID   string          `json:"stream_id"`
	Version    Version         `json:"version"`
	Name       string          `json:"name"`
	Schema     int             `json:"schema"`
	Payload    json.RawMessage `json:"payload"`
	Metadata   Metadata        `json:"metadata"`
	RecordedAt time.Time       `json:"recorded_at"`
	PrevHash   hexBytes        `json:"prev_hash"`
	Hash       hexBytes        `json:"hash"`
}

// hexBytes marshals as a lower-case hex JSON string (null when nil).
type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("null"), nil
	}
	out := make([]byte, 0, 2*len(h)+2)
	out = append(out, '"')
	out = hex.AppendEncode(out, h)
	return append(out, '"'), nil
}

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hex: %w", err)
	}
	*h = v
	return nil
}

// ToMessage converts env into the watermill message that the relay publishes:
// its UUID is the event id, its payload the JSON of the whole envelope and its
// metadata the Header* values. The Kafka key (the stream id) is chosen by the
// partitioning marshaler in adapters/kafka from HeaderStreamID.
func ToMessage(env Envelope) (*message.Message, error) {
	if env.EventID == "" {
		return nil, fmt.Errorf("event at position %d has no event id", env.Position)
	}
	body, err := appendEnvelope(make([]byte, 0, 512+len(env.Payload)), env)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", env.EventID, err)
	}
	msg := message.NewMessage(env.EventID, body)
	msg.Metadata = message.Metadata{
		HeaderTenant:     string(env.Tenant),
		HeaderEventType:  env.Name,
		HeaderSchema:     strconv.Itoa(env.Schema),
		HeaderPosition:   strconv.FormatInt(env.Position, 10),
		HeaderEventID:    env.EventID,
		HeaderStreamType: env.StreamType,
		HeaderStreamID:   env.StreamID,
		HeaderVersion:    strconv.FormatInt(int64(env.Version), 10),
	}
	return msg, nil
}

// FromMessage decodes a message produced by ToMessage. Everything, the tenant
// included, is taken from the payload; the headers are not trusted. The Event is
// decoded (and upcast) through codec; for a name the codec does not know, or a
// nil codec, Event is nil and the raw Payload is still set, so that consumers
// can skip events they do not handle.
func FromMessage(msg *message.Message, codec *Codec) (Envelope, error) {
	var w wireEnvelope
	if err := json.Unmarshal(msg.Payload, &w); err != nil {
		return Envelope{}, fmt.Errorf("decode message %s: %w", msg.UUID, err)
	}
	if w.EventID == "" || w.Tenant == "" || w.Name == "" {
		return Envelope{}, fmt.Errorf("decode message %s: event id, tenant or name missing", msg.UUID)
	}
	if msg.UUID != "" && msg.UUID != w.EventID {
		return Envelope{}, fmt.Errorf("decode message %s: payload carries event id %s", msg.UUID, w.EventID)
	}
	env := Envelope{
		Position:   w.Position,
		TxID:       w.TxID,
		EventID:    w.EventID,
		Tenant:     w.Tenant,
		StreamType: w.StreamType,
		StreamID:   w.StreamID,
		Version:    w.Version,
		Name:       w.Name,
		Schema:     w.Schema,
		Payload:    w.Payload,
		Metadata:   w.Metadata,
		RecordedAt: w.RecordedAt,
		PrevHash:   w.PrevHash,
		Hash:       w.Hash,
	}
	if codec != nil && codec.Known(w.Name) {
		e, err := codec.Decode(w.Name, w.Schema, w.Payload)
		if err != nil {
			return Envelope{}, fmt.Errorf("decode event %s (%s v%d): %w", w.EventID, w.Name, w.Schema, err)
		}
		env.Event = e
	}
	return env, nil
}

// appendEnvelope appends the JSON of env's wireEnvelope to b. It is the
// relay's hot path, hence hand-written: encoding/json validates and compacts
// every RawMessage and Marshaler result it embeds, which cost more than the
// rest of publishing an event.
func appendEnvelope(b []byte, env Envelope) ([]byte, error) {
	payload := []byte(env.Payload)
	if len(payload) == 0 {
		payload = []byte("null")
	} else if !json.Valid(payload) {
		return nil, errors.New("payload is not valid JSON")
	}
	b = append(b, `{"position":`...)
	b = strconv.AppendInt(b, env.Position, 10)
	b = append(b, `,"tx_id":`...)
	b = strconv.AppendUint(b, env.TxID, 10)
	b = append(b, `,"event_id":`...)
	b = appendString(b, env.EventID)
	b = append(b, `,"tenant_id":`...)
	b = appendString(b, string(env.Tenant))
	b = append(b, `,"stream_type":`...)
	b = appendString(b, env.StreamType)
	b = append(b, `,"stream_id":`...)
	b = appendString(b, env.StreamID)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(env.Version), 10)
	b = append(b, `,"name":`...)
	b = appendString(b, env.Name)
	b = append(b, `,"schema":`...)
	b = strconv.AppendInt(b, int64(env.Schema), 10)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, `,"metadata":`...)
	b = appendMetadata(b, env.Metadata)
	b = append(b, `,"recorded_at":`...)
	if y := env.RecordedAt.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("recorded_at year %d outside [0,9999]", y)
	}
	b = append(b, '"')
	b = env.RecordedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = append(b, `,"prev_hash":`...)
	b = appendHex(b, env.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendHex(b, env.Hash)
	return append(b, '}'), nil
}

// appendMetadata appends m as json.Marshal does, omitting empty fields.
func appendMetadata(b []byte, m Metadata) []byte {
	b = append(b, '{')
	first := true
	field := func(name, v string) {
		if v == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = appendString(b, v)
	}
	field("actor", m.Actor)
	field("actor_type", m.ActorType)
	field("role", m.Role)
	field("source_ip", m.SourceIP)
	field("user_agent", m.UserAgent)
	field("request_id", m.RequestID)
	field("correlation_id", m.CorrelationID)
	field("causation_id", m.CausationID)
	return append(b, '}')
}

func appendHex(b []byte, h []byte) []byte {
	if h == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = hex.AppendEncode(b, h)
	return append(b, '"')
}

// appendString appends s as a JSON string with encoding/json's escaping:
// quotes, backslashes, control characters, <, >, &, U+2028 and U+2029 are
// escaped and invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
