package cases_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"velocicompanion/domain/domaintest"

	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
)

const (
	caseID cases.ID      = "0190c7a4-6a38-7f1e-9a49-00000000c001"
	alice  domain.UserID = "0190c7a4-6a38-7f1e-9a49-0000000a11ce"
	bob    domain.UserID = "0190c7a4-6a38-7f1e-9a49-00000000b0b0"
	carol  domain.UserID = "0190c7a4-6a38-7f1e-9a49-00000000ca01"

	ws42 hosts.ID = "0190c7a4-6a38-7f1e-9a49-00000000h042"
	db01 hosts.ID = "0190c7a4-6a38-7f1e-9a49-00000000hdb1"
)

var (
	opened = cases.Opened{
		ID: caseID, Title: "Suspicious PowerShell on WS-0042", Severity: cases.SeverityHigh,
		TLP: cases.TLPAmber, PAP: cases.PAPAmber, Tags: []string{"powershell"}, Techniques: []string{"T1059.001"},
		Hosts: []hosts.ID{ws42}, By: alice,
	}
	closed        = cases.Closed{From: cases.StatusOpen, ResolutionType: cases.ResolutionTruePositive, Resolution: "Reimaged WS-0042", By: alice}
	investigating = cases.StatusChanged{From: cases.StatusOpen, To: cases.StatusInvestigating, By: alice}
	contained     = cases.StatusChanged{From: cases.StatusInvestigating, To: cases.StatusContained, By: alice}
	taskAdded     = cases.TaskAdded{Task: "t1", Title: "Collect memory", Status: cases.TaskTodo, By: alice}
	commentAdded  = cases.CommentAdded{Comment: "c1", Body: "Looks like Cobalt Strike", By: alice}
)

type scenario struct {
	name    string
	given   []domain.Event
	when    func(cases.State) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func run(t *testing.T, tcs []scenario) {
	t.Helper()
	for _, tc := range tcs {
		domaintest.Check(t, tc.name, cases.Evolve, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func events(es ...domain.Event) []domain.Event { return es }

func ptr[T any](v T) *T { return &v }

func TestOpen(t *testing.T) {
	base := cases.NewCase{
		ID: caseID, Title: "Suspicious PowerShell on WS-0042", Severity: cases.SeverityHigh, TLP: cases.TLPAmber, PAP: cases.PAPAmber,
		Tags: []string{"powershell"}, Techniques: []string{"T1059.001"}, Hosts: []hosts.ID{ws42},
	}
	open := func(edit func(*cases.NewCase)) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) {
			n := base
			if edit != nil {
				edit(&n)
			}
			return cases.Open(s, n, alice)
		}
	}
	run(t, []scenario{
		{name: "records_opened", when: open(nil), want: events(opened)},
		{name: "title_alone_takes_defaults", when: open(func(n *cases.NewCase) { *n = cases.NewCase{ID: caseID, Title: "Phishing"} }),
			want: events(cases.Opened{ID: caseID, Title: "Phishing", Severity: cases.SeverityMedium, TLP: cases.TLPAmber, PAP: cases.PAPAmber, By: alice})},
		{name: "normalises_every_field", when: open(func(n *cases.NewCase) {
			*n = cases.NewCase{
				ID: caseID, Title: "  Phishing wave ", Description: "\nFirst line\n\tsecond\n", Severity: " CRITICAL",
				TLP: "TLP:WHITE", PAP: "pap:white", Assignee: " " + bob + " ",
				Tags: []string{"Phishing", "phishing ", "BEC"}, Techniques: []string{"t1566.001", "T1566.001", "T1078"},
				Hosts: []hosts.ID{ws42, " " + db01, ws42},
			}
		}), want: events(cases.Opened{
			ID: caseID, Title: "Phishing wave", Description: "First line\n\tsecond", Severity: cases.SeverityCritical,
			TLP: cases.TLPClear, PAP: cases.PAPClear, Assignee: bob, Tags: []string{"bec", "phishing"},
			Techniques: []string{"T1078", "T1566.001"}, Hosts: []hosts.ID{ws42, db01}, By: alice,
		})},
		{name: "tlp_amber_strict", when: open(func(n *cases.NewCase) { n.TLP = "TLP:AMBER+STRICT" }),
			want: events(func() cases.Opened { o := opened; o.TLP = cases.TLPAmberStrict; return o }())},
		{name: "title_of_200_code_points", when: open(func(n *cases.NewCase) { n.Title = strings.Repeat("é", 200) }),
			want: events(func() cases.Opened { o := opened; o.Title = strings.Repeat("é", 200); return o }())},
		{name: "description_of_20000_code_points", when: open(func(n *cases.NewCase) { n.Description = strings.Repeat("ß", 20000) }),
			want: events(func() cases.Opened { o := opened; o.Description = strings.Repeat("ß", 20000); return o }())},
		{name: "existing_case_is_conflict", given: events(opened), when: open(nil), wantErr: cases.ErrExists},
		{name: "empty_id_is_invalid", when: open(func(n *cases.NewCase) { n.ID = " " }), wantErr: cases.ErrIDRequired},
		{name: "empty_title_is_invalid", when: open(func(n *cases.NewCase) { n.Title = " \t" }), wantErr: cases.ErrTitleRequired},
		{name: "title_of_201_is_invalid", when: open(func(n *cases.NewCase) { n.Title = strings.Repeat("a", 201) }), wantErr: cases.ErrTitleTooLong},
		{name: "title_with_line_break_is_invalid", when: open(func(n *cases.NewCase) { n.Title = "two\nlines" }), wantErr: cases.ErrTitleInvalid},
		{name: "description_of_20001_is_invalid", when: open(func(n *cases.NewCase) { n.Description = strings.Repeat("a", 20001) }),
			wantErr: cases.ErrDescriptionTooLong},
		{name: "description_with_nul_is_invalid", when: open(func(n *cases.NewCase) { n.Description = "a\x00b" }), wantErr: cases.ErrDescriptionInvalid},
		{name: "unknown_severity_is_invalid", when: open(func(n *cases.NewCase) { n.Severity = "urgent" }), wantErr: cases.ErrSeverityInvalid},
		{name: "unknown_tlp_is_invalid", when: open(func(n *cases.NewCase) { n.TLP = "TLP:BLACK" }), wantErr: cases.ErrTLPInvalid},
		{name: "unknown_pap_is_invalid", when: open(func(n *cases.NewCase) { n.PAP = "PAP:AMBER+STRICT" }), wantErr: cases.ErrPAPInvalid},
		{name: "assignee_with_space_is_invalid", when: open(func(n *cases.NewCase) { n.Assignee = "bob smith" }), wantErr: cases.ErrAssigneeInvalid},
		{name: "bad_tag_is_invalid", when: open(func(n *cases.NewCase) { n.Tags = []string{""} }), wantErr: cases.ErrTagInvalid},
		{name: "too_many_tags_is_invalid", when: open(func(n *cases.NewCase) { n.Tags = numbered("tag", cases.MaxTags+1) }), wantErr: cases.ErrTooManyTags},
		{name: "bad_technique_is_invalid", when: open(func(n *cases.NewCase) { n.Techniques = []string{"TA0002"} }), wantErr: cases.ErrTechniqueInvalid},
		{name: "too_many_techniques_is_invalid", when: open(func(n *cases.NewCase) { n.Techniques = techniques(cases.MaxTechniques + 1) }),
			wantErr: cases.ErrTooManyTechniques},
		{name: "empty_host_id_is_invalid", when: open(func(n *cases.NewCase) { n.Hosts = []hosts.ID{ws42, ""} }), wantErr: cases.ErrHostRequired},
		{name: "bad_host_id_is_invalid", when: open(func(n *cases.NewCase) { n.Hosts = []hosts.ID{"a\tb"} }), wantErr: cases.ErrHostInvalid},
		{name: "too_many_hosts_is_invalid", when: open(func(n *cases.NewCase) {
			n.Hosts = nil
			for _, id := range numbered("h", cases.MaxHosts+1) {
				n.Hosts = append(n.Hosts, hosts.ID(id))
			}
		}), wantErr: cases.ErrTooManyHosts},
	})
}

// numbered returns n distinct strings prefix000, prefix001, ….
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

// techniques returns n distinct, sorted technique ids.
func techniques(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("T%04d", 1000+i)
	}
	return out
}

func TestUpdate(t *testing.T) {
	update := func(ch cases.Changes) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.Update(s, ch, bob) }
	}
	run(t, []scenario{
		{name: "records_only_changed_fields", given: events(opened),
			when: update(cases.Changes{Title: ptr(opened.Title), Severity: ptr(cases.SeverityCritical), TLP: ptr(cases.TLPAmber)}),
			want: events(cases.Updated{Severity: ptr(cases.SeverityCritical), By: bob})},
		{name: "changes_title_and_description", given: events(opened),
			when: update(cases.Changes{Title: ptr(" New title "), Description: ptr("Details")}),
			want: events(cases.Updated{Title: ptr("New title"), Description: ptr("Details"), By: bob})},
		{name: "tlp_white_means_clear", given: events(opened), when: update(cases.Changes{TLP: ptr(cases.TLP("TLP:WHITE"))}),
			want: events(cases.Updated{TLP: ptr(cases.TLPClear), By: bob})},
		{name: "changes_pap", given: events(opened), when: update(cases.Changes{PAP: ptr(cases.PAP("PAP:RED"))}),
			want: events(cases.Updated{PAP: ptr(cases.PAPRed), By: bob})},
		{name: "clears_description", given: events(opened, cases.Updated{Description: ptr("x"), By: bob}),
			when: update(cases.Changes{Description: ptr("")}), want: events(cases.Updated{Description: ptr(""), By: bob})},
		{name: "same_values_record_nothing", given: events(opened),
			when: update(cases.Changes{Title: ptr(opened.Title + " "), Description: ptr(""), Severity: ptr(cases.Severity("HIGH")), TLP: ptr(cases.TLP("amber")), PAP: ptr(cases.PAP("PAP:AMBER"))})},
		{name: "no_changes_record_nothing", given: events(opened), when: update(cases.Changes{})},
		{name: "contained_case_may_change", given: events(opened, investigating, contained), when: update(cases.Changes{Severity: ptr(cases.SeverityLow)}),
			want: events(cases.Updated{Severity: ptr(cases.SeverityLow), By: bob})},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: update(cases.Changes{Title: ptr("x")}), wantErr: cases.ErrClosed},
		{name: "missing_case_is_not_found", when: update(cases.Changes{Title: ptr("x")}), wantErr: domain.ErrNotFound},
		{name: "empty_title_is_invalid", given: events(opened), when: update(cases.Changes{Title: ptr("")}), wantErr: cases.ErrTitleRequired},
		{name: "bad_severity_is_invalid", given: events(opened), when: update(cases.Changes{Severity: ptr(cases.Severity(""))}), wantErr: cases.ErrSeverityInvalid},
		{name: "bad_tlp_is_invalid", given: events(opened), when: update(cases.Changes{TLP: ptr(cases.TLP("orange"))}), wantErr: cases.ErrTLPInvalid},
		{name: "bad_pap_is_invalid", given: events(opened), when: update(cases.Changes{PAP: ptr(cases.PAP(""))}), wantErr: cases.ErrPAPInvalid},
	})
}

