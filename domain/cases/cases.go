// Package cases decides what may happen to an investigation case: its title
// and description, status workflow, severity, TLP and PAP, assignee, tags,
// MITRE ATT&CK techniques, linked hosts, tasks and comments, and how it is
// closed and reopened.
//
// A case's stream lives in the case's tenant with the case id as the stream id.
// Every event records who did it (By) and what changed, so a case's timeline
// is its events. Rules that need other streams are the command handler's: that
// an assignee is a user of the tenant, that a linked host exists, and, if
// wanted, that a technique id exists in the ATT&CK data (here its format is
// checked). Tasks and comments live inside the case's stream; their ids come in
// as arguments like every other id.
//
// Package cases is pure: no I/O, no clock, and it imports nothing of ours but
// package domain and package hosts (for the type of a host id).
package cases

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
)

// Wire names of the case events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventOpened            = "case.opened"
	EventUpdated           = "case.updated"
	EventStatusChanged     = "case.status_changed"
	EventAssigned          = "case.assigned"
	EventClosed            = "case.closed"
	EventReopened          = "case.reopened"
	EventTagsChanged       = "case.tags_changed"
	EventTechniquesChanged = "case.techniques_changed"
	EventHostLinked        = "case.host_linked"
	EventHostUnlinked      = "case.host_unlinked"
	EventTaskAdded         = "case.task_added"
	EventTaskUpdated       = "case.task_updated"
	EventTaskDeleted       = "case.task_deleted"
	EventCommentAdded      = "case.comment_added"
	EventCommentEdited     = "case.comment_edited"
	EventCommentDeleted    = "case.comment_deleted"
)

// Limits on the fields of a case, in Unicode code points for text.
const (
	MaxTitleLen       = 200
	MaxDescriptionLen = 20000
	MaxTags           = 50
	MaxTagLen         = 128
	MaxTechniques     = 100
	MaxHosts          = 1000
	MaxTasks          = 500
	MaxCommentLen     = 10000
	MaxComments       = 5000
	MaxResolutionLen  = 10000
	MaxReasonLen      = 1000
)

// ID identifies a case within its tenant; it is the case's stream id.
type ID string

// TaskID identifies a task within its case.
type TaskID string

// CommentID identifies a comment within its case.
type CommentID string

// Status is where a case stands in its workflow.
//
// WARNING: status values are stored in events; never rename one.
type Status string

// The statuses. Open, investigating and closed are those of the original
// VelociCompanion API; contained was added between the last two.
const (
	StatusOpen          Status = "open"
	StatusInvestigating Status = "investigating"
	StatusContained     Status = "contained"
	StatusClosed        Status = "closed"
)

// transitions lists, for each status, the statuses a case may move to next.
//
//	open          → investigating, contained, closed
//	investigating → open (back to the queue), contained, closed
//	contained     → investigating (activity resumed), closed
//	closed        → investigating (only by Reopen)
//
// Closing always goes through Close, which requires a resolution; leaving
// closed always goes through Reopen.
var transitions = map[Status][]Status{
	StatusOpen:          {StatusInvestigating, StatusContained, StatusClosed},
	StatusInvestigating: {StatusOpen, StatusContained, StatusClosed},
	StatusContained:     {StatusInvestigating, StatusClosed},
	StatusClosed:        {StatusInvestigating},
}

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool { _, ok := transitions[s]; return ok }

// CanTransition reports whether a case may move from one status to another.
func CanTransition(from, to Status) bool { return slices.Contains(transitions[from], to) }

// Transitions returns the statuses a case in from may move to, for clients
// that offer only allowed moves.
func Transitions(from Status) []Status { return slices.Clone(transitions[from]) }

// ParseStatus returns the status s names, ignoring case and surrounding space.
func ParseStatus(s string) (Status, error) {
	st := Status(strings.ToLower(strings.TrimSpace(s)))
	if !st.Valid() {
		return "", ErrStatusInvalid
	}
	return st, nil
}

// Severity is how bad a case is.
//
// WARNING: severity values are stored in events; never rename one.
type Severity string

// The severities, from least to most severe.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Level returns 1 (low) to 4 (critical), for sorting; 0 for an invalid value.
func (s Severity) Level() int {
	switch s {
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return 0
}

// Valid reports whether s is one of the defined severities.
func (s Severity) Valid() bool { return s.Level() > 0 }

// ParseSeverity returns the severity s names, ignoring case and surrounding
// space.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(strings.ToLower(strings.TrimSpace(s)))
	if !sev.Valid() {
		return "", ErrSeverityInvalid
	}
	return sev, nil
}

// TLP is a Traffic Light Protocol 2.0 marking: with whom the case's
// information may be shared. Values are stored in lower case without the
// "TLP:" prefix; String adds it back.
//
// WARNING: TLP values are stored in events; never rename one.
type TLP string

// The TLP markings, from least to most restricted.
const (
	TLPClear       TLP = "clear"
	TLPGreen       TLP = "green"
	TLPAmber       TLP = "amber"
	TLPAmberStrict TLP = "amber+strict"
	TLPRed         TLP = "red"
)

// Level returns 0 (clear) to 4 (red), so that markings can be compared; -1
// for an invalid value.
func (t TLP) Level() int {
	switch t {
	case TLPClear:
		return 0
	case TLPGreen:
		return 1
	case TLPAmber:
		return 2
	case TLPAmberStrict:
		return 3
	case TLPRed:
		return 4
	}
	return -1
}

// Valid reports whether t is one of the defined markings.
func (t TLP) Valid() bool { return t.Level() >= 0 }

// String returns the marking as it is written, such as "TLP:AMBER+STRICT".
func (t TLP) String() string { return "TLP:" + strings.ToUpper(string(t)) }

// ParseTLP returns the marking s names: "TLP:AMBER", "amber", "TLP:AMBER+STRICT"
// and so on, ignoring case and space. WHITE, the TLP 1.0 name, means CLEAR.
func ParseTLP(s string) (TLP, error) {
	switch marking(s, "TLP:") {
	case "CLEAR", "WHITE":
		return TLPClear, nil
	case "GREEN":
		return TLPGreen, nil
	case "AMBER":
		return TLPAmber, nil
	case "AMBER+STRICT":
		return TLPAmberStrict, nil
	case "RED":
		return TLPRed, nil
	}
	return "", ErrTLPInvalid
}

