package velociraptor

import (
	"maps"
	"slices"
	"strings"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
)

// Wire names of the hunt events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventHuntRequested       = "hunt.requested"
	EventHuntScheduled       = "hunt.scheduled"
	EventHuntProgressed      = "hunt.progressed"
	EventHuntResultsReceived = "hunt.results_received"
	EventHuntStopRequested   = "hunt.stop_requested"
	EventHuntStopped         = "hunt.stopped"
	EventHuntFailed          = "hunt.failed"
)

// Hunt limits.
const (
	MaxDescriptionLen = 1000 // code points
	DefaultHuntExpiry = 7 * 24 * time.Hour
	MaxHuntExpiry     = 90 * 24 * time.Hour
)

// The operating systems a hunt may be restricted to ("" is all).
var HuntOSes = []string{"", "windows", "linux", "darwin"}

// The hunt states Velociraptor reports.
var HuntStates = []string{"UNSET", "PAUSED", "RUNNING", "STOPPED", "ARCHIVED"}

// HuntStats are a hunt's client counts as Velociraptor reports them.
type HuntStats struct {
	Scheduled   int64 `json:"scheduled"`
	Completed   int64 `json:"completed"`
	WithResults int64 `json:"with_results"`
	Errors      int64 `json:"errors"`
}

// HuntRequested records that an analyst asked to hunt the tenant's fleet.
type HuntRequested struct {
	ID            string            `json:"id"`
	Description   string            `json:"description"`
	Artifacts     []string          `json:"artifacts"`
	Parameters    map[string]string `json:"parameters"`
	IncludeLabels []string          `json:"include_labels"`
	ExcludeLabels []string          `json:"exclude_labels"`
	OS            string            `json:"os"`
	Expires       time.Time         `json:"expires"`
	By            domain.UserID     `json:"by"`
}

// HuntScheduled records the hunt Velociraptor created for a hunt.
type HuntScheduled struct {
	HuntID string `json:"hunt_id"`
}

// HuntProgressed records a hunt's new client counts or state.
type HuntProgressed struct {
	Stats HuntStats `json:"stats"`
	State string    `json:"state"`
}

// HuntResultsReceived records that results of one source of one client's
// flow were stored: Rows more of them. A flow still uploading when it is
// first read is recorded again as its further rows arrive.
type HuntResultsReceived struct {
	ClientID string `json:"client_id"`
	FlowID   string `json:"flow_id"`
	Source   string `json:"source"`
	Rows     int64  `json:"rows"`
}

// HuntStopRequested records that an analyst asked to stop a hunt.
type HuntStopRequested struct {
	By domain.UserID `json:"by"`
}

// HuntStopped records that a hunt ended: stopped on request, expired, or
// stopped in Velociraptor.
type HuntStopped struct{}

// HuntFailed records that a hunt could not be created or followed.
type HuntFailed struct {
	Error string `json:"error"`
}

