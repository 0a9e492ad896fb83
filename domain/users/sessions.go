package users

import (
	"time"

	"velocicompanion/domain"
)

// Wire names of the session events. A session is one sign-in: it starts with
// user.session_started next to user.logged_in and ends with user.logged_out
// or user.session_revoked. Refreshing a session's tokens is not an event (it
// happens every few minutes per client); a refresh token presented a second
// time is, as user.refresh_token_reused.
//
// WARNING: these strings are stored with every event; never rename or reuse one.
const (
	EventSessionStarted     = "user.session_started"
	EventLoggedOut          = "user.logged_out"
	EventSessionRevoked     = "user.session_revoked"
	EventRefreshTokenReused = "user.refresh_token_reused"
)

// Reasons recorded by SessionRevoked. The write side's sessions table uses
// the same codes, and also "logout" and the account changes that end every
// session of a user (ReasonPasswordChanged and the like below), which are
// recorded by the account event itself rather than one event per session.
const (
	RevokedByUser      = "revoked_by_user"
	RevokedByAdmin     = "revoked_by_admin"
	RevokedTokenReused = "refresh_token_reused"

	ReasonLogout          = "logout"
	ReasonPasswordChanged = "password_changed"
	ReasonRoleChanged     = "role_changed"
	ReasonUserDisabled    = "user_disabled"
	ReasonUserDeleted     = "user_deleted"
)

// MaxSessionIDLen bounds a session id; ours are UUIDs.
const MaxSessionIDLen = 64

// SessionStarted records that a sign-in opened Session, which ends at
// ExpiresAt at the latest however often its tokens are refreshed. Where the
// client signed in from is in the event's metadata. No token is recorded.
type SessionStarted struct {
	Session   string    `json:"session"`
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LoggedOut records that the user ended Session themselves.
type LoggedOut struct {
	Session string    `json:"session"`
	At      time.Time `json:"at"`
}

// SessionRevoked records that Session was ended by the user from another
// session, by an administrator, or by the system (By empty) because one of its
// refresh tokens was replayed.
type SessionRevoked struct {
	Session string        `json:"session"`
	By      domain.UserID `json:"by,omitempty"`
	Reason  string        `json:"reason"`
	At      time.Time     `json:"at"`
}

// RefreshTokenReused records a security event: a refresh token of Session that
// had already been exchanged at UsedAt was presented again at At, from
// SourceIP with UserAgent. Either the legitimate client or a thief holds a
// copy, and nobody can tell which, so the session is revoked with it.
type RefreshTokenReused struct {
	Session   string    `json:"session"`
	SourceIP  string    `json:"source_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	UsedAt    time.Time `json:"used_at"`
	At        time.Time `json:"at"`
}

// EventName returns the durable wire name of SessionStarted.
func (SessionStarted) EventName() string { return EventSessionStarted } // WARNING: stored; never rename.

// EventName returns the durable wire name of LoggedOut.
func (LoggedOut) EventName() string { return EventLoggedOut } // WARNING: stored; never rename.

// EventName returns the durable wire name of SessionRevoked.
func (SessionRevoked) EventName() string { return EventSessionRevoked } // WARNING: stored; never rename.

// EventName returns the durable wire name of RefreshTokenReused.
func (RefreshTokenReused) EventName() string { return EventRefreshTokenReused } // WARNING: stored; never rename.

// Errors of the session decisions.
var (
	ErrSessionIDInvalid = domain.Invalid("session_id_invalid", "session id must be 1 to 64 characters")
	ErrSessionExpiry    = domain.Invalid("session_expiry_invalid", "a session must end after it starts")
)

// StartSession decides whether s may open session id at now, to end at
// expires at the latest. Call it after RecordLogin, on the state that
// RecordLogin's event produced: a disabled or deleted account opens none.
func StartSession(s State, id string, now, expires time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case s.Disabled:
		return nil, ErrDisabled
	case !validSessionID(id):
		return nil, ErrSessionIDInvalid
	case !expires.After(now):
		return nil, ErrSessionExpiry
	}
	return []domain.Event{SessionStarted{Session: id, At: now, ExpiresAt: expires}}, nil
}

// Logout decides that s ends its own session at now. active tells whether the
// session (which the handler found to be the user's) is still open; ending an
// ended session records nothing.
func Logout(s State, session string, active bool, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists || s.Deleted:
		return nil, domain.ErrNotFound
	case !validSessionID(session):
		return nil, ErrSessionIDInvalid
	case !active:
		return nil, nil
	}
	return []domain.Event{LoggedOut{Session: session, At: now}}, nil
}

// RevokeSessions decides whether by may end the given open sessions of s at
// now: the user may end their own, an administrator those of their tenant's
// users. The handler passes only sessions it found open and owned by s; none
// records nothing.
func RevokeSessions(s State, by Actor, sessions []string, now time.Time) ([]domain.Event, error) {
	if !s.Exists || s.Deleted {
		return nil, domain.ErrNotFound
	}
	reason := RevokedByUser
	if by.User != s.ID || by.Tenant != s.Tenant {
		if err := mayManage(by, s.Tenant); err != nil {
			return nil, err
		}
		reason = RevokedByAdmin
	}
	if len(sessions) == 0 {
		return nil, nil
	}
	out := make([]domain.Event, 0, len(sessions))
	for _, id := range sessions {
		if !validSessionID(id) {
			return nil, ErrSessionIDInvalid
		}
		out = append(out, SessionRevoked{Session: id, By: by.User, Reason: reason, At: now})
	}
	return out, nil
}

// RecordRefreshReuse records that a refresh token of session, exchanged at
// usedAt, was presented again at now from ip with userAgent, and revokes the
// session if it is still active. It is recorded for a deleted account too:
// the replay is worth knowing about whatever became of the account.
func RecordRefreshReuse(s State, session string, active bool, ip, userAgent string, usedAt, now time.Time) ([]domain.Event, error) {
	switch {
	case !s.Exists:
		return nil, domain.ErrNotFound
	case !validSessionID(session):
		return nil, ErrSessionIDInvalid
	}
	out := []domain.Event{RefreshTokenReused{Session: session, SourceIP: ip, UserAgent: userAgent, UsedAt: usedAt, At: now}}
	if active {
		out = append(out, SessionRevoked{Session: session, Reason: RevokedTokenReused, At: now})
	}
	return out, nil
}

// SessionEndReason returns the reason with which an account event ends every
// session of the user, or "" if it ends none. A role change ends them too:
// whoever holds a session must sign in again to act with the new role.
func SessionEndReason(e domain.Event) string {
	switch e.(type) {
	case PasswordChanged:
		return ReasonPasswordChanged
	case RoleChanged:
		return ReasonRoleChanged
	case Disabled:
		return ReasonUserDisabled
	case Deleted:
		return ReasonUserDeleted
	}
	return ""
}

func validSessionID(id string) bool { return id != "" && len(id) <= MaxSessionIDLen }
