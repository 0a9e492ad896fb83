package velociraptor

import (
	"maps"
	"slices"
	"strings"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
)

// Wire names of the collection events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventCollectionRequested = "collection.requested"
	EventCollectionScheduled = "collection.scheduled"
	EventCollectionCompleted = "collection.completed"
	EventCollectionFailed    = "collection.failed"

	EventCollectionCancelRequested = "collection.cancel_requested"
	EventCollectionCancelled       = "collection.cancelled"
)

// Purpose says why a collection runs.
//
// WARNING: stored in events; never rename one.
type Purpose string

// The purposes.
const (
	PurposeCollect    Purpose = "collect"    // an analyst collects artifacts
	PurposeQuarantine Purpose = "quarantine" // isolates the host from the network
	PurposeRelease    Purpose = "release"    // lifts a quarantine
)

// Valid reports whether p is one of the defined purposes.
func (p Purpose) Valid() bool {
	return p == PurposeCollect || p == PurposeQuarantine || p == PurposeRelease
}

// Status is where a collection or hunt stands.
//
// WARNING: status values are shown by the API; never rename one.
type Status string

// The statuses of collections and hunts.
const (
	StatusRequested Status = "requested" // recorded, not yet started in Velociraptor
	StatusScheduled Status = "scheduled" // started in Velociraptor
	StatusRunning   Status = "running"   // a hunt that Velociraptor reports running
	StatusStopping  Status = "stopping"  // a hunt asked to stop
	StatusCompleted Status = "completed" // a collection whose results are stored
	StatusStopped   Status = "stopped"   // a hunt that ended
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled" // a collection stopped on request before it ended
)

// CollectionStatuses are the statuses a collection can have, in the order it
// moves through them.
var CollectionStatuses = []Status{StatusRequested, StatusScheduled, StatusCompleted, StatusFailed, StatusCancelled}

// CollectionRequested records that an analyst (or a quarantine command) asked
// to collect artifacts from one client.
type CollectionRequested struct {
	ID         string            `json:"id"`
	ClientID   string            `json:"client_id"`
	HostID     hosts.ID          `json:"host_id,omitempty"`
	Artifacts  []string          `json:"artifacts"`
	Parameters map[string]string `json:"parameters"`
	Purpose    Purpose           `json:"purpose"`
	By         domain.UserID     `json:"by"`
}

// CollectionScheduled records the flow Velociraptor started for a collection.
type CollectionScheduled struct {
	FlowID string `json:"flow_id"`
}

// SourceCount is how many rows one artifact source produced.
type SourceCount struct {
	Source string `json:"source"`
	Rows   int64  `json:"rows"`
}

// CollectionCompleted records that a collection finished and its results are
// stored: Rows in all, per source, and the last lines of the flow's log.
type CollectionCompleted struct {
	Rows    int64         `json:"rows"`
	Sources []SourceCount `json:"sources"`
	Logs    []string      `json:"logs"`
}

// CollectionFailed records that a collection could not be started or ended
// in error.
type CollectionFailed struct {
	Error string   `json:"error"`
	Logs  []string `json:"logs"`
}

// CollectionCancelRequested records that an analyst asked to cancel a
// collection that had not ended; the worker stops its flow, if it started.
type CollectionCancelRequested struct {
	By domain.UserID `json:"by"`
}

// CollectionCancelled records that a collection ended because it was
// cancelled: its flow, if it had started, was cancelled in Velociraptor. By
// is who asked.
type CollectionCancelled struct {
	By domain.UserID `json:"by"`
}

