package notifications_test

import (
	"slices"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
	"velocicompanion/projections/notifications"
)

const (
	alice domain.UserID = "alice"
	bob   domain.UserID = "bob"
	carol domain.UserID = "carol"
)

func ptr[T any](v T) *T { return &v }

// sent is what a test expects of one notification.
type sent struct {
	to   domain.UserID
	kind notifications.Kind
}

func TestNotify(t *testing.T) {
	facts := notifications.Facts{CaseTitle: "Beacon on ws-042", CaseAssignee: bob, TaskTitle: "Pull memory"}
	for _, tc := range []struct {
		name  string
		event domain.Event
		facts notifications.Facts
		want  []sent
	}{
		{"opened_assigned_to_another", cases.Opened{Title: "x", Assignee: bob, By: alice}, notifications.Facts{},
			[]sent{{bob, notifications.KindCaseAssigned}}},
		{"opened_assigned_to_self", cases.Opened{Title: "x", Assignee: alice, By: alice}, notifications.Facts{}, nil},
		{"opened_unassigned", cases.Opened{Title: "x", By: alice}, notifications.Facts{}, nil},
		{"assigned_to_another", cases.Assigned{To: bob, By: alice}, facts, []sent{{bob, notifications.KindCaseAssigned}}},
		{"assigned_to_self", cases.Assigned{To: alice, By: alice}, facts, nil},
		{"reassigned_tells_both", cases.Assigned{From: bob, To: carol, By: alice}, facts,
			[]sent{{carol, notifications.KindCaseAssigned}, {bob, notifications.KindCaseUnassigned}}},
		{"reassigned_by_the_old_assignee", cases.Assigned{From: bob, To: carol, By: bob}, facts,
			[]sent{{carol, notifications.KindCaseAssigned}}},
		{"taken_by_self_tells_the_old_assignee", cases.Assigned{From: bob, To: alice, By: alice}, facts,
			[]sent{{bob, notifications.KindCaseUnassigned}}},
		{"unassigned", cases.Assigned{From: bob, By: alice}, facts, []sent{{bob, notifications.KindCaseUnassigned}}},
		{"status_changed_by_another", cases.StatusChanged{From: cases.StatusOpen, To: cases.StatusInvestigating, By: alice}, facts,
			[]sent{{bob, notifications.KindCaseStatusChanged}}},
		{"status_changed_by_the_assignee", cases.StatusChanged{From: cases.StatusOpen, To: cases.StatusInvestigating, By: bob}, facts, nil},
		{"status_changed_unassigned_case", cases.StatusChanged{From: cases.StatusOpen, To: cases.StatusInvestigating, By: alice},
			notifications.Facts{CaseTitle: "x"}, nil},
		{"closed_by_another", cases.Closed{From: cases.StatusOpen, ResolutionType: cases.ResolutionBenign, Resolution: "ok", By: alice}, facts,
			[]sent{{bob, notifications.KindCaseClosed}}},
		{"closed_by_the_assignee", cases.Closed{From: cases.StatusOpen, Resolution: "ok", By: bob}, facts, nil},
		{"reopened_by_another", cases.Reopened{To: cases.StatusInvestigating, By: carol}, facts,
			[]sent{{bob, notifications.KindCaseReopened}}},
		{"task_added_for_another", cases.TaskAdded{Task: "t1", Title: "Pull memory", Assignee: carol, By: alice}, facts,
			[]sent{{carol, notifications.KindTaskAssigned}}},
		{"task_added_for_self", cases.TaskAdded{Task: "t1", Title: "Pull memory", Assignee: alice, By: alice}, facts, nil},
		{"task_added_unassigned", cases.TaskAdded{Task: "t1", Title: "Pull memory", By: alice}, facts, nil},
		{"task_assigned", cases.TaskUpdated{Task: "t1", Assignee: ptr(carol), By: alice}, facts,
			[]sent{{carol, notifications.KindTaskAssigned}}},
		{"task_unassigned", cases.TaskUpdated{Task: "t1", Assignee: ptr(domain.UserID("")), By: alice}, facts, nil},
		{"task_renamed", cases.TaskUpdated{Task: "t1", Title: ptr("New"), By: alice}, facts, nil},
		{"comment_is_not_notified", cases.CommentAdded{Comment: "c1", Body: "hi", By: alice}, facts, nil},
		{"unknown_event", nil, facts, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envelope(tc.event)
			got := notifications.Notify(env, tc.facts)
			var gotSent []sent
			for _, n := range got {
				gotSent = append(gotSent, sent{n.User, n.Kind})
				if n.Tenant != env.Tenant || n.SourceEventID != env.EventID || n.SourcePosition != env.Position ||
					!n.CreatedAt.Equal(env.RecordedAt) || n.Link != "/cases/case-1" || n.Title == "" || n.Message == "" {
					t.Errorf("notification %+v does not describe its source", n)
				}
				if n.ID != notifications.ID(env.EventID, n.User, n.Kind) {
					t.Errorf("id %s is not derived from the event", n.ID)
				}
			}
			if !slices.Equal(gotSent, tc.want) {
				t.Fatalf("Notify sent %v, want %v", gotSent, tc.want)
			}
			if again := notifications.Notify(env, tc.facts); !slices.Equal(again, got) {
				t.Fatalf("Notify is not deterministic: %v then %v", got, again)
			}
			if tc.event != nil && len(tc.want) > 0 && !notifications.MayNotify(tc.event.EventName()) {
				t.Fatalf("MayNotify(%s) is false", tc.event.EventName())
			}
		})
	}
}

