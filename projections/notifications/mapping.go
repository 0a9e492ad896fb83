package notifications

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
)

// Kind says what a notification is about.
//
// WARNING: kinds are stored in the read model; never rename one.
type Kind string

// The kinds of notification.
const (
	KindCaseAssigned      Kind = "case_assigned"       // a case was given to you
	KindCaseUnassigned    Kind = "case_unassigned"     // a case of yours was given to someone else or to nobody
	KindCaseStatusChanged Kind = "case_status_changed" // your case moved along its workflow
	KindCaseClosed        Kind = "case_closed"         // your case was closed
	KindCaseReopened      Kind = "case_reopened"       // your case was reopened
	KindTaskAssigned      Kind = "task_assigned"       // a task was given to you

	KindCollectionCompleted Kind = "collection_completed"   // a collection you asked for finished
	KindCollectionFailed    Kind = "collection_failed"      // a collection you asked for failed
	KindCollectionCancelled Kind = "collection_cancelled"   // someone else cancelled a collection you asked for
	KindHuntStopped         Kind = "hunt_stopped"           // a hunt you started ended
	KindHuntFailed          Kind = "hunt_failed"            // a hunt you started failed
	KindHostQuarantined     Kind = "host_quarantined"       // a host you asked to isolate is isolated
	KindHostReleased        Kind = "host_released"          // a host you asked to release is no longer isolated
	KindQuarantineFailed    Kind = "host_quarantine_failed" // a quarantine or release you asked for failed
)

// Type is how a client shows a notification: the original API's
// notification_type.
type Type string

// The notification types.
const (
	TypeInfo    Type = "info"
	TypeWarning Type = "warning"
	TypeError   Type = "error"
	TypeSuccess Type = "success"
)

// Notification is one row of a user's inbox.
type Notification struct {
	ID        string // derived from the source event, the recipient and the kind (see ID)
	Tenant    domain.TenantID
	User      domain.UserID // the recipient
	Kind      Kind
	Type      Type
	Title     string
	Message   string
	Link      string // the client route of the subject, such as /cases/{id}; may be empty
	Read      bool
	ReadAt    *time.Time
	CreatedAt time.Time // when the source event was recorded
	// SourceEventID and SourcePosition name the event the notification
	// comes from.
	SourceEventID  string
	SourcePosition int64
}

// Facts is what the read model knew, before an event, about the subject the
// event is about; Notify needs it to address notifications that the event
// alone cannot (a status change does not name the case's assignee).
type Facts struct {
	CaseTitle    string
	CaseAssignee domain.UserID
	TaskTitle    string // of the task a task event is about

	// Requester is who asked for the collection, hunt, quarantine or
	// release that the event ends, Purpose why a collection or a host's
	// collection ran, and Subject what a collection or hunt is called:
	// a collection's artifacts and client, a hunt's description.
	Requester domain.UserID
	Purpose   velociraptor.Purpose
	Subject   string
	Hostname  string // of the host a quarantine event is about; "" when unknown
}

// idSpace is the UUID namespace of notification ids.
//
// WARNING: changing it changes every id; clients would see new notifications.
var idSpace = uuid.MustParse("6c0e3f52-9d4e-4a8b-bb55-43f0c1a7e9d1")

// ID returns the id of the notification of kind that the event eventID gives
// to user: a name-based (version 5) UUID, the same every time the event is
// applied, so a redelivered or replayed event writes the same row.
func ID(eventID string, user domain.UserID, kind Kind) string {
	return uuid.NewSHA1(idSpace, []byte(eventID+"\x00"+string(user)+"\x00"+string(kind))).String()
}

