package users_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"velocicompanion/domain/domaintest"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

const (
	acme   domain.TenantID = "0190c7a4-6a38-7f1e-9a49-00000000acme"
	globex domain.TenantID = "0190c7a4-6a38-7f1e-9a49-0000000globe"

	aliceID domain.UserID = "0190c7a4-6a38-7f1e-9a49-0000000a11ce"
	bobID   domain.UserID = "0190c7a4-6a38-7f1e-9a49-00000000b0b0"
	rootID  domain.UserID = "0190c7a4-6a38-7f1e-9a49-00000000r007"
)

var (
	now = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

	// alice is an admin of acme; bob is an analyst of acme; root is a platform admin.
	alice       = users.Actor{User: aliceID, Tenant: acme, Role: users.RoleAdmin}
	bob         = users.Actor{User: bobID, Tenant: acme, Role: users.RoleAnalyst}
	root        = users.Actor{User: rootID, Tenant: domain.PlatformTenant, Role: users.RolePlatformAdmin}
	globexAdmin = users.Actor{User: "0190c7a4-6a38-7f1e-9a49-0000000000g1", Tenant: globex, Role: users.RoleAdmin}
	// forged claims platform_admin outside the platform tenant, which no real account can hold.
	forged = users.Actor{User: "0190c7a4-6a38-7f1e-9a49-0000000000f0", Tenant: globex, Role: users.RolePlatformAdmin}

	aliceRegistered = users.Registered{ID: aliceID, Tenant: acme, Username: "alice", Email: "alice@acme.example", Role: users.RoleAdmin, By: rootID}
	bobRegistered   = users.Registered{ID: bobID, Tenant: acme, Username: "bob", Role: users.RoleAnalyst, By: aliceID}
	rootRegistered  = users.Registered{ID: rootID, Tenant: domain.PlatformTenant, Username: "root", Role: users.RolePlatformAdmin, By: users.System.User}
)

const goodPassword = "correct horse battery"

