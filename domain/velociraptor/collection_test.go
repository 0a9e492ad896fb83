package velociraptor_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"velocicompanion/domain"
	"velocicompanion/domain/domaintest"
	"velocicompanion/domain/users"
	vr "velocicompanion/domain/velociraptor"
)

const (
	collID = "0190c7a4-6a38-7f1e-9a49-0000000c0001"
	client = "C.1a2b3c4d5e6f7a8b"
	flow   = "F.CP9V4SMR1VBK2"
)

var (
	request = vr.CollectionRequest{ClientID: client, Artifacts: []string{"Windows.System.Pslist", "Generic.Client.Info/BasicInformation"},
		Parameters: map[string]string{"ProcessRegex": "chrome"}}
	requested = vr.CollectionRequested{ID: collID, ClientID: client, Artifacts: request.Artifacts,
		Parameters: request.Parameters, Purpose: vr.PurposeCollect, By: analyst.User}
	scheduled = vr.CollectionScheduled{FlowID: flow}
	completed = vr.CollectionCompleted{Rows: 3, Sources: []vr.SourceCount{{Source: "Windows.System.Pslist", Rows: 3}}, Logs: []string{"done"}}
	failed    = vr.CollectionFailed{Error: "client offline", Logs: []string{}}
	cancelAsk = vr.CollectionCancelRequested{By: analyst.User}
	cancelled = vr.CollectionCancelled{By: analyst.User}
)

