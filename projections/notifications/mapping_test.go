package notifications_test

import (
	"slices"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
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