type scenario struct {
	name    string
	given   []domain.Event
	when    func(users.State) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func run(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		domaintest.Check(t, tc.name, users.Evolve, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func events(es ...domain.Event) []domain.Event { return es }

func TestRegister(t *testing.T) {
	bobReg := users.Registration{ID: bobID, Tenant: acme, Username: "bob", Role: users.RoleAnalyst, Password: goodPassword}
	register := func(by users.Actor, edit func(*users.Registration)) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) {
			r := bobReg
			if edit != nil {
				edit(&r)
			}
			return users.Register(s, by, r)
		}
	}
	run(t, []scenario{
		{name: "tenant_admin_registers_analyst", when: register(alice, nil), want: events(bobRegistered)},
		{name: "platform_admin_registers_in_any_tenant", when: register(root, nil),
			want: events(users.Registered{ID: bobID, Tenant: acme, Username: "bob", Role: users.RoleAnalyst, By: rootID})},
		{name: "system_registers_first_platform_admin", when: register(users.System, func(r *users.Registration) {
			*r = users.Registration{ID: rootID, Tenant: domain.PlatformTenant, Username: "root", Role: users.RolePlatformAdmin, Password: goodPassword}
		}), want: events(rootRegistered)},
		{name: "records_trimmed_email", when: register(alice, func(r *users.Registration) { r.Email = " bob@acme.example " }),
			want: events(users.Registered{ID: bobID, Tenant: acme, Username: "bob", Email: "bob@acme.example", Role: users.RoleAnalyst, By: aliceID})},
		{name: "existing_user_is_conflict", given: events(bobRegistered), when: register(alice, nil), wantErr: users.ErrExists},
		{name: "deleted_user_is_conflict", given: events(bobRegistered, users.Deleted{By: aliceID}), when: register(alice, nil), wantErr: users.ErrExists},
		{name: "analyst_is_forbidden", when: register(bob, nil), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", when: register(globexAdmin, nil), wantErr: domain.ErrNotFound},
		{name: "forged_platform_role_is_not_found", when: register(forged, nil), wantErr: domain.ErrNotFound},
		{name: "tenant_admin_cannot_grant_platform_admin", when: register(alice, func(r *users.Registration) { r.Role = users.RolePlatformAdmin }),
			wantErr: users.ErrRoleNotAllowed},
		{name: "platform_admin_cannot_grant_platform_admin_within_tenant", when: register(root, func(r *users.Registration) { r.Role = users.RolePlatformAdmin }),
			wantErr: users.ErrRoleNotAllowed},
		{name: "platform_tenant_holds_only_platform_admins", when: register(root, func(r *users.Registration) { r.Tenant = domain.PlatformTenant }),
			wantErr: users.ErrRoleNotAllowed},
		{name: "tenant_admin_cannot_register_in_platform_tenant", when: register(alice, func(r *users.Registration) {
			r.Tenant, r.Role = domain.PlatformTenant, users.RolePlatformAdmin
		}), wantErr: domain.ErrNotFound},
		{name: "unknown_role_is_invalid", when: register(alice, func(r *users.Registration) { r.Role = "user" }), wantErr: users.ErrRoleInvalid},
		{name: "empty_role_is_invalid", when: register(alice, func(r *users.Registration) { r.Role = "" }), wantErr: users.ErrRoleInvalid},
		{name: "empty_id_is_invalid", when: register(alice, func(r *users.Registration) { r.ID = "" }), wantErr: users.ErrIDRequired},
		{name: "empty_tenant_is_invalid", when: register(root, func(r *users.Registration) { r.Tenant = "" }), wantErr: users.ErrTenantRequired},
		{name: "short_username_is_invalid", when: register(alice, func(r *users.Registration) { r.Username = "bo" }), wantErr: users.ErrUsernameShort},
		{name: "long_username_is_invalid", when: register(alice, func(r *users.Registration) { r.Username = strings.Repeat("b", 65) }), wantErr: users.ErrUsernameLong},
		{name: "username_with_space_is_invalid", when: register(alice, func(r *users.Registration) { r.Username = "bob smith" }), wantErr: users.ErrUsernameInvalid},
		{name: "username_with_non_ascii_is_invalid", when: register(alice, func(r *users.Registration) { r.Username = "böb" }), wantErr: users.ErrUsernameInvalid},
		{name: "bad_email_is_invalid", when: register(alice, func(r *users.Registration) { r.Email = "not an address" }), wantErr: users.ErrEmailInvalid},
		{name: "weak_password_is_unprocessable", when: register(alice, func(r *users.Registration) { r.Password = "hunter2" }), wantErr: users.ErrPasswordTooShort},
		{name: "missing_password_is_unprocessable", when: register(alice, func(r *users.Registration) { r.Password = "" }), wantErr: users.ErrPasswordTooShort},
	})
}

func TestRegisteredCarriesNoSecret(t *testing.T) {
	got, err := users.Register(users.State{}, alice, users.Registration{ID: bobID, Tenant: acme, Username: "bob", Role: users.RoleViewer, Password: goodPassword})
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(got[0])
	for i := range typ.NumField() {
		if name := strings.ToLower(typ.Field(i).Name); strings.Contains(name, "pass") || strings.Contains(name, "hash") || strings.Contains(name, "secret") {
			t.Errorf("Registered has a field %s", typ.Field(i).Name)
		}
	}
	wire, err := json.Marshal(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(wire), goodPassword) || strings.Contains(fmt.Sprintf("%+v", got[0]), goodPassword) {
		t.Errorf("Registered mentions the password: %s", wire)
	}
}

func TestCheckUsername(t *testing.T) {
	for _, tc := range []struct {
		name     string
		username string
		want     error
	}{
		{"three_characters", "bob", nil},
		{"sixty_four_characters", strings.Repeat("a", 64), nil},
		{"all_allowed_punctuation", "j.doe_1@acme-corp", nil},
		{"upper_case", "BobSmith", nil},
		{"empty", "", users.ErrUsernameShort},
		{"two_characters", "ab", users.ErrUsernameShort},
		{"sixty_five_characters", strings.Repeat("a", 65), users.ErrUsernameLong},
		{"leading_space", " bob", users.ErrUsernameInvalid},
		{"slash", "bob/../x", users.ErrUsernameInvalid},
		{"plus", "bob+x", users.ErrUsernameInvalid},
		{"nul", "bob\x00", users.ErrUsernameInvalid},
		{"homoglyph", "аdmin", users.ErrUsernameInvalid}, // Cyrillic а
		{"invalid_utf8", "bo\xff", users.ErrUsernameInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := users.CheckUsername(tc.username); !errors.Is(err, tc.want) {
				t.Fatalf("CheckUsername(%q) = %v, want %v", tc.username, err, tc.want)
			}
		})
	}
	if users.UsernameKey("Alice.Smith") != users.UsernameKey("alice.smith") {
		t.Error("UsernameKey is case-sensitive")
	}
}

func TestCheckEmail(t *testing.T) {
	local := strings.Repeat("a", 64)
	long := local + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) // 256 bytes
	for _, tc := range []struct {
		name, email, want string
		err               error
	}{
		{name: "empty_is_allowed", email: "", want: ""},
		{name: "blank_is_empty", email: "  ", want: ""},
		{name: "plain", email: "bob@acme.example", want: "bob@acme.example"},
		{name: "trimmed", email: "\tbob@acme.example ", want: "bob@acme.example"},
		{name: "plus_tag", email: "bob+hunt@acme.example", want: "bob+hunt@acme.example"},
		{name: "display_name", email: "Bob <bob@acme.example>", err: users.ErrEmailInvalid},
		{name: "comment", email: "bob@acme.example (Bob)", err: users.ErrEmailInvalid},
		{name: "quoted_local_part", email: `"bob smith"@acme.example`, err: users.ErrEmailInvalid},
		{name: "two_addresses", email: "a@b.example,c@d.example", err: users.ErrEmailInvalid},
		{name: "no_at", email: "bob.acme.example", err: users.ErrEmailInvalid},
		{name: "header_injection", email: "bob@acme.example\r\nBcc: x@y.example", err: users.ErrEmailInvalid},
		{name: "too_long", email: long, err: users.ErrEmailTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := users.CheckEmail(tc.email)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("CheckEmail(%q) error = %v, want %v", tc.email, err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("CheckEmail(%q) = %q, want %q", tc.email, got, tc.want)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		name string
		pw   string
		want error
	}{
		{"twelve_ascii", "abcdefghijkl", nil},
		{"twelve_code_points_of_multibyte", strings.Repeat("密", 12), nil},
		{"emoji_count_as_code_points", strings.Repeat("🔑", 12), nil},
		{"spaces_inside_are_fine", "  my long passphrase  ", nil},
		{"hundred_twenty_eight", strings.Repeat("x", 128), nil},
		{"hundred_twenty_eight_multibyte", strings.Repeat("é", 128), nil},
		{"empty", "", users.ErrPasswordTooShort},
		{"eleven", "abcdefghijk", users.ErrPasswordTooShort},
		{"eleven_multibyte_is_short_despite_bytes", strings.Repeat("密", 11), users.ErrPasswordTooShort},
		{"hundred_twenty_nine", strings.Repeat("x", 129), users.ErrPasswordTooLong},
		{"all_spaces", strings.Repeat(" ", 20), users.ErrPasswordBlank},
		{"all_unicode_white_space", strings.Repeat("\u3000\t\n\u00a0", 4), users.ErrPasswordBlank},
		{"invalid_utf8", "abcdefghijkl\xff", users.ErrPasswordInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := users.CheckPassword(tc.pw); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("CheckPassword(%q) = %v, want %v", tc.pw, err, tc.want)
			}
		})
	}
	if got := domain.KindOf(users.CheckPassword("short")); got != domain.KindUnprocessable {
		t.Errorf("policy error kind = %v, want unprocessable", got)
	}
}