type collScenario struct {
	name    string
	given   []domain.Event
	when    func(vr.Collection) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func runColl(t *testing.T, cases []collScenario) {
	t.Helper()
	for _, tc := range cases {
		domaintest.Check(t, tc.name, vr.EvolveCollection, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func TestRequestCollection(t *testing.T) {
	req := func(by users.Actor, edit func(*vr.CollectionRequest)) func(vr.Collection) ([]domain.Event, error) {
		return func(s vr.Collection) ([]domain.Event, error) {
			r := request
			r.Parameters = map[string]string{"ProcessRegex": "chrome"}
			if edit != nil {
				edit(&r)
			}
			return vr.RequestCollection(s, by, tenant, collID, r)
		}
	}
	many := func(n int, f func(i int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	params := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("P%d", i)] = "v"
		}
		return m
	}
	runColl(t, []collScenario{
		{name: "records_requested", when: req(analyst, nil), want: events(requested)},
		{name: "admin_may", when: req(admin, nil), want: events(vr.CollectionRequested{ID: collID, ClientID: client,
			Artifacts: request.Artifacts, Parameters: request.Parameters, Purpose: vr.PurposeCollect, By: admin.User})},
		{name: "normalises", when: req(analyst, func(r *vr.CollectionRequest) {
			r.ClientID = " C.1A2B3C4D5E6F7A8B "
			r.HostID = " host-1 "
			r.Artifacts = []string{" Windows.System.Pslist", "Windows.System.Pslist", "Generic.Client.Info/BasicInformation"}
			r.Parameters = map[string]string{}
			r.Purpose = vr.PurposeQuarantine
		}), want: events(vr.CollectionRequested{ID: collID, ClientID: client, HostID: "host-1", Artifacts: request.Artifacts,
			Purpose: vr.PurposeQuarantine, By: analyst.User})},
		{name: "same_again_records_nothing", given: events(requested), when: req(analyst, nil)},
		{name: "same_again_by_someone_else_records_nothing", given: events(requested), when: req(admin, nil)},
		{name: "other_request_same_id_is_conflict", given: events(requested),
			when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters["ProcessRegex"] = "firefox" }), wantErr: vr.ErrCollectionExists},
		{name: "other_purpose_same_id_is_conflict", given: events(requested),
			when: req(analyst, func(r *vr.CollectionRequest) { r.Purpose = vr.PurposeRelease }), wantErr: vr.ErrCollectionExists},
		{name: "viewer_is_forbidden", when: req(viewer, nil), wantErr: vr.ErrNotAllowed},
		{name: "other_tenant_is_not_found", when: req(foreign, nil), wantErr: domain.ErrNotFound},
		{name: "client_required", when: req(analyst, func(r *vr.CollectionRequest) { r.ClientID = "" }), wantErr: vr.ErrClientIDRequired},
		{name: "client_bad", when: req(analyst, func(r *vr.CollectionRequest) { r.ClientID = "C.123" }), wantErr: vr.ErrClientIDInvalid},
		{name: "client_not_hex", when: req(analyst, func(r *vr.CollectionRequest) { r.ClientID = "C.1a2b3c4d5e6f7a8z" }), wantErr: vr.ErrClientIDInvalid},
		{name: "host_id_bad", when: req(analyst, func(r *vr.CollectionRequest) { r.HostID = "a/b" }), wantErr: vr.ErrHostIDInvalid},
		{name: "no_artifacts", when: req(analyst, func(r *vr.CollectionRequest) { r.Artifacts = nil }), wantErr: vr.ErrArtifactsCount},
		{name: "too_many_artifacts", when: req(analyst, func(r *vr.CollectionRequest) {
			r.Artifacts = many(21, func(i int) string { return fmt.Sprintf("A.B%d", i) })
		}), wantErr: vr.ErrArtifactsCount},
		{name: "artifact_with_quote", when: req(analyst, func(r *vr.CollectionRequest) { r.Artifacts = []string{"Windows'); DROP"} }), wantErr: vr.ErrArtifactInvalid},
		{name: "artifact_two_sources", when: req(analyst, func(r *vr.CollectionRequest) { r.Artifacts = []string{"A/B/C"} }), wantErr: vr.ErrArtifactInvalid},
		{name: "artifact_empty_source", when: req(analyst, func(r *vr.CollectionRequest) { r.Artifacts = []string{"A/"} }), wantErr: vr.ErrArtifactInvalid},
		{name: "artifact_too_long", when: req(analyst, func(r *vr.CollectionRequest) { r.Artifacts = []string{strings.Repeat("a", 201)} }), wantErr: vr.ErrArtifactInvalid},
		{name: "too_many_params", when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters = params(101) }), wantErr: vr.ErrTooManyParams},
		{name: "param_name_bad", when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters = map[string]string{"a b": "x"} }), wantErr: vr.ErrParamInvalid},
		{name: "param_name_digit", when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters = map[string]string{"1a": "x"} }), wantErr: vr.ErrParamInvalid},
		{name: "param_name_long", when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters = map[string]string{strings.Repeat("a", 101): "x"} }), wantErr: vr.ErrParamInvalid},
		{name: "param_value_large", when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters = map[string]string{"a": strings.Repeat("x", 64<<10+1)} }), wantErr: vr.ErrParamInvalid},
		{name: "param_value_nul", when: req(analyst, func(r *vr.CollectionRequest) { r.Parameters = map[string]string{"a": "x\x00"} }), wantErr: vr.ErrParamInvalid},
		{name: "purpose_bad", when: req(analyst, func(r *vr.CollectionRequest) { r.Purpose = "delete" }), wantErr: vr.ErrPurposeInvalid},
	})
	// The largest request passes.
	r := vr.CollectionRequest{ClientID: client, Artifacts: many(20, func(i int) string { return fmt.Sprintf("A.B%d/S_%d", i, i) }),
		Parameters: params(100)}
	r.Parameters["P0"] = strings.Repeat("x", 64<<10)
	if _, err := vr.RequestCollection(vr.Collection{}, analyst, tenant, collID, r); err != nil {
		t.Fatalf("largest request: %v", err)
	}
	if _, err := vr.RequestCollection(vr.Collection{}, analyst, tenant, "a b", request); !errors.Is(err, vr.ErrIDInvalid) {
		t.Fatalf("bad id: %v", err)
	}
}

func TestScheduleCollection(t *testing.T) {
	schedule := func(id string) func(vr.Collection) ([]domain.Event, error) {
		return func(s vr.Collection) ([]domain.Event, error) { return vr.ScheduleCollection(s, id) }
	}
	runColl(t, []collScenario{
		{name: "records_scheduled", given: events(requested), when: schedule(flow), want: events(scheduled)},
		{name: "same_flow_records_nothing", given: events(requested, scheduled), when: schedule(flow)},
		{name: "same_flow_after_completion_records_nothing", given: events(requested, scheduled, completed), when: schedule(flow)},
		{name: "other_flow_is_conflict", given: events(requested, scheduled), when: schedule("F.OTHER"), wantErr: vr.ErrFlowConflict},
		{name: "after_failure_is_conflict", given: events(requested, failed), when: schedule(flow), wantErr: vr.ErrCollectionFinished},
		{name: "bad_flow_id", given: events(requested), when: schedule("X.1"), wantErr: vr.ErrFlowIDInvalid},
		{name: "bare_prefix", given: events(requested), when: schedule("F."), wantErr: vr.ErrFlowIDInvalid},
		{name: "missing_collection", when: schedule(flow), wantErr: domain.ErrNotFound},
	})
}

