package eventstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

type msgTestOpened struct {
	Title string `json:"title"`
}

func (msgTestOpened) EventName() string { return "msgtest.opened" }

func sampleEnvelope() Envelope {
	return Envelope{
		Position:   42,
		TxID:       1<<40 + 7,
		EventID:    "01890a5d-ac96-774b-bcce-b302099a8057",
		Tenant:     "tenant-a",
		StreamType: "case",
		StreamID:   "c-\"1\"<&>\u2028",
		Version:    3,
		Name:       "msgtest.opened",
		Schema:     1,
		Payload:    json.RawMessage(`{"title": "Ransomware on <host> & \"friends\"", "n": [1, 2.5e3]}`),
		Metadata:   Metadata{Actor: "u-1", ActorType: "user", SourceIP: "192.0.2.7", RequestID: "r\n1"},
		RecordedAt: time.Date(2026, 11, 26, 20, 0, 0, 123456000, time.FixedZone("x", 3600)),
		PrevHash:   bytes.Repeat([]byte{0}, 32),
		Hash:       bytes.Repeat([]byte{0xab}, 32),
	}
}

func TestAppendEnvelopeMatchesEncodingJSON(t *testing.T) {
	for name, env := range map[string]Envelope{
		"sample":        sampleEnvelope(),
		"empty fields":  {EventID: "e", Tenant: "t", Name: "n"},
		"nil hashes":    {EventID: "e", Tenant: "t", Name: "n", Payload: json.RawMessage(`null`), Metadata: Metadata{CausationID: "c"}},
		"odd strings":   {EventID: "e\x00\x1f", Tenant: "\xff\xfe", Name: "ü\u2029\t\r", Payload: json.RawMessage(`"x"`)},
		"negative ints": {EventID: "e", Tenant: "t", Name: "n", Position: -1, Version: -1, Schema: -3},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := appendEnvelope(nil, env)
			if err != nil {
				t.Fatal(err)
			}
			payload := env.Payload
			if len(payload) == 0 {
				payload = json.RawMessage("null")
			}
			want, err := json.Marshal(wireEnvelope{
				Position: env.Position, TxID: env.TxID, EventID: env.EventID, Tenant: env.Tenant,
				StreamType: env.StreamType, StreamID: env.StreamID, Version: env.Version, Name: env.Name,
				Schema: env.Schema, Payload: payload, Metadata: env.Metadata, RecordedAt: env.RecordedAt,
				PrevHash: env.PrevHash, Hash: env.Hash,
			})
			if err != nil {
				t.Fatal(err)
			}
			// encoding/json compacts embedded raw JSON; we keep it as stored.
			var compact bytes.Buffer
			if err := json.Compact(&compact, got); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			// It also HTML-escapes inside raw JSON; we need not.
			var escaped bytes.Buffer
			json.HTMLEscape(&escaped, compact.Bytes())
			if escaped.String() != string(want) {
				t.Fatalf("appendEnvelope:\n %s\nencoding/json:\n %s", compact.Bytes(), want)
			}
		})
	}
}

func TestAppendEnvelopeRejects(t *testing.T) {
	env := sampleEnvelope()
	env.Payload = json.RawMessage(`{"open":`)
	if _, err := appendEnvelope(nil, env); err == nil {
		t.Fatal("accepted an invalid payload")
	}
	env = sampleEnvelope()
	env.RecordedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := appendEnvelope(nil, env); err == nil {
		t.Fatal("accepted a year encoding/json rejects")
	}
	if _, err := ToMessage(Envelope{}); err == nil {
		t.Fatal("ToMessage accepted an envelope without event id")
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\/", "<script>&", "\x00\x01\x7f", "\b\f\n\r\t", "\u2028\u2029", "\xff", "é漢字🙂", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("appendString(%q) = %s, encoding/json %s", s, got, want)
		}
	})
}

func TestMessageRoundTrip(t *testing.T) {
	codec := NewCodec()
	Register[msgTestOpened](codec, 1)
	env := sampleEnvelope()
	msg, err := ToMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	if msg.UUID != env.EventID {
		t.Fatalf("UUID %s, want the event id", msg.UUID)
	}
	for h, want := range map[string]string{
		HeaderTenant: "tenant-a", HeaderEventType: "msgtest.opened", HeaderSchema: "1", HeaderPosition: "42",
		HeaderEventID: env.EventID, HeaderStreamType: "case", HeaderStreamID: env.StreamID, HeaderVersion: "3",
	} {
		if got := msg.Metadata.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}

	got, err := FromMessage(msg, codec)
	if err != nil {
		t.Fatal(err)
	}
	if got.Event != (msgTestOpened{Title: `Ransomware on <host> & "friends"`}) {
		t.Fatalf("decoded event %#v", got.Event)
	}
	got.Event = nil
	if !got.RecordedAt.Equal(env.RecordedAt) {
		t.Fatalf("recorded_at %v, want %v", got.RecordedAt, env.RecordedAt)
	}
	got.RecordedAt = env.RecordedAt
	if !reflect.DeepEqual(got, env) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, env)
	}

	// A tampered header changes nothing: the payload is authoritative.
	msg.Metadata.Set(HeaderTenant, "tenant-b")
	if got, _ := FromMessage(msg, codec); got.Tenant != "tenant-a" {
		t.Fatalf("tenant %s taken from a header", got.Tenant)
	}

	// Unknown names (and a nil codec) leave Event nil but keep the payload.
	unknown := sampleEnvelope()
	unknown.Name = "msgtest.from_the_future"
	m2, _ := ToMessage(unknown)
	for _, c := range []*Codec{codec, nil} {
		got, err := FromMessage(m2, c)
		if err != nil || got.Event != nil || string(got.Payload) != string(unknown.Payload) {
			t.Fatalf("unknown event: %+v, %v", got, err)
		}
	}
}

func TestFromMessageRejects(t *testing.T) {
	codec := NewCodec()
	Register[msgTestOpened](codec, 1)
	good, _ := ToMessage(sampleEnvelope())

	mismatch := good.Copy()
	mismatch.UUID = "01890a5d-ac96-774b-bcce-000000000000"
	notJSON := good.Copy()
	notJSON.Payload = []byte("nope")
	noTenant := good.Copy()
	noTenant.Payload = []byte(strings.Replace(string(good.Payload), `"tenant_id":"tenant-a"`, `"tenant_id":""`, 1))
	badEvent := sampleEnvelope()
	badEvent.Payload = json.RawMessage(`{"title": 7}`)
	badEventMsg, _ := ToMessage(badEvent)
	badHash := good.Copy()
	badHash.Payload = []byte(strings.Replace(string(good.Payload), `"hash":"abab`, `"hash":"zzab`, 1))

	for name, m := range map[string]*struct {
		uuid    string
		payload []byte
	}{
		"uuid mismatch": {mismatch.UUID, mismatch.Payload},
		"not json":      {notJSON.UUID, notJSON.Payload},
		"no tenant":     {noTenant.UUID, noTenant.Payload},
		"bad event":     {badEventMsg.UUID, badEventMsg.Payload},
		"bad hash":      {badHash.UUID, badHash.Payload},
	} {
		msg := good.Copy()
		msg.UUID, msg.Payload = m.uuid, m.payload
		if _, err := FromMessage(msg, codec); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