func failures(n int, at time.Time) []domain.Event {
	es := events(bobRegistered)
	for range n {
		es = append(es, users.LoginFailed{Reason: users.ReasonBadPassword, At: at})
	}
	return es
}

func TestRecordLogin(t *testing.T) {
	login := func(method string) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.RecordLogin(s, method, now) }
	}
	run(t, []scenario{
		{name: "records_logged_in", given: events(bobRegistered), when: login(users.MethodPassword),
			want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "with_totp", given: events(bobRegistered), when: login(users.MethodPasswordTOTP),
			want: events(users.LoggedIn{Method: "password+totp", At: now})},
		{name: "unknown_user_is_not_found", when: login(users.MethodPassword), wantErr: domain.ErrNotFound},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: login(users.MethodPassword), wantErr: domain.ErrNotFound},
		{name: "disabled_user_is_refused", given: events(bobRegistered, users.Disabled{By: aliceID}), when: login(users.MethodPassword), wantErr: users.ErrDisabled},
		{name: "enabled_again_may_log_in", given: events(bobRegistered, users.Disabled{By: aliceID}, users.Enabled{By: aliceID}),
			when: login(users.MethodPassword), want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "four_failures_are_free", given: failures(4, now.Add(-time.Millisecond)), when: login(users.MethodPassword),
			want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "fifth_failure_throttles", given: failures(5, now.Add(-500*time.Millisecond)), when: login(users.MethodPassword),
			wantErr: users.ErrLoginThrottled},
		{name: "throttle_expires", given: failures(5, now.Add(-time.Second)), when: login(users.MethodPassword),
			want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "throttle_doubles", given: failures(7, now.Add(-3*time.Second)), when: login(users.MethodPassword),
			wantErr: users.ErrLoginThrottled},
		{name: "throttled_attempts_do_not_extend", given: append(failures(5, now.Add(-2*time.Second)),
			users.LoginFailed{Reason: users.ReasonThrottled, At: now.Add(-time.Millisecond)}),
			when: login(users.MethodPassword), want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "success_resets_failures", given: append(failures(5, now.Add(-time.Hour)), users.LoggedIn{Method: "password", At: now.Add(-time.Hour)},
			users.LoginFailed{Reason: users.ReasonBadPassword, At: now}),
			when: login(users.MethodPassword), want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "password_change_resets_failures", given: append(failures(20, now), users.PasswordChanged{By: aliceID, At: now}),
			when: login(users.MethodPassword), want: events(users.LoggedIn{Method: "password", At: now})},
		{name: "empty_method_is_invalid", given: events(bobRegistered), when: login(""), wantErr: users.ErrMethodInvalid},
		{name: "odd_method_is_invalid", given: events(bobRegistered), when: login("Password\n"), wantErr: users.ErrMethodInvalid},
	})
}