// PAP is a Permissible Actions Protocol marking: what may be done with the
// case's indicators. Values are stored in lower case without the "PAP:"
// prefix; String adds it back.
//
// WARNING: PAP values are stored in events; never rename one.
type PAP string

// The PAP markings, from least to most restricted.
const (
	PAPClear PAP = "clear"
	PAPGreen PAP = "green"
	PAPAmber PAP = "amber"
	PAPRed   PAP = "red"
)

// Level returns 0 (clear) to 3 (red); -1 for an invalid value.
func (p PAP) Level() int {
	switch p {
	case PAPClear:
		return 0
	case PAPGreen:
		return 1
	case PAPAmber:
		return 2
	case PAPRed:
		return 3
	}
	return -1
}

// Valid reports whether p is one of the defined markings.
func (p PAP) Valid() bool { return p.Level() >= 0 }

// String returns the marking as it is written, such as "PAP:AMBER".
func (p PAP) String() string { return "PAP:" + strings.ToUpper(string(p)) }

// ParsePAP returns the marking s names: "PAP:GREEN", "green" and so on,
// ignoring case and space. WHITE means CLEAR.
func ParsePAP(s string) (PAP, error) {
	switch marking(s, "PAP:") {
	case "CLEAR", "WHITE":
		return PAPClear, nil
	case "GREEN":
		return PAPGreen, nil
	case "AMBER":
		return PAPAmber, nil
	case "RED":
		return PAPRed, nil
	}
	return "", ErrPAPInvalid
}

// marking returns s in upper case without spaces and without prefix.
func marking(s, prefix string) string {
	s = strings.ToUpper(strings.Join(strings.Fields(s), ""))
	return strings.TrimPrefix(s, prefix)
}

// The defaults of a new case, as in TheHive.
const (
	DefaultSeverity = SeverityMedium
	DefaultTLP      = TLPAmber
	DefaultPAP      = PAPAmber
)

// ResolutionType classifies how a case ended.
//
// WARNING: resolution types are stored in events; never rename one.
type ResolutionType string

// The resolution types.
const (
	ResolutionTruePositive  ResolutionType = "true_positive"  // malicious activity confirmed
	ResolutionFalsePositive ResolutionType = "false_positive" // the detection was wrong
	ResolutionBenign        ResolutionType = "benign"         // real activity, but authorised or harmless
	ResolutionDuplicate     ResolutionType = "duplicate"      // handled in another case
	ResolutionIndeterminate ResolutionType = "indeterminate"  // could not be decided
	ResolutionOther         ResolutionType = "other"
)

// Valid reports whether r is one of the defined resolution types.
func (r ResolutionType) Valid() bool {
	switch r {
	case ResolutionTruePositive, ResolutionFalsePositive, ResolutionBenign,
		ResolutionDuplicate, ResolutionIndeterminate, ResolutionOther:
		return true
	}
	return false
}

// TaskStatus is where a task stands. A task may move between any two
// statuses: a done task can be reopened, a cancelled one resumed.
//
// WARNING: task status values are stored in events; never rename one.
type TaskStatus string

// The task statuses.
const (
	TaskTodo       TaskStatus = "todo"
	TaskInProgress TaskStatus = "in_progress"
	TaskDone       TaskStatus = "done"
	TaskCancelled  TaskStatus = "cancelled"
)

// Valid reports whether t is one of the defined task statuses.
func (t TaskStatus) Valid() bool {
	switch t {
	case TaskTodo, TaskInProgress, TaskDone, TaskCancelled:
		return true
	}
	return false
}

// ParseTaskStatus returns the task status s names, ignoring case and
// surrounding space; "canceled" is accepted for "cancelled".
func ParseTaskStatus(s string) (TaskStatus, error) {
	t := TaskStatus(strings.ToLower(strings.TrimSpace(s)))
	if t == "canceled" {
		t = TaskCancelled
	}
	if !t.Valid() {
		return "", ErrTaskStatusInvalid
	}
	return t, nil
}

// Opened records that an analyst opened a case, with all it held at first. A
// new case's status is open.
type Opened struct {
	ID          ID            `json:"id"`
	Title       string        `json:"title"`
	Description string        `json:"description,omitempty"`
	Severity    Severity      `json:"severity"`
	TLP         TLP           `json:"tlp"`
	PAP         PAP           `json:"pap"`
	Assignee    domain.UserID `json:"assignee,omitempty"`
	Tags        []string      `json:"tags,omitempty"`
	Techniques  []string      `json:"techniques,omitempty"`
	Hosts       []hosts.ID    `json:"hosts,omitempty"`
	By          domain.UserID `json:"by"`
}

// Updated records the descriptive fields of a case that changed, with their
// new values; a nil field did not change.
type Updated struct {
	Title       *string       `json:"title,omitempty"`
	Description *string       `json:"description,omitempty"`
	Severity    *Severity     `json:"severity,omitempty"`
	TLP         *TLP          `json:"tlp,omitempty"`
	PAP         *PAP          `json:"pap,omitempty"`
	By          domain.UserID `json:"by"`
}

// StatusChanged records that a case moved from one status to another other
// than closed (see Closed) and not out of closed (see Reopened).
type StatusChanged struct {
	From Status        `json:"from"`
	To   Status        `json:"to"`
	By   domain.UserID `json:"by"`
}

// Assigned records that a case was given to the user To; an empty To means it
// was unassigned. From is the previous assignee, if any.
type Assigned struct {
	From domain.UserID `json:"from,omitempty"`
	To   domain.UserID `json:"to,omitempty"`
	By   domain.UserID `json:"by"`
}

// Closed records that a case was closed from status From, how it ended and
// the analyst's resolution.
type Closed struct {
	From           Status         `json:"from"`
	ResolutionType ResolutionType `json:"resolution_type"`
	Resolution     string         `json:"resolution"`
	By             domain.UserID  `json:"by"`
}

