package hosts

import (
	"strings"
	"unicode/utf8"

	"velocicompanion/domain"
)

// Wire names of the quarantine events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventQuarantineRequested = "host.quarantine_requested"
	EventQuarantined         = "host.quarantined"
	EventQuarantineFailed    = "host.quarantine_failed"
	EventReleaseRequested    = "host.release_requested"
	EventReleased            = "host.released"
)

// MaxQuarantineMessageLen bounds the message a quarantined host shows its
// user, in code points.
const MaxQuarantineMessageLen = 1000

// QuarantineRequested records that an analyst asked to isolate a host from
// the network; Collection is the Velociraptor collection that does it, and
// Message what the host shows its user.
type QuarantineRequested struct {
	Collection string        `json:"collection"`
	Message    string        `json:"message"`
	By         domain.UserID `json:"by"`
}

// Quarantined records that the quarantine collection finished: the host is
// isolated.
type Quarantined struct {
	Collection string `json:"collection"`
	FlowID     string `json:"flow_id"`
}

// QuarantineFailed records that a quarantine or release collection failed;
// whether the host is isolated is then unknown.
type QuarantineFailed struct {
	Collection string `json:"collection"`
	Error      string `json:"error"`
}

// ReleaseRequested records that an analyst asked to lift a host's quarantine.
type ReleaseRequested struct {
	Collection string        `json:"collection"`
	By         domain.UserID `json:"by"`
}

// Released records that the release collection finished: the host is no
// longer isolated.
type Released struct {
	Collection string `json:"collection"`
}