func TestLoginDelay(t *testing.T) {
	for failed, want := range map[int]time.Duration{
		0: 0, 4: 0, 5: time.Second, 6: 2 * time.Second, 10: 32 * time.Second, 14: 512 * time.Second,
		15: users.MaxLoginDelay, 40: users.MaxLoginDelay, 1 << 30: users.MaxLoginDelay,
	} {
		if got := users.LoginDelay(users.State{FailedLogins: failed}); got != want {
			t.Errorf("LoginDelay after %d failures = %v, want %v", failed, got, want)
		}
	}
}

func TestCheckLogin(t *testing.T) {
	check := func(s users.State) ([]domain.Event, error) { return nil, users.CheckLogin(s, now) }
	run(t, []scenario{
		{name: "fresh_user_may_try", given: events(bobRegistered), when: check},
		{name: "disabled_user_is_not_revealed_before_password", given: events(bobRegistered, users.Disabled{By: aliceID}), when: check},
		{name: "unknown_user_is_not_found", when: check, wantErr: domain.ErrNotFound},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: check, wantErr: domain.ErrNotFound},
		{name: "throttled", given: failures(6, now), when: check, wantErr: users.ErrLoginThrottled},
	})
}

func TestRecordLoginFailure(t *testing.T) {
	fail := func(reason string) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.RecordLoginFailure(s, reason, now) }
	}
	run(t, []scenario{
		{name: "records_bad_password", given: events(bobRegistered), when: fail(users.ReasonBadPassword),
			want: events(users.LoginFailed{Reason: "bad_password", At: now})},
		{name: "records_disabled", given: events(bobRegistered, users.Disabled{By: aliceID}), when: fail(users.ReasonDisabled),
			want: events(users.LoginFailed{Reason: "disabled", At: now})},
		{name: "records_while_throttled", given: failures(9, now), when: fail(users.ReasonThrottled),
			want: events(users.LoginFailed{Reason: "throttled", At: now})},
		{name: "unknown_user_is_not_found", when: fail(users.ReasonBadPassword), wantErr: domain.ErrNotFound},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: fail(users.ReasonBadPassword), wantErr: domain.ErrNotFound},
		{name: "free_text_reason_is_invalid", given: events(bobRegistered), when: fail("user typed hunter2"), wantErr: users.ErrReasonInvalid},
	})
}