// Reopened records that a closed case was reopened, into status To
// (investigating), and optionally why. Its resolution no longer applies.
type Reopened struct {
	To     Status        `json:"to"`
	Reason string        `json:"reason,omitempty"`
	By     domain.UserID `json:"by"`
}

// TagsChanged records a case's new tags (the whole set) and which were added
// and removed to get there.
type TagsChanged struct {
	Tags    []string      `json:"tags"`
	Added   []string      `json:"added,omitempty"`
	Removed []string      `json:"removed,omitempty"`
	By      domain.UserID `json:"by"`
}

// TechniquesChanged records a case's new ATT&CK technique ids (the whole set)
// and which were added and removed to get there.
type TechniquesChanged struct {
	Techniques []string      `json:"techniques"`
	Added      []string      `json:"added,omitempty"`
	Removed    []string      `json:"removed,omitempty"`
	By         domain.UserID `json:"by"`
}

// HostLinked records that a host was linked to a case.
type HostLinked struct {
	Host hosts.ID      `json:"host"`
	By   domain.UserID `json:"by"`
}

// HostUnlinked records that a host was unlinked from a case.
type HostUnlinked struct {
	Host hosts.ID      `json:"host"`
	By   domain.UserID `json:"by"`
}

// TaskAdded records a new task of a case.
type TaskAdded struct {
	Task        TaskID        `json:"task"`
	Title       string        `json:"title"`
	Description string        `json:"description,omitempty"`
	Status      TaskStatus    `json:"status"`
	Assignee    domain.UserID `json:"assignee,omitempty"`
	By          domain.UserID `json:"by"`
}

// TaskUpdated records the fields of a task that changed, with their new
// values; a nil field did not change, and an empty Assignee unassigns.
type TaskUpdated struct {
	Task        TaskID         `json:"task"`
	Title       *string        `json:"title,omitempty"`
	Description *string        `json:"description,omitempty"`
	Status      *TaskStatus    `json:"status,omitempty"`
	Assignee    *domain.UserID `json:"assignee,omitempty"`
	By          domain.UserID  `json:"by"`
}

// TaskDeleted records that a task was removed from a case. Prefer cancelling
// a task: a deleted task no longer shows.
type TaskDeleted struct {
	Task TaskID        `json:"task"`
	By   domain.UserID `json:"by"`
}

// CommentAdded records a comment on a case; By is its author.
type CommentAdded struct {
	Comment CommentID     `json:"comment"`
	Body    string        `json:"body"`
	By      domain.UserID `json:"by"`
}

// CommentEdited records a comment's new body; only its author edits it.
type CommentEdited struct {
	Comment CommentID     `json:"comment"`
	Body    string        `json:"body"`
	By      domain.UserID `json:"by"`
}

// CommentDeleted records that a comment was deleted, by its author or a
// moderator.
type CommentDeleted struct {
	Comment CommentID     `json:"comment"`
	By      domain.UserID `json:"by"`
}

// EventName returns the durable wire name of Opened.
func (Opened) EventName() string { return EventOpened } // WARNING: stored; never rename.

// EventName returns the durable wire name of Updated.
func (Updated) EventName() string { return EventUpdated } // WARNING: stored; never rename.

