package users

import (
	"time"

	"velocicompanion/domain"
)

// Wire names of the second-factor events. A user turns a second factor on
// with user.mfa_enabled and off with user.mfa_disabled; refused codes are
// user.mfa_failed. Neither a TOTP secret nor a code, nor a recovery code or
// its hash, is ever recorded: the handler keeps them, sealed or hashed, in its
// credential table, written in the same transaction as these events.
//
// WARNING: these strings are stored with every event; never rename or reuse one.
const (
	EventMFAEnabled               = "user.mfa_enabled"
	EventMFADisabled              = "user.mfa_disabled"
	EventMFAFailed                = "user.mfa_failed"
	EventRecoveryCodeUsed         = "user.mfa_recovery_code_used"
	EventRecoveryCodesRegenerated = "user.mfa_recovery_codes_regenerated"
)

// Second factors, as recorded in the events and listed to clients.
//
// WARNING: stored in events; never rename one.
const (
	// FactorTOTP is a time-based one-time password (RFC 6238).
	FactorTOTP = "totp"
	// FactorRecoveryCode is one of the single-use recovery codes.
	FactorRecoveryCode = "recovery_code"
	// FactorPassword marks a refused password where a second-factor route
	// asks for the password too (turning the factor off).
	FactorPassword = "password"
)

// MethodPasswordRecoveryCode is the sign-in method recorded by LoggedIn when
// a recovery code stood in for the TOTP code (MethodPasswordTOTP otherwise).
const MethodPasswordRecoveryCode = "password+recovery_code"

// Reasons recorded by MFAFailed.
const (
	// ReasonBadCode is a code that matches nothing: a wrong TOTP code, one
	// outside the accepted window, or an unknown or used recovery code.
	ReasonBadCode = "bad_code"
	// ReasonReplayedCode is a TOTP code of a time step that was used already.
	ReasonReplayedCode = "replayed_code"
	// ReasonLocked is an attempt refused unchecked because too many codes
	// failed; it does not extend the lock.
	ReasonLocked = "locked"
)

// ReasonMFADisabled ends every other session of a user who turned the second
// factor off (in the write side's sessions table; MFADisabled records it).
const ReasonMFADisabled = "mfa_disabled"

// Throttling of second-factor attempts: after MaxMFAFailures failures within
// MFAFailureWindow of each other, every attempt is refused unchecked for
// MFALockout, doubling with each further lockout up to MaxMFALockout. A
// success, or MFAFailureWindow without a failure after the last failure or
// lock, starts over. The lock is per user and
// time-boxed, so that nobody can lock a user out for good.
const (
	MaxMFAFailures   = 5
	MFALockout       = 5 * time.Minute
	MaxMFALockout    = time.Hour
	MFAFailureWindow = time.Hour
)

// MFAEnabled records that the user turned on the second factor Factor after
// proving, with a code, that their authenticator holds the new secret.
// Recovery codes were issued with it.
type MFAEnabled struct {
	Factor string    `json:"factor"`
	At     time.Time `json:"at"`
}

// MFADisabled records that the second factor was turned off by By, proven
// With a TOTP code or a recovery code (and the password). The user's other
// sessions ended with it.
type MFADisabled struct {
	By   domain.UserID `json:"by"`
	With string        `json:"with"`
	At   time.Time     `json:"at"`
}