func TestChangeRole(t *testing.T) {
	changeRole := func(by users.Actor, to users.Role) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.ChangeRole(s, by, to) }
	}
	run(t, []scenario{
		{name: "admin_promotes_analyst", given: events(bobRegistered), when: changeRole(alice, users.RoleAdmin),
			want: events(users.RoleChanged{From: users.RoleAnalyst, To: users.RoleAdmin, By: aliceID})},
		{name: "platform_admin_demotes_tenant_admin", given: events(aliceRegistered), when: changeRole(root, users.RoleViewer),
			want: events(users.RoleChanged{From: users.RoleAdmin, To: users.RoleViewer, By: rootID})},
		{name: "same_role_records_nothing", given: events(bobRegistered), when: changeRole(alice, users.RoleAnalyst)},
		{name: "repeat_records_nothing", given: events(bobRegistered, users.RoleChanged{From: users.RoleAnalyst, To: users.RoleViewer, By: aliceID}),
			when: changeRole(alice, users.RoleViewer)},
		{name: "cannot_change_own_role", given: events(aliceRegistered), when: changeRole(alice, users.RoleViewer), wantErr: users.ErrOwnRole},
		{name: "cannot_change_own_role_even_to_the_same", given: events(aliceRegistered), when: changeRole(alice, users.RoleAdmin), wantErr: users.ErrOwnRole},
		{name: "platform_admin_cannot_change_own_role", given: events(rootRegistered), when: changeRole(root, users.RoleViewer), wantErr: users.ErrOwnRole},
		{name: "cannot_grant_platform_admin_within_tenant", given: events(bobRegistered), when: changeRole(alice, users.RolePlatformAdmin),
			wantErr: users.ErrRoleNotAllowed},
		{name: "platform_admin_cannot_grant_platform_admin_within_tenant", given: events(bobRegistered), when: changeRole(root, users.RolePlatformAdmin),
			wantErr: users.ErrRoleNotAllowed},
		{name: "platform_admin_cannot_become_tenant_role", given: events(rootRegistered),
			when:    changeRole(users.Actor{User: "other-root", Tenant: domain.PlatformTenant, Role: users.RolePlatformAdmin}, users.RoleAdmin),
			wantErr: users.ErrRoleNotAllowed},
		{name: "unknown_role_is_invalid", given: events(bobRegistered), when: changeRole(alice, "superuser"), wantErr: users.ErrRoleInvalid},
		{name: "analyst_is_forbidden", given: events(aliceRegistered), when: changeRole(bob, users.RoleViewer), wantErr: users.ErrNotAllowed},
		{name: "analyst_cannot_promote_self", given: events(bobRegistered), when: changeRole(bob, users.RoleAdmin), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered), when: changeRole(globexAdmin, users.RoleViewer), wantErr: domain.ErrNotFound},
		{name: "forged_platform_role_is_not_found", given: events(bobRegistered), when: changeRole(forged, users.RoleViewer), wantErr: domain.ErrNotFound},
		{name: "tenant_admin_cannot_touch_platform_admin", given: events(rootRegistered), when: changeRole(alice, users.RoleViewer), wantErr: domain.ErrNotFound},
		{name: "unknown_user_is_not_found", when: changeRole(alice, users.RoleViewer), wantErr: domain.ErrNotFound},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: changeRole(alice, users.RoleViewer), wantErr: domain.ErrNotFound},
		{name: "disabled_user_may_change_role", given: events(bobRegistered, users.Disabled{By: aliceID}), when: changeRole(alice, users.RoleViewer),
			want: events(users.RoleChanged{From: users.RoleAnalyst, To: users.RoleViewer, By: aliceID})},
	})
}

