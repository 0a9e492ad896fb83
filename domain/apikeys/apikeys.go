// Package apikeys decides what may happen to an API key: a credential for
// automation (a service account) that a tenant administrator creates with a
// name, a role and an expiry, and may revoke.
//
// A key's stream lives in its tenant with the key id as the stream id. The
// secret part of a key and its hash never appear here: the command handler
// stores the hash in its credential table in the same transaction as
// apikey.created, and shows the key once to its creator.
//
// Package apikeys is pure: no I/O, no clock (time comes in as a now argument),
// and it imports nothing of ours but package domain and package users (for
// roles and actors).
package apikeys

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// Wire names of the API key events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventCreated = "apikey.created"
	EventRevoked = "apikey.revoked"
)

// Limits on keys.
const (
	MaxNameLen = 100
	// Slack is added to a year when checking the longest lifetime, so that a
	// client computing "a year from today" in its own time zone or with a
	// clock ahead of ours is not refused.
	Slack = 24 * time.Hour
)

// ID identifies an API key; it is also the public part of the key string.
type ID string

// Created records that an administrator created a key acting in Tenant with
// Role until ExpiresAt. It never carries the secret or its hash.
type Created struct {
	ID        ID              `json:"id"`
	Tenant    domain.TenantID `json:"tenant"`
	Name      string          `json:"name"`
	Role      users.Role      `json:"role"`
	ExpiresAt time.Time       `json:"expires_at"`
	By        domain.UserID   `json:"by"`
	At        time.Time       `json:"at"`
}

// Revoked records that an administrator revoked a key: it stops working at once.
type Revoked struct {
	By domain.UserID `json:"by"`
	At time.Time     `json:"at"`
}

// EventName returns the durable wire name of Created.
func (Created) EventName() string { return EventCreated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Revoked.
func (Revoked) EventName() string { return EventRevoked } // WARNING: stored; never rename.

// State is what decisions about one key need; Evolve rebuilds it.
type State struct {
	ID        ID
	Tenant    domain.TenantID
	Exists    bool
	Name      string
	Role      users.Role
	ExpiresAt time.Time
	CreatedBy domain.UserID
	CreatedAt time.Time
	Revoked   bool
	RevokedAt time.Time
}

// Errors returned by the decisions, besides domain.ErrNotFound, which answers
// for a key that does not exist or belongs to a tenant the actor cannot see.
var (
	ErrExists        = domain.Conflict("apikey_exists", "the API key already exists")
	ErrNotAllowed    = domain.Forbidden("not_allowed", "only an administrator of the tenant may manage its API keys")
	ErrIDRequired    = domain.Invalid("apikey_id_required", "API key id must not be empty")
	ErrNameRequired  = domain.Invalid("name_required", "name must not be empty")
	ErrNameTooLong   = domain.Invalid("name_too_long", "name must be at most 100 characters")
	ErrNameInvalid   = domain.Invalid("name_invalid", "name must be printable text without control characters")
	ErrRoleInvalid   = domain.Invalid("role_invalid", "role must be one of admin, analyst, viewer")
	ErrRoleAbove     = domain.Forbidden("role_above_yours", "an API key cannot have a role above yours")
	ErrExpiryMissing = domain.Invalid("expires_at_required", "expires_at is required")
	ErrExpiryPast    = domain.Unprocessable("expires_at_past", "expires_at must be in the future")
	ErrExpiryTooFar  = domain.Unprocessable("expires_at_too_far", "expires_at must be at most one year ahead")
)

// Spec is what an administrator supplies to create a key.
type Spec struct {
	ID        ID
	Tenant    domain.TenantID
	Name      string
	Role      users.Role
	ExpiresAt time.Time
}

// Create decides whether by may create the key k in the empty stream s at now.
// Only an administrator of k.Tenant may; the key's role is admin, analyst or
// viewer and never above by's; it expires after now and at most a year (plus
// Slack) later. The name is trimmed.
func Create(s State, by users.Actor, k Spec, now time.Time) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if err := mayManage(by, k.Tenant); err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(k.ID)) == "" {
		return nil, ErrIDRequired
	}
	name, err := CheckName(k.Name)
	if err != nil {
		return nil, err
	}
	switch k.Role {
	case users.RoleAdmin, users.RoleAnalyst, users.RoleViewer:
	default:
		return nil, ErrRoleInvalid
	}
	if !by.Role.AtLeast(k.Role) {
		return nil, ErrRoleAbove
	}
	switch {
	case k.ExpiresAt.IsZero():
		return nil, ErrExpiryMissing
	case !k.ExpiresAt.After(now):
		return nil, ErrExpiryPast
	case k.ExpiresAt.After(now.AddDate(1, 0, 0).Add(Slack)):
		return nil, ErrExpiryTooFar
	}
	return []domain.Event{Created{ID: k.ID, Tenant: k.Tenant, Name: name, Role: k.Role,
		ExpiresAt: k.ExpiresAt.UTC(), By: by.User, At: now}}, nil
}

// Revoke decides whether by may revoke s at now. Revoking a revoked key
// records nothing; an expired key may still be revoked, which says so for good.
func Revoke(s State, by users.Actor, now time.Time) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if err := mayManage(by, s.Tenant); err != nil {
		return nil, err
	}
	if s.Revoked {
		return nil, nil
	}
	return []domain.Event{Revoked{By: by.User, At: now}}, nil
}

// Evolve applies one recorded event to s. It never fails; events of other
// aggregates leave s unchanged.
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Created:
		s = State{ID: e.ID, Tenant: e.Tenant, Exists: true, Name: e.Name, Role: e.Role,
			ExpiresAt: e.ExpiresAt, CreatedBy: e.By, CreatedAt: e.At}
	case Revoked:
		s.Revoked = true
		s.RevokedAt = e.At
	}
	return s
}

// Active reports whether a key in state s may be used at now.
func (s State) Active(now time.Time) bool {
	return s.Exists && !s.Revoked && now.Before(s.ExpiresAt)
}

// CheckName returns name without surrounding white space if it is 1 to
// MaxNameLen printable characters.
func CheckName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", ErrNameRequired
	case !utf8.ValidString(name):
		return "", ErrNameInvalid
	case utf8.RuneCountInString(name) > MaxNameLen:
		return "", ErrNameTooLong
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "", ErrNameInvalid
	}
	return name, nil
}

// mayManage reports whether by administers the API keys of tenant: an
// administrator of that tenant. Another tenant answers ErrNotFound, so that
// its keys' existence does not leak; platform administrators manage tenants,
// not their automation.
func mayManage(by users.Actor, tenant domain.TenantID) error {
	switch {
	case by.Tenant != tenant:
		return domain.ErrNotFound
	case by.Role != users.RoleAdmin:
		return ErrNotAllowed
	}
	return nil
}
