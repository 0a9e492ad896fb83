// Package artifacts decides what may happen to an artifact: an observable,
// flagged as an indicator of compromise (IOC) or not, such as a hash, an IP
// address, a domain, a URL or a registry key, attached to a case, a host or
// both, with a description, tags, a TLP marking, its source and metadata. It
// also owns Normalize, the validation and canonical form of every kind of
// value, under which the same indicator written two ways is one artifact.
//
// An artifact's stream lives in its tenant with the artifact id as the stream
// id. The same value twice in one case is one artifact: the command handler
// keeps a uniqueness table keyed by (tenant, case, kind, normalised value) —
// or (tenant, host, kind, value) for an artifact on a host alone — and, when
// the key is taken, calls Sight on the existing artifact instead of Add. It
// frees the key when an artifact is deleted. That the case and host exist in
// the tenant is the handler's check too.
//
// Package artifacts is pure: no I/O, no clock (time comes in as an argument).
// It imports package domain, package cases (case ids, TLP markings and the tag
// rules) and package hosts (host ids and the metadata rules), and, as the one
// exception to "the standard library only", golang.org/x/net/idna: turning
// internationalised domain names into punycode needs the IDNA mapping tables,
// which the standard library does not have.
package artifacts

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
)

// Wire names of the artifact events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventAdded   = "artifact.added"
	EventUpdated = "artifact.updated"
	EventSighted = "artifact.sighted"
	EventDeleted = "artifact.deleted"
)

// Limits on the fields of an artifact, in Unicode code points.
const (
	MaxDescriptionLen = 10000
	MaxSourceLen      = 100
	// MaxClockSkew is how far in the future of now a reported sighting may
	// lie.
	MaxClockSkew = 5 * time.Minute
)

// DefaultTLP is the marking of an artifact added without one, as in TheHive.
// The handler may pass the case's marking instead.
const DefaultTLP = cases.TLPAmber

// ID identifies an artifact within its tenant; it is the artifact's stream id.
type ID string

// Added records that an artifact was added. Value is normalised for Kind. Case
// and Host say what it is attached to; at least one is set. An added artifact
// counts as sighted once.
type Added struct {
	ID          ID              `json:"id"`
	Kind        Kind            `json:"kind"`
	Value       string          `json:"value"`
	Case        cases.ID        `json:"case,omitempty"`
	Host        hosts.ID        `json:"host,omitempty"`
	Description string          `json:"description,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	TLP         cases.TLP       `json:"tlp"`
	IOC         bool            `json:"is_ioc"`
	Source      string          `json:"source,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	By          domain.UserID   `json:"by"`
}

