package users

import (
	"strings"
	"time"

	"velocicompanion/domain"
)

// Wire names of the account-recovery events.
//
// WARNING: stored with every event; never rename or reuse one.
const (
	EventPasswordResetRequested     = "user.password_reset_requested"
	EventEmailVerificationRequested = "user.email_verification_requested"
	EventEmailVerified              = "user.email_verified"
)

// PasswordResetRequested records that a reset link was mailed to the user's
// address. The token itself is never recorded.
type PasswordResetRequested struct {
	Email string    `json:"email"`
	At    time.Time `json:"at"`
}

// EmailVerificationRequested records that a verification link was mailed to
// the user's address. The token itself is never recorded.
type EmailVerificationRequested struct {
	Email string    `json:"email"`
	At    time.Time `json:"at"`
}

// EmailVerified records that the user proved control of Email.
type EmailVerified struct {
	Email string    `json:"email"`
	At    time.Time `json:"at"`
}

// EventName returns the durable wire name of PasswordResetRequested.
func (PasswordResetRequested) EventName() string { return EventPasswordResetRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of EmailVerificationRequested.
func (EmailVerificationRequested) EventName() string { return EventEmailVerificationRequested } // WARNING: stored; never rename.

// EventName returns the durable wire name of EmailVerified.
func (EmailVerified) EventName() string { return EventEmailVerified } // WARNING: stored; never rename.

// Errors of account recovery.
var (
	ErrNoEmail         = domain.Unprocessable("no_email", "the account has no e-mail address")
	ErrEmailVerified   = domain.Conflict("email_already_verified", "the e-mail address is already verified")
	ErrEmailMismatch   = domain.Invalid("token_invalid", "the link is not valid or has expired")
	ErrRecoveryRefused = domain.Forbidden("recovery_refused", "this account cannot recover its password")
)

// RequestPasswordReset decides whether a reset link may be mailed to s at now.
// Deleted, disabled and address-less accounts get none; the handler answers
// the caller the same either way.
func RequestPasswordReset(s State, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case s.Disabled:
		return nil, ErrRecoveryRefused
	case s.Email == "":
		return nil, ErrNoEmail
	}
	return []domain.Event{PasswordResetRequested{Email: s.Email, At: now}}, nil
}

// RequestEmailVerification decides whether a verification link may be mailed
// to the user's current address.
func RequestEmailVerification(s State, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case s.Disabled:
		return nil, ErrDisabled
	case s.Email == "":
		return nil, ErrNoEmail
	case s.EmailVerified:
		return nil, ErrEmailVerified
	}
	return []domain.Event{EmailVerificationRequested{Email: s.Email, At: now}}, nil
}

// VerifyEmail decides whether a link mailed to email proves s's address: only
// while email is still the account's address, so that a link for an old
// address never verifies a new one. Verifying again records nothing.
func VerifyEmail(s State, email string, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case s.Disabled:
		return nil, ErrDisabled
	case !strings.EqualFold(s.Email, email) || s.Email == "":
		return nil, ErrEmailMismatch
	case s.EmailVerified:
		return nil, nil
	}
	return []domain.Event{EmailVerified{Email: s.Email, At: now}}, nil
}