func TestChangeStatus(t *testing.T) {
	at := map[cases.Status][]domain.Event{
		cases.StatusOpen:          events(opened),
		cases.StatusInvestigating: events(opened, investigating),
		cases.StatusContained:     events(opened, investigating, contained),
		cases.StatusClosed:        events(opened, closed),
	}
	// The workflow, spelled out rather than derived from the code's table.
	allowed := map[[2]cases.Status]bool{
		{cases.StatusOpen, cases.StatusInvestigating}:      true,
		{cases.StatusOpen, cases.StatusContained}:          true,
		{cases.StatusInvestigating, cases.StatusOpen}:      true,
		{cases.StatusInvestigating, cases.StatusContained}: true,
		{cases.StatusContained, cases.StatusInvestigating}: true,
	}
	all := []cases.Status{cases.StatusOpen, cases.StatusInvestigating, cases.StatusContained, cases.StatusClosed}
	var tcs []scenario
	for _, from := range all {
		for _, to := range all {
			tc := scenario{name: fmt.Sprintf("%s_to_%s", from, to), given: at[from],
				when: func(s cases.State) ([]domain.Event, error) { return cases.ChangeStatus(s, to, bob) }}
			switch {
			case from == to:
				// records nothing
			case to == cases.StatusClosed:
				tc.wantErr = cases.ErrResolutionRequired
			case from == cases.StatusClosed:
				tc.wantErr = cases.ErrClosed
			case allowed[[2]cases.Status{from, to}]:
				tc.want = events(cases.StatusChanged{From: from, To: to, By: bob})
			default:
				tc.wantErr = cases.ErrTransition
			}
			tcs = append(tcs, tc)
		}
	}
	tcs = append(tcs,
		scenario{name: "status_is_parsed", given: at[cases.StatusOpen],
			when: func(s cases.State) ([]domain.Event, error) { return cases.ChangeStatus(s, " Investigating ", alice) },
			want: events(investigating)},
		scenario{name: "after_reopen_moves_on", given: events(opened, closed, cases.Reopened{To: cases.StatusInvestigating, By: bob}),
			when: func(s cases.State) ([]domain.Event, error) { return cases.ChangeStatus(s, cases.StatusContained, bob) },
			want: events(cases.StatusChanged{From: cases.StatusInvestigating, To: cases.StatusContained, By: bob})},
		scenario{name: "unknown_status_is_invalid", given: at[cases.StatusOpen],
			when:    func(s cases.State) ([]domain.Event, error) { return cases.ChangeStatus(s, "resolved", bob) },
			wantErr: cases.ErrStatusInvalid},
		scenario{name: "missing_case_is_not_found",
			when: func(s cases.State) ([]domain.Event, error) {
				return cases.ChangeStatus(s, cases.StatusInvestigating, bob)
			},
			wantErr: domain.ErrNotFound},
	)
	run(t, tcs)

	_, err := cases.ChangeStatus(domain.Fold(cases.Evolve, at[cases.StatusContained]), cases.StatusOpen, bob)
	if err == nil || !strings.Contains(err.Error(), "from contained to open") {
		t.Errorf("transition error %v does not name the statuses", err)
	}
}

