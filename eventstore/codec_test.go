package eventstore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"velocicompanion/eventstore"
)

// versioned is at schema 3: schema 1 was {"n": "<name>"}, schema 2 {"name": "<name>"}.
type versioned struct {
	Name  string `json:"name"`
	Upper bool   `json:"upper"`
}

func (versioned) EventName() string { return "codectest.versioned" }

type otherName struct{}

func (otherName) EventName() string { return "codectest.versioned" }

type ptrEvent struct{}

func (*ptrEvent) EventName() string { return "codectest.pointer" }

func renameField(from, to string) eventstore.Upcaster {
	return func(in json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(in, &m); err != nil {
			return nil, err
		}
		m[to] = m[from]
		delete(m, from)
		return json.Marshal(m)
	}
}

func addUpper(in json.RawMessage) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal(in, &m); err != nil {
		return nil, err
	}
	m["upper"] = strings.ToUpper(m["name"].(string)) == m["name"]
	return json.Marshal(m)
}

func TestCodecUpcastsThroughEverySchema(t *testing.T) {
	c := eventstore.NewCodec()
	eventstore.Register[versioned](c, 3, renameField("n", "name"), addUpper)
	for _, tc := range []struct {
		schema  int
		payload string
	}{
		{1, `{"n":"ADA"}`},
		{2, `{"name":"ADA"}`},
		{3, `{"name":"ADA","upper":true}`},
	} {
		ev, err := c.Decode("codectest.versioned", tc.schema, []byte(tc.payload))
		if err != nil {
			t.Fatalf("schema %d: %v", tc.schema, err)
		}
		if v, ok := ev.(versioned); !ok || v != (versioned{Name: "ADA", Upper: true}) {
			t.Fatalf("schema %d decoded as %#v, want the value type at schema 3", tc.schema, ev)
		}
	}
	name, schema, payload, err := c.Encode(versioned{Name: "x"})
	if err != nil || name != "codectest.versioned" || schema != 3 || string(payload) != `{"name":"x","upper":false}` {
		t.Fatalf("Encode: %s %d %s %v", name, schema, payload, err)
	}
	for _, s := range []int{0, 4} {
		if _, err := c.Decode("codectest.versioned", s, []byte(`{}`)); err == nil {
			t.Errorf("Decode accepted schema %d", s)
		}
	}
	if _, err := c.Decode("codectest.versioned", 3, []byte(`{"name": 5}`)); err == nil {
		t.Error("Decode accepted a payload of the wrong shape")
	}
	boom := errors.New("boom")
	c2 := eventstore.NewCodec()
	eventstore.Register[versioned](c2, 2, func(json.RawMessage) (json.RawMessage, error) { return nil, boom })
	if _, err := c2.Decode("codectest.versioned", 1, []byte(`{}`)); !errors.Is(err, boom) {
		t.Errorf("upcaster error: got %v", err)
	}
	var unknown *eventstore.UnknownEventError
	if _, _, _, err := c2.Encode(otherEvent{}); !errors.As(err, &unknown) {
		t.Errorf("Encode of an unregistered event: %v", err)
	}
}

type otherEvent struct{}

func (otherEvent) EventName() string { return "codectest.other" }

func TestRegisterPanicsOnWiringErrors(t *testing.T) {
	for name, register := range map[string]func(*eventstore.Codec){
		"too few upcasters":  func(c *eventstore.Codec) { eventstore.Register[versioned](c, 3, addUpper) },
		"too many upcasters": func(c *eventstore.Codec) { eventstore.Register[versioned](c, 1, addUpper) },
		"schema zero":        func(c *eventstore.Codec) { eventstore.Register[versioned](c, 0) },
		"nil upcaster":       func(c *eventstore.Codec) { eventstore.Register[versioned](c, 2, nil) },
		"pointer type":       func(c *eventstore.Codec) { eventstore.Register[*ptrEvent](c, 1) },
		"name taken": func(c *eventstore.Codec) {
			eventstore.Register[versioned](c, 1)
			eventstore.Register[otherName](c, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Register did not panic")
				}
			}()
			register(eventstore.NewCodec())
		})
	}
}