// Notify returns the notifications that the event of env gives rise to,
// given facts as they were before it. It is pure: the same envelope and
// facts always give the same notifications, in the same order.
//
// Nobody is notified of what they did themselves. To notify of new kinds of
// events (threat scores over a threshold, playbook results), add a case here
// with its Kind, list the event in notifying (the live feed looks up only
// those), handle it in Projector.Apply and, if it needs state that its event
// does not carry, keep that in a helper table the projector loads into Facts.
func Notify(env eventstore.Envelope, f Facts) []Notification {
	var out []Notification
	link := linkOf(env.StreamType, env.StreamID)
	add := func(to, by domain.UserID, kind Kind, typ Type, title, message string) {
		if to == "" || to == by {
			return
		}
		out = append(out, Notification{
			ID: ID(env.EventID, to, kind), Tenant: env.Tenant, User: to, Kind: kind, Type: typ,
			Title: title, Message: message, Link: link, CreatedAt: env.RecordedAt,
			SourceEventID: env.EventID, SourcePosition: env.Position,
		})
	}
	switch e := env.Event.(type) {
	case cases.Opened:
		add(e.Assignee, e.By, KindCaseAssigned, TypeInfo, "Case assigned to you",
			fmt.Sprintf("Case %s was assigned to you.", quote(e.Title)))
	case cases.Assigned:
		add(e.To, e.By, KindCaseAssigned, TypeInfo, "Case assigned to you",
			fmt.Sprintf("Case %s was assigned to you.", quote(f.CaseTitle)))
		if e.From != e.To {
			add(e.From, e.By, KindCaseUnassigned, TypeInfo, "Case no longer assigned to you",
				fmt.Sprintf("Case %s is no longer assigned to you.", quote(f.CaseTitle)))
		}
	case cases.StatusChanged:
		add(f.CaseAssignee, e.By, KindCaseStatusChanged, TypeInfo, "Case status changed",
			fmt.Sprintf("Case %s moved from %s to %s.", quote(f.CaseTitle), e.From, e.To))
	case cases.Closed:
		add(f.CaseAssignee, e.By, KindCaseClosed, TypeSuccess, "Case closed",
			fmt.Sprintf("Case %s was closed (%s).", quote(f.CaseTitle), strings.ReplaceAll(string(e.ResolutionType), "_", " ")))
	case cases.Reopened:
		add(f.CaseAssignee, e.By, KindCaseReopened, TypeWarning, "Case reopened",
			fmt.Sprintf("Case %s was reopened.", quote(f.CaseTitle)))
	case cases.TaskAdded:
		add(e.Assignee, e.By, KindTaskAssigned, TypeInfo, "Task assigned to you",
			fmt.Sprintf("Task %s of case %s was assigned to you.", quote(e.Title), quote(f.CaseTitle)))
	case cases.TaskUpdated:
		if e.Assignee == nil {
			break
		}
		title := f.TaskTitle
		if e.Title != nil {
			title = *e.Title
		}
		add(*e.Assignee, e.By, KindTaskAssigned, TypeInfo, "Task assigned to you",
			fmt.Sprintf("Task %s of case %s was assigned to you.", quote(title), quote(f.CaseTitle)))

	// The events that end what someone asked Velociraptor for come from the
	// system, so the requester is always told. A collection that quarantines
	// or releases a host tells through the host's events instead.
	case velociraptor.CollectionCompleted:
		if f.Purpose != velociraptor.PurposeCollect {
			break
		}
		add(f.Requester, "", KindCollectionCompleted, TypeSuccess, "Collection completed",
			fmt.Sprintf("Collection %s completed with %s.", quote(f.Subject), rows(e.Rows)))
	case velociraptor.CollectionFailed:
		if f.Purpose != velociraptor.PurposeCollect {
			break
		}
		add(f.Requester, "", KindCollectionFailed, TypeError, "Collection failed",
			fmt.Sprintf("Collection %s failed: %s", quote(f.Subject), reason(e.Error)))
	case velociraptor.CollectionCancelled:
		if f.Purpose != velociraptor.PurposeCollect {
			break
		}
		add(f.Requester, e.By, KindCollectionCancelled, TypeWarning, "Collection cancelled",
			fmt.Sprintf("Collection %s was cancelled.", quote(f.Subject)))
	case velociraptor.HuntStopped:
		add(f.Requester, "", KindHuntStopped, TypeInfo, "Hunt stopped",
			fmt.Sprintf("Hunt %s stopped; its results are stored.", quote(f.Subject)))
	case velociraptor.HuntFailed:
		add(f.Requester, "", KindHuntFailed, TypeError, "Hunt failed",
			fmt.Sprintf("Hunt %s failed: %s", quote(f.Subject), reason(e.Error)))
	case hosts.Quarantined:
		add(f.Requester, "", KindHostQuarantined, TypeSuccess, "Host quarantined",
			fmt.Sprintf("Host %s is isolated from the network.", hostName(f.Hostname, env.StreamID)))
	case hosts.Released:
		add(f.Requester, "", KindHostReleased, TypeSuccess, "Host released",
			fmt.Sprintf("Host %s is no longer isolated from the network.", hostName(f.Hostname, env.StreamID)))
	case hosts.QuarantineFailed:
		what, title := "quarantine", "Quarantine failed"
		if f.Purpose == velociraptor.PurposeRelease {
			what, title = "release", "Release failed"
		}
		add(f.Requester, "", KindQuarantineFailed, TypeError, title,
			fmt.Sprintf("The %s of host %s failed, so whether it is isolated is unknown: %s",
				what, hostName(f.Hostname, env.StreamID), reason(e.Error)))
	}
	return out
}