// EventName returns the durable wire name of StatusChanged.
func (StatusChanged) EventName() string { return EventStatusChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of Assigned.
func (Assigned) EventName() string { return EventAssigned } // WARNING: stored; never rename.

// EventName returns the durable wire name of Closed.
func (Closed) EventName() string { return EventClosed } // WARNING: stored; never rename.

// EventName returns the durable wire name of Reopened.
func (Reopened) EventName() string { return EventReopened } // WARNING: stored; never rename.

// EventName returns the durable wire name of TagsChanged.
func (TagsChanged) EventName() string { return EventTagsChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of TechniquesChanged.
func (TechniquesChanged) EventName() string { return EventTechniquesChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of HostLinked.
func (HostLinked) EventName() string { return EventHostLinked } // WARNING: stored; never rename.

// EventName returns the durable wire name of HostUnlinked.
func (HostUnlinked) EventName() string { return EventHostUnlinked } // WARNING: stored; never rename.

// EventName returns the durable wire name of TaskAdded.
func (TaskAdded) EventName() string { return EventTaskAdded } // WARNING: stored; never rename.

// EventName returns the durable wire name of TaskUpdated.
func (TaskUpdated) EventName() string { return EventTaskUpdated } // WARNING: stored; never rename.

// EventName returns the durable wire name of TaskDeleted.
func (TaskDeleted) EventName() string { return EventTaskDeleted } // WARNING: stored; never rename.

// EventName returns the durable wire name of CommentAdded.
func (CommentAdded) EventName() string { return EventCommentAdded } // WARNING: stored; never rename.

// EventName returns the durable wire name of CommentEdited.
func (CommentEdited) EventName() string { return EventCommentEdited } // WARNING: stored; never rename.

// EventName returns the durable wire name of CommentDeleted.
func (CommentDeleted) EventName() string { return EventCommentDeleted } // WARNING: stored; never rename.

// Task is a task as decisions see it.
type Task struct {
	Title       string
	Description string
	Status      TaskStatus
	Assignee    domain.UserID
	Deleted     bool
}

// Comment is a comment as decisions see it; a deleted comment keeps only its
// author.
type Comment struct {
	Author  domain.UserID
	Body    string
	Deleted bool
}

// State is what decisions about one case need; Evolve rebuilds it.
type State struct {
	ID          ID
	Exists      bool
	Status      Status
	Title       string
	Description string
	Severity    Severity
	TLP         TLP
	PAP         PAP
	Assignee    domain.UserID
	Tags        []string   // sorted
	Techniques  []string   // sorted
	Hosts       []hosts.ID // sorted
	// Tasks and Comments hold deleted ones too, so that their ids are never
	// reused and deleting twice records nothing.
	Tasks    map[TaskID]Task
	Comments map[CommentID]Comment
	// ResolutionType and Resolution are set while the case is closed.
	ResolutionType ResolutionType
	Resolution     string
}

// Errors returned by the decisions, besides domain.ErrNotFound, which answers
// for a case that does not exist. Errors about one value of a list name it in
// their message; they still match these sentinels with errors.Is.
var (
	ErrExists        = domain.Conflict("case_exists", "the case already exists")
	ErrClosed        = domain.Conflict("case_closed", "the case is closed; reopen it first")
	ErrAlreadyClosed = domain.Conflict("case_closed", "the case is already closed")
	ErrNotClosed     = domain.Conflict("case_not_closed", "only a closed case can be reopened")
	ErrTransition    = domain.Unprocessable("status_transition", "the case cannot move to that status from its current one")
	ErrNotAuthor     = domain.Forbidden("not_author", "only the author of a comment may change it")

	ErrIDRequired             = domain.Invalid("case_id_required", "case id must not be empty")
	ErrTitleRequired          = domain.Invalid("title_required", "title must not be empty")
	ErrTitleTooLong           = domain.Invalid("title_too_long", "title must be at most 200 characters")
	ErrTitleInvalid           = domain.Invalid("title_invalid", "title must be one line of printable characters")
	ErrDescriptionTooLong     = domain.Invalid("description_too_long", "description must be at most 20000 characters")
	ErrDescriptionInvalid     = domain.Invalid("description_invalid", "description must contain only printable characters, tabs and line breaks")
	ErrStatusInvalid          = domain.Invalid("status_invalid", "status must be one of open, investigating, contained, closed")
	ErrSeverityInvalid        = domain.Invalid("severity_invalid", "severity must be one of low, medium, high, critical")
	ErrTLPInvalid             = domain.Invalid("tlp_invalid", "tlp must be one of TLP:CLEAR (or TLP:WHITE), TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT, TLP:RED")
	ErrPAPInvalid             = domain.Invalid("pap_invalid", "pap must be one of PAP:CLEAR (or PAP:WHITE), PAP:GREEN, PAP:AMBER, PAP:RED")
	ErrAssigneeInvalid        = domain.Invalid("assignee_invalid", "assignee must be a user id")
	ErrResolutionRequired     = domain.Invalid("resolution_required", "closing a case requires a resolution")
	ErrResolutionTooLong      = domain.Invalid("resolution_too_long", "resolution must be at most 10000 characters")
	ErrResolutionInvalid      = domain.Invalid("resolution_invalid", "resolution must contain only printable characters, tabs and line breaks")
	ErrResolutionTypeInvalid  = domain.Invalid("resolution_type_invalid", "resolution type must be one of true_positive, false_positive, benign, duplicate, indeterminate, other")
	ErrReasonInvalid          = domain.Invalid("reason_invalid", "reason must be at most 1000 characters of text")
	ErrTagInvalid             = domain.Invalid("tag_invalid", "a tag must be 1 to 128 printable characters")
	ErrTooManyTags            = domain.Invalid("too_many_tags", "a case has at most 50 tags")
	ErrTagConflict            = domain.Invalid("tag_conflict", "a tag cannot be both added and removed")
	ErrTechniqueInvalid       = domain.Invalid("technique_invalid", "an ATT&CK technique id must look like T1059 or T1059.001")
	ErrTooManyTechniques      = domain.Invalid("too_many_techniques", "a case has at most 100 techniques")
	ErrTechniqueConflict      = domain.Invalid("technique_conflict", "a technique cannot be both added and removed")
	ErrHostRequired           = domain.Invalid("host_required", "host id must not be empty")
	ErrHostInvalid            = domain.Invalid("host_invalid", "host id must be at most 128 printable characters without spaces")
	ErrTooManyHosts           = domain.Invalid("too_many_hosts", "a case links at most 1000 hosts")
	ErrTaskIDRequired         = domain.Invalid("task_id_required", "task id must not be empty")
	ErrTaskExists             = domain.Conflict("task_exists", "the task already exists")
	ErrTaskNotFound           = domain.NotFound("task_not_found", "the case has no such task")
	ErrTaskTitleRequired      = domain.Invalid("task_title_required", "task title must not be empty")
	ErrTaskTitleTooLong       = domain.Invalid("task_title_too_long", "task title must be at most 200 characters")
	ErrTaskTitleInvalid       = domain.Invalid("task_title_invalid", "task title must be one line of printable characters")
	ErrTaskDescriptionTooLong = domain.Invalid("task_description_too_long", "task description must be at most 20000 characters")
	ErrTaskDescriptionInvalid = domain.Invalid("task_description_invalid", "task description must contain only printable characters, tabs and line breaks")
	ErrTaskStatusInvalid      = domain.Invalid("task_status_invalid", "task status must be one of todo, in_progress, done, cancelled")
	ErrTooManyTasks           = domain.Invalid("too_many_tasks", "a case has at most 500 tasks")
	ErrCommentIDRequired      = domain.Invalid("comment_id_required", "comment id must not be empty")
	ErrCommentExists          = domain.Conflict("comment_exists", "the comment already exists")
	ErrCommentNotFound        = domain.NotFound("comment_not_found", "the case has no such comment")
	ErrCommentRequired        = domain.Invalid("comment_required", "comment must not be empty")
	ErrCommentTooLong         = domain.Invalid("comment_too_long", "comment must be at most 10000 characters")
	ErrCommentInvalid         = domain.Invalid("comment_invalid", "comment must contain only printable characters, tabs and line breaks")
	ErrTooManyComments        = domain.Invalid("too_many_comments", "a case has at most 5000 comments")
)

// NewCase is what an analyst supplies to open a case. Empty Severity, TLP and
// PAP take the defaults; the rest is optional but the title.
type NewCase struct {
	ID          ID
	Title       string
	Description string
	Severity    Severity
	TLP         TLP
	PAP         PAP
	Assignee    domain.UserID
	Tags        []string
	Techniques  []string
	Hosts       []hosts.ID
}

// Changes lists the descriptive fields an update sets; a nil field is left as
// it is. Severity, TLP and PAP are parsed like ParseSeverity, ParseTLP and
// ParsePAP, so "TLP:WHITE" is accepted.
type Changes struct {
	Title       *string
	Description *string
	Severity    *Severity
	TLP         *TLP
	PAP         *PAP
}

// NewTask is what an analyst supplies to add a task. An empty Status means
// TaskTodo.
type NewTask struct {
	ID          TaskID
	Title       string
	Description string
	Status      TaskStatus
	Assignee    domain.UserID
}

// TaskChanges lists the fields of a task an update sets; a nil field is left
// as it is, and an empty Assignee unassigns.
type TaskChanges struct {
	Title       *string
	Description *string
	Status      *TaskStatus
	Assignee    *domain.UserID
}

// Open decides whether the case n may be opened in the empty stream s.
func Open(s State, n NewCase, by domain.UserID) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if strings.TrimSpace(string(n.ID)) == "" {
		return nil, ErrIDRequired
	}
	e := Opened{ID: n.ID, Severity: DefaultSeverity, TLP: DefaultTLP, PAP: DefaultPAP, By: by}
	var err error
	if e.Title, err = CheckTitle(n.Title); err != nil {
		return nil, err
	}
	if e.Description, err = CheckDescription(n.Description); err != nil {
		return nil, err
	}
	if n.Severity != "" {
		if e.Severity, err = ParseSeverity(string(n.Severity)); err != nil {
			return nil, err
		}
	}
	if n.TLP != "" {
		if e.TLP, err = ParseTLP(string(n.TLP)); err != nil {
			return nil, err
		}
	}
	if n.PAP != "" {
		if e.PAP, err = ParsePAP(string(n.PAP)); err != nil {
			return nil, err
		}
	}
	if e.Assignee, err = checkAssignee(n.Assignee); err != nil {
		return nil, err
	}
	if e.Tags, err = NormalizeTags(n.Tags); err != nil {
		return nil, err
	}
	if e.Techniques, err = NormalizeTechniques(n.Techniques); err != nil {
		return nil, err
	}
	if e.Hosts, err = normalizeHosts(n.Hosts); err != nil {
		return nil, err
	}
	return []domain.Event{e}, nil
}

// Update decides whether the case s may take the changes ch. Only the fields
// that really change are recorded; an update that changes nothing records
// nothing.
func Update(s State, ch Changes, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	e := Updated{By: by}
	changed := false
	if ch.Title != nil {
		v, err := CheckTitle(*ch.Title)
		if err != nil {
			return nil, err
		}
		if v != s.Title {
			e.Title, changed = &v, true
		}
	}
	if ch.Description != nil {
		v, err := CheckDescription(*ch.Description)
		if err != nil {
			return nil, err
		}
		if v != s.Description {
			e.Description, changed = &v, true
		}
	}
	if ch.Severity != nil {
		v, err := ParseSeverity(string(*ch.Severity))
		if err != nil {
			return nil, err
		}
		if v != s.Severity {
			e.Severity, changed = &v, true
		}
	}
	if ch.TLP != nil {
		v, err := ParseTLP(string(*ch.TLP))
		if err != nil {
			return nil, err
		}
		if v != s.TLP {
			e.TLP, changed = &v, true
		}
	}
	if ch.PAP != nil {
		v, err := ParsePAP(string(*ch.PAP))
		if err != nil {
			return nil, err
		}
		if v != s.PAP {
			e.PAP, changed = &v, true
		}
	}
	if !changed {
		return nil, nil
	}
	return []domain.Event{e}, nil
}

// ChangeStatus decides whether the case s may move to the status to along the
// workflow (see Transitions). Moving to the current status records nothing.
// Closing needs a resolution and goes through Close; a closed case leaves
// closed through Reopen.
func ChangeStatus(s State, to Status, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	to, err := ParseStatus(string(to))
	if err != nil {
		return nil, err
	}
	switch {
	case to == s.Status:
		return nil, nil
	case to == StatusClosed:
		return nil, ErrResolutionRequired
	case s.Status == StatusClosed:
		return nil, ErrClosed
	case !CanTransition(s.Status, to):
		return nil, domain.Unprocessable(ErrTransition.Code, "a case cannot move from %s to %s", s.Status, to)
	}
	return []domain.Event{StatusChanged{From: s.Status, To: to, By: by}}, nil
}

// Assign decides whether the case s may be given to the user to; an empty to
// unassigns it. Giving it to its assignee records nothing.
func Assign(s State, to domain.UserID, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	to, err := checkAssignee(to)
	if err != nil {
		return nil, err
	}
	if to == s.Assignee {
		return nil, nil
	}
	return []domain.Event{Assigned{From: s.Assignee, To: to, By: by}}, nil
}

// Close decides whether the case s may be closed with the resolution text and
// its type; an empty type means ResolutionOther. Closing a closed case is a
// conflict. Open tasks do not prevent closing.
func Close(s State, typ ResolutionType, resolution string, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.Status == StatusClosed:
		return nil, ErrAlreadyClosed
	}
	t := ResolutionType(strings.ToLower(strings.TrimSpace(string(typ))))
	if t == "" {
		t = ResolutionOther
	}
	if !t.Valid() {
		return nil, ErrResolutionTypeInvalid
	}
	resolution = strings.TrimSpace(resolution)
	switch {
	case resolution == "":
		return nil, ErrResolutionRequired
	case utf8.RuneCountInString(resolution) > MaxResolutionLen:
		return nil, ErrResolutionTooLong
	case !isText(resolution):
		return nil, ErrResolutionInvalid
	}
	return []domain.Event{Closed{From: s.Status, ResolutionType: t, Resolution: resolution, By: by}}, nil
}

// Reopen decides whether the closed case s may be reopened, with an optional
// reason. A reopened case is being worked on again, so it goes to
// investigating. Reopening a case that is not closed is a conflict.
func Reopen(s State, reason string, by domain.UserID) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case s.Status != StatusClosed:
		return nil, ErrNotClosed
	}
	reason = strings.TrimSpace(reason)
	if utf8.RuneCountInString(reason) > MaxReasonLen || !isText(reason) {
		return nil, ErrReasonInvalid
	}
	return []domain.Event{Reopened{To: StatusInvestigating, Reason: reason, By: by}}, nil
}