// Updated records the fields of an artifact that changed, with their new
// values; a nil field did not change. Tags holds the whole new set (an empty,
// non-nil list when cleared); cleared metadata is {}. Kind, value and what the
// artifact is attached to never change: a different value is another artifact.
type Updated struct {
	Description *string         `json:"description,omitempty"`
	Tags        *[]string       `json:"tags,omitempty"`
	TLP         *cases.TLP      `json:"tlp,omitempty"`
	IOC         *bool           `json:"is_ioc,omitempty"`
	Source      *string         `json:"source,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	By          domain.UserID   `json:"by"`
}

// Sighted records that an artifact's value was seen again at At, optionally on
// a host and by a source.
type Sighted struct {
	Host   hosts.ID      `json:"host,omitempty"`
	Source string        `json:"source,omitempty"`
	At     time.Time     `json:"at"`
	By     domain.UserID `json:"by"`
}

// Deleted records that an artifact was deleted. Deletion is soft and final:
// the history is kept, but the artifact can no longer be changed and the API
// treats it as not found. Adding the value again makes a new artifact.
type Deleted struct {
	By domain.UserID `json:"by"`
}

// EventName returns the durable wire name of Added.
func (Added) EventName() string { return EventAdded } // WARNING: stored; never rename.

// EventName returns the durable wire name of Updated.
func (Updated) EventName() string { return EventUpdated } // WARNING: stored; never rename.

// EventName returns the durable wire name of Sighted.
func (Sighted) EventName() string { return EventSighted } // WARNING: stored; never rename.

// EventName returns the durable wire name of Deleted.
func (Deleted) EventName() string { return EventDeleted } // WARNING: stored; never rename.

// State is what decisions about one artifact need; Evolve rebuilds it.
type State struct {
	ID          ID
	Exists      bool
	Deleted     bool
	Kind        Kind
	Value       string
	Case        cases.ID
	Host        hosts.ID
	Description string
	Tags        []string
	TLP         cases.TLP
	IOC         bool
	Source      string
	Metadata    json.RawMessage
	// Sightings counts the addition and every sighting since.
	Sightings int
	// LastSighted is the latest At of the sightings; zero until one.
	LastSighted time.Time
}

// Errors returned by the decisions, besides domain.ErrNotFound (an artifact
// that does not exist or was deleted), the Normalize errors for the value,
// cases.ErrTLPInvalid and the tag errors of cases.NormalizeTags, and the
// metadata errors of hosts.CheckMetadata.
var (
	ErrExists             = domain.Conflict("artifact_exists", "the artifact already exists")
	ErrIDRequired         = domain.Invalid("artifact_id_required", "artifact id must not be empty")
	ErrUnattached         = domain.Invalid("artifact_unattached", "an artifact must be attached to a case, a host or both")
	ErrRefInvalid         = domain.Invalid("reference_invalid", "case and host ids must be at most 128 printable characters without spaces")
	ErrDescriptionTooLong = domain.Invalid("description_too_long", "description must be at most 10000 characters")
	ErrDescriptionInvalid = domain.Invalid("description_invalid", "description must contain only printable characters, tabs and line breaks")
	ErrSourceInvalid      = domain.Invalid("source_invalid", "source must be at most 100 printable characters")
	ErrSightedInFuture    = domain.Invalid("sighted_in_future", "the time of a sighting must not lie in the future")
)

// NewArtifact is what an analyst or an integration supplies to add an
// artifact. Value is normalised for Kind; an empty TLP means DefaultTLP.
type NewArtifact struct {
	ID          ID
	Kind        Kind
	Value       string
	Case        cases.ID
	Host        hosts.ID
	Description string
	Tags        []string
	TLP         cases.TLP
	IOC         bool
	Source      string
	Metadata    json.RawMessage
}

// Changes lists the fields an update sets; a nil field is left as it is.
// Metadata is left as it is when nil, and removed when it is {} or null.
type Changes struct {
	Description *string
	Tags        *[]string
	TLP         *cases.TLP
	IOC         *bool
	Source      *string
	Metadata    json.RawMessage
}

// Sighting is one more observation of an artifact's value. A zero At means
// now.
type Sighting struct {
	Host   hosts.ID
	Source string
	At     time.Time
}

// Add decides whether the artifact a may be added in the empty stream s.
func Add(s State, a NewArtifact, by domain.UserID) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if strings.TrimSpace(string(a.ID)) == "" {
		return nil, ErrIDRequired
	}
	e := Added{
		ID:   a.ID,
		Case: cases.ID(strings.TrimSpace(string(a.Case))),
		Host: hosts.ID(strings.TrimSpace(string(a.Host))),
		TLP:  DefaultTLP, IOC: a.IOC, By: by,
	}
	switch {
	case e.Case == "" && e.Host == "":
		return nil, ErrUnattached
	case e.Case != "" && !cases.IsRef(string(e.Case)), e.Host != "" && !cases.IsRef(string(e.Host)):
		return nil, ErrRefInvalid
	}
	var err error
	if e.Kind, err = ParseKind(string(a.Kind)); err != nil {
		return nil, err
	}
	if e.Value, err = Normalize(e.Kind, a.Value); err != nil {
		return nil, err
	}
	if e.Description, err = checkDescription(a.Description); err != nil {
		return nil, err
	}
	if e.Tags, err = cases.NormalizeTags(a.Tags); err != nil {
		return nil, err
	}
	if a.TLP != "" {
		if e.TLP, err = cases.ParseTLP(string(a.TLP)); err != nil {
			return nil, err
		}
	}
	if e.Source, err = checkSource(a.Source); err != nil {
		return nil, err
	}
	if e.Metadata, err = hosts.CheckMetadata(a.Metadata); err != nil {
		return nil, err
	}
	return []domain.Event{e}, nil
}

// Update decides whether the artifact s may take the changes ch. Only the
// fields that really change are recorded; an update that changes nothing
// records nothing.
func Update(s State, ch Changes, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists || s.Deleted {
		return nil, domain.ErrNotFound
	}
	e := Updated{By: by}
	changed := false
	if ch.Description != nil {
		v, err := checkDescription(*ch.Description)
		if err != nil {
			return nil, err
		}
		if v != s.Description {
			e.Description, changed = &v, true
		}
	}
	if ch.Tags != nil {
		v, err := cases.NormalizeTags(*ch.Tags)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(v, s.Tags) {
			if v == nil {
				v = []string{}
			}
			e.Tags, changed = &v, true
		}
	}
	if ch.TLP != nil {
		v, err := cases.ParseTLP(string(*ch.TLP))
		if err != nil {
			return nil, err
		}
		if v != s.TLP {
			e.TLP, changed = &v, true
		}
	}
	if ch.IOC != nil && *ch.IOC != s.IOC {
		v := *ch.IOC
		e.IOC, changed = &v, true
	}
	if ch.Source != nil {
		v, err := checkSource(*ch.Source)
		if err != nil {
			return nil, err
		}
		if v != s.Source {
			e.Source, changed = &v, true
		}
	}
	if ch.Metadata != nil {
		v, err := hosts.CheckMetadata(ch.Metadata)
		if err != nil {
			return nil, err
		}
		if !hosts.SameMetadata(v, s.Metadata) {
			if v == nil {
				v = json.RawMessage(`{}`)
			}
			e.Metadata, changed = v, true
		}
	}
	if !changed {
		return nil, nil
	}
	return []domain.Event{e}, nil
}

// Sight decides whether the artifact s may record the sighting sg, reported at
// now. Every sighting is news and is counted, so a retried command must be
// deduplicated by the handler (by its request id), not here. sg.At may lie at
// most MaxClockSkew after now.
func Sight(s State, sg Sighting, now time.Time, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists || s.Deleted {
		return nil, domain.ErrNotFound
	}
	at := sg.At
	if at.IsZero() {
		at = now
	}
	if at.After(now.Add(MaxClockSkew)) {
		return nil, ErrSightedInFuture
	}
	source, err := checkSource(sg.Source)
	if err != nil {
		return nil, err
	}
	host := hosts.ID(strings.TrimSpace(string(sg.Host)))
	if host != "" && !cases.IsRef(string(host)) {
		return nil, ErrRefInvalid
	}
	return []domain.Event{Sighted{Host: host, Source: source, At: at.UTC(), By: by}}, nil
}

// Delete decides whether the artifact s may be deleted. Deleting a deleted
// artifact records nothing.
func Delete(s State, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.Deleted:
		return nil, nil
	}
	return []domain.Event{Deleted{By: by}}, nil
}

// Evolve applies one recorded event to s. It never fails; events of other
// aggregates leave s unchanged.
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Added:
		s = State{
			ID: e.ID, Exists: true, Kind: e.Kind, Value: e.Value, Case: e.Case, Host: e.Host,
			Description: e.Description, Tags: slices.Clone(e.Tags), TLP: e.TLP, IOC: e.IOC,
			Source: e.Source, Metadata: slices.Clone(e.Metadata), Sightings: 1,
		}
	case Updated:
		if e.Description != nil {
			s.Description = *e.Description
		}
		if e.Tags != nil {
			s.Tags = slices.Clone(*e.Tags)
			if len(s.Tags) == 0 {
				s.Tags = nil
			}
		}
		if e.TLP != nil {
			s.TLP = *e.TLP
		}
		if e.IOC != nil {
			s.IOC = *e.IOC
		}
		if e.Source != nil {
			s.Source = *e.Source
		}
		if e.Metadata != nil {
			s.Metadata = nil
			if !hosts.SameMetadata(e.Metadata, nil) {
				s.Metadata = slices.Clone(e.Metadata)
			}
		}
	case Sighted:
		s.Sightings++
		if e.At.After(s.LastSighted) {
			s.LastSighted = e.At
		}
	case Deleted:
		s.Deleted = true
	}
	return s
}

// checkDescription returns d without surrounding white space if it is at most
// MaxDescriptionLen code points of printable characters, tabs and line breaks.
func checkDescription(d string) (string, error) {
	d = strings.TrimSpace(d)
	if utf8.RuneCountInString(d) > MaxDescriptionLen {
		return "", ErrDescriptionTooLong
	}
	if !utf8.ValidString(d) || strings.IndexFunc(d, func(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && notPrintable(r) }) >= 0 {
		return "", ErrDescriptionInvalid
	}
	return d, nil
}

// checkSource returns src without surrounding white space if it is at most
// MaxSourceLen printable code points, such as "velociraptor" or "misp".
func checkSource(src string) (string, error) {
	src = strings.TrimSpace(src)
	if utf8.RuneCountInString(src) > MaxSourceLen || !utf8.ValidString(src) || strings.IndexFunc(src, notPrintable) >= 0 {
		return "", ErrSourceInvalid
	}
	return src, nil
}