// EventName returns the durable wire name of HuntRequested.
func (HuntRequested) EventName() string { return EventHuntRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of HuntScheduled.
func (HuntScheduled) EventName() string { return EventHuntScheduled } // WARNING: stored; never rename.

// EventName returns the durable wire name of HuntProgressed.
func (HuntProgressed) EventName() string { return EventHuntProgressed } // WARNING: stored; never rename.

// EventName returns the durable wire name of HuntResultsReceived.
func (HuntResultsReceived) EventName() string { return EventHuntResultsReceived } // WARNING: stored; never rename.

// EventName returns the durable wire name of HuntStopRequested.
func (HuntStopRequested) EventName() string { return EventHuntStopRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of HuntStopped.
func (HuntStopped) EventName() string { return EventHuntStopped } // WARNING: stored; never rename.

// EventName returns the durable wire name of HuntFailed.
func (HuntFailed) EventName() string { return EventHuntFailed } // WARNING: stored; never rename.

// HuntRequest is what a caller asks to hunt. Decisions normalise it.
type HuntRequest struct {
	Description   string
	Artifacts     []string
	Parameters    map[string]string
	IncludeLabels []string
	ExcludeLabels []string
	OS            string
	// Expires is when Velociraptor stops the hunt; DefaultHuntExpiry from
	// now when zero.
	Expires time.Time
}

// Hunt is what decisions about one hunt need; EvolveHunt rebuilds it.
//
// EvolveHunt adds to Received in place: fold a hunt's history into a fresh
// state and do not keep the states in between.
type Hunt struct {
	Exists bool
	ID     string
	HuntRequest
	By      domain.UserID
	Status  Status
	HuntID  string // Velociraptor's
	Stats   HuntStats
	State   string // as Velociraptor reports it
	Error   string
	Rows    int64 // stored result rows
	Results int   // stored (flow, source) pairs
	StopBy  domain.UserID
	// Received holds how many rows of each (flow, source) pair are stored.
	Received map[ResultKey]int64
}

// ResultKey names the results of one source of one flow.
type ResultKey struct{ FlowID, Source string }

// Done reports whether h has ended, stopped or failed.
func (h Hunt) Done() bool { return h.Status == StatusStopped || h.Status == StatusFailed }

// Errors of the hunt decisions, besides domain.ErrNotFound for a hunt that
// was never requested.
var (
	ErrHuntExists         = domain.Conflict("hunt_exists", "a different hunt was already requested with this id")
	ErrDescriptionInvalid = domain.Invalid("description_invalid", "description must be at most 1000 characters of text")
	ErrLabelOverlap       = domain.Invalid("labels_overlap", "a label cannot be both included and excluded")
	ErrOSInvalid          = domain.Invalid("os_invalid", "os must be empty (all), windows, linux or darwin")
	ErrExpiresPast        = domain.Invalid("expires_invalid", "expires must lie in the future")
	ErrExpiresTooFar      = domain.Invalid("expires_too_far", "expires must be at most 90 days away")
	ErrHuntConflict       = domain.Conflict("hunt_conflict", "the hunt is already scheduled as another Velociraptor hunt")
	ErrHuntNotScheduled   = domain.Conflict("hunt_not_scheduled", "the hunt has not started in Velociraptor yet")
	ErrHuntNotRunning     = domain.Conflict("hunt_not_running", "only a scheduled or running hunt can be stopped")
	ErrHuntFinished       = domain.Conflict("hunt_finished", "the hunt has already ended with another outcome")
	ErrHuntStateInvalid   = domain.Invalid("hunt_state_invalid", "hunt state must be one of UNSET, PAUSED, RUNNING, STOPPED, ARCHIVED")
	ErrStatsInvalid       = domain.Invalid("hunt_stats_invalid", "hunt counts must not be negative")
)

// NormalizeHunt returns r validated at now and in normal form: the
// description trimmed, artifact names without repeats, labels lower-case and
// sorted, the expiry filled in and in UTC.
func NormalizeHunt(r HuntRequest, now time.Time) (HuntRequest, error) {
	r, err := normalizeHunt(r)
	if err != nil {
		return r, err
	}
	if r.Expires.IsZero() {
		r.Expires = now.Add(DefaultHuntExpiry)
	}
	switch {
	case !r.Expires.After(now):
		return r, ErrExpiresPast
	case r.Expires.After(now.Add(MaxHuntExpiry)):
		return r, ErrExpiresTooFar
	}
	r.Expires = r.Expires.UTC()
	return r, nil
}

// normalizeHunt is NormalizeHunt without the expiry.
func normalizeHunt(r HuntRequest) (HuntRequest, error) {
	var err error
	r.Description = strings.TrimSpace(r.Description)
	if !checkText(r.Description, MaxDescriptionLen, true) {
		return r, ErrDescriptionInvalid
	}
	if r.Artifacts, err = CheckArtifacts(r.Artifacts); err != nil {
		return r, err
	}
	if r.Parameters, err = CheckParameters(r.Parameters); err != nil {
		return r, err
	}
	if r.IncludeLabels, err = hosts.NormalizeLabels(r.IncludeLabels); err != nil {
		return r, err
	}
	if r.ExcludeLabels, err = hosts.NormalizeLabels(r.ExcludeLabels); err != nil {
		return r, err
	}
	for _, l := range r.IncludeLabels {
		if _, found := slices.BinarySearch(r.ExcludeLabels, l); found {
			return r, ErrLabelOverlap
		}
	}
	r.OS = strings.ToLower(strings.TrimSpace(r.OS))
	if !slices.Contains(HuntOSes, r.OS) {
		return r, ErrOSInvalid
	}
	return r, nil
}

// RequestHunt decides whether by may ask, in tenant at now, for the hunt id
// described by r. Asking again with the same id and the same request (a zero
// expiry matches the one recorded) records nothing; with the same id and
// another request it is a conflict.
func RequestHunt(s Hunt, by users.Actor, tenant domain.TenantID, id string, r HuntRequest, now time.Time) ([]domain.Event, error) {
	if err := mayRun(by, tenant); err != nil {
		return nil, err
	}
	if err := CheckID(id); err != nil {
		return nil, err
	}
	if s.Exists {
		r, err := normalizeHunt(r)
		if err != nil {
			return nil, err
		}
		if sameHunt(s.HuntRequest, r) && (r.Expires.IsZero() || r.Expires.Equal(s.Expires)) {
			return nil, nil
		}
		return nil, ErrHuntExists
	}
	r, err := NormalizeHunt(r, now)
	if err != nil {
		return nil, err
	}
	return []domain.Event{HuntRequested{ID: id, Description: r.Description, Artifacts: r.Artifacts,
		Parameters: r.Parameters, IncludeLabels: nonNil(r.IncludeLabels), ExcludeLabels: nonNil(r.ExcludeLabels),
		OS: r.OS, Expires: r.Expires, By: by.User}}, nil
}

func sameHunt(a, b HuntRequest) bool {
	return a.Description == b.Description && slices.Equal(a.Artifacts, b.Artifacts) && maps.Equal(a.Parameters, b.Parameters) &&
		slices.Equal(a.IncludeLabels, b.IncludeLabels) && slices.Equal(a.ExcludeLabels, b.ExcludeLabels) && a.OS == b.OS
}

// ScheduleHunt decides whether the hunt s may record that Velociraptor runs
// it as huntID. The same hunt id again records nothing; another is a
// conflict.
func ScheduleHunt(s Hunt, huntID string) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if err := CheckHuntID(huntID); err != nil {
		return nil, err
	}
	switch {
	case s.HuntID == huntID:
		return nil, nil
	case s.HuntID != "":
		return nil, ErrHuntConflict
	case s.Done():
		return nil, ErrHuntFinished
	}
	return []domain.Event{HuntScheduled{HuntID: huntID}}, nil
}

// ProgressHunt decides whether the counts stats and the Velociraptor state
// of the scheduled hunt s are news: they are when either changed.
func ProgressHunt(s Hunt, stats HuntStats, state string) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if s.HuntID == "" {
		return nil, ErrHuntNotScheduled
	}
	if !slices.Contains(HuntStates, state) {
		return nil, ErrHuntStateInvalid
	}
	if stats.Scheduled < 0 || stats.Completed < 0 || stats.WithResults < 0 || stats.Errors < 0 {
		return nil, ErrStatsInvalid
	}
	if stats == s.Stats && state == s.State {
		return nil, nil
	}
	return []domain.Event{HuntProgressed{Stats: stats, State: state}}, nil
}