// MFAFailed records a refused second factor: Factor is what was presented,
// Reason why it was refused. LockedUntil is set when this failure locked the
// second factor.
type MFAFailed struct {
	Factor      string    `json:"factor"`
	Reason      string    `json:"reason"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	At          time.Time `json:"at"`
}

// RecoveryCodeUsed records that a recovery code was accepted (and so spent);
// Remaining are left.
type RecoveryCodeUsed struct {
	Remaining int       `json:"remaining"`
	At        time.Time `json:"at"`
}

// RecoveryCodesRegenerated records that the user replaced their recovery
// codes by Count new ones, proven With a TOTP code or a recovery code. The
// old ones no longer work.
type RecoveryCodesRegenerated struct {
	Count int       `json:"count"`
	With  string    `json:"with"`
	At    time.Time `json:"at"`
}

// EventName returns the durable wire name of MFAEnabled.
func (MFAEnabled) EventName() string { return EventMFAEnabled } // WARNING: stored; never rename.

// EventName returns the durable wire name of MFADisabled.
func (MFADisabled) EventName() string { return EventMFADisabled } // WARNING: stored; never rename.

// EventName returns the durable wire name of MFAFailed.
func (MFAFailed) EventName() string { return EventMFAFailed } // WARNING: stored; never rename.

// EventName returns the durable wire name of RecoveryCodeUsed.
func (RecoveryCodeUsed) EventName() string { return EventRecoveryCodeUsed } // WARNING: stored; never rename.

// EventName returns the durable wire name of RecoveryCodesRegenerated.
func (RecoveryCodesRegenerated) EventName() string { return EventRecoveryCodesRegenerated } // WARNING: stored; never rename.

// Errors of the second-factor decisions.
var (
	ErrMFAEnabled    = domain.Conflict("mfa_already_enabled", "two-factor authentication is already on; turn it off first")
	ErrMFANotEnabled = domain.Conflict("mfa_not_enabled", "two-factor authentication is not on")
	ErrFactorInvalid = domain.Invalid("factor_invalid", "factor must be totp or recovery_code")
	ErrCountInvalid  = domain.Invalid("count_invalid", "the number of recovery codes must be positive")
)

// MFAState is what the second-factor decisions need: the account, and
// whether its second factor is on. EvolveMFA rebuilds it from the same
// stream as State.
type MFAState struct {
	State
	MFAEnabled bool
	// MFAEnabledAt is when the second factor was last turned on.
	MFAEnabledAt time.Time
}

// EvolveMFA applies one recorded event to s. It never fails.
func EvolveMFA(s MFAState, e domain.Event) MFAState {
	s.State = Evolve(s.State, e)
	switch e := e.(type) {
	case Registered:
		s.MFAEnabled, s.MFAEnabledAt = false, time.Time{}
	case MFAEnabled:
		s.MFAEnabled, s.MFAEnabledAt = true, e.At
	case MFADisabled:
		s.MFAEnabled = false
	}
	return s
}

// CheckMFASetup reports whether s may start setting up a second factor: an
// existing, enabled account without one. Starting again while a setup is
// pending is allowed (it replaces the pending secret); nothing is recorded
// until EnableMFA.
func CheckMFASetup(s MFAState) error {
	switch {
	case !s.Exists || s.Deleted:
		return domain.ErrNotFound
	case s.Disabled:
		return ErrDisabled
	case s.MFAEnabled:
		return ErrMFAEnabled
	}
	return nil
}

// EnableMFA decides that s turns the TOTP second factor on at now. The
// handler calls it once the code of the pending secret was verified.
func EnableMFA(s MFAState, now time.Time) ([]domain.Event, error) {
	if err := CheckMFASetup(s); err != nil {
		return nil, err
	}
	return []domain.Event{MFAEnabled{Factor: FactorTOTP, At: now}}, nil
}

// DisableMFA decides whether by may turn the second factor of s off at now,
// proven with the factor with. The user may, once the handler verified their
// password and a code; so may an administrator of their tenant (an account
// whose authenticator and recovery codes are lost).
func DisableMFA(s MFAState, by Actor, with string, now time.Time) ([]domain.Event, error) {
	if err := mayEdit(by, s.State); err != nil {
		return nil, err
	}
	if !s.MFAEnabled {
		return nil, ErrMFANotEnabled
	}
	if !validFactor(with) {
		return nil, ErrFactorInvalid
	}
	return []domain.Event{MFADisabled{By: by.User, With: with, At: now}}, nil
}

// RegenerateRecoveryCodes decides that s replaces its recovery codes by count
// new ones at now, proven with the factor with.
func RegenerateRecoveryCodes(s MFAState, count int, with string, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case s.Disabled:
		return nil, ErrDisabled
	case !s.MFAEnabled:
		return nil, ErrMFANotEnabled
	case count < 1:
		return nil, ErrCountInvalid
	case !validFactor(with):
		return nil, ErrFactorInvalid
	}
	return []domain.Event{RecoveryCodesRegenerated{Count: count, With: with, At: now}}, nil
}

// UseRecoveryCode records that a recovery code of s was accepted at now,
// leaving remaining.
func UseRecoveryCode(s MFAState, remaining int, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case !s.MFAEnabled:
		return nil, ErrMFANotEnabled
	}
	return []domain.Event{RecoveryCodeUsed{Remaining: max(remaining, 0), At: now}}, nil
}

// RecordMFAFailure records that factor was refused for s at now for reason;
// lockedUntil is the end of the lock this failure started, or zero. Like
// RecordLoginFailure it is recorded for existing accounts only.
func RecordMFAFailure(s MFAState, factor, reason string, lockedUntil, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case !validFactor(factor) && factor != FactorPassword:
		return nil, ErrFactorInvalid
	case !isCode(reason):
		return nil, ErrReasonInvalid
	}
	return []domain.Event{MFAFailed{Factor: factor, Reason: reason, LockedUntil: lockedUntil, At: now}}, nil
}

func validFactor(f string) bool { return f == FactorTOTP || f == FactorRecoveryCode }

// MFAThrottle counts a user's failed second-factor attempts. The handler
// keeps it in its credential table and updates it under a row lock, so that
// every replica counts the same attempts.
type MFAThrottle struct {
	// Failures counts failures since the last success, lockout or quiet
	// MFAFailureWindow.
	Failures int
	// Lockouts counts the lockouts since the last success or quiet window;
	// each one lasts twice as long as the one before.
	Lockouts      int
	LastFailureAt time.Time
	LockedUntil   time.Time
}

// Locked reports whether attempts are refused unchecked at now.
func (t MFAThrottle) Locked(now time.Time) bool { return now.Before(t.LockedUntil) }

// Failed returns t after a failed attempt at now, locking when it is the
// MaxMFAFailures-th. Attempts refused while locked are not failures: call
// Failed only for codes that were checked.
func (t MFAThrottle) Failed(now time.Time) MFAThrottle {
	quietSince := t.LastFailureAt // or the end of the lock, which is later
	if t.LockedUntil.After(quietSince) {
		quietSince = t.LockedUntil
	}
	if !t.LastFailureAt.IsZero() && now.Sub(quietSince) > MFAFailureWindow {
		t = MFAThrottle{}
	}
	t.Failures++
	t.LastFailureAt = now
	if t.Failures >= MaxMFAFailures {
		t.LockedUntil = now.Add(MFALockoutAfter(t.Lockouts))
		t.Lockouts++
		t.Failures = 0
	}
	return t
}

// MFALockoutAfter is how long the lockout after previous lockouts lasts:
// MFALockout, doubling each time, at most MaxMFALockout.
func MFALockoutAfter(previous int) time.Duration {
	if previous < 0 {
		previous = 0
	}
	if previous >= 16 {
		return MaxMFALockout
	}
	return min(MFALockout<<previous, MaxMFALockout)
}
