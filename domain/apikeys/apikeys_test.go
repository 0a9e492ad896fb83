package apikeys_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/apikeys"
	"velocicompanion/domain/users"
)

const (
	acme   domain.TenantID = "0190c7a4-6a38-7f1e-9a49-00000000acme"
	globex domain.TenantID = "0190c7a4-6a38-7f1e-9a49-0000000globe"
	keyID  apikeys.ID      = "0190c7a4-6a38-7f1e-9a49-0000000a0e01"
)

var (
	now = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

	alice       = users.Actor{User: "alice", Tenant: acme, Role: users.RoleAdmin}
	bob         = users.Actor{User: "bob", Tenant: acme, Role: users.RoleAnalyst}
	root        = users.Actor{User: "root", Tenant: domain.PlatformTenant, Role: users.RolePlatformAdmin}
	globexAdmin = users.Actor{User: "gina", Tenant: globex, Role: users.RoleAdmin}

	month   = now.Add(30 * 24 * time.Hour)
	created = apikeys.Created{ID: keyID, Tenant: acme, Name: "ci", Role: users.RoleAnalyst, ExpiresAt: month, By: "alice", At: now}
)

type scenario struct {
	name    string
	given   []domain.Event
	when    func(apikeys.State) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func run(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.when(domain.Fold(apikeys.Evolve, tc.given))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != nil {
					t.Fatalf("got %#v, %v; want error %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func events(es ...domain.Event) []domain.Event { return es }

func TestCreate(t *testing.T) {
	spec := apikeys.Spec{ID: keyID, Tenant: acme, Name: "  ci  ", Role: users.RoleAnalyst, ExpiresAt: month}
	create := func(by users.Actor, edit func(*apikeys.Spec)) func(apikeys.State) ([]domain.Event, error) {
		return func(s apikeys.State) ([]domain.Event, error) {
			k := spec
			if edit != nil {
				edit(&k)
			}
			return apikeys.Create(s, by, k, now)
		}
	}
	yearAhead := now.AddDate(1, 0, 0)
	run(t, []scenario{
		{name: "admin_creates", when: create(alice, nil), want: events(created)},
		{name: "admin_key", when: create(alice, func(k *apikeys.Spec) { k.Role = users.RoleAdmin }),
			want: events(apikeys.Created{ID: keyID, Tenant: acme, Name: "ci", Role: users.RoleAdmin, ExpiresAt: month, By: "alice", At: now})},
		{name: "a_year_is_allowed", when: create(alice, func(k *apikeys.Spec) { k.ExpiresAt = yearAhead }),
			want: events(apikeys.Created{ID: keyID, Tenant: acme, Name: "ci", Role: users.RoleAnalyst, ExpiresAt: yearAhead, By: "alice", At: now})},
		{name: "twice_is_conflict", given: events(created), when: create(alice, nil), wantErr: apikeys.ErrExists},
		{name: "analyst_not_allowed", when: create(bob, func(k *apikeys.Spec) { k.Role = users.RoleViewer }), wantErr: apikeys.ErrNotAllowed},
		{name: "platform_admin_not_found", when: create(root, nil), wantErr: domain.ErrNotFound},
		{name: "other_tenant_not_found", when: create(globexAdmin, nil), wantErr: domain.ErrNotFound},
		{name: "platform_admin_role_invalid", when: create(alice, func(k *apikeys.Spec) { k.Role = users.RolePlatformAdmin }), wantErr: apikeys.ErrRoleInvalid},
		{name: "empty_role_invalid", when: create(alice, func(k *apikeys.Spec) { k.Role = "" }), wantErr: apikeys.ErrRoleInvalid},
		{name: "no_name", when: create(alice, func(k *apikeys.Spec) { k.Name = "   " }), wantErr: apikeys.ErrNameRequired},
		{name: "long_name", when: create(alice, func(k *apikeys.Spec) { k.Name = strings.Repeat("n", 101) }), wantErr: apikeys.ErrNameTooLong},
		{name: "control_character", when: create(alice, func(k *apikeys.Spec) { k.Name = "ci\x00" }), wantErr: apikeys.ErrNameInvalid},
		{name: "no_id", when: create(alice, func(k *apikeys.Spec) { k.ID = "" }), wantErr: apikeys.ErrIDRequired},
		{name: "no_expiry", when: create(alice, func(k *apikeys.Spec) { k.ExpiresAt = time.Time{} }), wantErr: apikeys.ErrExpiryMissing},
		{name: "expiry_now", when: create(alice, func(k *apikeys.Spec) { k.ExpiresAt = now }), wantErr: apikeys.ErrExpiryPast},
		{name: "expiry_past", when: create(alice, func(k *apikeys.Spec) { k.ExpiresAt = now.Add(-time.Hour) }), wantErr: apikeys.ErrExpiryPast},
		{name: "expiry_beyond_a_year", when: create(alice, func(k *apikeys.Spec) { k.ExpiresAt = yearAhead.Add(apikeys.Slack + time.Second) }), wantErr: apikeys.ErrExpiryTooFar},
	})
}

func TestCreateRoleNotAboveCreator(t *testing.T) {
	// Only administrators create keys today, so no role is above the creator's;
	// the rule still holds for an actor whose role is lower than the key's.
	weak := users.Actor{User: "w", Tenant: acme, Role: users.RoleViewer}
	_, err := apikeys.Create(apikeys.State{}, weak, apikeys.Spec{ID: keyID, Tenant: acme, Name: "x", Role: users.RoleAdmin, ExpiresAt: month}, now)
	if !errors.Is(err, apikeys.ErrNotAllowed) {
		t.Fatalf("viewer creating an admin key: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	revoke := func(by users.Actor) func(apikeys.State) ([]domain.Event, error) {
		return func(s apikeys.State) ([]domain.Event, error) { return apikeys.Revoke(s, by, now) }
	}
	run(t, []scenario{
		{name: "admin_revokes", given: events(created), when: revoke(alice), want: events(apikeys.Revoked{By: "alice", At: now})},
		{name: "twice_records_nothing", given: events(created, apikeys.Revoked{By: "alice", At: now}), when: revoke(alice)},
		{name: "missing_not_found", when: revoke(alice), wantErr: domain.ErrNotFound},
		{name: "analyst_not_allowed", given: events(created), when: revoke(bob), wantErr: apikeys.ErrNotAllowed},
		{name: "other_tenant_not_found", given: events(created), when: revoke(globexAdmin), wantErr: domain.ErrNotFound},
		{name: "platform_admin_not_found", given: events(created), when: revoke(root), wantErr: domain.ErrNotFound},
	})
}

func TestEvolveAndActive(t *testing.T) {
	s := domain.Fold(apikeys.Evolve, events(created))
	if !s.Active(now) || s.Active(month) || s.Name != "ci" || s.CreatedBy != "alice" {
		t.Fatalf("created key %+v", s)
	}
	s = apikeys.Evolve(s, apikeys.Revoked{By: "alice", At: now})
	if s.Active(now) || !s.Revoked || !s.RevokedAt.Equal(now) {
		t.Fatalf("revoked key %+v", s)
	}
	if (apikeys.State{}).Active(now) {
		t.Fatal("a missing key is active")
	}
}

func TestEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for e, want := range map[domain.Event]string{
		apikeys.Created{}: "apikey.created",
		apikeys.Revoked{}: "apikey.revoked",
	} {
		if got := e.EventName(); got != want {
			t.Errorf("%T.EventName() = %q, want %q", e, got, want)
		}
	}
}