func TestTransitions(t *testing.T) {
	for from, want := range map[cases.Status][]cases.Status{
		cases.StatusOpen:          {cases.StatusInvestigating, cases.StatusContained, cases.StatusClosed},
		cases.StatusInvestigating: {cases.StatusOpen, cases.StatusContained, cases.StatusClosed},
		cases.StatusContained:     {cases.StatusInvestigating, cases.StatusClosed},
		cases.StatusClosed:        {cases.StatusInvestigating},
		"bogus":                   nil,
	} {
		if got := cases.Transitions(from); !reflect.DeepEqual(got, want) {
			t.Errorf("Transitions(%s) = %v, want %v", from, got, want)
		}
	}
	next := cases.Transitions(cases.StatusOpen)
	next[0] = cases.StatusClosed
	if !cases.CanTransition(cases.StatusOpen, cases.StatusInvestigating) {
		t.Error("changing the result of Transitions changed the workflow")
	}
	if cases.CanTransition(cases.StatusContained, cases.StatusOpen) || cases.CanTransition("bogus", cases.StatusOpen) {
		t.Error("CanTransition allows a move the workflow does not")
	}
}

func TestClose(t *testing.T) {
	closeWith := func(typ cases.ResolutionType, resolution string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.Close(s, typ, resolution, alice) }
	}
	run(t, []scenario{
		{name: "records_closed", given: events(opened), when: closeWith(cases.ResolutionTruePositive, " Reimaged WS-0042\n"), want: events(closed)},
		{name: "records_the_status_it_left", given: events(opened, investigating, contained), when: closeWith("false_positive", "Admin script"),
			want: events(cases.Closed{From: cases.StatusContained, ResolutionType: cases.ResolutionFalsePositive, Resolution: "Admin script", By: alice})},
		{name: "type_defaults_to_other", given: events(opened), when: closeWith("", "Done"),
			want: events(cases.Closed{From: cases.StatusOpen, ResolutionType: cases.ResolutionOther, Resolution: "Done", By: alice})},
		{name: "type_is_parsed", given: events(opened), when: closeWith(" Duplicate ", "See case 41"),
			want: events(cases.Closed{From: cases.StatusOpen, ResolutionType: cases.ResolutionDuplicate, Resolution: "See case 41", By: alice})},
		{name: "open_tasks_do_not_block", given: events(opened, taskAdded), when: closeWith(cases.ResolutionBenign, "Pentest"),
			want: events(cases.Closed{From: cases.StatusOpen, ResolutionType: cases.ResolutionBenign, Resolution: "Pentest", By: alice})},
		{name: "reopened_case_closes_again", given: events(opened, closed, cases.Reopened{To: cases.StatusInvestigating, By: bob}),
			when: closeWith(cases.ResolutionIndeterminate, "Logs rotated"),
			want: events(cases.Closed{From: cases.StatusInvestigating, ResolutionType: cases.ResolutionIndeterminate, Resolution: "Logs rotated", By: alice})},
		{name: "resolution_of_10000_code_points", given: events(opened), when: closeWith(cases.ResolutionOther, strings.Repeat("é", 10000)),
			want: events(cases.Closed{From: cases.StatusOpen, ResolutionType: cases.ResolutionOther, Resolution: strings.Repeat("é", 10000), By: alice})},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: closeWith(cases.ResolutionOther, "again"), wantErr: cases.ErrAlreadyClosed},
		{name: "closed_case_matches_case_closed", given: events(opened, closed), when: closeWith(cases.ResolutionOther, "again"), wantErr: cases.ErrClosed},
		{name: "missing_case_is_not_found", when: closeWith(cases.ResolutionOther, "x"), wantErr: domain.ErrNotFound},
		{name: "empty_resolution_is_invalid", given: events(opened), when: closeWith(cases.ResolutionTruePositive, "  "), wantErr: cases.ErrResolutionRequired},
		{name: "resolution_of_10001_is_invalid", given: events(opened), when: closeWith(cases.ResolutionOther, strings.Repeat("a", 10001)),
			wantErr: cases.ErrResolutionTooLong},
		{name: "control_character_is_invalid", given: events(opened), when: closeWith(cases.ResolutionOther, "a\x1bb"), wantErr: cases.ErrResolutionInvalid},
		{name: "unknown_type_is_invalid", given: events(opened), when: closeWith("solved", "x"), wantErr: cases.ErrResolutionTypeInvalid},
	})
}

func TestReopen(t *testing.T) {
	reopen := func(reason string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.Reopen(s, reason, bob) }
	}
	run(t, []scenario{
		{name: "records_reopened_into_investigating", given: events(opened, closed), when: reopen(""),
			want: events(cases.Reopened{To: cases.StatusInvestigating, By: bob})},
		{name: "records_reason", given: events(opened, closed), when: reopen(" Beacon seen again "),
			want: events(cases.Reopened{To: cases.StatusInvestigating, Reason: "Beacon seen again", By: bob})},
		{name: "open_case_is_conflict", given: events(opened), when: reopen(""), wantErr: cases.ErrNotClosed},
		{name: "reopened_case_is_conflict", given: events(opened, closed, cases.Reopened{To: cases.StatusInvestigating, By: bob}),
			when: reopen(""), wantErr: cases.ErrNotClosed},
		{name: "missing_case_is_not_found", when: reopen(""), wantErr: domain.ErrNotFound},
		{name: "long_reason_is_invalid", given: events(opened, closed), when: reopen(strings.Repeat("r", 1001)), wantErr: cases.ErrReasonInvalid},
		{name: "control_character_in_reason_is_invalid", given: events(opened, closed), when: reopen("a\x00"), wantErr: cases.ErrReasonInvalid},
	})
}

func TestAssign(t *testing.T) {
	assign := func(to domain.UserID) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.Assign(s, to, alice) }
	}
	assigned := cases.Assigned{To: bob, By: alice}
	run(t, []scenario{
		{name: "assigns", given: events(opened), when: assign(bob), want: events(assigned)},
		{name: "reassigns_with_previous", given: events(opened, assigned), when: assign(carol),
			want: events(cases.Assigned{From: bob, To: carol, By: alice})},
		{name: "unassigns", given: events(opened, assigned), when: assign(""), want: events(cases.Assigned{From: bob, By: alice})},
		{name: "same_assignee_records_nothing", given: events(opened, assigned), when: assign(" " + bob)},
		{name: "unassigning_nobody_records_nothing", given: events(opened), when: assign("")},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: assign(bob), wantErr: cases.ErrClosed},
		{name: "missing_case_is_not_found", when: assign(bob), wantErr: domain.ErrNotFound},
		{name: "control_character_is_invalid", given: events(opened), when: assign("bob\n1"), wantErr: cases.ErrAssigneeInvalid},
	})
}

func TestSetTags(t *testing.T) {
	set := func(tags ...string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.SetTags(s, tags, bob) }
	}
	run(t, []scenario{
		{name: "records_new_set_with_difference", given: events(opened), when: set("Ransomware", "LockBit"),
			want: events(cases.TagsChanged{Tags: []string{"lockbit", "ransomware"}, Added: []string{"lockbit", "ransomware"}, Removed: []string{"powershell"}, By: bob})},
		{name: "clears_tags", given: events(opened), when: set(), want: events(cases.TagsChanged{Removed: []string{"powershell"}, By: bob})},
		{name: "same_set_records_nothing", given: events(opened), when: set("PowerShell", "powershell")},
		{name: "fifty_tags", given: events(opened), when: set(numbered("t", cases.MaxTags)...),
			want: events(cases.TagsChanged{Tags: numbered("t", cases.MaxTags), Added: numbered("t", cases.MaxTags), Removed: []string{"powershell"}, By: bob})},
		{name: "fifty_one_tags_is_invalid", given: events(opened), when: set(numbered("t", cases.MaxTags+1)...), wantErr: cases.ErrTooManyTags},
		{name: "bad_tag_is_invalid", given: events(opened), when: set("ok", "bad\ttag"), wantErr: cases.ErrTagInvalid},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: set("x"), wantErr: cases.ErrClosed},
		{name: "missing_case_is_not_found", when: set("x"), wantErr: domain.ErrNotFound},
	})
}

