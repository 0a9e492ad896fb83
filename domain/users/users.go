// Package users decides what may happen to a user account: registration,
// sign-in bookkeeping, role, username, e-mail and password changes, and the
// account's life cycle (disabled, enabled, deleted).
//
// A user's stream lives in the user's tenant with the user id as the stream id.
// Secrets never appear here: events say that a password changed, never what it
// is or its hash; the command handler writes the hash to the credential table in
// the same transaction. Uniqueness of usernames is enforced by the handler's
// uniqueness table (keyed by UsernameKey), and rules that need more than one
// stream, such as "a tenant keeps at least one admin" or "a deactivated
// tenant's users cannot sign in", are the handler's too.
//
// Package users is pure: no I/O, no clock (time comes in as a now argument), and
// it imports nothing of ours but package domain.
package users

import (
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
)

// Wire names of the user events.
//
// WARNING: these strings are stored with every event and name it on Kafka and
// in every projection. Never rename or reuse one; the set only grows.
const (
	EventRegistered      = "user.registered"
	EventLoggedIn        = "user.logged_in"
	EventLoginFailed     = "user.login_failed"
	EventRoleChanged     = "user.role_changed"
	EventUsernameChanged = "user.username_changed"
	EventEmailChanged    = "user.email_changed"
	EventPasswordChanged = "user.password_changed"
	EventDisabled        = "user.disabled"
	EventEnabled         = "user.enabled"
	EventDeleted         = "user.deleted"
)

// Role is what a user may do within their tenant.
//
// WARNING: role values are stored in events and tokens; never rename one.
type Role string