// EventName returns the durable wire name of CollectionRequested.
func (CollectionRequested) EventName() string { return EventCollectionRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of CollectionScheduled.
func (CollectionScheduled) EventName() string { return EventCollectionScheduled } // WARNING: stored; never rename.

// EventName returns the durable wire name of CollectionCompleted.
func (CollectionCompleted) EventName() string { return EventCollectionCompleted } // WARNING: stored; never rename.

// EventName returns the durable wire name of CollectionFailed.
func (CollectionFailed) EventName() string { return EventCollectionFailed } // WARNING: stored; never rename.

// EventName returns the durable wire name of CollectionCancelRequested.
func (CollectionCancelRequested) EventName() string { return EventCollectionCancelRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of CollectionCancelled.
func (CollectionCancelled) EventName() string { return EventCollectionCancelled } // WARNING: stored; never rename.

// CollectionRequest is what a caller asks to collect. Decisions normalise it.
type CollectionRequest struct {
	ClientID   string
	HostID     hosts.ID
	Artifacts  []string
	Parameters map[string]string
	// Purpose is PurposeCollect when empty.
	Purpose Purpose
}

// Collection is what decisions about one collection need;
// EvolveCollection rebuilds it.
type Collection struct {
	Exists     bool
	ID         string
	ClientID   string
	HostID     hosts.ID
	Artifacts  []string
	Parameters map[string]string
	Purpose    Purpose
	By         domain.UserID
	Status     Status
	FlowID     string
	Rows       int64
	Sources    []SourceCount
	Logs       []string
	Error      string
	// CancelBy is who asked to cancel the collection; "" when nobody did.
	CancelBy domain.UserID
}

// Done reports whether c has ended: completed, failed or cancelled.
func (c Collection) Done() bool {
	return c.Status == StatusCompleted || c.Status == StatusFailed || c.Status == StatusCancelled
}

// Errors of the collection decisions, besides domain.ErrNotFound for a
// collection that was never requested.
var (
	ErrCollectionExists   = domain.Conflict("collection_exists", "a different collection was already requested with this id")
	ErrFlowConflict       = domain.Conflict("flow_conflict", "the collection is already scheduled as another flow")
	ErrCollectionFinished = domain.Conflict("collection_finished", "the collection has already ended with another outcome")
	ErrCollectionEnded    = domain.Conflict("collection_ended", "the collection has already completed or failed: there is nothing left to cancel")
	ErrIsolationCancel    = domain.Conflict("collection_not_cancellable",
		"a collection that quarantines or releases a host cannot be cancelled: a half-applied network isolation is worse than either state; release the host once it has ended instead")
	ErrCancelNotRequested = domain.Conflict("cancel_not_requested", "nobody asked to cancel the collection")
)

// NormalizeCollection returns r validated and in normal form: the client id
// in lower case, artifact names trimmed and without repeats, no parameters as
// nil, the purpose filled in.
func NormalizeCollection(r CollectionRequest) (CollectionRequest, error) {
	var err error
	if r.ClientID, err = CheckClientID(r.ClientID); err != nil {
		return r, err
	}
	r.HostID = hosts.ID(strings.TrimSpace(string(r.HostID)))
	if r.HostID != "" && CheckID(string(r.HostID)) != nil {
		return r, ErrHostIDInvalid
	}
	if r.Artifacts, err = CheckArtifacts(r.Artifacts); err != nil {
		return r, err
	}
	if r.Parameters, err = CheckParameters(r.Parameters); err != nil {
		return r, err
	}
	if r.Purpose == "" {
		r.Purpose = PurposeCollect
	}
	if !r.Purpose.Valid() {
		return r, ErrPurposeInvalid
	}
	return r, nil
}

// RequestCollection decides whether by may ask, in tenant, for the collection
// id described by r. Asking again with the same id and the same request
// records nothing; with the same id and another request it is a conflict.
func RequestCollection(s Collection, by users.Actor, tenant domain.TenantID, id string, r CollectionRequest) ([]domain.Event, error) {
	if err := mayRun(by, tenant); err != nil {
		return nil, err
	}
	if err := CheckID(id); err != nil {
		return nil, err
	}
	r, err := NormalizeCollection(r)
	if err != nil {
		return nil, err
	}
	if s.Exists {
		if s.ClientID == r.ClientID && s.HostID == r.HostID && slices.Equal(s.Artifacts, r.Artifacts) &&
			maps.Equal(s.Parameters, r.Parameters) && s.Purpose == r.Purpose {
			return nil, nil
		}
		return nil, ErrCollectionExists
	}
	return []domain.Event{CollectionRequested{ID: id, ClientID: r.ClientID, HostID: r.HostID, Artifacts: r.Artifacts,
		Parameters: r.Parameters, Purpose: r.Purpose, By: by.User}}, nil
}

// ScheduleCollection decides whether the collection s may record that
// Velociraptor runs it as flowID. The same flow again records nothing;
// another flow is a conflict.
func ScheduleCollection(s Collection, flowID string) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if err := CheckFlowID(flowID); err != nil {
		return nil, err
	}
	switch {
	case s.FlowID == flowID:
		return nil, nil
	case s.FlowID != "":
		return nil, ErrFlowConflict
	case s.Done():
		return nil, ErrCollectionFinished
	}
	return []domain.Event{CollectionScheduled{FlowID: flowID}}, nil
}

// CompleteCollection decides whether the collection s may record that it
// finished with the row counts sources and the log lines logs. Completing a
// completed collection records nothing; a failed or cancelled one is a
// conflict. A collection asked to be cancelled may still complete: the flow
// ended before the cancel reached it.
func CompleteCollection(s Collection, sources []SourceCount, logs []string) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	switch s.Status {
	case StatusCompleted:
		return nil, nil
	case StatusFailed, StatusCancelled:
		return nil, ErrCollectionFinished
	}
	var total int64
	var out []SourceCount
	for _, sc := range sources {
		if !validArtifact(sc.Source) {
			return nil, domain.Invalid(ErrSourceInvalid.Code, "%q is not a result source: it is an artifact name, optionally followed by /Source", clip(sc.Source, 60))
		}
		if sc.Rows < 0 {
			return nil, ErrRowsInvalid
		}
		total += sc.Rows
		out = append(out, sc)
	}
	if out == nil {
		out = []SourceCount{}
	}
	return []domain.Event{CollectionCompleted{Rows: total, Sources: out, Logs: nonNil(CleanLogs(logs))}}, nil
}