// notifying lists the events Notify may turn into notifications: those a
// live feed must look up after the projector applied them.
var notifying = map[string]bool{
	cases.EventOpened:        true,
	cases.EventAssigned:      true,
	cases.EventStatusChanged: true,
	cases.EventClosed:        true,
	cases.EventReopened:      true,
	cases.EventTaskAdded:     true,
	cases.EventTaskUpdated:   true,

	velociraptor.EventCollectionCompleted: true,
	velociraptor.EventCollectionFailed:    true,
	velociraptor.EventCollectionCancelled: true,
	velociraptor.EventHuntStopped:         true,
	velociraptor.EventHuntFailed:          true,
	hosts.EventQuarantined:                true,
	hosts.EventReleased:                   true,
	hosts.EventQuarantineFailed:           true,
}

// MayNotify reports whether events named name can give rise to
// notifications. Consumers that only deliver notifications skip the others.
func MayNotify(name string) bool { return notifying[name] }

// linkOf is the route of the subject of a stream: the client route of a
// case, the API route of a collection, hunt or host.
func linkOf(streamType, id string) string {
	if id == "" {
		return ""
	}
	switch streamType {
	case "case":
		return "/cases/" + id
	case velociraptor.CollectionStreamType:
		return "/api/velociraptor/collections/" + id
	case velociraptor.HuntStreamType:
		return "/api/velociraptor/hunts/" + id
	case "host":
		return "/api/hosts/" + id
	}
	return ""
}

// rows says how many rows a collection returned.
func rows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// reason is an error text as a message repeats it: shortened, and ending in
// a full stop.
func reason(text string) string {
	text = strings.TrimSpace(text)
	if text == "" {
		return "no reason was given."
	}
	if r := []rune(text); len(r) > maxQuoted {
		text = string(r[:maxQuoted-1]) + "…"
	}
	if !strings.HasSuffix(text, ".") {
		text += "."
	}
	return text
}

// hostName is how a message names a host: its name quoted, or its id when
// the name is not known.
func hostName(hostname, id string) string {
	if strings.TrimSpace(hostname) == "" {
		return id
	}
	return quote(hostname)
}

// maxQuoted bounds how much of a title a message repeats, in code points.
const maxQuoted = 120

// quote returns s in double quotes, shortened to maxQuoted code points; an
// unknown (empty) title reads "(untitled)".
func quote(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(untitled)"
	}
	if r := []rune(s); len(r) > maxQuoted {
		s = string(r[:maxQuoted-1]) + "…"
	}
	return `"` + s + `"`
}