// The roles, from most to least powerful.
const (
	// RolePlatformAdmin administers the installation: tenants and every
	// tenant's users. It exists only in domain.PlatformTenant.
	RolePlatformAdmin Role = "platform_admin"
	// RoleAdmin administers one tenant and its users.
	RoleAdmin Role = "admin"
	// RoleAnalyst hunts: works cases, hosts and artifacts of one tenant.
	RoleAnalyst Role = "analyst"
	// RoleViewer reads one tenant's data.
	RoleViewer Role = "viewer"
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// AtLeast reports whether r is valid and at least as powerful as min.
func (r Role) AtLeast(min Role) bool { return r.Valid() && r.rank() >= min.rank() && min.Valid() }

func (r Role) rank() int {
	switch r {
	case RolePlatformAdmin:
		return 4
	case RoleAdmin:
		return 3
	case RoleAnalyst:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// Sign-in methods recorded by LoggedIn. Other lower-case codes are accepted.
const (
	MethodPassword     = "password"
	MethodPasswordTOTP = "password+totp"
)

// Reasons recorded by LoginFailed. Other lower-case codes are accepted.
const (
	ReasonBadPassword = "bad_password"
	ReasonBadTOTP     = "bad_totp"
	ReasonDisabled    = "disabled"
	// ReasonThrottled marks an attempt refused by CheckLogin. It is recorded
	// for the audit trail but does not extend the throttle, so that an attacker
	// cannot keep a user locked out by hammering.
	ReasonThrottled = "throttled"
)

// Limits on user fields. Lengths are in Unicode code points except
// MaxEmailLen, which is in bytes as RFC 5321 counts it.
const (
	MinUsernameLen = 3
	MaxUsernameLen = 64
	MaxEmailLen    = 254
	MinPasswordLen = 12
	MaxPasswordLen = 128
)

// Sign-in throttling: after FreeLoginFailures consecutive failures, each
// further attempt must wait one second after the last failure, doubling with
// every further failure up to MaxLoginDelay. A successful sign-in or a password
// change resets the count.
const (
	FreeLoginFailures = 5
	MaxLoginDelay     = 15 * time.Minute
)

// Registered records that an administrator created a user account. The
// initial password is set in the same transaction but is never recorded.
type Registered struct {
	ID       domain.UserID   `json:"id"`
	Tenant   domain.TenantID `json:"tenant"`
	Username string          `json:"username"`
	Email    string          `json:"email,omitempty"`
	Role     Role            `json:"role"`
	By       domain.UserID   `json:"by"`
}

// LoggedIn records a successful sign-in.
type LoggedIn struct {
	Method string    `json:"method"`
	At     time.Time `json:"at"`
}

// LoginFailed records a refused sign-in for an existing user and why.
type LoginFailed struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// RoleChanged records that an administrator changed a user's role.
type RoleChanged struct {
	From Role          `json:"from"`
	To   Role          `json:"to"`
	By   domain.UserID `json:"by"`
}

// UsernameChanged records a user's new username.
type UsernameChanged struct {
	From string        `json:"from"`
	To   string        `json:"to"`
	By   domain.UserID `json:"by"`
}

// EmailChanged records a user's new e-mail address; an empty To removes it.
type EmailChanged struct {
	From string        `json:"from,omitempty"`
	To   string        `json:"to,omitempty"`
	By   domain.UserID `json:"by"`
}

// PasswordChanged records that a user's password was set by the user or an
// administrator (By tells which). It never carries the password or its hash.
// Tokens issued before At should no longer be accepted.
type PasswordChanged struct {
	By domain.UserID `json:"by"`
	At time.Time     `json:"at"`
}

// Disabled records that an administrator disabled an account: it can no
// longer sign in.
type Disabled struct {
	By domain.UserID `json:"by"`
}

// Enabled records that an administrator enabled a disabled account again.
type Enabled struct {
	By domain.UserID `json:"by"`
}

// Deleted records that an administrator deleted an account. Deletion is soft
// and final: the history is kept, but the account can neither sign in nor be
// changed again, and the API treats it as not found.
type Deleted struct {
	By domain.UserID `json:"by"`
}

// EventName returns the durable wire name of Registered.
func (Registered) EventName() string { return EventRegistered } // WARNING: stored; never rename.

// EventName returns the durable wire name of LoggedIn.
func (LoggedIn) EventName() string { return EventLoggedIn } // WARNING: stored; never rename.

// EventName returns the durable wire name of LoginFailed.
func (LoginFailed) EventName() string { return EventLoginFailed } // WARNING: stored; never rename.

// EventName returns the durable wire name of RoleChanged.
func (RoleChanged) EventName() string { return EventRoleChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of UsernameChanged.
func (UsernameChanged) EventName() string { return EventUsernameChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of EmailChanged.
func (EmailChanged) EventName() string { return EventEmailChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of PasswordChanged.
func (PasswordChanged) EventName() string { return EventPasswordChanged } // WARNING: stored; never rename.

// EventName returns the durable wire name of Disabled.
func (Disabled) EventName() string { return EventDisabled } // WARNING: stored; never rename.

// EventName returns the durable wire name of Enabled.
func (Enabled) EventName() string { return EventEnabled } // WARNING: stored; never rename.

// EventName returns the durable wire name of Deleted.
func (Deleted) EventName() string { return EventDeleted } // WARNING: stored; never rename.

// State is what decisions about one user need; Evolve rebuilds it.
type State struct {
	ID       domain.UserID
	Tenant   domain.TenantID
	Exists   bool
	Disabled bool
	Deleted  bool
	Username string
	Email    string
	Role     Role
	// PasswordChangedAt is when the password was last changed after
	// registration; zero if never.
	PasswordChangedAt time.Time
	LastLoginAt       time.Time
	// EmailVerified is true once the current address was proven; changing
	// the address clears it.
	EmailVerified bool
	// FailedLogins counts failures since the last successful sign-in or
	// password change; LastFailureAt is the latest of them.
	FailedLogins  int
	LastFailureAt time.Time
}

// Actor is whoever asks for a decision, as the authenticated principal says.
type Actor struct {
	User   domain.UserID
	Tenant domain.TenantID
	Role   Role
}

// System is the actor for installation tasks run from the command line, such as
// creating the first platform administrator.
var System = Actor{User: "system", Tenant: domain.PlatformTenant, Role: RolePlatformAdmin}

// Errors returned by the decisions, besides domain.ErrNotFound, which answers
// for a user that does not exist, was deleted, or belongs to a tenant the actor
// cannot see.
var (
	ErrExists         = domain.Conflict("user_exists", "the user already exists")
	ErrNotAllowed     = domain.Forbidden("not_allowed", "you are not allowed to do this")
	ErrOwnRole        = domain.Forbidden("own_role", "you cannot change your own role")
	ErrDisableSelf    = domain.Forbidden("disable_self", "you cannot disable your own account")
	ErrEnableSelf     = domain.Forbidden("enable_self", "you cannot enable your own account")
	ErrDeleteSelf     = domain.Forbidden("delete_self", "you cannot delete your own account")
	ErrDisabled       = domain.Forbidden("user_disabled", "the account is disabled")
	ErrLoginThrottled = domain.TooMany("login_throttled", "too many failed sign-in attempts; try again later")

	ErrIDRequired      = domain.Invalid("user_id_required", "user id must not be empty")
	ErrTenantRequired  = domain.Invalid("tenant_required", "tenant must not be empty")
	ErrRoleInvalid     = domain.Invalid("role_invalid", "role must be one of platform_admin, admin, analyst, viewer")
	ErrRoleNotAllowed  = domain.Unprocessable("role_not_allowed", "platform_admin exists only in the platform tenant, which holds no other role")
	ErrUsernameShort   = domain.Invalid("username_too_short", "username must be at least 3 characters")
	ErrUsernameLong    = domain.Invalid("username_too_long", "username must be at most 64 characters")
	ErrUsernameInvalid = domain.Invalid("username_invalid", "username may contain only letters a-z and A-Z, digits and . _ @ -")
	ErrEmailTooLong    = domain.Invalid("email_too_long", "email must be at most 254 characters")
	ErrEmailInvalid    = domain.Invalid("email_invalid", "email must be a plain address such as name@example.org")
	ErrMethodInvalid   = domain.Invalid("method_invalid", "sign-in method must be a short lower-case code")
	ErrReasonInvalid   = domain.Invalid("reason_invalid", "failure reason must be a short lower-case code")

	ErrPasswordTooShort = domain.Unprocessable("password_too_short", "password must be at least 12 characters")
	ErrPasswordTooLong  = domain.Unprocessable("password_too_long", "password must be at most 128 characters")
	ErrPasswordBlank    = domain.Unprocessable("password_blank", "password must not be only white space")
	ErrPasswordInvalid  = domain.Unprocessable("password_invalid", "password must be valid UTF-8 text")
)

// Registration is what an administrator supplies to create an account.
type Registration struct {
	ID       domain.UserID
	Tenant   domain.TenantID
	Username string
	Email    string // optional
	Role     Role
	// Password is checked against the policy and never recorded; the handler
	// hashes it only after Register succeeds.
	Password string
}

// Register decides whether by may create the account r in the empty stream s.
// Only a platform administrator, or an administrator of r.Tenant, may; there is
// no self-service sign-up.
func Register(s State, by Actor, r Registration) ([]domain.Event, error) {
	if s.Exists {
		return nil, ErrExists
	}
	if strings.TrimSpace(string(r.Tenant)) == "" {
		return nil, ErrTenantRequired
	}
	if err := mayManage(by, r.Tenant); err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(r.ID)) == "" {
		return nil, ErrIDRequired
	}
	if err := CheckUsername(r.Username); err != nil {
		return nil, err
	}
	email, err := CheckEmail(r.Email)
	if err != nil {
		return nil, err
	}
	if err := checkRole(r.Role, r.Tenant); err != nil {
		return nil, err
	}
	if err := CheckPassword(r.Password); err != nil {
		return nil, err
	}
	return []domain.Event{Registered{
		ID: r.ID, Tenant: r.Tenant, Username: r.Username, Email: email, Role: r.Role, By: by.User,
	}}, nil
}

// CheckLogin decides whether a sign-in attempt for s may be evaluated at now.
// Call it before verifying the password: a throttled attempt must not reach the
// hasher. It does not reveal whether the account is disabled; RecordLogin does,
// after the password was found correct.
func CheckLogin(s State, now time.Time) error {
	if !s.Exists || s.Deleted {
		return domain.ErrNotFound
	}
	if d := LoginDelay(s); d > 0 && now.Before(s.LastFailureAt.Add(d)) {
		return ErrLoginThrottled
	}
	return nil
}

// LoginDelay is how long after s.LastFailureAt the next sign-in attempt must
// wait; zero while fewer than FreeLoginFailures consecutive failures happened.
func LoginDelay(s State) time.Duration {
	n := s.FailedLogins - FreeLoginFailures
	switch {
	case n < 0:
		return 0
	case n >= 20:
		return MaxLoginDelay
	}
	return min(time.Second<<n, MaxLoginDelay)
}

// RecordLogin decides whether s may sign in at now with method, once its
// credentials were verified.
func RecordLogin(s State, method string, now time.Time) ([]domain.Event, error) {
	if err := CheckLogin(s, now); err != nil {
		return nil, err
	}
	if s.Disabled {
		return nil, ErrDisabled
	}
	if !isCode(method) {
		return nil, ErrMethodInvalid
	}
	return []domain.Event{LoggedIn{Method: method, At: now}}, nil
}

// RecordLoginFailure records a refused sign-in for s at now. Attempts for
// unknown or deleted users are not recorded (ErrNotFound); the handler answers
// them exactly as it answers a wrong password.
func RecordLoginFailure(s State, reason string, now time.Time) ([]domain.Event, error) {
	if !s.Exists || s.Deleted {
		return nil, domain.ErrNotFound
	}
	if !isCode(reason) {
		return nil, ErrReasonInvalid
	}
	return []domain.Event{LoginFailed{Reason: reason, At: now}}, nil
}

// ChangeRole decides whether by may give s the role to. Nobody changes their
// own role, and platform_admin is granted only in the platform tenant.
func ChangeRole(s State, by Actor, to Role) ([]domain.Event, error) {
	if err := mayManageUser(by, s); err != nil {
		return nil, err
	}
	if by.User == s.ID {
		return nil, ErrOwnRole
	}
	if err := checkRole(to, s.Tenant); err != nil {
		return nil, err
	}
	if to == s.Role {
		return nil, nil
	}
	return []domain.Event{RoleChanged{From: s.Role, To: to, By: by.User}}, nil
}

// ChangeUsername decides whether by (the user or an administrator) may rename
// s to username. Changing only the letter case is a change.
func ChangeUsername(s State, by Actor, username string) ([]domain.Event, error) {
	if err := mayEdit(by, s); err != nil {
		return nil, err
	}
	if err := CheckUsername(username); err != nil {
		return nil, err
	}
	if username == s.Username {
		return nil, nil
	}
	return []domain.Event{UsernameChanged{From: s.Username, To: username, By: by.User}}, nil
}

// ChangeEmail decides whether by (the user or an administrator) may set the
// e-mail address of s to email; an empty email removes it.
func ChangeEmail(s State, by Actor, email string) ([]domain.Event, error) {
	if err := mayEdit(by, s); err != nil {
		return nil, err
	}
	email, err := CheckEmail(email)
	if err != nil {
		return nil, err
	}
	if email == s.Email {
		return nil, nil
	}
	return []domain.Event{EmailChanged{From: s.Email, To: email, By: by.User}}, nil
}

// ChangePassword decides whether by (the user or an administrator) may set a
// new password for s at now. The password is checked against the policy and
// never recorded. When by is the user, the handler must have verified the
// current password first.
func ChangePassword(s State, by Actor, password string, now time.Time) ([]domain.Event, error) {
	if err := mayEdit(by, s); err != nil {
		return nil, err
	}
	if err := CheckPassword(password); err != nil {
		return nil, err
	}
	return []domain.Event{PasswordChanged{By: by.User, At: now}}, nil
}

// Disable decides whether by may disable s. Nobody disables their own account;
// disabling a disabled account records nothing.
func Disable(s State, by Actor) ([]domain.Event, error) {
	if err := mayManageUser(by, s); err != nil {
		return nil, err
	}
	switch {
	case by.User == s.ID:
		return nil, ErrDisableSelf
	case s.Disabled:
		return nil, nil
	}
	return []domain.Event{Disabled{By: by.User}}, nil
}

// Enable decides whether by may enable s again. Nobody enables their own
// account; enabling an enabled account records nothing.
func Enable(s State, by Actor) ([]domain.Event, error) {
	if err := mayManageUser(by, s); err != nil {
		return nil, err
	}
	switch {
	case by.User == s.ID:
		return nil, ErrEnableSelf
	case !s.Disabled:
		return nil, nil
	}
	return []domain.Event{Enabled{By: by.User}}, nil
}

// Delete decides whether by may delete s. Nobody deletes their own account;
// deleting a deleted account records nothing.
func Delete(s State, by Actor) ([]domain.Event, error) {
	if !s.Exists {
		return nil, domain.ErrNotFound
	}
	if err := mayManage(by, s.Tenant); err != nil {
		return nil, err
	}
	switch {
	case by.User == s.ID:
		return nil, ErrDeleteSelf
	case s.Deleted:
		return nil, nil
	}
	return []domain.Event{Deleted{By: by.User}}, nil
}

// Evolve applies one recorded event to s. It never fails; events of other
// aggregates leave s unchanged.
func Evolve(s State, e domain.Event) State {
	switch e := e.(type) {
	case Registered:
		s = State{ID: e.ID, Tenant: e.Tenant, Exists: true, Username: e.Username, Email: e.Email, Role: e.Role}
	case LoggedIn:
		s.LastLoginAt = e.At
		s.FailedLogins = 0
	case LoginFailed:
		if e.Reason != ReasonThrottled {
			s.FailedLogins++
			s.LastFailureAt = e.At
		}
	case RoleChanged:
		s.Role = e.To
	case UsernameChanged:
		s.Username = e.To
	case EmailChanged:
		s.Email = e.To
		s.EmailVerified = false
	case EmailVerified:
		if strings.EqualFold(e.Email, s.Email) {
			s.EmailVerified = true
		}
	case PasswordChanged:
		s.PasswordChangedAt = e.At
		s.FailedLogins = 0
	case Disabled:
		s.Disabled = true
	case Enabled:
		s.Disabled = false
	case Deleted:
		s.Deleted = true
	}
	return s
}

// CheckUsername reports whether username is valid: MinUsernameLen to
// MaxUsernameLen characters from a-z, A-Z, 0-9 and . _ @ -. It is not trimmed.
func CheckUsername(username string) error {
	switch n := utf8.RuneCountInString(username); {
	case n < MinUsernameLen:
		return ErrUsernameShort
	case n > MaxUsernameLen:
		return ErrUsernameLong
	}
	for i := 0; i < len(username); i++ {
		switch c := username[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '@', c == '-':
		default:
			return ErrUsernameInvalid
		}
	}
	return nil
}

// UsernameKey returns the form of username under which uniqueness is enforced
// and sign-in looks users up: "Alice" and "alice" are the same user name.
func UsernameKey(username string) string { return strings.ToLower(username) }

// CheckEmail returns email without surrounding white space if it is empty or a
// plain address (no display name, comment or quoting) of at most MaxEmailLen
// bytes.
func CheckEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return "", nil
	}
	if len(email) > MaxEmailLen {
		return "", ErrEmailTooLong
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "", ErrEmailInvalid
	}
	return email, nil
}

// CheckPassword reports whether pw satisfies the password policy: valid UTF-8,
// MinPasswordLen to MaxPasswordLen Unicode code points, and not only white
// space. Nothing is trimmed or truncated: every character counts and is hashed.
func CheckPassword(pw string) error {
	if !utf8.ValidString(pw) {
		return ErrPasswordInvalid
	}
	switch n := utf8.RuneCountInString(pw); {
	case n < MinPasswordLen:
		return ErrPasswordTooShort
	case n > MaxPasswordLen:
		return ErrPasswordTooLong
	}
	if strings.IndexFunc(pw, func(r rune) bool { return !unicode.IsSpace(r) }) < 0 {
		return ErrPasswordBlank
	}
	return nil
}

// checkRole reports whether role is valid and allowed in tenant: platform_admin
// in the platform tenant and only there.
func checkRole(role Role, tenant domain.TenantID) error {
	if !role.Valid() {
		return ErrRoleInvalid
	}
	if (role == RolePlatformAdmin) != (tenant == domain.PlatformTenant) {
		return ErrRoleNotAllowed
	}
	return nil
}

// mayManage reports whether by administers the users of tenant. A tenant the
// actor cannot see answers ErrNotFound, so that its users' existence does not
// leak.
func mayManage(by Actor, tenant domain.TenantID) error {
	switch {
	case by.Role == RolePlatformAdmin && by.Tenant == domain.PlatformTenant:
		return nil
	case by.Tenant != tenant:
		return domain.ErrNotFound
	case by.Role == RoleAdmin:
		return nil
	}
	return ErrNotAllowed
}

// mayManageUser is mayManage for an existing, undeleted user.
func mayManageUser(by Actor, s State) error {
	if !s.Exists || s.Deleted {
		return domain.ErrNotFound
	}
	return mayManage(by, s.Tenant)
}

// mayEdit reports whether by may edit the profile of s: the user, unless
// disabled, or an administrator.
func mayEdit(by Actor, s State) error {
	if !s.Exists || s.Deleted {
		return domain.ErrNotFound
	}
	if by.User == s.ID && by.Tenant == s.Tenant {
		if s.Disabled {
			return ErrDisabled
		}
		return nil
	}
	return mayManage(by, s.Tenant)
}

// isCode reports whether s is a short lower-case code such as "bad_password".
func isCode(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '_', c == '+', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}