// SetTags decides whether the case s may carry exactly tags. Setting the tags
// it has records nothing.
func SetTags(s State, tags []string, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	next, err := NormalizeTags(tags)
	if err != nil {
		return nil, err
	}
	return tagsChanged(s, next, by), nil
}

// ChangeTags decides whether the case s may gain the tags add and lose the
// tags remove. Adding a tag it has or removing one it lacks is not an error; a
// change that changes nothing records nothing.
func ChangeTags(s State, add, remove []string, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	next, err := change(s.Tags, add, remove, normalizeTagList, MaxTags, ErrTooManyTags, ErrTagConflict)
	if err != nil {
		return nil, err
	}
	return tagsChanged(s, next, by), nil
}

func tagsChanged(s State, next []string, by domain.UserID) []domain.Event {
	added, removed := diff(s.Tags, next)
	if added == nil && removed == nil {
		return nil
	}
	return []domain.Event{TagsChanged{Tags: next, Added: added, Removed: removed, By: by}}
}

// SetTechniques decides whether the case s may carry exactly the ATT&CK
// technique ids ids. Setting those it has records nothing.
func SetTechniques(s State, ids []string, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	next, err := NormalizeTechniques(ids)
	if err != nil {
		return nil, err
	}
	return techniquesChanged(s, next, by), nil
}