func TestChangeUsername(t *testing.T) {
	rename := func(by users.Actor, username string) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.ChangeUsername(s, by, username) }
	}
	run(t, []scenario{
		{name: "user_renames_self", given: events(bobRegistered), when: rename(bob, "bob.smith"),
			want: events(users.UsernameChanged{From: "bob", To: "bob.smith", By: bobID})},
		{name: "admin_renames_user", given: events(bobRegistered), when: rename(alice, "robert"),
			want: events(users.UsernameChanged{From: "bob", To: "robert", By: aliceID})},
		{name: "case_change_is_a_change", given: events(bobRegistered), when: rename(bob, "Bob"),
			want: events(users.UsernameChanged{From: "bob", To: "Bob", By: bobID})},
		{name: "same_username_records_nothing", given: events(bobRegistered), when: rename(bob, "bob")},
		{name: "invalid_username", given: events(bobRegistered), when: rename(bob, "bob smith"), wantErr: users.ErrUsernameInvalid},
		{name: "short_username", given: events(bobRegistered), when: rename(bob, "b"), wantErr: users.ErrUsernameShort},
		{name: "analyst_cannot_rename_others", given: events(aliceRegistered), when: rename(bob, "mallory"), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered), when: rename(globexAdmin, "x-bob"), wantErr: domain.ErrNotFound},
		{name: "disabled_user_cannot_rename_self", given: events(bobRegistered, users.Disabled{By: aliceID}), when: rename(bob, "bobby"), wantErr: users.ErrDisabled},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: rename(alice, "bobby"), wantErr: domain.ErrNotFound},
		{name: "unknown_user_is_not_found", when: rename(alice, "bobby"), wantErr: domain.ErrNotFound},
	})
}

func TestChangeEmail(t *testing.T) {
	changeEmail := func(by users.Actor, email string) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.ChangeEmail(s, by, email) }
	}
	run(t, []scenario{
		{name: "user_sets_email", given: events(bobRegistered), when: changeEmail(bob, "bob@acme.example"),
			want: events(users.EmailChanged{To: "bob@acme.example", By: bobID})},
		{name: "admin_changes_email", given: events(aliceRegistered), when: changeEmail(root, "a@acme.example"),
			want: events(users.EmailChanged{From: "alice@acme.example", To: "a@acme.example", By: rootID})},
		{name: "empty_removes_email", given: events(aliceRegistered), when: changeEmail(alice, ""),
			want: events(users.EmailChanged{From: "alice@acme.example", By: aliceID})},
		{name: "same_email_records_nothing", given: events(aliceRegistered), when: changeEmail(alice, " alice@acme.example ")},
		{name: "removing_absent_email_records_nothing", given: events(bobRegistered), when: changeEmail(bob, "")},
		{name: "invalid_email", given: events(bobRegistered), when: changeEmail(bob, "Bob <bob@acme.example>"), wantErr: users.ErrEmailInvalid},
		{name: "analyst_cannot_change_others", given: events(aliceRegistered), when: changeEmail(bob, "mallory@evil.example"), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered), when: changeEmail(globexAdmin, "x@globex.example"), wantErr: domain.ErrNotFound},
		{name: "disabled_user_cannot_change_own", given: events(bobRegistered, users.Disabled{By: aliceID}), when: changeEmail(bob, "b@acme.example"), wantErr: users.ErrDisabled},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: changeEmail(alice, "b@acme.example"), wantErr: domain.ErrNotFound},
	})
}