func TestNotifyMessages(t *testing.T) {
	env := envelope(cases.TaskUpdated{Task: "t1", Assignee: ptr(carol), By: alice})
	n := notifications.Notify(env, notifications.Facts{CaseTitle: "Beacon", TaskTitle: "Pull memory"})[0]
	if n.Message != `Task "Pull memory" of case "Beacon" was assigned to you.` || n.Type != notifications.TypeInfo {
		t.Fatalf("message %q type %s", n.Message, n.Type)
	}
	env = envelope(cases.Closed{ResolutionType: cases.ResolutionTruePositive, Resolution: "r", By: alice})
	n = notifications.Notify(env, notifications.Facts{CaseAssignee: bob})[0]
	if n.Message != `Case (untitled) was closed (true positive).` || n.Type != notifications.TypeSuccess {
		t.Fatalf("message %q type %s", n.Message, n.Type)
	}
	long := make([]rune, 500)
	for i := range long {
		long[i] = 'é'
	}
	env = envelope(cases.Opened{Title: string(long), Assignee: bob, By: alice})
	if n := notifications.Notify(env, notifications.Facts{})[0]; len([]rune(n.Message)) > 200 {
		t.Fatalf("message repeats a long title whole: %d code points", len([]rune(n.Message)))
	}
}

func TestIDs(t *testing.T) {
	a := notifications.ID("0190f5a2-0000-7000-8000-000000000001", bob, notifications.KindCaseAssigned)
	if a != notifications.ID("0190f5a2-0000-7000-8000-000000000001", bob, notifications.KindCaseAssigned) {
		t.Fatal("ID is not deterministic")
	}
	for _, other := range []string{
		notifications.ID("0190f5a2-0000-7000-8000-000000000002", bob, notifications.KindCaseAssigned),
		notifications.ID("0190f5a2-0000-7000-8000-000000000001", carol, notifications.KindCaseAssigned),
		notifications.ID("0190f5a2-0000-7000-8000-000000000001", bob, notifications.KindCaseUnassigned),
	} {
		if other == a {
			t.Fatalf("two sources share id %s", a)
		}
	}
	if notifications.MayNotify(cases.EventCommentAdded) || notifications.MayNotify("user.registered") {
		t.Fatal("MayNotify is true for events that never notify")
	}
}

func envelope(e domain.Event) eventstore.Envelope {
	env := eventstore.Envelope{
		Position: 42, EventID: "0190f5a2-0000-7000-8000-00000000002a", Tenant: "tenant-a",
		StreamType: "case", StreamID: "case-1", Version: 3, Event: e,
		RecordedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
	}
	if e != nil {
		env.Name = e.EventName()
	}
	return env
}