// ChangeTechniques decides whether the case s may gain the ATT&CK technique
// ids add and lose remove, as ChangeTags does for tags.
func ChangeTechniques(s State, add, remove []string, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	next, err := change(s.Techniques, add, remove, normalizeTechniqueList, MaxTechniques, ErrTooManyTechniques, ErrTechniqueConflict)
	if err != nil {
		return nil, err
	}
	return techniquesChanged(s, next, by), nil
}

func techniquesChanged(s State, next []string, by domain.UserID) []domain.Event {
	added, removed := diff(s.Techniques, next)
	if added == nil && removed == nil {
		return nil
	}
	return []domain.Event{TechniquesChanged{Techniques: next, Added: added, Removed: removed, By: by}}
}

// LinkHost decides whether the host h may be linked to the case s. Linking a
// linked host records nothing. The handler checks that h exists in the tenant.
func LinkHost(s State, h hosts.ID, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	h, err := checkHost(h)
	if err != nil {
		return nil, err
	}
	if _, linked := slices.BinarySearch(s.Hosts, h); linked {
		return nil, nil
	}
	if len(s.Hosts) >= MaxHosts {
		return nil, ErrTooManyHosts
	}
	return []domain.Event{HostLinked{Host: h, By: by}}, nil
}

// UnlinkHost decides whether the host h may be unlinked from the case s.
// Unlinking a host that is not linked records nothing.
func UnlinkHost(s State, h hosts.ID, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	h, err := checkHost(h)
	if err != nil {
		return nil, err
	}
	if _, linked := slices.BinarySearch(s.Hosts, h); !linked {
		return nil, nil
	}
	return []domain.Event{HostUnlinked{Host: h, By: by}}, nil
}

// AddTask decides whether the task t may be added to the case s. A task id is
// never reused, even after its task was deleted.
func AddTask(s State, t NewTask, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(t.ID)) == "" {
		return nil, ErrTaskIDRequired
	}
	if _, ok := s.Tasks[t.ID]; ok {
		return nil, ErrTaskExists
	}
	if liveTasks(s) >= MaxTasks {
		return nil, ErrTooManyTasks
	}
	e := TaskAdded{Task: t.ID, Status: TaskTodo, By: by}
	var err error
	if e.Title, err = checkTaskTitle(t.Title); err != nil {
		return nil, err
	}
	if e.Description, err = checkTaskDescription(t.Description); err != nil {
		return nil, err
	}
	if t.Status != "" {
		if e.Status, err = ParseTaskStatus(string(t.Status)); err != nil {
			return nil, err
		}
	}
	if e.Assignee, err = checkAssignee(t.Assignee); err != nil {
		return nil, err
	}
	return []domain.Event{e}, nil
}

// UpdateTask decides whether the task id of the case s may take the changes
// ch. Only the fields that really change are recorded.
func UpdateTask(s State, id TaskID, ch TaskChanges, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	t, ok := s.Tasks[id]
	if !ok || t.Deleted {
		return nil, ErrTaskNotFound
	}
	e := TaskUpdated{Task: id, By: by}
	changed := false
	if ch.Title != nil {
		v, err := checkTaskTitle(*ch.Title)
		if err != nil {
			return nil, err
		}
		if v != t.Title {
			e.Title, changed = &v, true
		}
	}
	if ch.Description != nil {
		v, err := checkTaskDescription(*ch.Description)
		if err != nil {
			return nil, err
		}
		if v != t.Description {
			e.Description, changed = &v, true
		}
	}
	if ch.Status != nil {
		v, err := ParseTaskStatus(string(*ch.Status))
		if err != nil {
			return nil, err
		}
		if v != t.Status {
			e.Status, changed = &v, true
		}
	}
	if ch.Assignee != nil {
		v, err := checkAssignee(*ch.Assignee)
		if err != nil {
			return nil, err
		}
		if v != t.Assignee {
			e.Assignee, changed = &v, true
		}
	}
	if !changed {
		return nil, nil
	}
	return []domain.Event{e}, nil
}

// DeleteTask decides whether the task id may be removed from the case s.
// Deleting a deleted task records nothing.
func DeleteTask(s State, id TaskID, by domain.UserID) ([]domain.Event, error) {
	if err := modifiable(s); err != nil {
		return nil, err
	}
	t, ok := s.Tasks[id]
	switch {
	case !ok:
		return nil, ErrTaskNotFound
	case t.Deleted:
		return nil, nil
	}
	return []domain.Event{TaskDeleted{Task: id, By: by}}, nil
}

// AddComment decides whether by may comment body on the case s under the id
// id. Closed cases take comments too, for the post-mortem.
func AddComment(s State, id CommentID, body string, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if strings.TrimSpace(string(id)) == "" {
		return nil, ErrCommentIDRequired
	}
	if _, ok := s.Comments[id]; ok {
		return nil, ErrCommentExists
	}
	if len(s.Comments) >= MaxComments {
		return nil, ErrTooManyComments
	}
	body, err := CheckComment(body)
	if err != nil {
		return nil, err
	}
	return []domain.Event{CommentAdded{Comment: id, Body: body, By: by}}, nil
}