func TestChangeTags(t *testing.T) {
	change := func(add, remove []string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.ChangeTags(s, add, remove, bob) }
	}
	full := events(cases.Opened{ID: caseID, Title: "Full", Severity: cases.SeverityLow, TLP: cases.TLPAmber, PAP: cases.PAPAmber,
		Tags: numbered("t", cases.MaxTags), By: alice})
	run(t, []scenario{
		{name: "adds_tag", given: events(opened), when: change([]string{"C2"}, nil),
			want: events(cases.TagsChanged{Tags: []string{"c2", "powershell"}, Added: []string{"c2"}, By: bob})},
		{name: "removes_tag", given: events(opened), when: change(nil, []string{"PowerShell"}),
			want: events(cases.TagsChanged{Removed: []string{"powershell"}, By: bob})},
		{name: "adding_present_tag_records_nothing", given: events(opened), when: change([]string{"powershell"}, nil)},
		{name: "removing_absent_tag_records_nothing", given: events(opened), when: change(nil, []string{"c2"})},
		{name: "tag_added_and_removed_is_invalid", given: events(opened), when: change([]string{"C2"}, []string{"c2"}), wantErr: cases.ErrTagConflict},
		{name: "removing_makes_room", given: full, when: change([]string{"z"}, []string{"t000"}),
			want: events(cases.TagsChanged{Tags: append(numbered("t", cases.MaxTags)[1:], "z"), Added: []string{"z"}, Removed: []string{"t000"}, By: bob})},
		{name: "exceeding_limit_is_invalid", given: full, when: change([]string{"z"}, nil), wantErr: cases.ErrTooManyTags},
		{name: "bad_tag_is_invalid", given: events(opened), when: change([]string{strings.Repeat("x", cases.MaxTagLen+1)}, nil), wantErr: cases.ErrTagInvalid},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: change([]string{"x"}, nil), wantErr: cases.ErrClosed},
	})
}

func TestSetTechniques(t *testing.T) {
	set := func(ids ...string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.SetTechniques(s, ids, bob) }
	}
	run(t, []scenario{
		{name: "records_new_set_with_difference", given: events(opened), when: set("t1059.001", "T1003.001"),
			want: events(cases.TechniquesChanged{Techniques: []string{"T1003.001", "T1059.001"}, Added: []string{"T1003.001"}, By: bob})},
		{name: "clears", given: events(opened), when: set(), want: events(cases.TechniquesChanged{Removed: []string{"T1059.001"}, By: bob})},
		{name: "same_set_records_nothing", given: events(opened), when: set(" t1059.001")},
		{name: "hundred", given: events(opened), when: set(techniques(cases.MaxTechniques)...),
			want: events(cases.TechniquesChanged{Techniques: techniques(cases.MaxTechniques), Added: techniques(cases.MaxTechniques), Removed: []string{"T1059.001"}, By: bob})},
		{name: "hundred_and_one_is_invalid", given: events(opened), when: set(techniques(cases.MaxTechniques + 1)...), wantErr: cases.ErrTooManyTechniques},
		{name: "bad_id_is_invalid", given: events(opened), when: set("T1059.1"), wantErr: cases.ErrTechniqueInvalid},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: set("T1078"), wantErr: cases.ErrClosed},
	})
}

func TestChangeTechniques(t *testing.T) {
	change := func(add, remove []string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.ChangeTechniques(s, add, remove, bob) }
	}
	run(t, []scenario{
		{name: "adds", given: events(opened), when: change([]string{"t1105"}, nil),
			want: events(cases.TechniquesChanged{Techniques: []string{"T1059.001", "T1105"}, Added: []string{"T1105"}, By: bob})},
		{name: "removes", given: events(opened), when: change(nil, []string{"T1059.001"}),
			want: events(cases.TechniquesChanged{Removed: []string{"T1059.001"}, By: bob})},
		{name: "technique_and_sub_technique_are_distinct", given: events(opened), when: change([]string{"T1059"}, nil),
			want: events(cases.TechniquesChanged{Techniques: []string{"T1059", "T1059.001"}, Added: []string{"T1059"}, By: bob})},
		{name: "present_records_nothing", given: events(opened), when: change([]string{"T1059.001"}, []string{"T1105"})},
		{name: "added_and_removed_is_invalid", given: events(opened), when: change([]string{"T1105"}, []string{"t1105"}), wantErr: cases.ErrTechniqueConflict},
		{name: "bad_id_is_invalid", given: events(opened), when: change(nil, []string{"1059"}), wantErr: cases.ErrTechniqueInvalid},
		{name: "missing_case_is_not_found", when: change([]string{"T1105"}, nil), wantErr: domain.ErrNotFound},
	})
}

func TestLinkHost(t *testing.T) {
	link := func(h hosts.ID) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.LinkHost(s, h, bob) }
	}
	full := cases.Opened{ID: caseID, Title: "Worm", Severity: cases.SeverityHigh, TLP: cases.TLPAmber, PAP: cases.PAPAmber, By: alice}
	for _, id := range numbered("h", cases.MaxHosts) {
		full.Hosts = append(full.Hosts, hosts.ID(id))
	}
	run(t, []scenario{
		{name: "links", given: events(opened), when: link(db01), want: events(cases.HostLinked{Host: db01, By: bob})},
		{name: "linked_host_records_nothing", given: events(opened), when: link(ws42)},
		{name: "relinks_after_unlink", given: events(opened, cases.HostUnlinked{Host: ws42, By: bob}), when: link(ws42),
			want: events(cases.HostLinked{Host: ws42, By: bob})},
		{name: "beyond_limit_is_invalid", given: events(full), when: link("zz"), wantErr: cases.ErrTooManyHosts},
		{name: "at_limit_linked_host_records_nothing", given: events(full), when: link("h000")},
		{name: "empty_id_is_invalid", given: events(opened), when: link(" "), wantErr: cases.ErrHostRequired},
		{name: "id_with_nul_is_invalid", given: events(opened), when: link("h\x00"), wantErr: cases.ErrHostInvalid},
		{name: "id_with_space_is_invalid", given: events(opened), when: link("h 1"), wantErr: cases.ErrHostInvalid},
		{name: "id_of_129_bytes_is_invalid", given: events(opened), when: link(hosts.ID(strings.Repeat("h", 129))), wantErr: cases.ErrHostInvalid},
		{name: "id_of_128_bytes", given: events(opened), when: link(hosts.ID(strings.Repeat("h", 128))),
			want: events(cases.HostLinked{Host: hosts.ID(strings.Repeat("h", 128)), By: bob})},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: link(db01), wantErr: cases.ErrClosed},
		{name: "missing_case_is_not_found", when: link(db01), wantErr: domain.ErrNotFound},
	})
}

func TestUnlinkHost(t *testing.T) {
	unlink := func(h hosts.ID) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.UnlinkHost(s, h, bob) }
	}
	run(t, []scenario{
		{name: "unlinks", given: events(opened), when: unlink(ws42), want: events(cases.HostUnlinked{Host: ws42, By: bob})},
		{name: "unlinked_host_records_nothing", given: events(opened), when: unlink(db01)},
		{name: "repeat_records_nothing", given: events(opened, cases.HostUnlinked{Host: ws42, By: bob}), when: unlink(ws42)},
		{name: "linked_later_unlinks", given: events(opened, cases.HostLinked{Host: db01, By: bob}), when: unlink(db01),
			want: events(cases.HostUnlinked{Host: db01, By: bob})},
		{name: "empty_id_is_invalid", given: events(opened), when: unlink(""), wantErr: cases.ErrHostRequired},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: unlink(ws42), wantErr: cases.ErrClosed},
	})
}