func TestNotifyVelociraptor(t *testing.T) {
	collect := notifications.Facts{Requester: alice, Purpose: velociraptor.PurposeCollect, Subject: "Windows.System.Pslist on C.1234567890abcdef"}
	quarantine := notifications.Facts{Requester: alice, Purpose: velociraptor.PurposeQuarantine, Hostname: "WS-0042"}
	release := notifications.Facts{Requester: bob, Purpose: velociraptor.PurposeRelease}
	hunt := notifications.Facts{Requester: carol, Subject: "who is logged on"}
	for _, tc := range []struct {
		name       string
		streamType string
		event      domain.Event
		facts      notifications.Facts
		want       []sent
		typ        notifications.Type
		link       string
		message    string
	}{
		{"collection_completed", "collection", velociraptor.CollectionCompleted{Rows: 42}, collect,
			[]sent{{alice, notifications.KindCollectionCompleted}}, notifications.TypeSuccess, "/api/velociraptor/collections/s-1",
			`Collection "Windows.System.Pslist on C.1234567890abcdef" completed with 42 rows.`},
		{"collection_failed", "collection", velociraptor.CollectionFailed{Error: "Unknown artifact"}, collect,
			[]sent{{alice, notifications.KindCollectionFailed}}, notifications.TypeError, "/api/velociraptor/collections/s-1",
			`Collection "Windows.System.Pslist on C.1234567890abcdef" failed: Unknown artifact.`},
		{"collection_cancelled_by_another", "collection", velociraptor.CollectionCancelled{By: bob}, collect,
			[]sent{{alice, notifications.KindCollectionCancelled}}, notifications.TypeWarning, "/api/velociraptor/collections/s-1",
			`Collection "Windows.System.Pslist on C.1234567890abcdef" was cancelled.`},
		{"collection_cancelled_by_its_requester", "collection", velociraptor.CollectionCancelled{By: alice}, collect, nil, "", "", ""},
		{"quarantine_collection_tells_through_the_host", "collection", velociraptor.CollectionCompleted{Rows: 1}, quarantine, nil, "", "", ""},
		{"release_collection_failure_tells_through_the_host", "collection", velociraptor.CollectionFailed{Error: "x"}, release, nil, "", "", ""},
		{"collection_of_unknown_request", "collection", velociraptor.CollectionCompleted{Rows: 1}, notifications.Facts{}, nil, "", "", ""},
		{"collection_scheduled_is_not_notified", "collection", velociraptor.CollectionScheduled{FlowID: "F.1"}, collect, nil, "", "", ""},
		{"hunt_stopped", "hunt", velociraptor.HuntStopped{}, hunt,
			[]sent{{carol, notifications.KindHuntStopped}}, notifications.TypeInfo, "/api/velociraptor/hunts/s-1",
			`Hunt "who is logged on" stopped; its results are stored.`},
		{"hunt_failed", "hunt", velociraptor.HuntFailed{Error: ""}, hunt,
			[]sent{{carol, notifications.KindHuntFailed}}, notifications.TypeError, "/api/velociraptor/hunts/s-1",
			`Hunt "who is logged on" failed: no reason was given.`},
		{"hunt_progress_is_not_notified", "hunt", velociraptor.HuntProgressed{State: "RUNNING"}, hunt, nil, "", "", ""},
		{"host_quarantined", "host", hosts.Quarantined{Collection: "c1", FlowID: "F.1"}, quarantine,
			[]sent{{alice, notifications.KindHostQuarantined}}, notifications.TypeSuccess, "/api/hosts/s-1",
			`Host "WS-0042" is isolated from the network.`},
		{"host_released_unknown_name", "host", hosts.Released{Collection: "c2"}, release,
			[]sent{{bob, notifications.KindHostReleased}}, notifications.TypeSuccess, "/api/hosts/s-1",
			`Host s-1 is no longer isolated from the network.`},
		{"quarantine_failed", "host", hosts.QuarantineFailed{Collection: "c1", Error: "the collection failed"}, quarantine,
			[]sent{{alice, notifications.KindQuarantineFailed}}, notifications.TypeError, "/api/hosts/s-1",
			`The quarantine of host "WS-0042" failed, so whether it is isolated is unknown: the collection failed.`},
		{"release_failed", "host", hosts.QuarantineFailed{Collection: "c2", Error: "timeout."}, release,
			[]sent{{bob, notifications.KindQuarantineFailed}}, notifications.TypeError, "/api/hosts/s-1",
			`The release of host s-1 failed, so whether it is isolated is unknown: timeout.`},
		{"quarantine_request_is_not_notified", "host", hosts.QuarantineRequested{Collection: "c1", By: alice}, quarantine, nil, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := envelope(tc.event)
			env.StreamType, env.StreamID = tc.streamType, "s-1"
			got := notifications.Notify(env, tc.facts)
			var gotSent []sent
			for _, n := range got {
				gotSent = append(gotSent, sent{n.User, n.Kind})
				if n.Type != tc.typ || n.Link != tc.link || n.Message != tc.message || n.Title == "" ||
					n.ID != notifications.ID(env.EventID, n.User, n.Kind) || n.SourcePosition != env.Position {
					t.Errorf("notification %+v, want type %s link %s message %q", n, tc.typ, tc.link, tc.message)
				}
			}
			if !slices.Equal(gotSent, tc.want) {
				t.Fatalf("Notify sent %v, want %v", gotSent, tc.want)
			}
			if len(tc.want) > 0 && !notifications.MayNotify(tc.event.EventName()) {
				t.Fatalf("MayNotify(%s) is false", tc.event.EventName())
			}
		})
	}
}