// ReceiveHuntResults decides whether the scheduled hunt s may record that the
// first rows results of source from the flow flowID of clientID are stored.
// Only rows beyond those already recorded are news: the event counts them.
func ReceiveHuntResults(s Hunt, clientID, flowID, source string, rows int64) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if s.HuntID == "" {
		return nil, ErrHuntNotScheduled
	}
	clientID, err := CheckClientID(clientID)
	if err != nil {
		return nil, err
	}
	if err := CheckFlowID(flowID); err != nil {
		return nil, err
	}
	if !validArtifact(source) {
		return nil, domain.Invalid(ErrSourceInvalid.Code, "%q is not a result source: it is an artifact name, optionally followed by /Source", clip(source, 60))
	}
	if rows < 0 {
		return nil, ErrRowsInvalid
	}
	stored := s.Received[ResultKey{flowID, source}]
	if rows <= stored {
		return nil, nil
	}
	return []domain.Event{HuntResultsReceived{ClientID: clientID, FlowID: flowID, Source: source, Rows: rows - stored}}, nil
}

// RequestHuntStop decides whether by may ask, in tenant, to stop the hunt s.
// Only a scheduled or running hunt can be stopped; asking again while it
// stops, or once it stopped, records nothing.
func RequestHuntStop(s Hunt, by users.Actor, tenant domain.TenantID) ([]domain.Event, error) {
	if err := mayRun(by, tenant); err != nil {
		return nil, err
	}
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	switch s.Status {
	case StatusStopping, StatusStopped:
		return nil, nil
	case StatusScheduled, StatusRunning:
		return []domain.Event{HuntStopRequested{By: by.User}}, nil
	}
	return nil, ErrHuntNotRunning
}