func TestAddTask(t *testing.T) {
	add := func(nt cases.NewTask) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.AddTask(s, nt, alice) }
	}
	full := events(opened)
	for _, id := range numbered("t", cases.MaxTasks) {
		full = append(full, cases.TaskAdded{Task: cases.TaskID(id), Title: "x", Status: cases.TaskTodo, By: alice})
	}
	run(t, []scenario{
		{name: "records_task_added_as_todo", given: events(opened), when: add(cases.NewTask{ID: "t1", Title: " Collect memory "}), want: events(taskAdded)},
		{name: "with_every_field", given: events(opened),
			when: add(cases.NewTask{ID: "t2", Title: "Isolate host", Description: "Use the EDR\nthen confirm", Status: "IN_PROGRESS", Assignee: bob}),
			want: events(cases.TaskAdded{Task: "t2", Title: "Isolate host", Description: "Use the EDR\nthen confirm", Status: cases.TaskInProgress, Assignee: bob, By: alice})},
		{name: "existing_id_is_conflict", given: events(opened, taskAdded), when: add(cases.NewTask{ID: "t1", Title: "Collect memory"}), wantErr: cases.ErrTaskExists},
		{name: "deleted_id_is_never_reused", given: events(opened, taskAdded, cases.TaskDeleted{Task: "t1", By: alice}),
			when: add(cases.NewTask{ID: "t1", Title: "Again"}), wantErr: cases.ErrTaskExists},
		{name: "beyond_limit_is_invalid", given: full, when: add(cases.NewTask{ID: "new", Title: "x"}), wantErr: cases.ErrTooManyTasks},
		{name: "deleted_tasks_make_room", given: append(full[:len(full):len(full)], cases.TaskDeleted{Task: "t000", By: alice}),
			when: add(cases.NewTask{ID: "new", Title: "x"}), want: events(cases.TaskAdded{Task: "new", Title: "x", Status: cases.TaskTodo, By: alice})},
		{name: "empty_id_is_invalid", given: events(opened), when: add(cases.NewTask{Title: "x"}), wantErr: cases.ErrTaskIDRequired},
		{name: "empty_title_is_invalid", given: events(opened), when: add(cases.NewTask{ID: "t1"}), wantErr: cases.ErrTaskTitleRequired},
		{name: "long_title_is_invalid", given: events(opened), when: add(cases.NewTask{ID: "t1", Title: strings.Repeat("x", 201)}), wantErr: cases.ErrTaskTitleTooLong},
		{name: "multi_line_title_is_invalid", given: events(opened), when: add(cases.NewTask{ID: "t1", Title: "a\nb"}), wantErr: cases.ErrTaskTitleInvalid},
		{name: "long_description_is_invalid", given: events(opened), when: add(cases.NewTask{ID: "t1", Title: "x", Description: strings.Repeat("x", 20001)}),
			wantErr: cases.ErrTaskDescriptionTooLong},
		{name: "unknown_status_is_invalid", given: events(opened), when: add(cases.NewTask{ID: "t1", Title: "x", Status: "blocked"}), wantErr: cases.ErrTaskStatusInvalid},
		{name: "bad_assignee_is_invalid", given: events(opened), when: add(cases.NewTask{ID: "t1", Title: "x", Assignee: "a b"}), wantErr: cases.ErrAssigneeInvalid},
		{name: "closed_case_is_conflict", given: events(opened, closed), when: add(cases.NewTask{ID: "t1", Title: "x"}), wantErr: cases.ErrClosed},
		{name: "missing_case_is_not_found", when: add(cases.NewTask{ID: "t1", Title: "x"}), wantErr: domain.ErrNotFound},
	})
}

func TestUpdateTask(t *testing.T) {
	update := func(id cases.TaskID, ch cases.TaskChanges) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.UpdateTask(s, id, ch, bob) }
	}
	assignedTask := cases.TaskUpdated{Task: "t1", Assignee: ptr(bob), By: bob}
	run(t, []scenario{
		{name: "changes_status", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Status: ptr(cases.TaskInProgress)}),
			want: events(cases.TaskUpdated{Task: "t1", Status: ptr(cases.TaskInProgress), By: bob})},
		{name: "accepts_canceled_spelling", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Status: ptr(cases.TaskStatus("Canceled"))}),
			want: events(cases.TaskUpdated{Task: "t1", Status: ptr(cases.TaskCancelled), By: bob})},
		{name: "done_task_may_be_reopened", given: events(opened, taskAdded, cases.TaskUpdated{Task: "t1", Status: ptr(cases.TaskDone), By: bob}),
			when: update("t1", cases.TaskChanges{Status: ptr(cases.TaskTodo)}), want: events(cases.TaskUpdated{Task: "t1", Status: ptr(cases.TaskTodo), By: bob})},
		{name: "assigns", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Assignee: ptr(bob)}), want: events(assignedTask)},
		{name: "unassigns", given: events(opened, taskAdded, assignedTask), when: update("t1", cases.TaskChanges{Assignee: ptr(domain.UserID(""))}),
			want: events(cases.TaskUpdated{Task: "t1", Assignee: ptr(domain.UserID("")), By: bob})},
		{name: "records_only_changed_fields", given: events(opened, taskAdded),
			when: update("t1", cases.TaskChanges{Title: ptr("Collect memory"), Description: ptr("With winpmem"), Status: ptr(cases.TaskTodo)}),
			want: events(cases.TaskUpdated{Task: "t1", Description: ptr("With winpmem"), By: bob})},
		{name: "renames", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Title: ptr("Collect RAM")}),
			want: events(cases.TaskUpdated{Task: "t1", Title: ptr("Collect RAM"), By: bob})},
		{name: "same_values_record_nothing", given: events(opened, taskAdded, assignedTask),
			when: update("t1", cases.TaskChanges{Title: ptr(" Collect memory"), Status: ptr(cases.TaskStatus("TODO")), Assignee: ptr(bob)})},
		{name: "no_changes_record_nothing", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{})},
		{name: "missing_task_is_not_found", given: events(opened, taskAdded), when: update("t9", cases.TaskChanges{Title: ptr("x")}), wantErr: cases.ErrTaskNotFound},
		{name: "deleted_task_is_not_found", given: events(opened, taskAdded, cases.TaskDeleted{Task: "t1", By: bob}),
			when: update("t1", cases.TaskChanges{Title: ptr("x")}), wantErr: cases.ErrTaskNotFound},
		{name: "bad_status_is_invalid", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Status: ptr(cases.TaskStatus("paused"))}),
			wantErr: cases.ErrTaskStatusInvalid},
		{name: "empty_title_is_invalid", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Title: ptr("")}), wantErr: cases.ErrTaskTitleRequired},
		{name: "bad_description_is_invalid", given: events(opened, taskAdded), when: update("t1", cases.TaskChanges{Description: ptr("\x00")}),
			wantErr: cases.ErrTaskDescriptionInvalid},
		{name: "closed_case_is_conflict", given: events(opened, taskAdded, closed), when: update("t1", cases.TaskChanges{Status: ptr(cases.TaskDone)}),
			wantErr: cases.ErrClosed},
	})
}

