package tenants_test

import (
	"strings"
	"testing"
	"velocicompanion/domain/domaintest"

	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
)

const (
	acme  domain.TenantID = "0190c7a4-6a38-7f1e-9a49-000000000001"
	admin domain.UserID   = "0190c7a4-6a38-7f1e-9a49-0000000000a1"
)

var created = tenants.Created{ID: acme, Name: "Acme", Description: "Widgets", By: admin}

// scenario is one given/when/then case: history, a decision, and either the
// events it records or the error it returns.
type scenario struct {
	name    string
	given   []domain.Event
	when    func(tenants.State) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func run(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		domaintest.Check(t, tc.name, tenants.Evolve, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func ptr(s string) *string { return &s }

func TestCreate(t *testing.T) {
	create := func(name, desc string) func(tenants.State) ([]domain.Event, error) {
		return func(s tenants.State) ([]domain.Event, error) { return tenants.Create(s, acme, name, desc, admin) }
	}
	run(t, []scenario{
		{name: "records_created", when: create("Acme", "Widgets"), want: []domain.Event{created}},
		{name: "trims_name_and_description", when: create("  Acme\t", "\n Widgets \n"), want: []domain.Event{created}},
		{name: "description_is_optional", when: create("Acme", ""),
			want: []domain.Event{tenants.Created{ID: acme, Name: "Acme", By: admin}}},
		{name: "unicode_name", when: create("Société Générale — 東京", ""),
			want: []domain.Event{tenants.Created{ID: acme, Name: "Société Générale — 東京", By: admin}}},
		{name: "name_of_100_code_points", when: create(strings.Repeat("é", 100), ""),
			want: []domain.Event{tenants.Created{ID: acme, Name: strings.Repeat("é", 100), By: admin}}},
		{name: "existing_tenant_is_conflict", given: []domain.Event{created}, when: create("Acme", "Widgets"), wantErr: tenants.ErrExists},
		{name: "empty_id_is_invalid", when: func(s tenants.State) ([]domain.Event, error) {
			return tenants.Create(s, " ", "Acme", "", admin)
		}, wantErr: tenants.ErrIDRequired},
		{name: "empty_name_is_invalid", when: create("", ""), wantErr: tenants.ErrNameRequired},
		{name: "blank_name_is_invalid", when: create(" \t\n ", ""), wantErr: tenants.ErrNameRequired},
		{name: "name_of_101_code_points_is_invalid", when: create(strings.Repeat("é", 101), ""), wantErr: tenants.ErrNameTooLong},
		{name: "control_character_in_name_is_invalid", when: create("Ac\x00me", ""), wantErr: tenants.ErrNameInvalid},
		{name: "line_break_in_name_is_invalid", when: create("Ac\nme", ""), wantErr: tenants.ErrNameInvalid},
		{name: "bidi_override_in_name_is_invalid", when: create("Acme\u202e", ""), wantErr: tenants.ErrNameInvalid},
		{name: "invalid_utf8_in_name_is_invalid", when: create("Ac\xffme", ""), wantErr: tenants.ErrNameInvalid},
		{name: "long_description_is_invalid", when: create("Acme", strings.Repeat("x", 1001)), wantErr: tenants.ErrDescriptionTooLong},
		{name: "description_of_1000_code_points", when: create("Acme", strings.Repeat("ß", 1000)),
			want: []domain.Event{tenants.Created{ID: acme, Name: "Acme", Description: strings.Repeat("ß", 1000), By: admin}}},
		{name: "multi_line_description", when: create("Acme", "line one\r\n\tline two"),
			want: []domain.Event{tenants.Created{ID: acme, Name: "Acme", Description: "line one\r\n\tline two", By: admin}}},
		{name: "control_character_in_description_is_invalid", when: create("Acme", "bell\a"), wantErr: tenants.ErrDescriptionInvalid},
	})
}

func TestUpdate(t *testing.T) {
	update := func(ch tenants.Changes) func(tenants.State) ([]domain.Event, error) {
		return func(s tenants.State) ([]domain.Event, error) { return tenants.Update(s, ch, admin) }
	}
	run(t, []scenario{
		{name: "renames", given: []domain.Event{created}, when: update(tenants.Changes{Name: ptr("Acme Corp")}),
			want: []domain.Event{tenants.Updated{Name: "Acme Corp", Description: "Widgets", By: admin}}},
		{name: "changes_description", given: []domain.Event{created}, when: update(tenants.Changes{Description: ptr("Gadgets")}),
			want: []domain.Event{tenants.Updated{Name: "Acme", Description: "Gadgets", By: admin}}},
		{name: "clears_description", given: []domain.Event{created}, when: update(tenants.Changes{Description: ptr("")}),
			want: []domain.Event{tenants.Updated{Name: "Acme", By: admin}}},
		{name: "changes_both", given: []domain.Event{created}, when: update(tenants.Changes{Name: ptr(" Acme Corp "), Description: ptr("Gadgets")}),
			want: []domain.Event{tenants.Updated{Name: "Acme Corp", Description: "Gadgets", By: admin}}},
		{name: "same_values_record_nothing", given: []domain.Event{created}, when: update(tenants.Changes{Name: ptr("Acme "), Description: ptr("Widgets")})},
		{name: "no_changes_record_nothing", given: []domain.Event{created}, when: update(tenants.Changes{})},
		{name: "repeat_records_nothing", given: []domain.Event{created, tenants.Updated{Name: "Acme Corp", Description: "Widgets", By: admin}},
			when: update(tenants.Changes{Name: ptr("Acme Corp")})},
		{name: "deactivated_tenant_may_be_renamed", given: []domain.Event{created, tenants.Deactivated{By: admin}},
			when: update(tenants.Changes{Name: ptr("Acme (closed)")}),
			want: []domain.Event{tenants.Updated{Name: "Acme (closed)", Description: "Widgets", By: admin}}},
		{name: "missing_tenant_is_not_found", when: update(tenants.Changes{Name: ptr("Acme")}), wantErr: domain.ErrNotFound},
		{name: "blank_name_is_invalid", given: []domain.Event{created}, when: update(tenants.Changes{Name: ptr("  ")}), wantErr: tenants.ErrNameRequired},
		{name: "long_name_is_invalid", given: []domain.Event{created}, when: update(tenants.Changes{Name: ptr(strings.Repeat("a", 101))}), wantErr: tenants.ErrNameTooLong},
		{name: "long_description_is_invalid", given: []domain.Event{created}, when: update(tenants.Changes{Description: ptr(strings.Repeat("a", 1001))}), wantErr: tenants.ErrDescriptionTooLong},
	})
}

func TestDeactivate(t *testing.T) {
	deactivate := func(s tenants.State) ([]domain.Event, error) { return tenants.Deactivate(s, admin) }
	run(t, []scenario{
		{name: "records_deactivated", given: []domain.Event{created}, when: deactivate, want: []domain.Event{tenants.Deactivated{By: admin}}},
		{name: "repeat_records_nothing", given: []domain.Event{created, tenants.Deactivated{By: admin}}, when: deactivate},
		{name: "after_reactivation_records_deactivated", given: []domain.Event{created, tenants.Deactivated{By: admin}, tenants.Reactivated{By: admin}},
			when: deactivate, want: []domain.Event{tenants.Deactivated{By: admin}}},
		{name: "missing_tenant_is_not_found", when: deactivate, wantErr: domain.ErrNotFound},
		{name: "platform_tenant_is_forbidden", given: []domain.Event{tenants.Created{ID: domain.PlatformTenant, Name: "Platform", By: admin}},
			when: deactivate, wantErr: tenants.ErrPlatformTenant},
	})
}

func TestReactivate(t *testing.T) {
	reactivate := func(s tenants.State) ([]domain.Event, error) { return tenants.Reactivate(s, admin) }
	run(t, []scenario{
		{name: "records_reactivated", given: []domain.Event{created, tenants.Deactivated{By: admin}}, when: reactivate,
			want: []domain.Event{tenants.Reactivated{By: admin}}},
		{name: "active_tenant_records_nothing", given: []domain.Event{created}, when: reactivate},
		{name: "repeat_records_nothing", given: []domain.Event{created, tenants.Deactivated{By: admin}, tenants.Reactivated{By: admin}}, when: reactivate},
		{name: "missing_tenant_is_not_found", when: reactivate, wantErr: domain.ErrNotFound},
	})
}

func TestEvolve(t *testing.T) {
	history := []domain.Event{
		created,
		tenants.Updated{Name: "Acme Corp", Description: "", By: admin},
		tenants.Deactivated{By: admin},
	}
	got := domain.Fold(tenants.Evolve, history)
	want := tenants.State{ID: acme, Exists: true, Active: false, Name: "Acme Corp"}
	if got != want {
		t.Fatalf("state = %+v, want %+v", got, want)
	}
	if s := tenants.Evolve(got, foreign{}); s != got {
		t.Fatalf("a foreign event changed the state: %+v", s)
	}
}

type foreign struct{}

func (foreign) EventName() string { return "other.happened" }

func TestEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for e, want := range map[domain.Event]string{
		tenants.Created{}:     "tenant.created",
		tenants.Updated{}:     "tenant.updated",
		tenants.Deactivated{}: "tenant.deactivated",
		tenants.Reactivated{}: "tenant.reactivated",
	} {
		if got := e.EventName(); got != want {
			t.Errorf("%T.EventName() = %q, want %q", e, got, want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	for err, want := range map[error]domain.Kind{
		tenants.ErrExists:             domain.KindConflict,
		tenants.ErrNameRequired:       domain.KindInvalid,
		tenants.ErrNameTooLong:        domain.KindInvalid,
		tenants.ErrDescriptionTooLong: domain.KindInvalid,
		tenants.ErrPlatformTenant:     domain.KindForbidden,
	} {
		if got := domain.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
	}
}
