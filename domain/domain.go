// Package domain is the shared kernel of VelociCompanion: typed identifiers, the
// Event interface every aggregate's facts implement, and the Error type with its
// Kind enum that the HTTP edge maps to status codes.
//
// Package domain and its sub-packages are pure Go: they perform no I/O, read no
// clock and import nothing outside the standard library and package domain itself.
package domain

// TenantID identifies a client organisation. Every stream, read-model row and
// query is scoped by one.
type TenantID string

// UserID identifies a user within the installation.
type UserID string

// PlatformTenant is the tenant that owns installation-wide streams, such as the
// platform administrators and the tenant registry itself.
const PlatformTenant TenantID = "00000000-0000-0000-0000-000000000000"

// Event is a recorded fact. EventName returns its durable wire name,
// "<aggregate>.<past_tense_snake>", which is stored and must never change.
type Event interface {
	EventName() string
}

// Fold applies evolve to each event of history in order, starting from the zero state.
func Fold[S any](evolve func(S, Event) S, history []Event) S {
	var s S
	for _, e := range history {
		s = evolve(s, e)
	}
	return s
}