// EventName returns the durable wire name of QuarantineRequested.
func (QuarantineRequested) EventName() string { return EventQuarantineRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of Quarantined.
func (Quarantined) EventName() string { return EventQuarantined } // WARNING: stored; never rename.

// EventName returns the durable wire name of QuarantineFailed.
func (QuarantineFailed) EventName() string { return EventQuarantineFailed } // WARNING: stored; never rename.

// EventName returns the durable wire name of ReleaseRequested.
func (ReleaseRequested) EventName() string { return EventReleaseRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of Released.
func (Released) EventName() string { return EventReleased } // WARNING: stored; never rename.

// QuarantineStatus is where a host's network isolation stands.
//
// WARNING: status values are shown by the API; never rename one.
type QuarantineStatus string

// The quarantine statuses; the zero value is a host never quarantined.
const (
	StatusNotQuarantined      QuarantineStatus = ""
	StatusQuarantineRequested QuarantineStatus = "quarantine_requested"
	StatusQuarantined         QuarantineStatus = "quarantined"
	StatusQuarantineFailed    QuarantineStatus = "failed" // a quarantine or release failed: unknown
	StatusReleaseRequested    QuarantineStatus = "release_requested"
	StatusReleased            QuarantineStatus = "released"
)

// Quarantine is a host's network isolation as its events tell it.
type Quarantine struct {
	Status QuarantineStatus
	// Collection is the collection of the latest request.
	Collection string
	Message    string
	FlowID     string
	Error      string
	By         domain.UserID
}

// InProgress reports whether a quarantine or release is under way.
func (q Quarantine) InProgress() bool {
	return q.Status == StatusQuarantineRequested || q.Status == StatusReleaseRequested
}

// Errors of the quarantine decisions, besides domain.ErrNotFound for a host
// that does not exist or was deleted.
var (
	ErrNoClientID          = domain.Unprocessable("host_without_client", "the host has no Velociraptor client id, so it cannot be quarantined or released")
	ErrQuarantineBusy      = domain.Conflict("quarantine_in_progress", "a quarantine or release of this host is already under way")
	ErrAlreadyQuarantined  = domain.Conflict("host_quarantined", "the host is already quarantined")
	ErrNotQuarantined      = domain.Conflict("host_not_quarantined", "only a quarantined host, or one whose quarantine or release failed, can be released")
	ErrQuarantineMessage   = domain.Invalid("quarantine_message_invalid", "the quarantine message must be at most 1000 characters of text")
	ErrCollectionRequired  = domain.Invalid("collection_required", "the collection that performs the quarantine must be named")
	ErrQuarantineCollision = domain.Conflict("quarantine_collection_mismatch", "the collection is not the host's current quarantine or release")
)

// RequestQuarantine decides whether by may isolate the host s with the
// collection coll, showing message to its user. Asking again with the same
// collection records nothing.
func RequestQuarantine(s State, coll, message string, by domain.UserID) ([]domain.Event, error) {
	if err := quarantinable(s, coll); err != nil {
		return nil, err
	}
	message = strings.TrimSpace(message)
	if !isText(message, MaxQuarantineMessageLen) {
		return nil, ErrQuarantineMessage
	}
	q := s.Quarantine
	switch {
	case q.Status == StatusQuarantineRequested && q.Collection == coll:
		return nil, nil
	case q.InProgress():
		return nil, ErrQuarantineBusy
	case q.Status == StatusQuarantined:
		return nil, ErrAlreadyQuarantined
	}
	return []domain.Event{QuarantineRequested{Collection: coll, Message: message, By: by}}, nil
}

// RequestRelease decides whether by may lift the quarantine of the host s
// with the collection coll: only a quarantined host, or one whose quarantine
// or release failed. Asking again with the same collection records nothing.
func RequestRelease(s State, coll string, by domain.UserID) ([]domain.Event, error) {
	if err := quarantinable(s, coll); err != nil {
		return nil, err
	}
	q := s.Quarantine
	switch {
	case q.Status == StatusReleaseRequested && q.Collection == coll:
		return nil, nil
	case q.InProgress():
		return nil, ErrQuarantineBusy
	case q.Status != StatusQuarantined && q.Status != StatusQuarantineFailed:
		return nil, ErrNotQuarantined
	}
	return []domain.Event{ReleaseRequested{Collection: coll, By: by}}, nil
}

// RecordQuarantined decides whether the host s may record that its
// quarantine collection coll finished as flowID. Recording it again records
// nothing.
func RecordQuarantined(s State, coll, flowID string) ([]domain.Event, error) {
	if err := outcome(s, coll); err != nil {
		return nil, err
	}
	switch s.Quarantine.Status {
	case StatusQuarantined:
		return nil, nil
	case StatusQuarantineRequested:
		return []domain.Event{Quarantined{Collection: coll, FlowID: flowID}}, nil
	}
	return nil, ErrQuarantineCollision
}

// RecordReleased decides whether the host s may record that its release
// collection coll finished. Recording it again records nothing.
func RecordReleased(s State, coll string) ([]domain.Event, error) {
	if err := outcome(s, coll); err != nil {
		return nil, err
	}
	switch s.Quarantine.Status {
	case StatusReleased:
		return nil, nil
	case StatusReleaseRequested:
		return []domain.Event{Released{Collection: coll}}, nil
	}
	return nil, ErrQuarantineCollision
}

// RecordQuarantineFailed decides whether the host s may record that its
// quarantine or release collection coll failed with errText. Recording it
// again records nothing.
func RecordQuarantineFailed(s State, coll, errText string) ([]domain.Event, error) {
	if err := outcome(s, coll); err != nil {
		return nil, err
	}
	switch s.Quarantine.Status {
	case StatusQuarantineFailed:
		return nil, nil
	case StatusQuarantineRequested, StatusReleaseRequested:
		errText = strings.TrimSpace(errText)
		if errText == "" {
			errText = "the collection failed"
		}
		if r := []rune(errText); len(r) > MaxQuarantineMessageLen {
			errText = string(r[:MaxQuarantineMessageLen])
		}
		return []domain.Event{QuarantineFailed{Collection: coll, Error: errText}}, nil
	}
	return nil, ErrQuarantineCollision
}

// quarantinable checks that a new quarantine or release of s may start.
func quarantinable(s State, coll string) error {
	switch {
	case !s.Exists || s.Deleted:
		return domain.ErrNotFound
	case strings.TrimSpace(coll) == "":
		return ErrCollectionRequired
	case s.ClientID == "":
		return ErrNoClientID
	}
	return nil
}

// outcome checks that coll is the collection of s's latest quarantine or
// release. A deleted host still records the outcome of what it asked for.
func outcome(s State, coll string) error {
	switch {
	case !s.Exists:
		return domain.ErrNotFound
	case s.Quarantine.Collection == "" || s.Quarantine.Collection != coll:
		return ErrQuarantineCollision
	}
	return nil
}

// evolveQuarantine applies a quarantine event to q.
func evolveQuarantine(q Quarantine, e domain.Event) Quarantine {
	switch e := e.(type) {
	case QuarantineRequested:
		q = Quarantine{Status: StatusQuarantineRequested, Collection: e.Collection, Message: e.Message, By: e.By}
	case Quarantined:
		q.Status, q.FlowID, q.Error = StatusQuarantined, e.FlowID, ""
	case QuarantineFailed:
		q.Status, q.Error = StatusQuarantineFailed, e.Error
	case ReleaseRequested:
		q = Quarantine{Status: StatusReleaseRequested, Collection: e.Collection, Message: q.Message, FlowID: q.FlowID, By: e.By}
	case Released:
		q.Status, q.Error = StatusReleased, ""
	}
	return q
}

// isText reports whether s is at most max code points of text.
func isText(s string, max int) bool {
	return utf8.ValidString(s) && utf8.RuneCountInString(s) <= max && strings.IndexFunc(s, notText) < 0
}
