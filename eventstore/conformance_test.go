package eventstore_test

import (
	"testing"

	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []eventstore.StoreOption
	}{
		{"app_role", nil},
		{"app_role_without_head_cache", []eventstore.StoreOption{eventstore.WithHeadCache(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pgtest.RunConformance(t, func(t *testing.T) *eventstore.Store {
				return eventstore.NewStore(pgtest.New(t).App, eventstore.NewCodec(), tc.opts...)
			})
		})
	}
}