func TestCompleteCollection(t *testing.T) {
	complete := func(sources []vr.SourceCount, logs []string) func(vr.Collection) ([]domain.Event, error) {
		return func(s vr.Collection) ([]domain.Event, error) { return vr.CompleteCollection(s, sources, logs) }
	}
	pslist := []vr.SourceCount{{Source: "Windows.System.Pslist", Rows: 3}}
	longLogs := make([]string, 60)
	for i := range longLogs {
		longLogs[i] = fmt.Sprint(i)
	}
	runColl(t, []collScenario{
		{name: "records_completed", given: events(requested, scheduled), when: complete(pslist, []string{"done"}), want: events(completed)},
		{name: "from_requested", given: events(requested), when: complete(pslist, []string{"done"}), want: events(completed)},
		{name: "no_results", given: events(requested, scheduled), when: complete(nil, nil),
			want: events(vr.CollectionCompleted{Sources: []vr.SourceCount{}, Logs: []string{}})},
		{name: "sums_sources", given: events(requested, scheduled),
			when: complete([]vr.SourceCount{{Source: "A", Rows: 2}, {Source: "B/C", Rows: 5}}, nil),
			want: events(vr.CollectionCompleted{Rows: 7, Sources: []vr.SourceCount{{Source: "A", Rows: 2}, {Source: "B/C", Rows: 5}}, Logs: []string{}})},
		{name: "keeps_the_last_50_log_lines", given: events(requested, scheduled), when: complete(nil, longLogs),
			want: events(vr.CollectionCompleted{Sources: []vr.SourceCount{}, Logs: longLogs[10:]})},
		{name: "twice_records_nothing", given: events(requested, scheduled, completed), when: complete(pslist, nil)},
		{name: "after_failure_is_conflict", given: events(requested, scheduled, failed), when: complete(pslist, nil), wantErr: vr.ErrCollectionFinished},
		{name: "bad_source", given: events(requested, scheduled), when: complete([]vr.SourceCount{{Source: "a b"}}, nil), wantErr: vr.ErrSourceInvalid},
		{name: "negative_rows", given: events(requested, scheduled), when: complete([]vr.SourceCount{{Source: "A", Rows: -1}}, nil), wantErr: vr.ErrRowsInvalid},
		{name: "missing_collection", when: complete(pslist, nil), wantErr: domain.ErrNotFound},
	})
}

func TestFailCollection(t *testing.T) {
	fail := func(text string) func(vr.Collection) ([]domain.Event, error) {
		return func(s vr.Collection) ([]domain.Event, error) { return vr.FailCollection(s, text, nil) }
	}
	runColl(t, []collScenario{
		{name: "records_failed", given: events(requested, scheduled), when: fail("client offline"), want: events(failed)},
		{name: "from_requested", given: events(requested), when: fail("client offline"), want: events(failed)},
		{name: "without_text", given: events(requested), when: fail(" "), want: events(vr.CollectionFailed{Error: "the collection failed", Logs: []string{}})},
		{name: "twice_records_nothing", given: events(requested, failed), when: fail("again")},
		{name: "after_completion_is_conflict", given: events(requested, scheduled, completed), when: fail("late"), wantErr: vr.ErrCollectionFinished},
		{name: "missing_collection", when: fail("x"), wantErr: domain.ErrNotFound},
	})
}