func TestChangePassword(t *testing.T) {
	changePassword := func(by users.Actor, pw string) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.ChangePassword(s, by, pw, now) }
	}
	run(t, []scenario{
		{name: "user_changes_own", given: events(bobRegistered), when: changePassword(bob, goodPassword),
			want: events(users.PasswordChanged{By: bobID, At: now})},
		{name: "admin_resets", given: events(bobRegistered), when: changePassword(alice, goodPassword),
			want: events(users.PasswordChanged{By: aliceID, At: now})},
		{name: "admin_resets_disabled_user", given: events(bobRegistered, users.Disabled{By: aliceID}), when: changePassword(alice, goodPassword),
			want: events(users.PasswordChanged{By: aliceID, At: now})},
		{name: "weak_password_is_unprocessable", given: events(bobRegistered), when: changePassword(bob, "password"), wantErr: users.ErrPasswordTooShort},
		{name: "blank_password_is_unprocessable", given: events(bobRegistered), when: changePassword(bob, strings.Repeat(" ", 16)), wantErr: users.ErrPasswordBlank},
		{name: "analyst_cannot_change_others", given: events(aliceRegistered), when: changePassword(bob, goodPassword), wantErr: users.ErrNotAllowed},
		{name: "viewer_cannot_change_others", given: events(bobRegistered),
			when: changePassword(users.Actor{User: "viewer", Tenant: acme, Role: users.RoleViewer}, goodPassword), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered), when: changePassword(globexAdmin, goodPassword), wantErr: domain.ErrNotFound},
		{name: "disabled_user_cannot_change_own", given: events(bobRegistered, users.Disabled{By: aliceID}), when: changePassword(bob, goodPassword), wantErr: users.ErrDisabled},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: changePassword(alice, goodPassword), wantErr: domain.ErrNotFound},
	})
}

func TestDisable(t *testing.T) {
	disable := func(by users.Actor) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.Disable(s, by) }
	}
	run(t, []scenario{
		{name: "admin_disables_user", given: events(bobRegistered), when: disable(alice), want: events(users.Disabled{By: aliceID})},
		{name: "platform_admin_disables_tenant_admin", given: events(aliceRegistered), when: disable(root), want: events(users.Disabled{By: rootID})},
		{name: "repeat_records_nothing", given: events(bobRegistered, users.Disabled{By: aliceID}), when: disable(alice)},
		{name: "cannot_disable_self", given: events(aliceRegistered), when: disable(alice), wantErr: users.ErrDisableSelf},
		{name: "analyst_is_forbidden", given: events(aliceRegistered), when: disable(bob), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered), when: disable(globexAdmin), wantErr: domain.ErrNotFound},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: disable(alice), wantErr: domain.ErrNotFound},
		{name: "unknown_user_is_not_found", when: disable(alice), wantErr: domain.ErrNotFound},
	})
}

func TestEnable(t *testing.T) {
	enable := func(by users.Actor) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.Enable(s, by) }
	}
	run(t, []scenario{
		{name: "admin_enables_user", given: events(bobRegistered, users.Disabled{By: aliceID}), when: enable(alice), want: events(users.Enabled{By: aliceID})},
		{name: "enabled_user_records_nothing", given: events(bobRegistered), when: enable(alice)},
		{name: "cannot_enable_self", given: events(aliceRegistered, users.Disabled{By: rootID}), when: enable(alice), wantErr: users.ErrEnableSelf},
		{name: "analyst_is_forbidden", given: events(aliceRegistered, users.Disabled{By: rootID}), when: enable(bob), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered, users.Disabled{By: aliceID}), when: enable(globexAdmin), wantErr: domain.ErrNotFound},
		{name: "deleted_user_is_not_found", given: events(bobRegistered, users.Disabled{By: aliceID}, users.Deleted{By: aliceID}), when: enable(alice), wantErr: domain.ErrNotFound},
	})
}

