package velociraptor_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/domaintest"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	vr "velocicompanion/domain/velociraptor"
)

const (
	huntID   = "0190c7a4-6a38-7f1e-9a49-0000000h0001"
	vrHunt   = "H.CP9V4SMR1VBK2"
	huntFlow = "F.CP9V4SMR1VBK2.H"
)

var (
	huntRequest = vr.HuntRequest{Description: "find chrome", Artifacts: []string{"Windows.System.Pslist"},
		Parameters: map[string]string{"ProcessRegex": "chrome"}, IncludeLabels: []string{"finance"}, OS: "windows",
		Expires: now.Add(48 * time.Hour)}
	huntRequested = vr.HuntRequested{ID: huntID, Description: "find chrome", Artifacts: []string{"Windows.System.Pslist"},
		Parameters: map[string]string{"ProcessRegex": "chrome"}, IncludeLabels: []string{"finance"}, ExcludeLabels: []string{},
		OS: "windows", Expires: now.Add(48 * time.Hour), By: analyst.User}
	huntScheduled = vr.HuntScheduled{HuntID: vrHunt}
	running       = vr.HuntProgressed{Stats: vr.HuntStats{Scheduled: 2}, State: "RUNNING"}
	received      = vr.HuntResultsReceived{ClientID: client, FlowID: huntFlow, Source: "Windows.System.Pslist", Rows: 4}
	stopAsked     = vr.HuntStopRequested{By: analyst.User}
)

