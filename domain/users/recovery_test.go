package users

import (
	"errors"
	"testing"
	"time"

	"velocicompanion/domain"
)

func TestRecovery(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	reg := Registered{ID: "u1", Tenant: "t1", Username: "alice", Email: "alice@example.org", Role: RoleAnalyst}
	tests := []struct {
		name    string
		given   []domain.Event
		when    func(State) ([]domain.Event, error)
		want    []domain.Event
		wantErr error
	}{
		{name: "reset_requested", given: []domain.Event{reg},
			when: func(s State) ([]domain.Event, error) { return RequestPasswordReset(s, now) },
			want: []domain.Event{PasswordResetRequested{Email: "alice@example.org", At: now}}},
		{name: "reset_unknown_user_not_found",
			when:    func(s State) ([]domain.Event, error) { return RequestPasswordReset(s, now) },
			wantErr: domain.ErrNotFound},
		{name: "reset_disabled_refused", given: []domain.Event{reg, Disabled{By: "admin"}},
			when:    func(s State) ([]domain.Event, error) { return RequestPasswordReset(s, now) },
			wantErr: ErrRecoveryRefused},
		{name: "reset_without_email_refused", given: []domain.Event{reg, EmailChanged{From: reg.Email, To: ""}},
			when:    func(s State) ([]domain.Event, error) { return RequestPasswordReset(s, now) },
			wantErr: ErrNoEmail},
		{name: "verification_requested", given: []domain.Event{reg},
			when: func(s State) ([]domain.Event, error) { return RequestEmailVerification(s, now) },
			want: []domain.Event{EmailVerificationRequested{Email: "alice@example.org", At: now}}},
		{name: "verification_of_verified_is_conflict", given: []domain.Event{reg, EmailVerified{Email: reg.Email}},
			when:    func(s State) ([]domain.Event, error) { return RequestEmailVerification(s, now) },
			wantErr: ErrEmailVerified},
		{name: "verify_current_address", given: []domain.Event{reg},
			when: func(s State) ([]domain.Event, error) { return VerifyEmail(s, "Alice@Example.org", now) },
			want: []domain.Event{EmailVerified{Email: "alice@example.org", At: now}}},
		{name: "verify_twice_records_nothing", given: []domain.Event{reg, EmailVerified{Email: reg.Email}},
			when: func(s State) ([]domain.Event, error) { return VerifyEmail(s, reg.Email, now) }},
		{name: "old_address_link_refused", given: []domain.Event{reg, EmailChanged{From: reg.Email, To: "new@example.org"}},
			when:    func(s State) ([]domain.Event, error) { return VerifyEmail(s, reg.Email, now) },
			wantErr: ErrEmailMismatch},
		{name: "address_change_clears_verification",
			given: []domain.Event{reg, EmailVerified{Email: reg.Email}, EmailChanged{From: reg.Email, To: "new@example.org"}},
			when:  func(s State) ([]domain.Event, error) { return RequestEmailVerification(s, now) },
			want:  []domain.Event{EmailVerificationRequested{Email: "new@example.org", At: now}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.when(domain.Fold(Evolve, tt.given))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("event %d = %#v, want %#v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
