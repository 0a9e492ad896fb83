// Package domaintest runs the given/when/then scenarios of the aggregates'
// table-driven tests. It is for tests only and imports nothing of ours but
// package domain.
package domaintest

import (
	"errors"
	"reflect"
	"testing"

	"velocicompanion/domain"
)

// Check runs one scenario as a subtest called name: given events folded with
// evolve, when decides on the state, and the result must be want, or an error
// that errors.Is wantErr (with no events alongside it).
func Check[S any](t *testing.T, name string, evolve func(S, domain.Event) S, given []domain.Event,
	when func(S) ([]domain.Event, error), want []domain.Event, wantErr error) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		got, err := when(domain.Fold(evolve, given))
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Fatalf("error = %v, want %v", err, wantErr)
			}
			if got != nil {
				t.Fatalf("events = %#v alongside an error", got)
			}
			return
		}
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("events = %#v\nwant     %#v", got, want)
		}
	})
}