func TestDeleteTask(t *testing.T) {
	del := func(id cases.TaskID) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.DeleteTask(s, id, bob) }
	}
	run(t, []scenario{
		{name: "deletes", given: events(opened, taskAdded), when: del("t1"), want: events(cases.TaskDeleted{Task: "t1", By: bob})},
		{name: "repeat_records_nothing", given: events(opened, taskAdded, cases.TaskDeleted{Task: "t1", By: bob}), when: del("t1")},
		{name: "missing_task_is_not_found", given: events(opened), when: del("t1"), wantErr: cases.ErrTaskNotFound},
		{name: "closed_case_is_conflict", given: events(opened, taskAdded, closed), when: del("t1"), wantErr: cases.ErrClosed},
	})
}

func TestAddComment(t *testing.T) {
	add := func(id cases.CommentID, body string) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.AddComment(s, id, body, alice) }
	}
	full := events(opened)
	for _, id := range numbered("c", cases.MaxComments) {
		full = append(full, cases.CommentAdded{Comment: cases.CommentID(id), Body: "x", By: alice})
	}
	run(t, []scenario{
		{name: "records_comment", given: events(opened), when: add("c1", "\nLooks like Cobalt Strike\n "), want: events(commentAdded)},
		{name: "markdown_with_lines_and_tabs", given: events(opened), when: add("c2", "# Findings\n\n\t- beacon\r\n- `rundll32`"),
			want: events(cases.CommentAdded{Comment: "c2", Body: "# Findings\n\n\t- beacon\r\n- `rundll32`", By: alice})},
		{name: "closed_case_takes_comments", given: events(opened, closed), when: add("c1", "Post-mortem: patch Exchange"),
			want: events(cases.CommentAdded{Comment: "c1", Body: "Post-mortem: patch Exchange", By: alice})},
		{name: "body_of_10000_code_points", given: events(opened), when: add("c3", strings.Repeat("ü", 10000)),
			want: events(cases.CommentAdded{Comment: "c3", Body: strings.Repeat("ü", 10000), By: alice})},
		{name: "existing_id_is_conflict", given: events(opened, commentAdded), when: add("c1", "again"), wantErr: cases.ErrCommentExists},
		{name: "deleted_id_is_never_reused", given: events(opened, commentAdded, cases.CommentDeleted{Comment: "c1", By: alice}),
			when: add("c1", "again"), wantErr: cases.ErrCommentExists},
		{name: "beyond_limit_is_invalid", given: full, when: add("new", "x"), wantErr: cases.ErrTooManyComments},
		{name: "empty_id_is_invalid", given: events(opened), when: add("", "x"), wantErr: cases.ErrCommentIDRequired},
		{name: "empty_body_is_invalid", given: events(opened), when: add("c1", " \n "), wantErr: cases.ErrCommentRequired},
		{name: "body_of_10001_is_invalid", given: events(opened), when: add("c1", strings.Repeat("x", 10001)), wantErr: cases.ErrCommentTooLong},
		{name: "control_character_is_invalid", given: events(opened), when: add("c1", "bell\a"), wantErr: cases.ErrCommentInvalid},
		{name: "invalid_utf8_is_invalid", given: events(opened), when: add("c1", "bad\xff"), wantErr: cases.ErrCommentInvalid},
		{name: "missing_case_is_not_found", when: add("c1", "x"), wantErr: domain.ErrNotFound},
	})
}

func TestEditComment(t *testing.T) {
	edit := func(id cases.CommentID, body string, by domain.UserID) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.EditComment(s, id, body, by) }
	}
	run(t, []scenario{
		{name: "author_edits", given: events(opened, commentAdded), when: edit("c1", "Confirmed Cobalt Strike", alice),
			want: events(cases.CommentEdited{Comment: "c1", Body: "Confirmed Cobalt Strike", By: alice})},
		{name: "author_edits_on_closed_case", given: events(opened, commentAdded, closed), when: edit("c1", "Typo fixed", alice),
			want: events(cases.CommentEdited{Comment: "c1", Body: "Typo fixed", By: alice})},
		{name: "same_body_records_nothing", given: events(opened, commentAdded), when: edit("c1", " Looks like Cobalt Strike ", alice)},
		{name: "repeat_records_nothing", given: events(opened, commentAdded, cases.CommentEdited{Comment: "c1", Body: "v2", By: alice}),
			when: edit("c1", "v2", alice)},
		{name: "other_user_is_forbidden", given: events(opened, commentAdded), when: edit("c1", "mine now", bob), wantErr: cases.ErrNotAuthor},
		{name: "missing_comment_is_not_found", given: events(opened, commentAdded), when: edit("c9", "x", alice), wantErr: cases.ErrCommentNotFound},
		{name: "deleted_comment_is_not_found", given: events(opened, commentAdded, cases.CommentDeleted{Comment: "c1", By: alice}),
			when: edit("c1", "x", alice), wantErr: cases.ErrCommentNotFound},
		{name: "empty_body_is_invalid", given: events(opened, commentAdded), when: edit("c1", "", alice), wantErr: cases.ErrCommentRequired},
		{name: "missing_case_is_not_found", when: edit("c1", "x", alice), wantErr: domain.ErrNotFound},
	})
}

func TestDeleteComment(t *testing.T) {
	del := func(by domain.UserID, moderator bool) func(cases.State) ([]domain.Event, error) {
		return func(s cases.State) ([]domain.Event, error) { return cases.DeleteComment(s, "c1", by, moderator) }
	}
	run(t, []scenario{
		{name: "author_deletes", given: events(opened, commentAdded), when: del(alice, false), want: events(cases.CommentDeleted{Comment: "c1", By: alice})},
		{name: "moderator_deletes", given: events(opened, commentAdded), when: del(carol, true), want: events(cases.CommentDeleted{Comment: "c1", By: carol})},
		{name: "author_deletes_on_closed_case", given: events(opened, commentAdded, closed), when: del(alice, false),
			want: events(cases.CommentDeleted{Comment: "c1", By: alice})},
		{name: "other_user_is_forbidden", given: events(opened, commentAdded), when: del(bob, false), wantErr: cases.ErrNotAuthor},
		{name: "repeat_records_nothing", given: events(opened, commentAdded, cases.CommentDeleted{Comment: "c1", By: alice}), when: del(alice, false)},
		{name: "missing_comment_is_not_found", given: events(opened), when: del(alice, false), wantErr: cases.ErrCommentNotFound},
		{name: "missing_case_is_not_found", when: del(alice, true), wantErr: domain.ErrNotFound},
	})
}