// EditComment decides whether by may replace the body of the comment id on
// the case s. Only the author may; the same body again records nothing.
func EditComment(s State, id CommentID, body string, by domain.UserID) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	c, ok := s.Comments[id]
	switch {
	case !ok || c.Deleted:
		return nil, ErrCommentNotFound
	case c.Author != by:
		return nil, ErrNotAuthor
	}
	body, err := CheckComment(body)
	if err != nil {
		return nil, err
	}
	if body == c.Body {
		return nil, nil
	}
	return []domain.Event{CommentEdited{Comment: id, Body: body, By: by}}, nil
}

// DeleteComment decides whether by may delete the comment id on the case s:
// its author may, and so may a moderator (the handler passes moderator true for
// a tenant administrator). Deleting a deleted comment records nothing.
func DeleteComment(s State, id CommentID, by domain.UserID, moderator bool) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	c, ok := s.Comments[id]
	switch {
	case !ok:
		return nil, ErrCommentNotFound
	case c.Deleted:
		return nil, nil
	case c.Author != by && !moderator:
		return nil, ErrNotAuthor
	}
	return []domain.Event{CommentDeleted{Comment: id, By: by}}, nil
}

// Evolve applies one recorded event to s. It never fails; events of other
// aggregates leave s unchanged.
//
// Evolve updates the Tasks and Comments maps of s in place, so that folding a
// long history stays linear: keep no other copy of a State passed to Evolve
// and expect it to stay as it was (domain.Fold keeps none).
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Opened:
		s = State{
			ID: e.ID, Exists: true, Status: StatusOpen,
			Title: e.Title, Description: e.Description, Severity: e.Severity, TLP: e.TLP, PAP: e.PAP,
			Assignee: e.Assignee, Tags: slices.Clone(e.Tags), Techniques: slices.Clone(e.Techniques),
			Hosts: slices.Clone(e.Hosts),
		}
	case Updated:
		if e.Title != nil {
			s.Title = *e.Title
		}
		if e.Description != nil {
			s.Description = *e.Description
		}
		if e.Severity != nil {
			s.Severity = *e.Severity
		}
		if e.TLP != nil {
			s.TLP = *e.TLP
		}
		if e.PAP != nil {
			s.PAP = *e.PAP
		}
	case StatusChanged:
		s.Status = e.To
	case Assigned:
		s.Assignee = e.To
	case Closed:
		s.Status, s.ResolutionType, s.Resolution = StatusClosed, e.ResolutionType, e.Resolution
	case Reopened:
		s.Status, s.ResolutionType, s.Resolution = e.To, "", ""
	case TagsChanged:
		s.Tags = nilIfEmpty(slices.Clone(e.Tags))
	case TechniquesChanged:
		s.Techniques = nilIfEmpty(slices.Clone(e.Techniques))
	case HostLinked:
		if i, found := slices.BinarySearch(s.Hosts, e.Host); !found {
			s.Hosts = slices.Insert(slices.Clip(s.Hosts), i, e.Host)
		}
	case HostUnlinked:
		if i, found := slices.BinarySearch(s.Hosts, e.Host); found {
			s.Hosts = nilIfEmpty(slices.Delete(slices.Clone(s.Hosts), i, i+1))
		}
	case TaskAdded:
		if s.Tasks == nil {
			s.Tasks = make(map[TaskID]Task)
		}
		s.Tasks[e.Task] = Task{Title: e.Title, Description: e.Description, Status: e.Status, Assignee: e.Assignee}
	case TaskUpdated:
		t, ok := s.Tasks[e.Task]
		if !ok {
			break
		}
		if e.Title != nil {
			t.Title = *e.Title
		}
		if e.Description != nil {
			t.Description = *e.Description
		}
		if e.Status != nil {
			t.Status = *e.Status
		}
		if e.Assignee != nil {
			t.Assignee = *e.Assignee
		}
		s.Tasks[e.Task] = t
	case TaskDeleted:
		if _, ok := s.Tasks[e.Task]; ok {
			s.Tasks[e.Task] = Task{Deleted: true}
		}
	case CommentAdded:
		if s.Comments == nil {
			s.Comments = make(map[CommentID]Comment)
		}
		s.Comments[e.Comment] = Comment{Author: e.By, Body: e.Body}
	case CommentEdited:
		if c, ok := s.Comments[e.Comment]; ok {
			c.Body = e.Body
			s.Comments[e.Comment] = c
		}
	case CommentDeleted:
		if c, ok := s.Comments[e.Comment]; ok {
			s.Comments[e.Comment] = Comment{Author: c.Author, Deleted: true}
		}
	}
	return s
}

// modifiable reports whether s exists and is not closed.
func modifiable(s State) error {
	switch {
	case !s.Exists:
		return domain.ErrNotFound
	case s.Status == StatusClosed:
		return ErrClosed
	}
	return nil
}

// liveTasks counts the tasks of s that were not deleted.
func liveTasks(s State) int {
	n := 0
	for _, t := range s.Tasks {
		if !t.Deleted {
			n++
		}
	}
	return n
}

// CheckTitle returns title without surrounding white space if it is a valid
// case title: 1 to MaxTitleLen printable code points on one line.
func CheckTitle(title string) (string, error) {
	return checkLine(title, MaxTitleLen, ErrTitleRequired, ErrTitleTooLong, ErrTitleInvalid)
}

// CheckDescription returns description without surrounding white space if it
// is at most MaxDescriptionLen code points of printable characters, tabs and
// line breaks. It may be empty.
func CheckDescription(description string) (string, error) {
	return checkBlock(description, MaxDescriptionLen, nil, ErrDescriptionTooLong, ErrDescriptionInvalid)
}

// CheckComment returns body without surrounding white space if it is a valid
// comment: 1 to MaxCommentLen code points of printable characters, tabs and
// line breaks.
func CheckComment(body string) (string, error) {
	return checkBlock(body, MaxCommentLen, ErrCommentRequired, ErrCommentTooLong, ErrCommentInvalid)
}

