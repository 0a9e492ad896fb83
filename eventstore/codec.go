package eventstore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"velocicompanion/domain"
)

// Upcaster rewrites a payload stored at one schema version into the shape of
// the next version (v -> v+1). Upcasters run on read; stored rows are never
// rewritten.
type Upcaster func(json.RawMessage) (json.RawMessage, error)

// Codec maps durable event names to Go types and back, upcasting old payloads on
// the way in. A Codec is safe for concurrent use; register every event while
// wiring, before the Codec is used.
type Codec struct {
	mu    sync.Mutex                            // serialises Register
	types atomic.Pointer[map[string]*codecType] // copy-on-write: readers never lock
}

// codecType is one registered event type.
type codecType struct {
	name      string
	goType    reflect.Type
	schema    int        // current schema version
	upcasters []Upcaster // upcasters[i] turns schema i+1 into i+2
	decode    func([]byte) (domain.Event, error)
}

// UnknownEventError is returned by Encode and Decode for an event name that no
// Register call declared. Readers keep such events (with a nil Event) instead of
// failing: they were written by a newer or another component.
type UnknownEventError struct {
	Name string
}

// Error reports the unknown name.
func (e *UnknownEventError) Error() string { return fmt.Sprintf("unknown event %q", e.Name) }

// NewCodec returns an empty Codec.
func NewCodec() *Codec {
	c := &Codec{}
	m := map[string]*codecType{}
	c.types.Store(&m)
	return c
}

// Register declares E, a value type whose zero value's EventName is its durable
// name, at the given current schema version (>= 1). upcasters[i] turns a payload
// of schema i+1 into schema i+2, so exactly schema-1 of them are required.
// Register panics on these wiring errors and when the name is already
// registered.
func Register[E domain.Event](c *Codec, schema int, upcasters ...Upcaster) {
	t := reflect.TypeFor[E]()
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
		panic(fmt.Sprintf("eventstore: Register[%s]: E must be a non-pointer concrete type", t))
	}
	var zero E
	name := zero.EventName()
	switch {
	case name == "":
		panic(fmt.Sprintf("eventstore: Register[%s]: empty event name", t))
	case schema < 1:
		panic(fmt.Sprintf("eventstore: Register[%s]: schema %d < 1", t, schema))
	case len(upcasters) != schema-1:
		panic(fmt.Sprintf("eventstore: Register[%s]: schema %d needs %d upcasters, got %d",
			t, schema, schema-1, len(upcasters)))
	}
	for i, u := range upcasters {
		if u == nil {
			panic(fmt.Sprintf("eventstore: Register[%s]: upcaster %d is nil", t, i))
		}
	}
	ct := &codecType{
		name:      name,
		goType:    t,
		schema:    schema,
		upcasters: append([]Upcaster(nil), upcasters...),
		decode: func(b []byte) (domain.Event, error) {
			var e E
			if err := json.Unmarshal(b, &e); err != nil {
				return nil, err
			}
			return e, nil
		},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.types.Load()
	if prev, ok := old[name]; ok {
		panic(fmt.Sprintf("eventstore: Register[%s]: event name %q already registered by %s", t, name, prev.goType))
	}
	next := make(map[string]*codecType, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = ct
	c.types.Store(&next)
}

func (c *Codec) lookup(name string) (*codecType, bool) {
	ct, ok := (*c.types.Load())[name]
	return ct, ok
}

// Known reports whether name is registered.
func (c *Codec) Known(name string) bool {
	_, ok := c.lookup(name)
	return ok
}

// Encode returns e's durable name, its current schema version and its JSON
// payload. e must be of the registered type itself, not a pointer to it.
func (c *Codec) Encode(e domain.Event) (name string, schema int, payload []byte, err error) {
	if e == nil {
		return "", 0, nil, fmt.Errorf("encode: nil event")
	}
	name = e.EventName()
	ct, ok := c.lookup(name)
	if !ok {
		return "", 0, nil, fmt.Errorf("encode: %w", &UnknownEventError{Name: name})
	}
	if got := reflect.TypeOf(e); got != ct.goType {
		return "", 0, nil, fmt.Errorf("encode %s: got a %s, registered as %s", name, got, ct.goType)
	}
	payload, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %s: %w", name, err)
	}
	return name, ct.schema, payload, nil
}

// Decode turns a stored payload of the given schema into the registered type's
// value (not a pointer), applying the upcasters from schema up to the current
// version first. An unregistered name yields an *UnknownEventError.
func (c *Codec) Decode(name string, schema int, payload []byte) (domain.Event, error) {
	ct, ok := c.lookup(name)
	if !ok {
		return nil, &UnknownEventError{Name: name}
	}
	if schema < 1 || schema > ct.schema {
		return nil, fmt.Errorf("decode %s: stored schema %d, this build knows 1..%d", name, schema, ct.schema)
	}
	raw := json.RawMessage(payload)
	for v := schema; v < ct.schema; v++ {
		var err error
		if raw, err = ct.upcasters[v-1](raw); err != nil {
			return nil, fmt.Errorf("decode %s: upcast schema %d to %d: %w", name, v, v+1, err)
		}
	}
	e, err := ct.decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode %s schema %d: %w", name, schema, err)
	}
	return e, nil
}