func TestEvolve(t *testing.T) {
	history := events(
		opened,
		cases.Updated{Title: ptr("Cobalt Strike on WS-0042"), Severity: ptr(cases.SeverityCritical), TLP: ptr(cases.TLPRed), PAP: ptr(cases.PAPGreen), Description: ptr("d"), By: bob},
		investigating,
		cases.Assigned{To: bob, By: alice},
		cases.TagsChanged{Tags: []string{"c2", "powershell"}, Added: []string{"c2"}, By: bob},
		cases.TechniquesChanged{Techniques: []string{"T1059.001", "T1105"}, Added: []string{"T1105"}, By: bob},
		cases.HostLinked{Host: db01, By: bob},
		cases.HostLinked{Host: "0000", By: bob},
		cases.HostUnlinked{Host: ws42, By: bob},
		taskAdded,
		cases.TaskAdded{Task: "t2", Title: "Isolate", Status: cases.TaskTodo, By: alice},
		cases.TaskUpdated{Task: "t1", Status: ptr(cases.TaskDone), Assignee: ptr(bob), Title: ptr("Collect RAM"), Description: ptr("winpmem"), By: bob},
		cases.TaskDeleted{Task: "t2", By: alice},
		commentAdded,
		cases.CommentEdited{Comment: "c1", Body: "Confirmed", By: alice},
		cases.CommentAdded{Comment: "c2", Body: "oops", By: bob},
		cases.CommentDeleted{Comment: "c2", By: bob},
		closed,
	)
	got := domain.Fold(cases.Evolve, history)
	want := cases.State{
		ID: caseID, Exists: true, Status: cases.StatusClosed, Title: "Cobalt Strike on WS-0042", Description: "d",
		Severity: cases.SeverityCritical, TLP: cases.TLPRed, PAP: cases.PAPGreen, Assignee: bob,
		Tags: []string{"c2", "powershell"}, Techniques: []string{"T1059.001", "T1105"}, Hosts: []hosts.ID{"0000", db01},
		Tasks: map[cases.TaskID]cases.Task{
			"t1": {Title: "Collect RAM", Description: "winpmem", Status: cases.TaskDone, Assignee: bob},
			"t2": {Deleted: true},
		},
		Comments: map[cases.CommentID]cases.Comment{
			"c1": {Author: alice, Body: "Confirmed"},
			"c2": {Author: bob, Deleted: true},
		},
		ResolutionType: cases.ResolutionTruePositive, Resolution: "Reimaged WS-0042",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v\nwant    %+v", got, want)
	}
	reopened := cases.Evolve(got, cases.Reopened{To: cases.StatusInvestigating, By: bob})
	if reopened.Status != cases.StatusInvestigating || reopened.ResolutionType != "" || reopened.Resolution != "" {
		t.Fatalf("after Reopened: %+v", reopened)
	}
	cleared := domain.Fold(cases.Evolve, events(opened, cases.TagsChanged{Removed: []string{"powershell"}, By: bob}, cases.HostUnlinked{Host: ws42, By: bob}))
	if cleared.Tags != nil || cleared.Hosts != nil {
		t.Fatalf("emptied sets are not nil: %+v", cleared)
	}
	// Events about tasks or comments that do not exist change nothing.
	s := domain.Fold(cases.Evolve, events(opened))
	s = cases.Evolve(s, cases.TaskUpdated{Task: "ghost", Title: ptr("x"), By: bob})
	s = cases.Evolve(s, cases.CommentEdited{Comment: "ghost", Body: "x", By: bob})
	if len(s.Tasks) != 0 || len(s.Comments) != 0 {
		t.Fatalf("ghost events created entries: %+v", s)
	}
	if s2 := cases.Evolve(s, foreign{}); !reflect.DeepEqual(s2, s) {
		t.Fatalf("a foreign event changed the state: %+v", s2)
	}
}

type foreign struct{}

func (foreign) EventName() string { return "other.happened" }

func TestWireRoundTrip(t *testing.T) {
	for _, e := range []domain.Event{
		opened,
		cases.Opened{ID: caseID, Title: "x", Severity: cases.SeverityLow, TLP: cases.TLPAmberStrict, PAP: cases.PAPClear, By: alice},
		cases.Updated{Title: ptr("t"), Description: ptr(""), Severity: ptr(cases.SeverityLow), TLP: ptr(cases.TLPClear), PAP: ptr(cases.PAPRed), By: bob},
		investigating,
		cases.Assigned{From: bob, By: alice},
		closed,
		cases.Reopened{To: cases.StatusInvestigating, Reason: "why", By: bob},
		cases.TagsChanged{Tags: []string{"a"}, Added: []string{"a"}, By: bob},
		cases.TagsChanged{Removed: []string{"a"}, By: bob},
		cases.TechniquesChanged{Techniques: []string{"T1105"}, Added: []string{"T1105"}, Removed: []string{"T1059"}, By: bob},
		cases.HostLinked{Host: ws42, By: bob},
		cases.HostUnlinked{Host: ws42, By: bob},
		taskAdded,
		cases.TaskUpdated{Task: "t1", Title: ptr(""), Status: ptr(cases.TaskDone), Assignee: ptr(domain.UserID("")), By: bob},
		cases.TaskDeleted{Task: "t1", By: bob},
		commentAdded,
		cases.CommentEdited{Comment: "c1", Body: "b", By: alice},
		cases.CommentDeleted{Comment: "c1", By: alice},
	} {
		t.Run(e.EventName(), func(t *testing.T) {
			wire, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			back := reflect.New(reflect.TypeOf(e))
			if err := json.Unmarshal(wire, back.Interface()); err != nil {
				t.Fatal(err)
			}
			if got := back.Elem().Interface(); !reflect.DeepEqual(got, e) {
				t.Fatalf("round trip of %s:\n got %#v\nwant %#v", wire, got, e)
			}
		})
	}
}