// StopHunt decides whether the hunt s may record that it ended. Stopping a
// stopped hunt records nothing; a failed one is a conflict.
func StopHunt(s Hunt) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	switch s.Status {
	case StatusStopped:
		return nil, nil
	case StatusFailed:
		return nil, ErrHuntFinished
	}
	return []domain.Event{HuntStopped{}}, nil
}

// FailHunt decides whether the hunt s may record that it failed with
// errText. Failing a failed hunt records nothing; a stopped one is a
// conflict.
func FailHunt(s Hunt, errText string) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	switch s.Status {
	case StatusFailed:
		return nil, nil
	case StatusStopped:
		return nil, ErrHuntFinished
	}
	return []domain.Event{HuntFailed{Error: CleanError(errText, "the hunt failed")}}, nil
}

// EvolveHunt applies one recorded event to s. It never fails.
func EvolveHunt(s Hunt, e domain.Event) Hunt {
	switch e := e.(type) {
	case HuntRequested:
		s = Hunt{Exists: true, ID: e.ID, By: e.By, Status: StatusRequested, HuntRequest: HuntRequest{
			Description: e.Description, Artifacts: slices.Clone(e.Artifacts), Parameters: maps.Clone(e.Parameters),
			IncludeLabels: nilIfEmpty(e.IncludeLabels), ExcludeLabels: nilIfEmpty(e.ExcludeLabels),
			OS: e.OS, Expires: e.Expires}}
	case HuntScheduled:
		s.HuntID = e.HuntID
		if s.Status == StatusRequested {
			s.Status = StatusScheduled
		}
	case HuntProgressed:
		s.Stats, s.State = e.Stats, e.State
		if s.Status == StatusScheduled && e.State == "RUNNING" {
			s.Status = StatusRunning
		}
	case HuntResultsReceived:
		if s.Received == nil {
			s.Received = map[ResultKey]int64{}
		}
		key := ResultKey{e.FlowID, e.Source}
		if _, seen := s.Received[key]; !seen {
			s.Results++
		}
		s.Received[key] += e.Rows
		s.Rows += e.Rows
	case HuntStopRequested:
		s.StopBy = e.By
		if !s.Done() {
			s.Status = StatusStopping
		}
	case HuntStopped:
		s.Status = StatusStopped
	case HuntFailed:
		s.Status, s.Error = StatusFailed, e.Error
	}
	return s
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}