func TestRequestCollectionCancel(t *testing.T) {
	cancel := func(by users.Actor) func(vr.Collection) ([]domain.Event, error) {
		return func(s vr.Collection) ([]domain.Event, error) { return vr.RequestCollectionCancel(s, by, tenant) }
	}
	quarantine := vr.CollectionRequested{ID: collID, ClientID: client, HostID: "host-1", Artifacts: []string{vr.ArtifactQuarantineWindows},
		Purpose: vr.PurposeQuarantine, By: analyst.User}
	release := quarantine
	release.Purpose, release.Parameters = vr.PurposeRelease, map[string]string{"RemovePolicy": "Y"}
	runColl(t, []collScenario{
		{name: "requested_records_cancel_requested", given: events(requested), when: cancel(analyst), want: events(cancelAsk)},
		{name: "scheduled_records_cancel_requested", given: events(requested, scheduled), when: cancel(admin),
			want: events(vr.CollectionCancelRequested{By: admin.User})},
		{name: "asked_again_records_nothing", given: events(requested, cancelAsk), when: cancel(admin)},
		{name: "asked_again_after_scheduling_records_nothing", given: events(requested, cancelAsk, scheduled), when: cancel(analyst)},
		{name: "cancelled_records_nothing", given: events(requested, cancelAsk, cancelled), when: cancel(analyst)},
		{name: "completed_is_conflict", given: events(requested, scheduled, completed), when: cancel(analyst), wantErr: vr.ErrCollectionEnded},
		{name: "failed_is_conflict", given: events(requested, failed), when: cancel(analyst), wantErr: vr.ErrCollectionEnded},
		{name: "asked_then_completed_is_conflict", given: events(requested, scheduled, cancelAsk, completed), when: cancel(analyst),
			wantErr: vr.ErrCollectionEnded},
		{name: "quarantine_is_conflict", given: events(quarantine), when: cancel(analyst), wantErr: vr.ErrIsolationCancel},
		{name: "scheduled_quarantine_is_conflict", given: events(quarantine, scheduled), when: cancel(admin), wantErr: vr.ErrIsolationCancel},
		{name: "release_is_conflict", given: events(release), when: cancel(analyst), wantErr: vr.ErrIsolationCancel},
		{name: "viewer_is_forbidden", given: events(requested), when: cancel(viewer), wantErr: vr.ErrNotAllowed},
		{name: "other_tenant_is_not_found", given: events(requested), when: cancel(foreign), wantErr: domain.ErrNotFound},
		{name: "missing_collection", when: cancel(analyst), wantErr: domain.ErrNotFound},
	})
}

func TestCancelCollection(t *testing.T) {
	runColl(t, []collScenario{
		{name: "before_scheduling", given: events(requested, cancelAsk), when: vr.CancelCollection, want: events(cancelled)},
		{name: "after_scheduling", given: events(requested, scheduled, cancelAsk), when: vr.CancelCollection, want: events(cancelled)},
		{name: "by_who_asked", given: events(requested, vr.CollectionCancelRequested{By: admin.User}), when: vr.CancelCollection,
			want: events(vr.CollectionCancelled{By: admin.User})},
		{name: "twice_records_nothing", given: events(requested, cancelAsk, cancelled), when: vr.CancelCollection},
		{name: "not_asked_is_conflict", given: events(requested, scheduled), when: vr.CancelCollection, wantErr: vr.ErrCancelNotRequested},
		{name: "completed_first_is_conflict", given: events(requested, scheduled, cancelAsk, completed), when: vr.CancelCollection,
			wantErr: vr.ErrCollectionFinished},
		{name: "failed_first_is_conflict", given: events(requested, cancelAsk, failed), when: vr.CancelCollection, wantErr: vr.ErrCollectionFinished},
		{name: "missing_collection", when: vr.CancelCollection, wantErr: domain.ErrNotFound},
	})
	// What the other decisions make of a cancel.
	complete := func(s vr.Collection) ([]domain.Event, error) { return vr.CompleteCollection(s, nil, nil) }
	fail := func(s vr.Collection) ([]domain.Event, error) { return vr.FailCollection(s, "late", nil) }
	schedule := func(s vr.Collection) ([]domain.Event, error) { return vr.ScheduleCollection(s, flow) }
	runColl(t, []collScenario{
		{name: "asked_may_still_be_scheduled", given: events(requested, cancelAsk), when: schedule, want: events(scheduled)},
		{name: "asked_may_still_complete", given: events(requested, scheduled, cancelAsk), when: complete,
			want: events(vr.CollectionCompleted{Sources: []vr.SourceCount{}, Logs: []string{}})},
		{name: "cancelled_does_not_schedule", given: events(requested, cancelAsk, cancelled), when: schedule, wantErr: vr.ErrCollectionFinished},
		{name: "cancelled_does_not_complete", given: events(requested, scheduled, cancelAsk, cancelled), when: complete, wantErr: vr.ErrCollectionFinished},
		{name: "cancelled_does_not_fail", given: events(requested, cancelAsk, cancelled), when: fail, wantErr: vr.ErrCollectionFinished},
	})
}