func TestParseTLP(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want cases.TLP
		err  error
	}{
		{"TLP:CLEAR", cases.TLPClear, nil},
		{"clear", cases.TLPClear, nil},
		{"TLP:WHITE", cases.TLPClear, nil},
		{"white", cases.TLPClear, nil},
		{"tlp:green", cases.TLPGreen, nil},
		{" TLP: AMBER ", cases.TLPAmber, nil},
		{"TLP:AMBER+STRICT", cases.TLPAmberStrict, nil},
		{"amber+strict", cases.TLPAmberStrict, nil},
		{"Red", cases.TLPRed, nil},
		{"", "", cases.ErrTLPInvalid},
		{"TLP:", "", cases.ErrTLPInvalid},
		{"PAP:RED", "", cases.ErrTLPInvalid},
		{"amber-strict", "", cases.ErrTLPInvalid},
		{"TLP:BLACK", "", cases.ErrTLPInvalid},
	} {
		t.Run(strings.NewReplacer(":", "_", " ", "_", "+", "_").Replace(tc.in), func(t *testing.T) {
			got, err := cases.ParseTLP(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || got != tc.want {
				t.Fatalf("ParseTLP(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
	for tlp, want := range map[cases.TLP]string{
		cases.TLPClear: "TLP:CLEAR", cases.TLPGreen: "TLP:GREEN", cases.TLPAmber: "TLP:AMBER", cases.TLPAmberStrict: "TLP:AMBER+STRICT", cases.TLPRed: "TLP:RED",
	} {
		if got := tlp.String(); got != want {
			t.Errorf("%q.String() = %q, want %q", string(tlp), got, want)
		}
		if back, err := cases.ParseTLP(tlp.String()); back != tlp || err != nil {
			t.Errorf("ParseTLP(%q) = %q, %v", tlp.String(), back, err)
		}
	}
	if !(cases.TLPClear.Level() < cases.TLPGreen.Level() && cases.TLPGreen.Level() < cases.TLPAmber.Level() &&
		cases.TLPAmber.Level() < cases.TLPAmberStrict.Level() && cases.TLPAmberStrict.Level() < cases.TLPRed.Level()) {
		t.Error("TLP levels are not ordered")
	}
	if cases.TLP("white").Valid() {
		t.Error(`TLP("white") is valid; only ParseTLP maps the alias`)
	}
}

func TestParsePAP(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want cases.PAP
		err  error
	}{
		{"PAP:CLEAR", cases.PAPClear, nil},
		{"PAP:WHITE", cases.PAPClear, nil},
		{"white", cases.PAPClear, nil},
		{"pap:green", cases.PAPGreen, nil},
		{"AMBER", cases.PAPAmber, nil},
		{" PAP:RED ", cases.PAPRed, nil},
		{"PAP:AMBER+STRICT", "", cases.ErrPAPInvalid},
		{"TLP:RED", "", cases.ErrPAPInvalid},
		{"", "", cases.ErrPAPInvalid},
	} {
		t.Run(strings.NewReplacer(":", "_", " ", "_", "+", "_").Replace(tc.in), func(t *testing.T) {
			got, err := cases.ParsePAP(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || got != tc.want {
				t.Fatalf("ParsePAP(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
	if got := cases.PAPAmber.String(); got != "PAP:AMBER" {
		t.Errorf("PAPAmber.String() = %q", got)
	}
	if !(cases.PAPClear.Level() < cases.PAPGreen.Level() && cases.PAPGreen.Level() < cases.PAPAmber.Level() &&
		cases.PAPAmber.Level() < cases.PAPRed.Level()) || cases.PAP("white").Valid() || !cases.PAPRed.Valid() {
		t.Error("PAP levels are not ordered, or an alias is valid")
	}
}

func TestParseEnums(t *testing.T) {
	if s, err := cases.ParseStatus(" Contained "); s != cases.StatusContained || err != nil {
		t.Errorf("ParseStatus = %q, %v", s, err)
	}
	if _, err := cases.ParseStatus("resolved"); !errors.Is(err, cases.ErrStatusInvalid) {
		t.Errorf("ParseStatus(resolved) error = %v", err)
	}
	if s, err := cases.ParseSeverity("CRITICAL"); s != cases.SeverityCritical || err != nil {
		t.Errorf("ParseSeverity = %q, %v", s, err)
	}
	if _, err := cases.ParseSeverity("info"); !errors.Is(err, cases.ErrSeverityInvalid) {
		t.Errorf("ParseSeverity(info) error = %v", err)
	}
	if !(cases.SeverityLow.Level() < cases.SeverityMedium.Level() && cases.SeverityMedium.Level() < cases.SeverityHigh.Level() &&
		cases.SeverityHigh.Level() < cases.SeverityCritical.Level()) || cases.Severity("x").Level() != 0 {
		t.Error("severity levels are not ordered")
	}
	if s, err := cases.ParseTaskStatus("In_Progress"); s != cases.TaskInProgress || err != nil {
		t.Errorf("ParseTaskStatus = %q, %v", s, err)
	}
	for _, r := range []cases.ResolutionType{cases.ResolutionTruePositive, cases.ResolutionFalsePositive, cases.ResolutionBenign,
		cases.ResolutionDuplicate, cases.ResolutionIndeterminate, cases.ResolutionOther} {
		if !r.Valid() {
			t.Errorf("%q is not valid", r)
		}
	}
}

func TestCheckTechnique(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{name: "technique", in: "T1059", want: "T1059"},
		{name: "sub_technique", in: "T1059.001", want: "T1059.001"},
		{name: "lower_case_is_raised", in: "t1003.001", want: "T1003.001"},
		{name: "trimmed", in: " T1105 ", want: "T1105"},
		{name: "empty", in: "", err: cases.ErrTechniqueInvalid},
		{name: "three_digits", in: "T105", err: cases.ErrTechniqueInvalid},
		{name: "five_digits", in: "T10590", err: cases.ErrTechniqueInvalid},
		{name: "short_sub_technique", in: "T1059.01", err: cases.ErrTechniqueInvalid},
		{name: "long_sub_technique", in: "T1059.0001", err: cases.ErrTechniqueInvalid},
		{name: "dot_without_sub_technique", in: "T1059.", err: cases.ErrTechniqueInvalid},
		{name: "hyphen_separator", in: "T1059-001", err: cases.ErrTechniqueInvalid},
		{name: "tactic_id", in: "TA0002", err: cases.ErrTechniqueInvalid},
		{name: "mitigation_id", in: "M1038", err: cases.ErrTechniqueInvalid},
		{name: "no_prefix", in: "1059", err: cases.ErrTechniqueInvalid},
		{name: "inner_space", in: "T 1059", err: cases.ErrTechniqueInvalid},
		{name: "letters_in_sub_technique", in: "T1059.00a", err: cases.ErrTechniqueInvalid},
		{name: "unicode_digits", in: "T١٠٥٩", err: cases.ErrTechniqueInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cases.CheckTechnique(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("CheckTechnique(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("CheckTechnique(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if _, err := cases.CheckTechnique("T99"); err == nil || !strings.Contains(err.Error(), `"T99"`) {
		t.Errorf("error %v does not name the bad id", err)
	}
}

func TestNormalizeTags(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
		err  error
	}{
		{name: "none_is_nil", in: nil, want: nil},
		{name: "lowered_trimmed_sorted_deduplicated", in: []string{" Phishing", "BEC", "phishing"}, want: []string{"bec", "phishing"}},
		{name: "machine_tags_kept", in: []string{`misp:threat-level="High"`}, want: []string{`misp:threat-level="high"`}},
		{name: "tag_of_128", in: []string{strings.Repeat("ä", 128)}, want: []string{strings.Repeat("ä", 128)}},
		{name: "fifty", in: numbered("t", 50), want: numbered("t", 50)},
		{name: "fifty_one_with_a_duplicate", in: append(numbered("t", 50), "T000"), want: numbered("t", 50)},
		{name: "tag_of_129", in: []string{strings.Repeat("ä", 129)}, err: cases.ErrTagInvalid},
		{name: "fifty_one", in: numbered("t", 51), err: cases.ErrTooManyTags},
		{name: "blank", in: []string{" "}, err: cases.ErrTagInvalid},
		{name: "line_break", in: []string{"a\nb"}, err: cases.ErrTagInvalid},
		{name: "invalid_utf8", in: []string{"a\xff"}, err: cases.ErrTagInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cases.NormalizeTags(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("NormalizeTags(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NormalizeTags(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for _, tc := range []struct {
		event domain.Event
		want  string
	}{
		{cases.Opened{}, "case.opened"},
		{cases.Updated{}, "case.updated"},
		{cases.StatusChanged{}, "case.status_changed"},
		{cases.Assigned{}, "case.assigned"},
		{cases.Closed{}, "case.closed"},
		{cases.Reopened{}, "case.reopened"},
		{cases.TagsChanged{}, "case.tags_changed"},
		{cases.TechniquesChanged{}, "case.techniques_changed"},
		{cases.HostLinked{}, "case.host_linked"},
		{cases.HostUnlinked{}, "case.host_unlinked"},
		{cases.TaskAdded{}, "case.task_added"},
		{cases.TaskUpdated{}, "case.task_updated"},
		{cases.TaskDeleted{}, "case.task_deleted"},
		{cases.CommentAdded{}, "case.comment_added"},
		{cases.CommentEdited{}, "case.comment_edited"},
		{cases.CommentDeleted{}, "case.comment_deleted"},
	} {
		if got := tc.event.EventName(); got != tc.want {
			t.Errorf("%T.EventName() = %q, want %q", tc.event, got, tc.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	for err, want := range map[error]domain.Kind{
		cases.ErrExists:             domain.KindConflict,
		cases.ErrClosed:             domain.KindConflict,
		cases.ErrNotClosed:          domain.KindConflict,
		cases.ErrTransition:         domain.KindUnprocessable,
		cases.ErrNotAuthor:          domain.KindForbidden,
		cases.ErrTaskNotFound:       domain.KindNotFound,
		cases.ErrCommentNotFound:    domain.KindNotFound,
		cases.ErrResolutionRequired: domain.KindInvalid,
		cases.ErrTechniqueInvalid:   domain.KindInvalid,
	} {
		if got := domain.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
	}
}
