package users_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

// mfaScenario is a scenario over MFAState: given events, when a decision.
type mfaScenario struct {
	name    string
	given   []domain.Event
	when    func(users.MFAState) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func runMFA(t *testing.T, cases []mfaScenario) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := domain.Fold(users.EvolveMFA, tc.given)
			got, err := tc.when(s)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				if got != nil {
					t.Fatalf("events = %#v alongside an error", got)
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

var (
	bobMFAOn  = users.MFAEnabled{Factor: users.FactorTOTP, At: now.Add(-time.Hour)}
	bobMFAOff = users.MFADisabled{By: bobID, With: users.FactorTOTP, At: now.Add(-time.Minute)}
)

func TestEvolveMFA(t *testing.T) {
	s := domain.Fold(users.EvolveMFA, events(bobRegistered, bobMFAOn))
	if !s.MFAEnabled || !s.MFAEnabledAt.Equal(bobMFAOn.At) || s.Username != "bob" || !s.Exists {
		t.Fatalf("after mfa_enabled: %+v", s)
	}
	// The account's own state evolves as with Evolve.
	s = users.EvolveMFA(s, users.LoggedIn{Method: users.MethodPasswordTOTP, At: now})
	if !s.LastLoginAt.Equal(now) {
		t.Fatalf("logged_in not applied: %+v", s)
	}
	// Failures, used codes and regenerations do not change whether it is on.
	for _, e := range events(users.MFAFailed{Factor: users.FactorTOTP, Reason: users.ReasonBadCode, At: now},
		users.RecoveryCodeUsed{Remaining: 9, At: now}, users.RecoveryCodesRegenerated{Count: 10, With: users.FactorTOTP, At: now}) {
		if s = users.EvolveMFA(s, e); !s.MFAEnabled {
			t.Fatalf("%s turned the factor off", e.EventName())
		}
	}
	if s = users.EvolveMFA(s, bobMFAOff); s.MFAEnabled {
		t.Fatal("mfa_disabled left the factor on")
	}
	if plain := domain.Fold(users.Evolve, events(bobRegistered, bobMFAOn, bobMFAOff)); plain.Username != "bob" {
		t.Fatalf("Evolve does not ignore the second-factor events: %+v", plain)
	}
}

func TestCheckMFASetup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		given []domain.Event
		want  error
	}{
		{"account_without_factor", events(bobRegistered), nil},
		{"after_disabling", events(bobRegistered, bobMFAOn, bobMFAOff), nil},
		{"already_on_conflicts", events(bobRegistered, bobMFAOn), users.ErrMFAEnabled},
		{"disabled_account_refused", events(bobRegistered, users.Disabled{By: aliceID}), users.ErrDisabled},
		{"deleted_account_not_found", events(bobRegistered, users.Deleted{By: aliceID}), domain.ErrNotFound},
		{"unknown_account_not_found", nil, domain.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := users.CheckMFASetup(domain.Fold(users.EvolveMFA, tc.given))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("CheckMFASetup = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEnableMFA(t *testing.T) {
	enable := func(s users.MFAState) ([]domain.Event, error) { return users.EnableMFA(s, now) }
	runMFA(t, []mfaScenario{
		{name: "turns_totp_on", given: events(bobRegistered), when: enable,
			want: events(users.MFAEnabled{Factor: users.FactorTOTP, At: now})},
		{name: "again_after_disabling", given: events(bobRegistered, bobMFAOn, bobMFAOff), when: enable,
			want: events(users.MFAEnabled{Factor: users.FactorTOTP, At: now})},
		{name: "already_on_conflicts", given: events(bobRegistered, bobMFAOn), when: enable, wantErr: users.ErrMFAEnabled},
		{name: "disabled_account_refused", given: events(bobRegistered, users.Disabled{By: aliceID}), when: enable, wantErr: users.ErrDisabled},
		{name: "deleted_account_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: enable, wantErr: domain.ErrNotFound},
		{name: "unknown_account_not_found", when: enable, wantErr: domain.ErrNotFound},
	})
}

func TestDisableMFA(t *testing.T) {
	disable := func(by users.Actor, with string) func(users.MFAState) ([]domain.Event, error) {
		return func(s users.MFAState) ([]domain.Event, error) { return users.DisableMFA(s, by, with, now) }
	}
	runMFA(t, []mfaScenario{
		{name: "user_with_a_code", given: events(bobRegistered, bobMFAOn), when: disable(bob, users.FactorTOTP),
			want: events(users.MFADisabled{By: bobID, With: users.FactorTOTP, At: now})},
		{name: "user_with_a_recovery_code", given: events(bobRegistered, bobMFAOn), when: disable(bob, users.FactorRecoveryCode),
			want: events(users.MFADisabled{By: bobID, With: users.FactorRecoveryCode, At: now})},
		{name: "tenant_admin_resets_it", given: events(bobRegistered, bobMFAOn), when: disable(alice, users.FactorTOTP),
			want: events(users.MFADisabled{By: aliceID, With: users.FactorTOTP, At: now})},
		{name: "not_on_conflicts", given: events(bobRegistered), when: disable(bob, users.FactorTOTP), wantErr: users.ErrMFANotEnabled},
		{name: "off_again_conflicts", given: events(bobRegistered, bobMFAOn, bobMFAOff), when: disable(bob, users.FactorTOTP), wantErr: users.ErrMFANotEnabled},
		{name: "analyst_cannot_for_others", given: events(aliceRegistered, users.MFAEnabled{Factor: users.FactorTOTP, At: now}),
			when: disable(bob, users.FactorTOTP), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_not_found", given: events(bobRegistered, bobMFAOn), when: disable(globexAdmin, users.FactorTOTP), wantErr: domain.ErrNotFound},
		{name: "forged_platform_admin_not_found", given: events(bobRegistered, bobMFAOn), when: disable(forged, users.FactorTOTP), wantErr: domain.ErrNotFound},
		{name: "password_is_no_factor", given: events(bobRegistered, bobMFAOn), when: disable(bob, users.FactorPassword), wantErr: users.ErrFactorInvalid},
		{name: "deleted_account_not_found", given: events(bobRegistered, bobMFAOn, users.Deleted{By: aliceID}), when: disable(bob, users.FactorTOTP), wantErr: domain.ErrNotFound},
	})
}

func TestRegenerateRecoveryCodes(t *testing.T) {
	regenerate := func(count int, with string) func(users.MFAState) ([]domain.Event, error) {
		return func(s users.MFAState) ([]domain.Event, error) {
			return users.RegenerateRecoveryCodes(s, count, with, now)
		}
	}
	runMFA(t, []mfaScenario{
		{name: "replaces_the_codes", given: events(bobRegistered, bobMFAOn), when: regenerate(10, users.FactorTOTP),
			want: events(users.RecoveryCodesRegenerated{Count: 10, With: users.FactorTOTP, At: now})},
		{name: "not_on_conflicts", given: events(bobRegistered), when: regenerate(10, users.FactorTOTP), wantErr: users.ErrMFANotEnabled},
		{name: "no_codes_invalid", given: events(bobRegistered, bobMFAOn), when: regenerate(0, users.FactorTOTP), wantErr: users.ErrCountInvalid},
		{name: "unknown_factor_invalid", given: events(bobRegistered, bobMFAOn), when: regenerate(10, "sms"), wantErr: users.ErrFactorInvalid},
		{name: "disabled_account_refused", given: events(bobRegistered, bobMFAOn, users.Disabled{By: aliceID}), when: regenerate(10, users.FactorTOTP), wantErr: users.ErrDisabled},
		{name: "unknown_account_not_found", when: regenerate(10, users.FactorTOTP), wantErr: domain.ErrNotFound},
	})
}

func TestUseRecoveryCode(t *testing.T) {
	use := func(remaining int) func(users.MFAState) ([]domain.Event, error) {
		return func(s users.MFAState) ([]domain.Event, error) { return users.UseRecoveryCode(s, remaining, now) }
	}
	runMFA(t, []mfaScenario{
		{name: "records_what_is_left", given: events(bobRegistered, bobMFAOn), when: use(9),
			want: events(users.RecoveryCodeUsed{Remaining: 9, At: now})},
		{name: "the_last_one", given: events(bobRegistered, bobMFAOn), when: use(0),
			want: events(users.RecoveryCodeUsed{Remaining: 0, At: now})},
		{name: "not_on_conflicts", given: events(bobRegistered), when: use(9), wantErr: users.ErrMFANotEnabled},
		{name: "unknown_account_not_found", when: use(9), wantErr: domain.ErrNotFound},
	})
}

func TestRecordMFAFailure(t *testing.T) {
	until := now.Add(users.MFALockout)
	fail := func(factor, reason string, lockedUntil time.Time) func(users.MFAState) ([]domain.Event, error) {
		return func(s users.MFAState) ([]domain.Event, error) {
			return users.RecordMFAFailure(s, factor, reason, lockedUntil, now)
		}
	}
	runMFA(t, []mfaScenario{
		{name: "bad_code", given: events(bobRegistered, bobMFAOn), when: fail(users.FactorTOTP, users.ReasonBadCode, time.Time{}),
			want: events(users.MFAFailed{Factor: users.FactorTOTP, Reason: users.ReasonBadCode, At: now})},
		{name: "replay_that_locks", given: events(bobRegistered, bobMFAOn), when: fail(users.FactorTOTP, users.ReasonReplayedCode, until),
			want: events(users.MFAFailed{Factor: users.FactorTOTP, Reason: users.ReasonReplayedCode, LockedUntil: until, At: now})},
		{name: "bad_recovery_code", given: events(bobRegistered, bobMFAOn), when: fail(users.FactorRecoveryCode, users.ReasonBadCode, time.Time{}),
			want: events(users.MFAFailed{Factor: users.FactorRecoveryCode, Reason: users.ReasonBadCode, At: now})},
		{name: "wrong_password_when_disabling", given: events(bobRegistered, bobMFAOn), when: fail(users.FactorPassword, users.ReasonBadPassword, time.Time{}),
			want: events(users.MFAFailed{Factor: users.FactorPassword, Reason: users.ReasonBadPassword, At: now})},
		{name: "locked", given: events(bobRegistered, bobMFAOn), when: fail(users.FactorTOTP, users.ReasonLocked, time.Time{}),
			want: events(users.MFAFailed{Factor: users.FactorTOTP, Reason: users.ReasonLocked, At: now})},
		{name: "unknown_factor_invalid", given: events(bobRegistered), when: fail("sms", users.ReasonBadCode, time.Time{}), wantErr: users.ErrFactorInvalid},
		{name: "bad_reason_invalid", given: events(bobRegistered), when: fail(users.FactorTOTP, "Bad Code", time.Time{}), wantErr: users.ErrReasonInvalid},
		{name: "unknown_account_not_found", when: fail(users.FactorTOTP, users.ReasonBadCode, time.Time{}), wantErr: domain.ErrNotFound},
	})
}

func TestMFAThrottle(t *testing.T) {
	var th users.MFAThrottle
	at := now
	for i := 1; i < users.MaxMFAFailures; i++ {
		th = th.Failed(at)
		if th.Locked(at) || th.Failures != i {
			t.Fatalf("after %d failures: %+v", i, th)
		}
		at = at.Add(time.Second)
	}
	th = th.Failed(at)
	if !th.Locked(at) || !th.LockedUntil.Equal(at.Add(users.MFALockout)) || th.Failures != 0 || th.Lockouts != 1 {
		t.Fatalf("the %dth failure did not lock for %s: %+v", users.MaxMFAFailures, users.MFALockout, th)
	}
	// Time-boxed: the lock ends by itself.
	if th.Locked(th.LockedUntil) || !th.Locked(th.LockedUntil.Add(-time.Nanosecond)) {
		t.Fatalf("lock does not end at %v", th.LockedUntil)
	}
	// The next lockout lasts twice as long.
	at = th.LockedUntil
	for range users.MaxMFAFailures {
		th = th.Failed(at)
	}
	if !th.LockedUntil.Equal(at.Add(2*users.MFALockout)) || th.Lockouts != 2 {
		t.Fatalf("second lockout: %+v", th)
	}
	// Failing on as each lock ends keeps doubling, up to MaxMFALockout: an
	// hour-long lock is no quiet hour.
	for want := 4 * users.MFALockout; ; want = min(2*want, users.MaxMFALockout) {
		at = th.LockedUntil
		for range users.MaxMFAFailures {
			th = th.Failed(at)
		}
		if got := th.LockedUntil.Sub(at); got != want {
			t.Fatalf("lockout %d lasts %s, want %s", th.Lockouts, got, want)
		}
		if th.Lockouts > 6 {
			break
		}
	}
	// A quiet window after the lock starts over.
	at = th.LockedUntil.Add(users.MFAFailureWindow + time.Second)
	th = th.Failed(at)
	if th.Failures != 1 || th.Lockouts != 0 || th.Locked(at) {
		t.Fatalf("after a quiet window: %+v", th)
	}
}

func TestMFALockoutAfter(t *testing.T) {
	for _, tc := range []struct {
		previous int
		want     time.Duration
	}{{-1, users.MFALockout}, {0, 5 * time.Minute}, {1, 10 * time.Minute}, {2, 20 * time.Minute}, {3, 40 * time.Minute},
		{4, time.Hour}, {5, time.Hour}, {40, time.Hour}, {1 << 40, time.Hour}} {
		if got := users.MFALockoutAfter(tc.previous); got != tc.want {
			t.Errorf("MFALockoutAfter(%d) = %s, want %s", tc.previous, got, tc.want)
		}
	}
}

// TestMFAEventsCarryNoSecret checks the wire form of every second-factor
// event: only the fields documented, no code, secret or hash.
func TestMFAEventsCarryNoSecret(t *testing.T) {
	for _, e := range events(
		users.MFAEnabled{Factor: users.FactorTOTP, At: now},
		users.MFADisabled{By: bobID, With: users.FactorRecoveryCode, At: now},
		users.MFAFailed{Factor: users.FactorTOTP, Reason: users.ReasonBadCode, At: now},
		users.MFAFailed{Factor: users.FactorTOTP, Reason: users.ReasonBadCode, LockedUntil: now, At: now},
		users.RecoveryCodeUsed{Remaining: 3, At: now},
		users.RecoveryCodesRegenerated{Count: 10, With: users.FactorTOTP, At: now},
	) {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]any
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		for name := range fields {
			switch name {
			case "factor", "reason", "locked_until", "at", "by", "with", "remaining", "count":
			default:
				t.Errorf("%s has field %q", e.EventName(), name)
			}
		}
		if f, ok := e.(users.MFAFailed); ok && f.LockedUntil.IsZero() && strings.Contains(string(raw), "locked_until") {
			t.Errorf("%s carries a zero locked_until: %s", e.EventName(), raw)
		}
		if !strings.HasPrefix(e.EventName(), "user.mfa_") {
			t.Errorf("event name %q", e.EventName())
		}
	}
}
