package users_test

import (
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
)

const sid = "0190c7a4-6a38-7f1e-9a49-0000005e5510"

func TestStartSession(t *testing.T) {
	expires := now.Add(30 * 24 * time.Hour)
	start := func(id string, expires time.Time) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.StartSession(s, id, now, expires) }
	}
	run(t, []scenario{
		{name: "opens_a_session", given: events(bobRegistered), when: start(sid, expires),
			want: events(users.SessionStarted{Session: sid, At: now, ExpiresAt: expires})},
		{name: "unknown_user_not_found", when: start(sid, expires), wantErr: domain.ErrNotFound},
		{name: "deleted_user_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}),
			when: start(sid, expires), wantErr: domain.ErrNotFound},
		{name: "disabled_user_refused", given: events(bobRegistered, users.Disabled{By: aliceID}),
			when: start(sid, expires), wantErr: users.ErrDisabled},
		{name: "empty_id_invalid", given: events(bobRegistered), when: start("", expires), wantErr: users.ErrSessionIDInvalid},
		{name: "expiry_in_the_past_invalid", given: events(bobRegistered), when: start(sid, now), wantErr: users.ErrSessionExpiry},
	})
}

func TestLogout(t *testing.T) {
	logout := func(active bool) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.Logout(s, sid, active, now) }
	}
	run(t, []scenario{
		{name: "ends_the_session", given: events(bobRegistered), when: logout(true),
			want: events(users.LoggedOut{Session: sid, At: now})},
		{name: "ended_session_records_nothing", given: events(bobRegistered), when: logout(false)},
		{name: "unknown_user_not_found", when: logout(true), wantErr: domain.ErrNotFound},
	})
}

func TestRevokeSessions(t *testing.T) {
	revoke := func(by users.Actor, ids ...string) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) { return users.RevokeSessions(s, by, ids, now) }
	}
	other := "0190c7a4-6a38-7f1e-9a49-0000005e5511"
	run(t, []scenario{
		{name: "user_ends_own_session", given: events(bobRegistered), when: revoke(bob, sid),
			want: events(users.SessionRevoked{Session: sid, By: bobID, Reason: users.RevokedByUser, At: now})},
		{name: "admin_ends_all", given: events(bobRegistered), when: revoke(alice, sid, other),
			want: events(
				users.SessionRevoked{Session: sid, By: aliceID, Reason: users.RevokedByAdmin, At: now},
				users.SessionRevoked{Session: other, By: aliceID, Reason: users.RevokedByAdmin, At: now})},
		{name: "platform_admin_ends_all", given: events(bobRegistered), when: revoke(root, sid),
			want: events(users.SessionRevoked{Session: sid, By: rootID, Reason: users.RevokedByAdmin, At: now})},
		{name: "nothing_open_records_nothing", given: events(bobRegistered), when: revoke(alice)},
		{name: "analyst_cannot_end_others", given: events(aliceRegistered), when: revoke(bob, sid), wantErr: users.ErrNotAllowed},
		{name: "other_tenant_admin_not_found", given: events(bobRegistered), when: revoke(globexAdmin, sid), wantErr: domain.ErrNotFound},
		{name: "forged_platform_admin_not_found", given: events(bobRegistered), when: revoke(forged, sid), wantErr: domain.ErrNotFound},
		{name: "deleted_user_not_found", given: events(bobRegistered, users.Deleted{By: aliceID}), when: revoke(alice, sid), wantErr: domain.ErrNotFound},
		{name: "bad_id_invalid", given: events(bobRegistered), when: revoke(alice, ""), wantErr: users.ErrSessionIDInvalid},
	})
}

func TestRecordRefreshReuse(t *testing.T) {
	usedAt := now.Add(-time.Hour)
	reuse := func(active bool) func(users.State) ([]domain.Event, error) {
		return func(s users.State) ([]domain.Event, error) {
			return users.RecordRefreshReuse(s, sid, active, "192.0.2.7", "curl/8", usedAt, now)
		}
	}
	reused := users.RefreshTokenReused{Session: sid, SourceIP: "192.0.2.7", UserAgent: "curl/8", UsedAt: usedAt, At: now}
	run(t, []scenario{
		{name: "revokes_an_active_session", given: events(bobRegistered), when: reuse(true),
			want: events(reused, users.SessionRevoked{Session: sid, Reason: users.RevokedTokenReused, At: now})},
		{name: "recorded_again_for_an_ended_session", given: events(bobRegistered), when: reuse(false), want: events(reused)},
		{name: "recorded_for_a_deleted_user", given: events(bobRegistered, users.Deleted{By: aliceID}), when: reuse(false), want: events(reused)},
		{name: "unknown_user_not_found", when: reuse(true), wantErr: domain.ErrNotFound},
	})
}

func TestSessionEndReason(t *testing.T) {
	for e, want := range map[domain.Event]string{
		users.PasswordChanged{}: users.ReasonPasswordChanged,
		users.RoleChanged{}:     users.ReasonRoleChanged,
		users.Disabled{}:        users.ReasonUserDisabled,
		users.Deleted{}:         users.ReasonUserDeleted,
		users.Enabled{}:         "",
		users.EmailChanged{}:    "",
		users.LoggedIn{}:        "",
	} {
		if got := users.SessionEndReason(e); got != want {
			t.Errorf("SessionEndReason(%T) = %q, want %q", e, got, want)
		}
	}
}

func TestSessionEventsLeaveStateAlone(t *testing.T) {
	s := domain.Fold(users.Evolve, events(bobRegistered))
	after := domain.Fold(users.Evolve, events(bobRegistered,
		users.SessionStarted{Session: sid, At: now, ExpiresAt: now.Add(time.Hour)},
		users.LoggedOut{Session: sid, At: now},
		users.SessionRevoked{Session: sid, Reason: users.RevokedByAdmin, At: now},
		users.RefreshTokenReused{Session: sid, At: now}))
	if s != after {
		t.Fatalf("session events changed the account: %+v → %+v", s, after)
	}
}

func TestSessionEventNames(t *testing.T) {
	// WARNING: these are stored. This test exists so that renaming one fails loudly.
	for e, want := range map[domain.Event]string{
		users.SessionStarted{}:     "user.session_started",
		users.LoggedOut{}:          "user.logged_out",
		users.SessionRevoked{}:     "user.session_revoked",
		users.RefreshTokenReused{}: "user.refresh_token_reused",
	} {
		if got := e.EventName(); got != want {
			t.Errorf("%T.EventName() = %q, want %q", e, got, want)
		}
	}
}