func TestEvolveCollection(t *testing.T) {
	s := domain.Fold(vr.EvolveCollection, events(requested, scheduled, completed))
	want := vr.Collection{Exists: true, ID: collID, ClientID: client, Artifacts: request.Artifacts, Parameters: request.Parameters,
		Purpose: vr.PurposeCollect, By: analyst.User, Status: vr.StatusCompleted, FlowID: flow, Rows: 3,
		Sources: completed.Sources, Logs: completed.Logs}
	if !reflect.DeepEqual(s, want) || !s.Done() {
		t.Fatalf("state = %+v\nwant    %+v", s, want)
	}
	s = domain.Fold(vr.EvolveCollection, events(requested, failed))
	if s.Status != vr.StatusFailed || s.Error != "client offline" || !s.Done() {
		t.Fatalf("failed state = %+v", s)
	}
	s = domain.Fold(vr.EvolveCollection, events(requested, scheduled, cancelAsk))
	if s.Status != vr.StatusScheduled || s.CancelBy != analyst.User || s.Done() {
		t.Fatalf("cancel-requested state = %+v", s)
	}
	s = vr.EvolveCollection(s, cancelled)
	if s.Status != vr.StatusCancelled || s.CancelBy != analyst.User || !s.Done() || s.FlowID != flow {
		t.Fatalf("cancelled state = %+v", s)
	}
	// The state does not share the event's parameters.
	e := requested
	e.Parameters = map[string]string{"a": "b"}
	s = vr.EvolveCollection(vr.Collection{}, e)
	e.Parameters["a"] = "changed"
	if s.Parameters["a"] != "b" {
		t.Fatal("state aliases the event's parameters")
	}
}

func TestCheckIDs(t *testing.T) {
	for _, tc := range []struct {
		check func(string) error
		good  []string
		bad   []string
	}{
		{vr.CheckFlowID, []string{"F.CP9V4SMR1VBK2", "F.CP9V4SMR1VBK2.H", "F.1"}, []string{"", "F.", "F", "f.abc", "F.a b", "F.'x'", "F." + strings.Repeat("a", 63)}},
		{vr.CheckHuntID, []string{"H.CP9V4SMR1VBK2", "H.1"}, []string{"", "H.", "H.a.b", "h.1", "H.a-b"}},
		{vr.CheckID, []string{"0190c7a4-6a38-7f1e-9a49-0000000c0001", "key_1"}, []string{"", "a b", "a/b", strings.Repeat("a", 65)}},
		{vr.CheckArtifactName, []string{"Windows.System.Pslist", "Generic.Client.Info/BasicInformation", "A_b.9"}, []string{"", "/", "A/", "/B", "A B", "A;B", "A/B/C"}},
	} {
		for _, id := range tc.good {
			if err := tc.check(id); err != nil {
				t.Errorf("%q refused: %v", id, err)
			}
		}
		for _, id := range tc.bad {
			if err := tc.check(id); err == nil {
				t.Errorf("%q accepted", id)
			}
		}
	}
	if id, err := vr.CheckClientID("C.1A2B3C4D5E6F7A8B"); err != nil || id != client {
		t.Errorf("CheckClientID = %q, %v", id, err)
	}
}

func TestQuarantineArtifact(t *testing.T) {
	for os, want := range map[string]string{
		"windows": vr.ArtifactQuarantineWindows, "Microsoft Windows 11": vr.ArtifactQuarantineWindows,
		"linux": vr.ArtifactQuarantineLinux, "Ubuntu Linux": vr.ArtifactQuarantineLinux,
	} {
		if got, err := vr.QuarantineArtifact(os); err != nil || got != want {
			t.Errorf("QuarantineArtifact(%q) = %q, %v", os, got, err)
		}
	}
	for _, os := range []string{"darwin", "", "freebsd"} {
		if _, err := vr.QuarantineArtifact(os); !errors.Is(err, vr.ErrQuarantineOS) {
			t.Errorf("QuarantineArtifact(%q): %v", os, err)
		}
	}
}
