package notifications

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
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
	add := func(to, by domain.UserID, kind Kind, typ Type, title, message string) {
		if to == "" || to == by {
			return
		}
		out = append(out, Notification{
			ID: ID(env.EventID, to, kind), Tenant: env.Tenant, User: to, Kind: kind, Type: typ,
			Title: title, Message: message, Link: caseLink(env.StreamID), CreatedAt: env.RecordedAt,
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
}

// MayNotify reports whether events named name can give rise to
// notifications. Consumers that only deliver notifications skip the others.
func MayNotify(name string) bool { return notifying[name] }

// caseLink is the client route of a case.
func caseLink(id string) string {
	if id == "" {
		return ""
	}
	return "/cases/" + id
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