type huntScenario struct {
	name    string
	given   []domain.Event
	when    func(vr.Hunt) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func runHunt(t *testing.T, cases []huntScenario) {
	t.Helper()
	for _, tc := range cases {
		domaintest.Check(t, tc.name, vr.EvolveHunt, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func TestRequestHunt(t *testing.T) {
	req := func(by users.Actor, edit func(*vr.HuntRequest)) func(vr.Hunt) ([]domain.Event, error) {
		return func(s vr.Hunt) ([]domain.Event, error) {
			r := huntRequest
			if edit != nil {
				edit(&r)
			}
			return vr.RequestHunt(s, by, tenant, huntID, r, now)
		}
	}
	defaulted := huntRequested
	defaulted.Expires = now.Add(vr.DefaultHuntExpiry)
	everything := vr.HuntRequested{ID: huntID, Description: "all", Artifacts: []string{"Generic.Client.Info"},
		IncludeLabels: []string{}, ExcludeLabels: []string{}, Expires: now.Add(vr.DefaultHuntExpiry), By: analyst.User}
	runHunt(t, []huntScenario{
		{name: "records_requested", when: req(analyst, nil), want: events(huntRequested)},
		{name: "default_expiry", when: req(analyst, func(r *vr.HuntRequest) { r.Expires = time.Time{} }), want: events(defaulted)},
		{name: "whole_fleet", when: req(analyst, func(r *vr.HuntRequest) {
			*r = vr.HuntRequest{Description: " all ", Artifacts: []string{"Generic.Client.Info"}}
		}), want: events(everything)},
		{name: "normalises_labels_and_os", when: req(analyst, func(r *vr.HuntRequest) {
			r.IncludeLabels = []string{" Finance", "finance"}
			r.ExcludeLabels = []string{"Lab"}
			r.OS = " Windows "
		}), want: events(vr.HuntRequested{ID: huntID, Description: "find chrome", Artifacts: huntRequested.Artifacts,
			Parameters: huntRequested.Parameters, IncludeLabels: []string{"finance"}, ExcludeLabels: []string{"lab"},
			OS: "windows", Expires: huntRequested.Expires, By: analyst.User})},
		{name: "multiline_description", when: req(analyst, func(r *vr.HuntRequest) { r.Description = "line 1\nline 2" }),
			want: events(func() vr.HuntRequested { e := huntRequested; e.Description = "line 1\nline 2"; return e }())},
		{name: "same_again_records_nothing", given: events(huntRequested), when: req(analyst, nil)},
		{name: "same_again_without_expiry_records_nothing", given: events(huntRequested),
			when: req(analyst, func(r *vr.HuntRequest) { r.Expires = time.Time{} })},
		{name: "same_again_after_expiry_records_nothing", given: events(huntRequested),
			when: func(s vr.Hunt) ([]domain.Event, error) {
				return vr.RequestHunt(s, analyst, tenant, huntID, huntRequest, now.Add(100*time.Hour))
			}},
		{name: "other_request_same_id_is_conflict", given: events(huntRequested),
			when: req(analyst, func(r *vr.HuntRequest) { r.Description = "other" }), wantErr: vr.ErrHuntExists},
		{name: "other_expiry_same_id_is_conflict", given: events(huntRequested),
			when: req(analyst, func(r *vr.HuntRequest) { r.Expires = now.Add(time.Hour) }), wantErr: vr.ErrHuntExists},
		{name: "viewer_is_forbidden", when: req(viewer, nil), wantErr: vr.ErrNotAllowed},
		{name: "other_tenant_is_not_found", when: req(foreign, nil), wantErr: domain.ErrNotFound},
		{name: "long_description", when: req(analyst, func(r *vr.HuntRequest) { r.Description = strings.Repeat("é", 1001) }), wantErr: vr.ErrDescriptionInvalid},
		{name: "control_in_description", when: req(analyst, func(r *vr.HuntRequest) { r.Description = "a\x00b" }), wantErr: vr.ErrDescriptionInvalid},
		{name: "no_artifacts", when: req(analyst, func(r *vr.HuntRequest) { r.Artifacts = nil }), wantErr: vr.ErrArtifactsCount},
		{name: "bad_artifact", when: req(analyst, func(r *vr.HuntRequest) { r.Artifacts = []string{"x y"} }), wantErr: vr.ErrArtifactInvalid},
		{name: "bad_param", when: req(analyst, func(r *vr.HuntRequest) { r.Parameters = map[string]string{"": "x"} }), wantErr: vr.ErrParamInvalid},
		{name: "bad_label", when: req(analyst, func(r *vr.HuntRequest) { r.IncludeLabels = []string{" "} }), wantErr: hosts.ErrLabelInvalid},
		{name: "label_both_ways", when: req(analyst, func(r *vr.HuntRequest) { r.ExcludeLabels = []string{"FINANCE"} }), wantErr: vr.ErrLabelOverlap},
		{name: "bad_os", when: req(analyst, func(r *vr.HuntRequest) { r.OS = "freebsd" }), wantErr: vr.ErrOSInvalid},
		{name: "expired", when: req(analyst, func(r *vr.HuntRequest) { r.Expires = now }), wantErr: vr.ErrExpiresPast},
		{name: "too_far", when: req(analyst, func(r *vr.HuntRequest) { r.Expires = now.Add(vr.MaxHuntExpiry + time.Second) }), wantErr: vr.ErrExpiresTooFar},
	})
	if _, err := vr.RequestHunt(vr.Hunt{}, analyst, tenant, huntID, vr.HuntRequest{Artifacts: []string{"A"}, Expires: now.Add(vr.MaxHuntExpiry)}, now); err != nil {
		t.Fatalf("expiry of exactly 90 days: %v", err)
	}
}

func TestScheduleHunt(t *testing.T) {
	schedule := func(id string) func(vr.Hunt) ([]domain.Event, error) {
		return func(s vr.Hunt) ([]domain.Event, error) { return vr.ScheduleHunt(s, id) }
	}
	runHunt(t, []huntScenario{
		{name: "records_scheduled", given: events(huntRequested), when: schedule(vrHunt), want: events(huntScheduled)},
		{name: "same_again_records_nothing", given: events(huntRequested, huntScheduled), when: schedule(vrHunt)},
		{name: "other_hunt_is_conflict", given: events(huntRequested, huntScheduled), when: schedule("H.OTHER"), wantErr: vr.ErrHuntConflict},
		{name: "after_failure_is_conflict", given: events(huntRequested, vr.HuntFailed{Error: "x"}), when: schedule(vrHunt), wantErr: vr.ErrHuntFinished},
		{name: "bad_hunt_id", given: events(huntRequested), when: schedule("F.1"), wantErr: vr.ErrHuntIDInvalid},
		{name: "missing_hunt", when: schedule(vrHunt), wantErr: domain.ErrNotFound},
	})
}

func TestProgressHunt(t *testing.T) {
	progress := func(stats vr.HuntStats, state string) func(vr.Hunt) ([]domain.Event, error) {
		return func(s vr.Hunt) ([]domain.Event, error) { return vr.ProgressHunt(s, stats, state) }
	}
	more := vr.HuntStats{Scheduled: 2, Completed: 1, WithResults: 1}
	runHunt(t, []huntScenario{
		{name: "first_progress", given: events(huntRequested, huntScheduled), when: progress(running.Stats, "RUNNING"), want: events(running)},
		{name: "same_records_nothing", given: events(huntRequested, huntScheduled, running), when: progress(running.Stats, "RUNNING")},
		{name: "stats_changed", given: events(huntRequested, huntScheduled, running), when: progress(more, "RUNNING"),
			want: events(vr.HuntProgressed{Stats: more, State: "RUNNING"})},
		{name: "state_changed", given: events(huntRequested, huntScheduled, running), when: progress(running.Stats, "STOPPED"),
			want: events(vr.HuntProgressed{Stats: running.Stats, State: "STOPPED"})},
		{name: "not_scheduled", given: events(huntRequested), when: progress(running.Stats, "RUNNING"), wantErr: vr.ErrHuntNotScheduled},
		{name: "bad_state", given: events(huntRequested, huntScheduled), when: progress(running.Stats, "running"), wantErr: vr.ErrHuntStateInvalid},
		{name: "negative_stats", given: events(huntRequested, huntScheduled), when: progress(vr.HuntStats{Errors: -1}, "RUNNING"), wantErr: vr.ErrStatsInvalid},
		{name: "missing_hunt", when: progress(running.Stats, "RUNNING"), wantErr: domain.ErrNotFound},
	})
}

func TestReceiveHuntResults(t *testing.T) {
	receive := func(client, flow, source string, rows int64) func(vr.Hunt) ([]domain.Event, error) {
		return func(s vr.Hunt) ([]domain.Event, error) { return vr.ReceiveHuntResults(s, client, flow, source, rows) }
	}
	runHunt(t, []huntScenario{
		{name: "records_received", given: events(huntRequested, huntScheduled), when: receive(client, huntFlow, "Windows.System.Pslist", 4), want: events(received)},
		{name: "the_same_rows_again_are_no_news", given: events(huntRequested, huntScheduled, received), when: receive(client, huntFlow, "Windows.System.Pslist", 4)},
		{name: "fewer_rows_are_no_news", given: events(huntRequested, huntScheduled, received), when: receive(client, huntFlow, "Windows.System.Pslist", 2)},
		{name: "further_rows_of_the_flow", given: events(huntRequested, huntScheduled, received), when: receive(client, huntFlow, "Windows.System.Pslist", 7),
			want: events(vr.HuntResultsReceived{ClientID: client, FlowID: huntFlow, Source: "Windows.System.Pslist", Rows: 3})},
		{name: "other_source_of_the_flow", given: events(huntRequested, huntScheduled, received), when: receive(client, huntFlow, "Other/Source", 1),
			want: events(vr.HuntResultsReceived{ClientID: client, FlowID: huntFlow, Source: "Other/Source", Rows: 1})},
		{name: "after_stop", given: events(huntRequested, huntScheduled, vr.HuntStopped{}), when: receive(client, huntFlow, "Windows.System.Pslist", 4), want: events(received)},
		{name: "not_scheduled", given: events(huntRequested), when: receive(client, huntFlow, "A", 1), wantErr: vr.ErrHuntNotScheduled},
		{name: "bad_client", given: events(huntRequested, huntScheduled), when: receive("C.1", huntFlow, "A", 1), wantErr: vr.ErrClientIDInvalid},
		{name: "bad_flow", given: events(huntRequested, huntScheduled), when: receive(client, "x", "A", 1), wantErr: vr.ErrFlowIDInvalid},
		{name: "bad_source", given: events(huntRequested, huntScheduled), when: receive(client, huntFlow, "a b", 1), wantErr: vr.ErrSourceInvalid},
		{name: "negative_rows", given: events(huntRequested, huntScheduled), when: receive(client, huntFlow, "A", -1), wantErr: vr.ErrRowsInvalid},
		{name: "missing_hunt", when: receive(client, huntFlow, "A", 1), wantErr: domain.ErrNotFound},
	})
}

func TestStopAndFailHunt(t *testing.T) {
	stop := func(by users.Actor) func(vr.Hunt) ([]domain.Event, error) {
		return func(s vr.Hunt) ([]domain.Event, error) { return vr.RequestHuntStop(s, by, tenant) }
	}
	fail := func(s vr.Hunt) ([]domain.Event, error) { return vr.FailHunt(s, "lost") }
	huntFailed := vr.HuntFailed{Error: "lost"}
	runHunt(t, []huntScenario{
		{name: "stop_scheduled", given: events(huntRequested, huntScheduled), when: stop(analyst), want: events(stopAsked)},
		{name: "stop_running", given: events(huntRequested, huntScheduled, running), when: stop(analyst), want: events(stopAsked)},
		{name: "stop_twice_records_nothing", given: events(huntRequested, huntScheduled, stopAsked), when: stop(analyst)},
		{name: "stop_stopped_records_nothing", given: events(huntRequested, huntScheduled, vr.HuntStopped{}), when: stop(analyst)},
		{name: "stop_requested_is_conflict", given: events(huntRequested), when: stop(analyst), wantErr: vr.ErrHuntNotRunning},
		{name: "stop_failed_is_conflict", given: events(huntRequested, huntScheduled, huntFailed), when: stop(analyst), wantErr: vr.ErrHuntNotRunning},
		{name: "stop_by_viewer", given: events(huntRequested, huntScheduled), when: stop(viewer), wantErr: vr.ErrNotAllowed},
		{name: "stop_by_other_tenant", given: events(huntRequested, huntScheduled), when: stop(foreign), wantErr: domain.ErrNotFound},
		{name: "stop_missing", when: stop(analyst), wantErr: domain.ErrNotFound},

		{name: "stopped", given: events(huntRequested, huntScheduled, stopAsked), when: vr.StopHunt, want: events(vr.HuntStopped{})},
		{name: "stopped_by_itself", given: events(huntRequested, huntScheduled, running), when: vr.StopHunt, want: events(vr.HuntStopped{})},
		{name: "stopped_twice_records_nothing", given: events(huntRequested, huntScheduled, vr.HuntStopped{}), when: vr.StopHunt},
		{name: "stopped_after_failure_is_conflict", given: events(huntRequested, huntFailed), when: vr.StopHunt, wantErr: vr.ErrHuntFinished},
		{name: "stopped_missing", when: vr.StopHunt, wantErr: domain.ErrNotFound},

		{name: "failed", given: events(huntRequested), when: fail, want: events(huntFailed)},
		{name: "failed_while_running", given: events(huntRequested, huntScheduled, running), when: fail, want: events(huntFailed)},
		{name: "failed_twice_records_nothing", given: events(huntRequested, huntFailed), when: fail},
		{name: "failed_after_stop_is_conflict", given: events(huntRequested, huntScheduled, vr.HuntStopped{}), when: fail, wantErr: vr.ErrHuntFinished},
		{name: "failed_missing", when: fail, wantErr: domain.ErrNotFound},
	})
}

func TestEvolveHunt(t *testing.T) {
	s := domain.Fold(vr.EvolveHunt, events(huntRequested, huntScheduled, running, received, stopAsked))
	want := vr.Hunt{Exists: true, ID: huntID, By: analyst.User, Status: vr.StatusStopping, HuntID: vrHunt,
		HuntRequest: vr.HuntRequest{Description: "find chrome", Artifacts: huntRequest.Artifacts, Parameters: huntRequest.Parameters,
			IncludeLabels: []string{"finance"}, OS: "windows", Expires: huntRequest.Expires},
		Stats: running.Stats, State: "RUNNING", Rows: 4, Results: 1, StopBy: analyst.User,
		Received: map[vr.ResultKey]int64{{FlowID: huntFlow, Source: "Windows.System.Pslist"}: 4}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("state = %+v\nwant    %+v", s, want)
	}
	more := domain.Fold(vr.EvolveHunt, events(huntRequested, huntScheduled, received,
		vr.HuntResultsReceived{ClientID: client, FlowID: huntFlow, Source: "Windows.System.Pslist", Rows: 3}))
	if more.Rows != 7 || more.Results != 1 || more.Received[vr.ResultKey{FlowID: huntFlow, Source: "Windows.System.Pslist"}] != 7 {
		t.Fatalf("after further rows: rows %d, results %d, received %v", more.Rows, more.Results, more.Received)
	}
	if s := vr.EvolveHunt(s, vr.HuntStopped{}); s.Status != vr.StatusStopped || !s.Done() {
		t.Fatalf("after stopped: %+v", s)
	}
	if s := domain.Fold(vr.EvolveHunt, events(huntRequested, vr.HuntFailed{Error: "x"})); s.Status != vr.StatusFailed || s.Error != "x" {
		t.Fatalf("after failed: %+v", s)
	}
	if !errors.Is(vr.ErrHuntExists, vr.ErrHuntExists) {
		t.Fatal("sentinel does not match itself")
	}
}