func checkTaskTitle(title string) (string, error) {
	return checkLine(title, MaxTitleLen, ErrTaskTitleRequired, ErrTaskTitleTooLong, ErrTaskTitleInvalid)
}

func checkTaskDescription(description string) (string, error) {
	return checkBlock(description, MaxDescriptionLen, nil, ErrTaskDescriptionTooLong, ErrTaskDescriptionInvalid)
}

// checkAssignee returns id without surrounding white space if it may name a
// user: empty (nobody) or an identifier (see IsRef). The handler checks that
// the user exists in the tenant.
func checkAssignee(id domain.UserID) (domain.UserID, error) {
	v := strings.TrimSpace(string(id))
	if v != "" && !IsRef(v) {
		return "", ErrAssigneeInvalid
	}
	return domain.UserID(v), nil
}

// checkHost returns the host id h without surrounding white space if it is an
// identifier (see IsRef). The handler checks that the host exists.
func checkHost(h hosts.ID) (hosts.ID, error) {
	v := strings.TrimSpace(string(h))
	switch {
	case v == "":
		return "", ErrHostRequired
	case !IsRef(v):
		return "", ErrHostInvalid
	}
	return hosts.ID(v), nil
}

// IsRef reports whether id may name another stream or a user: 1 to 128 bytes
// of valid UTF-8, printable, without spaces. Ids that arrive in request bodies
// are checked with it before they are recorded, so that no event carries a
// control character (PostgreSQL's jsonb refuses NUL).
func IsRef(id string) bool {
	return id != "" && len(id) <= 128 && utf8.ValidString(id) &&
		strings.IndexFunc(id, func(r rune) bool { return r == ' ' || notPrintable(r) }) < 0
}

// checkLine checks one line of text of 1 to max code points.
func checkLine(s string, max int, required, tooLong, invalid error) (string, error) {
	s = strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return "", required
	case n > max:
		return "", tooLong
	}
	if !utf8.ValidString(s) || strings.IndexFunc(s, notPrintable) >= 0 {
		return "", invalid
	}
	return s, nil
}

// checkBlock checks text of at most max code points that may span lines; it
// may be empty when required is nil.
func checkBlock(s string, max int, required, tooLong, invalid error) (string, error) {
	s = strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(s); {
	case n == 0 && required != nil:
		return "", required
	case n > max:
		return "", tooLong
	}
	if !isText(s) {
		return "", invalid
	}
	return s, nil
}

// NormalizeTags returns tags trimmed, in lower case, sorted and without
// duplicates, or nil for none. Each tag is 1 to MaxTagLen printable
// characters (such as "ransomware" or "misp:threat-level=\"high\""), and there
// are at most MaxTags.
func NormalizeTags(tags []string) ([]string, error) {
	out, err := normalizeTagList(tags)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxTags {
		return nil, ErrTooManyTags
	}
	return out, nil
}

// normalizeTagList is NormalizeTags without the limit on their number.
func normalizeTagList(tags []string) ([]string, error) {
	return domain.NormalizeWords(tags, MaxTagLen, ErrTagInvalid.Code, "tag")
}

// NormalizeTechniques returns the MITRE ATT&CK technique ids in ids trimmed,
// in upper case, sorted and without duplicates, or nil for none. Each must be
// a technique (T1059) or sub-technique (T1059.001) id; at most MaxTechniques.
func NormalizeTechniques(ids []string) ([]string, error) {
	out, err := normalizeTechniqueList(ids)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxTechniques {
		return nil, ErrTooManyTechniques
	}
	return out, nil
}

func normalizeTechniqueList(ids []string) ([]string, error) {
	var out []string
	for _, raw := range ids {
		id, err := CheckTechnique(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CheckTechnique returns id trimmed and in upper case if it has the form of a
// MITRE ATT&CK technique id: T and four digits, optionally followed by a dot
// and three digits (T1059, T1059.001).
func CheckTechnique(id string) (string, error) {
	v := strings.ToUpper(strings.TrimSpace(id))
	ok := (len(v) == 5 || len(v) == 9) && v[0] == 'T' && digits(v[1:5]) &&
		(len(v) == 5 || v[5] == '.' && digits(v[6:]))
	if !ok {
		return "", domain.Invalid(ErrTechniqueInvalid.Code, "technique %q must be an ATT&CK technique id such as T1059 or T1059.001", id)
	}
	return v, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// normalizeHosts returns host ids trimmed, sorted and without duplicates.
func normalizeHosts(ids []hosts.ID) ([]hosts.ID, error) {
	var out []hosts.ID
	for _, id := range ids {
		id, err := checkHost(id)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxHosts {
		return nil, ErrTooManyHosts
	}
	return out, nil
}

// change applies add and remove, normalised by norm, to the sorted set cur.
func change(cur, add, remove []string, norm func([]string) ([]string, error), max int, tooMany, conflict error) ([]string, error) {
	add, err := norm(add)
	if err != nil {
		return nil, err
	}
	remove, err = norm(remove)
	if err != nil {
		return nil, err
	}
	for _, x := range add {
		if _, found := slices.BinarySearch(remove, x); found {
			return nil, conflict
		}
	}
	all := append(slices.Clone(cur), add...)
	slices.Sort(all)
	var next []string
	for _, x := range slices.Compact(all) {
		if _, found := slices.BinarySearch(remove, x); !found {
			next = append(next, x)
		}
	}
	if len(next) > max {
		return nil, tooMany
	}
	return next, nil
}

// diff returns what was added to and removed from the sorted set from to make
// the sorted set to.
func diff(from, to []string) (added, removed []string) {
	for _, x := range to {
		if _, found := slices.BinarySearch(from, x); !found {
			added = append(added, x)
		}
	}
	for _, x := range from {
		if _, found := slices.BinarySearch(to, x); !found {
			removed = append(removed, x)
		}
	}
	return added, removed
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// isText reports whether s is valid UTF-8 of printable characters, tabs and
// line breaks.
func isText(s string) bool { return utf8.ValidString(s) && strings.IndexFunc(s, notText) < 0 }

// notPrintable reports whether r is not printable; of the spaces only U+0020
// counts as printable.
func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// notText reports whether r may not appear in free text.
func notText(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && !unicode.IsPrint(r) }