// FailCollection decides whether the collection s may record that it failed
// with errText. Failing a failed collection records nothing; a completed or
// cancelled one is a conflict.
func FailCollection(s Collection, errText string, logs []string) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	switch s.Status {
	case StatusFailed:
		return nil, nil
	case StatusCompleted, StatusCancelled:
		return nil, ErrCollectionFinished
	}
	return []domain.Event{CollectionFailed{Error: CleanError(errText, "the collection failed"), Logs: nonNil(CleanLogs(logs))}}, nil
}

// RequestCollectionCancel decides whether by may ask, in tenant, to cancel
// the collection s. Only a collection that has not ended may be cancelled;
// asking again, or once it is cancelled, records nothing. A collection that
// quarantines or releases a host is never cancelled.
func RequestCollectionCancel(s Collection, by users.Actor, tenant domain.TenantID) ([]domain.Event, error) {
	if err := mayRun(by, tenant); err != nil {
		return nil, err
	}
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if s.Purpose != PurposeCollect {
		return nil, ErrIsolationCancel
	}
	switch {
	case s.Status == StatusCancelled:
		return nil, nil
	case s.Status == StatusCompleted || s.Status == StatusFailed:
		return nil, ErrCollectionEnded // the cancel came too late, if one was asked
	case s.CancelBy != "":
		return nil, nil
	}
	return []domain.Event{CollectionCancelRequested{By: by.User}}, nil
}

// CancelCollection decides whether the collection s may record that it was
// cancelled as asked. Cancelling a cancelled collection records nothing; one
// that completed or failed, or that nobody asked to cancel, is a conflict.
func CancelCollection(s Collection) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	switch {
	case s.Status == StatusCancelled:
		return nil, nil
	case s.Done():
		return nil, ErrCollectionFinished
	case s.CancelBy == "":
		return nil, ErrCancelNotRequested
	}
	return []domain.Event{CollectionCancelled{By: s.CancelBy}}, nil
}

// EvolveCollection applies one recorded event to s. It never fails.
func EvolveCollection(s Collection, e domain.Event) Collection {
	switch e := e.(type) {
	case CollectionRequested:
		s = Collection{Exists: true, ID: e.ID, ClientID: e.ClientID, HostID: e.HostID, Artifacts: slices.Clone(e.Artifacts),
			Parameters: maps.Clone(e.Parameters), Purpose: e.Purpose, By: e.By, Status: StatusRequested}
	case CollectionScheduled:
		s.FlowID, s.Status = e.FlowID, StatusScheduled
	case CollectionCompleted:
		s.Status, s.Rows, s.Sources, s.Logs = StatusCompleted, e.Rows, slices.Clone(e.Sources), slices.Clone(e.Logs)
	case CollectionFailed:
		s.Status, s.Error, s.Logs = StatusFailed, e.Error, slices.Clone(e.Logs)
	case CollectionCancelRequested:
		s.CancelBy = e.By
	case CollectionCancelled:
		s.Status = StatusCancelled
		if s.CancelBy == "" {
			s.CancelBy = e.By
		}
	}
	return s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