func TestDelete(t *testing.T) {
	del := func(by users.Actor) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.Delete(s, by) }
	}
	run(t, []scenario{
		{name: "admin_deletes_user", given: events(bobRegistered), when: del(alice), want: events(users.Deleted{By: aliceID})},
		{name: "disabled_user_may_be_deleted", given: events(bobRegistered, users.Disabled{By: aliceID}), when: del(alice), want: events(users.Deleted{By: aliceID})},
		{name: "repeat_records_nothing", given: events(bobRegistered, users.Deleted{By: aliceID}), when: del(alice)},
		{name: "cannot_delete_self", given: events(aliceRegistered), when: del(alice), wantErr: users.ErrDeleteSelf},
		{name: "analyst_is_forbidden", given: events(aliceRegistered), when: del(bob), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_is_not_found", given: events(bobRegistered), when: del(globexAdmin), wantErr: domain.ErrNotFound},
		{name: "other_tenant_admin_cannot_probe_deleted_user", given: events(bobRegistered, users.Deleted{By: aliceID}), when: del(globexAdmin), wantErr: domain.ErrNotFound},
		{name: "unknown_user_is_not_found", when: del(alice), wantErr: domain.ErrNotFound},
	})
}

func TestEvolve(t *testing.T) {
	t1, t2, t3 := now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)
	got := domain.Fold(users.Evolve, events(
		bobRegistered,
		users.LoggedIn{Method: "password", At: t1},
		users.RoleChanged{From: users.RoleAnalyst, To: users.RoleViewer, By: aliceID},
		users.UsernameChanged{From: "bob", To: "robert", By: bobID},
		users.EmailChanged{To: "robert@acme.example", By: bobID},
		users.PasswordChanged{By: bobID, At: t2},
		users.LoginFailed{Reason: users.ReasonBadPassword, At: t3},
		users.LoginFailed{Reason: users.ReasonThrottled, At: now},
		users.Disabled{By: aliceID},
		foreign{},
	))
	want := users.State{
		ID: bobID, Tenant: acme, Exists: true, Disabled: true, Username: "robert", Email: "robert@acme.example",
		Role: users.RoleViewer, PasswordChangedAt: t2, LastLoginAt: t1, FailedLogins: 1, LastFailureAt: t3,
	}
	if got != want {
		t.Fatalf("state =\n%+v, want\n%+v", got, want)
	}
	got = users.Evolve(users.Evolve(got, users.Enabled{By: aliceID}), users.Deleted{By: aliceID})
	if got.Disabled || !got.Deleted {
		t.Fatalf("after enable and delete: %+v", got)
	}
}

type foreign struct{}

func (foreign) EventName() string { return "other.happened" }

func TestRole(t *testing.T) {
	for _, r := range []users.Role{users.RolePlatformAdmin, users.RoleAdmin, users.RoleAnalyst, users.RoleViewer} {
		if !r.Valid() {
			t.Errorf("%q is not valid", r)
		}
	}
	for _, r := range []users.Role{"", "user", "Admin", "root"} {
		if r.Valid() {
			t.Errorf("%q is valid", r)
		}
	}
	for _, tc := range []struct {
		r, min users.Role
		want   bool
	}{
		{users.RolePlatformAdmin, users.RoleAdmin, true},
		{users.RoleAdmin, users.RoleAdmin, true},
		{users.RoleAnalyst, users.RoleAdmin, false},
		{users.RoleViewer, users.RoleAnalyst, false},
		{users.RoleAnalyst, users.RoleViewer, true},
		{"bogus", users.RoleViewer, false},
		{users.RoleAdmin, "bogus", false},
	} {
		if got := tc.r.AtLeast(tc.min); got != tc.want {
			t.Errorf("%q.AtLeast(%q) = %v, want %v", tc.r, tc.min, got, tc.want)
		}
	}
}

func TestEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for e, want := range map[domain.Event]string{
		users.Registered{}:      "user.registered",
		users.LoggedIn{}:        "user.logged_in",
		users.LoginFailed{}:     "user.login_failed",
		users.RoleChanged{}:     "user.role_changed",
		users.UsernameChanged{}: "user.username_changed",
		users.EmailChanged{}:    "user.email_changed",
		users.PasswordChanged{}: "user.password_changed",
		users.Disabled{}:        "user.disabled",
		users.Enabled{}:         "user.enabled",
		users.Deleted{}:         "user.deleted",
	} {
		if got := e.EventName(); got != want {
			t.Errorf("%T.EventName() = %q, want %q", e, got, want)
		}
	}
}
