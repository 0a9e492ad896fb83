// Package tenants decides what may happen to a tenant: a client organisation
// whose users, hosts and cases are isolated from every other tenant's.
//
// A tenant's stream lives in domain.PlatformTenant with the tenant's id as the
// stream id. Uniqueness of tenant names across the installation is enforced by
// the command handler's uniqueness table, not here: a decision only sees one
// tenant's history.
//
// Package tenants is pure: no I/O, no clock, and it imports nothing of ours but
// package domain.
package tenants

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
)

// Wire names of the tenant events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventCreated     = "tenant.created"
	EventUpdated     = "tenant.updated"
	EventDeactivated = "tenant.deactivated"
	EventReactivated = "tenant.reactivated"
)

// Limits on the fields of a tenant, counted in Unicode code points.
const (
	MaxNameLen        = 100
	MaxDescriptionLen = 1000
)

// Created records that a platform administrator created a tenant.
type Created struct {
	ID          domain.TenantID `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	By          domain.UserID   `json:"by"`
}

// Updated records a tenant's new name and description; both fields hold the
// values after the change, whichever of them changed.
type Updated struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	By          domain.UserID `json:"by"`
}

// Deactivated records that a tenant was switched off: its users may no longer
// sign in and its data is kept.
type Deactivated struct {
	By domain.UserID `json:"by"`
}

// Reactivated records that a deactivated tenant was switched on again.
type Reactivated struct {
	By domain.UserID `json:"by"`
}

// EventName returns the durable wire name of Created.
func (Created) EventName() string { return EventCreated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Updated.
func (Updated) EventName() string { return EventUpdated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Deactivated.
func (Deactivated) EventName() string { return EventDeactivated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Reactivated.
func (Reactivated) EventName() string { return EventReactivated } // WARNING: stored; never rename.

// State is what decisions about one tenant need; Evolve rebuilds it.
type State struct {
	ID          domain.TenantID
	Exists      bool
	Active      bool
	Name        string
	Description string
	// RequireVerifiedEmail is the sign-in policy: see PolicyChanged.
	RequireVerifiedEmail bool
}

// Errors returned by the decisions, besides domain.ErrNotFound.
var (
	ErrExists             = domain.Conflict("tenant_exists", "the tenant already exists")
	ErrIDRequired         = domain.Invalid("tenant_id_required", "tenant id must not be empty")
	ErrPlatformTenant     = domain.Forbidden("platform_tenant", "the platform tenant cannot be deactivated")
	ErrNameRequired       = domain.Invalid("name_required", "name must not be empty")
	ErrNameTooLong        = domain.Invalid("name_too_long", "name must be at most 100 characters")
	ErrNameInvalid        = domain.Invalid("name_invalid", "name must contain only printable characters")
	ErrDescriptionTooLong = domain.Invalid("description_too_long", "description must be at most 1000 characters")
	ErrDescriptionInvalid = domain.Invalid("description_invalid", "description must contain only printable characters and line breaks")
)

// Changes lists the fields an update sets; a nil field is left as it is.
type Changes struct {
	Name        *string
	Description *string
}

// Create decides whether a tenant with id may be created in the empty stream s.
// Name and description are trimmed of surrounding white space before they are
// checked and recorded.
func Create(s State, id domain.TenantID, name, description string, by domain.UserID) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if strings.TrimSpace(string(id)) == "" {
		return nil, ErrIDRequired
	}
	name, err := CheckName(name)
	if err != nil {
		return nil, err
	}
	description, err = CheckDescription(description)
	if err != nil {
		return nil, err
	}
	return []domain.Event{Created{ID: id, Name: name, Description: description, By: by}}, nil
}

// Update decides whether the tenant s may take the name and description in ch.
// An update that changes nothing records nothing. A deactivated tenant may
// still be renamed.
func Update(s State, ch Changes, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	name, description := s.Name, s.Description
	var err error
	if ch.Name != nil {
		if name, err = CheckName(*ch.Name); err != nil {
			return nil, err
		}
	}
	if ch.Description != nil {
		if description, err = CheckDescription(*ch.Description); err != nil {
			return nil, err
		}
	}
	if name == s.Name && description == s.Description {
		return nil, nil
	}
	return []domain.Event{Updated{Name: name, Description: description, By: by}}, nil
}

// Deactivate decides whether the tenant s may be switched off. Deactivating
// an inactive tenant records nothing. The platform tenant is never deactivated:
// that would lock every platform administrator out.
func Deactivate(s State, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.ID == domain.PlatformTenant:
		return nil, ErrPlatformTenant
	case !s.Active:
		return nil, nil
	}
	return []domain.Event{Deactivated{By: by}}, nil
}

// Reactivate decides whether the tenant s may be switched on again.
// Reactivating an active tenant records nothing.
func Reactivate(s State, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.Active:
		return nil, nil
	}
	return []domain.Event{Reactivated{By: by}}, nil
}

// Evolve applies one recorded event to s. It never fails; events of other
// aggregates leave s unchanged.
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Created:
		s = State{ID: e.ID, Exists: true, Active: true, Name: e.Name, Description: e.Description}
	case Updated:
		s.Name, s.Description = e.Name, e.Description
	case Deactivated:
		s.Active = false
	case Reactivated:
		s.Active = true
	case PolicyChanged:
		s.RequireVerifiedEmail = e.RequireVerifiedEmail
	}
	return s
}

// CheckName returns name without surrounding white space if it is a valid
// tenant name: 1 to MaxNameLen code points, all printable.
func CheckName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "", ErrNameRequired
	case n > MaxNameLen:
		return "", ErrNameTooLong
	}
	if !utf8.ValidString(name) || strings.IndexFunc(name, notPrintable) >= 0 {
		return "", ErrNameInvalid
	}
	return name, nil
}

// CheckDescription returns description without surrounding white space if it
// is a valid tenant description: at most MaxDescriptionLen code points,
// printable characters, tabs and line breaks. It may be empty.
func CheckDescription(description string) (string, error) {
	description = strings.TrimSpace(description)
	if utf8.RuneCountInString(description) > MaxDescriptionLen {
		return "", ErrDescriptionTooLong
	}
	if !utf8.ValidString(description) || strings.IndexFunc(description, notText) >= 0 {
		return "", ErrDescriptionInvalid
	}
	return description, nil
}

// notPrintable reports whether r is not printable; of the spaces only U+0020
// counts as printable.
func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// notText reports whether r may not appear in free text.
func notText(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && !unicode.IsPrint(r) }
