package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// Second factors (TOTP with recovery codes) and sign-in throttling.
//
// A TOTP secret lives only in mfa_totp, sealed by the Sealer for its tenant
// and the purpose "totp"; recovery codes live there as salted hashes. Events
// say that a factor was turned on or off, or that a code was refused, never
// what a secret or code is.
//
// Every check of a code runs in one transaction that locks the user's
// mfa_totp row: it refuses while the per-user throttle (users.MFAThrottle) is
// locked, advances last_step (UPDATE … WHERE last_step < $step) so that a code
// works once, removes a recovery code's hash so that it works once, or counts
// the failure. Replicas share the row, so they share the count.
//
// Failed sign-ins are also counted per source address and, for user names
// that name no account, per name (login_throttle), see BeginSignIn.

func init() { eventRegistrations = append(eventRegistrations, registerMFAEvents) }

func registerMFAEvents(c *eventstore.Codec) {
	eventstore.Register[users.MFAEnabled](c, 1)
	eventstore.Register[users.MFADisabled](c, 1)
	eventstore.Register[users.MFAFailed](c, 1)
	eventstore.Register[users.RecoveryCodeUsed](c, 1)
	eventstore.Register[users.RecoveryCodesRegenerated](c, 1)
}

// Sealer encrypts reversible secrets at rest for one tenant and purpose;
// adapters/secrets.Keyring implements it.
type Sealer interface {
	Seal(tenant domain.TenantID, purpose string, plaintext []byte) ([]byte, error)
	Open(tenant domain.TenantID, purpose string, sealed []byte) ([]byte, error)
}

// OTPSecret is a new TOTP secret with what enrolment shows the user.
type OTPSecret struct {
	Base32 string // the secret, as typed into an app by hand
	URI    string // the otpauth:// key URI
	QRPNG  []byte // URI as a QR code
}

// OTP makes and checks TOTP secrets and recovery codes; cmd adapts
// adapters/totp to it. Verify and MatchRecoveryCode are as documented there:
// Verify accepts the code of the step of now or the one before or after,
// only for a step after lastUsedStep, and returns the step it matched.
type OTP interface {
	Generate(issuer, account string) (OTPSecret, error)
	Verify(secretBase32, code string, now time.Time, lastUsedStep int64) (step int64, ok bool)
	NewRecoveryCodes(n int) (plain, hashes []string, err error)
	MatchRecoveryCode(code string, hashes []string) (index int, ok bool)
}

// Second-factor and throttling parameters.
const (
	// RecoveryCodeCount is how many recovery codes a user gets at a time.
	RecoveryCodeCount = 10
	// TOTPSetupTTL is how long a pending setup may be confirmed.
	TOTPSetupTTL = 15 * time.Minute
	// DefaultTOTPIssuer names the installation in authenticator apps.
	DefaultTOTPIssuer = "VelociCompanion"
	// DefaultIPFailureLimit and DefaultIPFailureWindow: a source address
	// with this many failed sign-ins within the window (which starts at its
	// first failure) is refused (429) until the window ends.
	DefaultIPFailureLimit  = 20
	DefaultIPFailureWindow = 5 * time.Minute
	// unknownNameRetention is how long the failures of a user name that
	// names no account are kept after the last one.
	unknownNameRetention = 24 * time.Hour
	// maxCodeLen bounds a typed code of either kind.
	maxCodeLen = 64
)

// sealPurposeTOTP is the associated-data purpose of sealed TOTP secrets.
// WARNING: part of every sealed secret; changing it makes them unreadable.
const sealPurposeTOTP = "totp"

// signInConfig is the handler's part for second factors and throttling.
type signInConfig struct {
	sealer   Sealer
	otp      OTP
	issuer   string
	ipLimit  int
	ipWindow time.Duration
}

// WithMFA turns TOTP second factors on: secrets are sealed by sealer, codes
// made and checked by otp, and apps show them under issuer (empty means
// DefaultTOTPIssuer). With a nil sealer (no master key) setting a factor up
// answers ErrMFAUnavailable and TOTP codes of enrolled users cannot be
// checked (503), while their recovery codes still work.
func WithMFA(sealer Sealer, otp OTP, issuer string) Option {
	return func(h *Handler) {
		h.signIn.sealer, h.signIn.otp, h.signIn.issuer = sealer, otp, issuer
		if h.signIn.issuer == "" {
			h.signIn.issuer = DefaultTOTPIssuer
		}
	}
}

// WithLoginThrottle sets how many failed sign-ins one source address may make
// within window; zero values keep DefaultIPFailureLimit and
// DefaultIPFailureWindow.
func WithLoginThrottle(maxFailures int, window time.Duration) Option {
	return func(h *Handler) { h.signIn.ipLimit, h.signIn.ipWindow = maxFailures, window }
}

func (h *Handler) ipLimits() (int, time.Duration) {
	limit, window := h.signIn.ipLimit, h.signIn.ipWindow
	if limit <= 0 {
		limit = DefaultIPFailureLimit
	}
	if window <= 0 {
		window = DefaultIPFailureWindow
	}
	return limit, window
}

// Errors of the second factor and of throttling.
var (
	// ErrMFAUnavailable answers what needs the master key when the server
	// has none.
	ErrMFAUnavailable = domain.Unavailable("mfa_unavailable",
		"two-factor authentication is not available: the server has no master key (VC_MASTER_KEY)")
	// ErrMFACodeInvalid answers a refused code in a sign-in.
	ErrMFACodeInvalid = domain.Unauthenticated("mfa_code_invalid", "the code is not valid")
	// ErrMFACodeWrong answers a refused code of a signed-in user (setup,
	// turning the factor off, new recovery codes).
	ErrMFACodeWrong = domain.Forbidden("mfa_code_invalid", "the code is not valid")
	// ErrMFATokenInvalid answers an MFA token that was used already.
	ErrMFATokenInvalid = domain.Unauthenticated("mfa_token_invalid", "the sign-in step is no longer valid; sign in again")
	// ErrMFALocked answers every code while too many failed.
	ErrMFALocked = domain.TooMany("mfa_locked", "too many invalid codes; try again later")
	// ErrCodeRequired answers a request without a code.
	ErrCodeRequired = domain.Invalid("code_required", "code is required")
	// ErrNoPendingSetup answers a confirmation without a setup.
	ErrNoPendingSetup = domain.Conflict("mfa_setup_required", "start with POST /api/auth/2fa/setup")
	// ErrSetupExpired answers a confirmation of a setup older than TOTPSetupTTL.
	ErrSetupExpired = domain.Conflict("mfa_setup_expired", "the setup has expired; start it again")
	// ErrIPThrottled answers every sign-in from an address with too many
	// failures, whatever the user name.
	ErrIPThrottled = domain.TooMany("too_many_attempts", "too many failed sign-in attempts from your address; try again later")
)

// throttledError is a refusal that says when to try again.
type throttledError struct {
	err   *domain.Error
	after time.Duration
}

func (e *throttledError) Error() string { return e.err.Error() }
func (e *throttledError) Unwrap() error { return e.err }

// RetryAfter returns how long a caller refused with err should wait, when
// err says (the per-address throttle does; the per-account one does not, so
// that it answers exactly as for a name without an account).
func RetryAfter(err error) (time.Duration, bool) {
	var t *throttledError
	if errors.As(err, &t) {
		return t.after, true
	}
	return 0, false
}

// SecondFactor is a code presented as a second factor.
type SecondFactor struct {
	Factor string // users.FactorTOTP or users.FactorRecoveryCode
	Code   string
}

// TOTPCode is a TOTP code as typed: white space is ignored.
func TOTPCode(code string) SecondFactor {
	return SecondFactor{Factor: users.FactorTOTP, Code: strings.Join(strings.Fields(code), "")}
}

// RecoveryCode is a recovery code as typed.
func RecoveryCode(code string) SecondFactor {
	return SecondFactor{Factor: users.FactorRecoveryCode, Code: code}
}

// CodeFactor reads a code that may be of either kind: six digits (white
// space ignored) are a TOTP code, anything else is taken for a recovery code.
func CodeFactor(code string) SecondFactor {
	if t := TOTPCode(code); isDigits(t.Code, 6) {
		return t
	}
	return RecoveryCode(code)
}

// LooksLikeCode reports whether s has the shape of a TOTP code or a recovery
// code, for fields that may carry something else (the OAuth2 form's scope).
func LooksLikeCode(s string) bool {
	if isDigits(TOTPCode(s).Code, 6) {
		return true
	}
	n := 0
	for _, r := range s {
		switch {
		case r == '-':
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			n++
		default:
			return false
		}
	}
	return n == 16
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func methodOf(factor string) string {
	if factor == users.FactorRecoveryCode {
		return users.MethodPasswordRecoveryCode
	}
	return users.MethodPasswordTOTP
}

// PasswordStep is the outcome of a sign-in's password step.
type PasswordStep struct {
	Identity Identity
	// Factors are the second factors the account must present next
	// (users.FactorTOTP, and users.FactorRecoveryCode while any are left);
	// empty when the password suffices.
	Factors []string
}

// MFARequired reports whether a second factor must follow.
func (p PasswordStep) MFARequired() bool { return len(p.Factors) > 0 }

// BeginSignIn is the first step of a sign-in: VerifyPassword, guarded by
// sign-in throttling, then whether the account needs a second factor.
//
// An address (cmd.Meta.SourceIP, which the edge takes from trusted proxies
// only; IPv6 by /64) with too many failed sign-ins within the window is
// refused with ErrIPThrottled before anything else, whatever the user name,
// and the failures of user names that name no account are throttled like an
// account's (users.LoginDelay), so that neither the answer nor its delay
// tells whether an account exists.
func (h *Handler) BeginSignIn(ctx context.Context, cmd Login) (PasswordStep, error) {
	ip := ipKey(cmd.Meta.SourceIP)
	if err := h.checkIPThrottle(ctx, ip); err != nil {
		return PasswordStep{}, err
	}
	if err := h.checkNameThrottle(ctx, cmd.Username); err != nil {
		return PasswordStep{}, err
	}
	id, err := h.VerifyPassword(ctx, cmd)
	if errors.Is(err, ErrBadCredentials) {
		h.recordSignInFailure(ctx, ip, cmd.Username)
	}
	if err != nil {
		return PasswordStep{}, err
	}
	var remaining int
	err = h.pool.QueryRow(ctx, `SELECT cardinality(recovery_hashes) FROM mfa_totp
		WHERE user_id = $1 AND tenant_id = $2 AND NOT pending`, string(id.User), string(id.Tenant)).Scan(&remaining)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return PasswordStep{Identity: id}, nil
	case err != nil:
		return PasswordStep{}, fmt.Errorf("look up second factor: %w", err)
	}
	step := PasswordStep{Identity: id, Factors: []string{users.FactorTOTP}}
	if remaining > 0 {
		step.Factors = append(step.Factors, users.FactorRecoveryCode)
	}
	return step, nil
}

// CompleteSignIn asks to finish a sign-in whose password step succeeded with
// a second factor.
type CompleteSignIn struct {
	// Identity is the password step's: BeginSignIn's, or the claims of the
	// MFA token it issued (user, tenant, role, epoch).
	Identity Identity
	// TokenID is the MFA token's id (jti); empty when the code came with the
	// password in one request.
	TokenID        string
	TokenExpiresAt time.Time
	Factor         SecondFactor
	Policy         SessionPolicy
	Meta           eventstore.Metadata
}

// CompleteSignIn checks cmd's second factor and opens the session
// (StartSession, method password+totp or password+recovery_code).
//
// It refuses with ErrMFATokenInvalid an MFA token used before (each works
// once), with ErrSignInAgain if the account changed since the password step
// (its epoch, status or tenant) or no longer has a second factor, with
// ErrMFACodeInvalid a code that is wrong, outside the window or replayed, and
// with ErrMFALocked while the user's second factor is locked. Refused codes
// count towards the address's sign-in failures too.
func (h *Handler) CompleteSignIn(ctx context.Context, cmd CompleteSignIn) (Session, error) {
	ip := ipKey(cmd.Meta.SourceIP)
	if cmd.TokenID != "" {
		if err := h.checkIPThrottle(ctx, ip); err != nil {
			return Session{}, err
		}
		var used bool
		if err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mfa_token_uses WHERE jti = $1)`, cmd.TokenID).Scan(&used); err != nil {
			return Session{}, fmt.Errorf("look up mfa token: %w", err)
		}
		if used {
			return Session{}, ErrMFATokenInvalid
		}
	}
	if cmd.Factor.Code == "" {
		return Session{}, ErrCodeRequired
	}
	id, err := h.LookupIdentity(ctx, cmd.Identity.User)
	if errors.Is(err, domain.ErrNotFound) {
		return Session{}, ErrSignInAgain
	}
	if err != nil {
		return Session{}, err
	}
	if !id.Usable() || id.Tenant != cmd.Identity.Tenant || id.Epoch != cmd.Identity.Epoch {
		return Session{}, ErrSignInAgain
	}
	meta := cmd.Meta
	meta.Actor, meta.ActorType = string(id.User), "user"
	err = h.verifyFactor(ctx, id.Tenant, id.User, cmd.Factor, meta, ErrMFACodeInvalid)
	switch {
	case errors.Is(err, ErrMFACodeInvalid):
		h.recordSignInFailure(ctx, ip, "")
		return Session{}, err
	case errors.Is(err, users.ErrMFANotEnabled):
		return Session{}, ErrSignInAgain
	case err != nil:
		return Session{}, err
	}
	if cmd.TokenID != "" {
		tag, err := h.pool.Exec(ctx, `INSERT INTO mfa_token_uses (jti, user_id, used_at, expires_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING`, cmd.TokenID, string(id.User), h.now(), cmd.TokenExpiresAt)
		if err != nil {
			return Session{}, fmt.Errorf("spend mfa token: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return Session{}, ErrMFATokenInvalid // a concurrent request spent it first
		}
	}
	return h.StartSession(ctx, StartSession{Identity: id, Method: methodOf(cmd.Factor.Factor), Policy: cmd.Policy, Meta: cmd.Meta})
}

// SetupTOTP asks to start setting up a TOTP second factor for the caller.
type SetupTOTP struct {
	Tenant domain.TenantID
	User   domain.UserID
	Meta   eventstore.Metadata
}

// TOTPEnrolment is what a setup shows the user, once.
type TOTPEnrolment struct {
	Secret    string
	URI       string
	QRPNG     []byte
	ExpiresAt time.Time // confirm with ConfirmTOTP before
}

// SetupTOTP makes a new secret for cmd.User and stores it sealed as pending;
// nothing changes for the account until ConfirmTOTP. Setting up again while
// pending replaces the pending secret; while the factor is on it is refused
// (users.ErrMFAEnabled). Nothing is recorded: the secret never enters an event.
func (h *Handler) SetupTOTP(ctx context.Context, cmd SetupTOTP) (TOTPEnrolment, error) {
	if h.signIn.sealer == nil || h.signIn.otp == nil {
		return TOTPEnrolment{}, ErrMFAUnavailable
	}
	s, _, err := load(ctx, h, userKey(cmd.Tenant, cmd.User), users.EvolveMFA)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	if err := users.CheckMFASetup(s); err != nil {
		return TOTPEnrolment{}, err
	}
	secret, err := h.signIn.otp.Generate(h.signIn.issuer, s.Username)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	sealed, err := h.signIn.sealer.Seal(cmd.Tenant, sealPurposeTOTP, []byte(secret.Base32))
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("seal totp secret: %w", err)
	}
	now := h.now()
	tag, err := h.pool.Exec(ctx, `INSERT INTO mfa_totp (user_id, tenant_id, sealed_secret, pending, setup_at, updated_at)
		VALUES ($1, $2, $3, true, $4, $4)
		ON CONFLICT (user_id) DO UPDATE SET sealed_secret = EXCLUDED.sealed_secret, setup_at = EXCLUDED.setup_at,
			enabled_at = NULL, last_step = 0, recovery_hashes = '{}', updated_at = EXCLUDED.updated_at
		WHERE mfa_totp.pending AND mfa_totp.tenant_id = EXCLUDED.tenant_id`,
		string(cmd.User), string(cmd.Tenant), sealed, now)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("store totp secret: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return TOTPEnrolment{}, users.ErrMFAEnabled // turned on meanwhile
	}
	return TOTPEnrolment{Secret: secret.Base32, URI: secret.URI, QRPNG: secret.QRPNG, ExpiresAt: now.Add(TOTPSetupTTL)}, nil
}

// ConfirmTOTP asks to turn the pending TOTP factor on with a code from the
// authenticator.
type ConfirmTOTP struct {
	Tenant domain.TenantID
	User   domain.UserID
	Code   string
	Meta   eventstore.Metadata
}

// ConfirmTOTP checks cmd.Code against the pending secret and, if it matches,
// records user.mfa_enabled and turns the factor on in the same transaction,
// with RecoveryCodeCount new recovery codes, which it returns (to be shown
// once; only their hashes are kept). A wrong code is ErrMFACodeWrong and
// changes nothing; it is not counted, as the caller holds the secret anyway.
func (h *Handler) ConfirmTOTP(ctx context.Context, cmd ConfirmTOTP) (Result, []string, error) {
	if h.signIn.sealer == nil || h.signIn.otp == nil {
		return Result{}, nil, ErrMFAUnavailable
	}
	code := TOTPCode(cmd.Code).Code
	if code == "" {
		return Result{}, nil, ErrCodeRequired
	}
	plain, hashes, err := h.signIn.otp.NewRecoveryCodes(RecoveryCodeCount)
	if err != nil {
		return Result{}, nil, err
	}
	now := h.now()
	res, err := h.update(ctx, userKey(cmd.Tenant, cmd.User), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return users.EnableMFA(domain.Fold(users.EvolveMFA, history), now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			var sealed []byte
			var setupAt time.Time
			err := tx.QueryRow(ctx, `SELECT sealed_secret, setup_at FROM mfa_totp
				WHERE user_id = $1 AND tenant_id = $2 AND pending AND sealed_secret IS NOT NULL FOR UPDATE`,
				string(cmd.User), string(cmd.Tenant)).Scan(&sealed, &setupAt)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return ErrNoPendingSetup
			case err != nil:
				return err
			case now.Sub(setupAt) > TOTPSetupTTL:
				return ErrSetupExpired
			}
			secret, err := h.signIn.sealer.Open(cmd.Tenant, sealPurposeTOTP, sealed)
			if err != nil {
				return fmt.Errorf("open totp secret: %w", err)
			}
			step, ok := h.signIn.otp.Verify(string(secret), code, now, 0)
			if !ok {
				return ErrMFACodeWrong
			}
			_, err = tx.Exec(ctx, `UPDATE mfa_totp SET pending = false, enabled_at = $3, last_step = $4, recovery_hashes = $5,
					failed_attempts = 0, lockouts = 0, last_failure_at = NULL, locked_until = NULL, updated_at = $3
				WHERE user_id = $1 AND tenant_id = $2`, string(cmd.User), string(cmd.Tenant), now, step, hashes)
			return err
		})
	if err != nil {
		return Result{}, nil, err
	}
	return res, plain, nil
}

// DisableTOTP asks to turn the caller's second factor off.
type DisableTOTP struct {
	Tenant   domain.TenantID
	User     domain.UserID
	Session  string // the caller's session, which stays open
	Password string
	Code     string // a TOTP code or a recovery code
	By       users.Actor
	Meta     eventstore.Metadata
}

// DisableTOTP checks the password and a fresh code (either kind), then
// records user.mfa_disabled, wipes the secret and the recovery codes, and
// ends every other session of the user, in one transaction. A wrong password
// is ErrWrongPassword and a wrong code ErrMFACodeWrong; both count towards
// the second factor's lock.
func (h *Handler) DisableTOTP(ctx context.Context, cmd DisableTOTP) (Result, error) {
	key := userKey(cmd.Tenant, cmd.User)
	s, _, err := load(ctx, h, key, users.EvolveMFA)
	if err != nil {
		return Result{}, err
	}
	if _, err := users.DisableMFA(s, cmd.By, users.FactorTOTP, h.now()); err != nil {
		return Result{}, err
	}
	if strings.TrimSpace(cmd.Code) == "" {
		return Result{}, ErrCodeRequired
	}
	if cmd.Password == "" {
		return Result{}, ErrWrongPassword
	}
	if err := h.checkPasswordForMFA(ctx, cmd.Tenant, cmd.User, cmd.Password, cmd.Meta); err != nil {
		return Result{}, err
	}
	factor := CodeFactor(cmd.Code)
	if err := h.verifyFactor(ctx, cmd.Tenant, cmd.User, factor, cmd.Meta, ErrMFACodeWrong); err != nil {
		return Result{}, err
	}
	now := h.now()
	return h.update(ctx, key, cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return users.DisableMFA(domain.Fold(users.EvolveMFA, history), cmd.By, factor.Factor, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			if _, err := tx.Exec(ctx, `UPDATE mfa_totp SET pending = true, sealed_secret = NULL, setup_at = NULL, enabled_at = NULL,
					last_step = 0, recovery_hashes = '{}', failed_attempts = 0, lockouts = 0, last_failure_at = NULL,
					locked_until = NULL, updated_at = $3
				WHERE user_id = $1 AND tenant_id = $2`, string(cmd.User), string(cmd.Tenant), now); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $3, revoke_reason = $4
				WHERE user_id = $1 AND session_id <> $2 AND revoked_at IS NULL`,
				string(cmd.User), cmd.Session, now, users.ReasonMFADisabled)
			return err
		})
}

// RegenerateRecoveryCodes asks to replace the caller's recovery codes.
type RegenerateRecoveryCodes struct {
	Tenant domain.TenantID
	User   domain.UserID
	Code   string // a TOTP code or a recovery code
	Meta   eventstore.Metadata
}

// RegenerateRecoveryCodes checks a fresh code (either kind) and replaces
// every recovery code by RecoveryCodeCount new ones, which it returns (shown
// once), recording user.mfa_recovery_codes_regenerated. The old codes stop
// working in the same transaction.
func (h *Handler) RegenerateRecoveryCodes(ctx context.Context, cmd RegenerateRecoveryCodes) (Result, []string, error) {
	if h.signIn.otp == nil {
		return Result{}, nil, ErrMFAUnavailable
	}
	key := userKey(cmd.Tenant, cmd.User)
	s, _, err := load(ctx, h, key, users.EvolveMFA)
	if err != nil {
		return Result{}, nil, err
	}
	if _, err := users.RegenerateRecoveryCodes(s, RecoveryCodeCount, users.FactorTOTP, h.now()); err != nil {
		return Result{}, nil, err
	}
	if strings.TrimSpace(cmd.Code) == "" {
		return Result{}, nil, ErrCodeRequired
	}
	factor := CodeFactor(cmd.Code)
	if err := h.verifyFactor(ctx, cmd.Tenant, cmd.User, factor, cmd.Meta, ErrMFACodeWrong); err != nil {
		return Result{}, nil, err
	}
	plain, hashes, err := h.signIn.otp.NewRecoveryCodes(RecoveryCodeCount)
	if err != nil {
		return Result{}, nil, err
	}
	now := h.now()
	res, err := h.update(ctx, key, cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return users.RegenerateRecoveryCodes(domain.Fold(users.EvolveMFA, history), len(plain), factor.Factor, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			tag, err := tx.Exec(ctx, `UPDATE mfa_totp SET recovery_hashes = $3, updated_at = $4
				WHERE user_id = $1 AND tenant_id = $2 AND NOT pending`, string(cmd.User), string(cmd.Tenant), hashes, now)
			if err == nil && tag.RowsAffected() != 1 {
				return users.ErrMFANotEnabled
			}
			return err
		})
	if err != nil {
		return Result{}, nil, err
	}
	return res, plain, nil
}

// mfaRow is the part of a user's mfa_totp row that checking a code needs.
type mfaRow struct {
	sealed   []byte
	lastStep int64
	hashes   []string
	throttle users.MFAThrottle
}

// lockMFARow reads user's active mfa_totp row under a row lock; no active
// factor is users.ErrMFANotEnabled.
func lockMFARow(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, user domain.UserID) (mfaRow, error) {
	var r mfaRow
	var lastFailure, lockedUntil *time.Time
	err := tx.QueryRow(ctx, `SELECT sealed_secret, last_step, recovery_hashes, failed_attempts, lockouts, last_failure_at, locked_until
		FROM mfa_totp WHERE user_id = $1 AND tenant_id = $2 AND NOT pending FOR UPDATE`, string(user), string(tenant)).
		Scan(&r.sealed, &r.lastStep, &r.hashes, &r.throttle.Failures, &r.throttle.Lockouts, &lastFailure, &lockedUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, users.ErrMFANotEnabled
	}
	if lastFailure != nil {
		r.throttle.LastFailureAt = *lastFailure
	}
	if lockedUntil != nil {
		r.throttle.LockedUntil = *lockedUntil
	}
	return r, err
}

// countMFAFailure stores the throttle after a failed attempt at now and
// returns the end of the lock it started, or zero.
func countMFAFailure(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, user domain.UserID, th users.MFAThrottle, now time.Time) (time.Time, error) {
	th = th.Failed(now)
	var lockedUntil *time.Time
	if th.Locked(now) {
		lockedUntil = &th.LockedUntil
	}
	_, err := tx.Exec(ctx, `UPDATE mfa_totp SET failed_attempts = $3, lockouts = $4, last_failure_at = $5,
			locked_until = coalesce($6, locked_until), updated_at = $5
		WHERE user_id = $1 AND tenant_id = $2`, string(user), string(tenant), th.Failures, th.Lockouts, now, lockedUntil)
	if lockedUntil == nil {
		return time.Time{}, err
	}
	return *lockedUntil, err
}

// verifyFactor checks f for user and spends it: a TOTP code's step is used
// up, a recovery code removed. A refused code is counted (users.MFAThrottle)
// and answered with refused; while locked, every code is refused unchecked
// with ErrMFALocked. Refusals are recorded as user.mfa_failed, a spent
// recovery code as user.mfa_recovery_code_used.
func (h *Handler) verifyFactor(ctx context.Context, tenant domain.TenantID, user domain.UserID, f SecondFactor,
	meta eventstore.Metadata, refused error) error {
	now := h.now()
	var reason string
	var lockedUntil time.Time
	remaining := -1
	err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		reason, lockedUntil, remaining = "", time.Time{}, -1
		row, err := lockMFARow(ctx, tx, tenant, user)
		if err != nil {
			return err
		}
		if row.throttle.Locked(now) {
			reason = users.ReasonLocked
			return nil
		}
		if h.signIn.otp == nil {
			return ErrMFAUnavailable
		}
		reason = users.ReasonBadCode
		switch {
		case len(f.Code) > maxCodeLen:
		case f.Factor == users.FactorTOTP:
			if h.signIn.sealer == nil {
				return ErrMFAUnavailable
			}
			plain, err := h.signIn.sealer.Open(tenant, sealPurposeTOTP, row.sealed)
			if err != nil {
				return fmt.Errorf("open totp secret: %w", err)
			}
			secret := string(plain)
			if step, ok := h.signIn.otp.Verify(secret, f.Code, now, row.lastStep); ok {
				// The row is locked, so the guard holds; it stays as the
				// statement of the rule.
				tag, err := tx.Exec(ctx, `UPDATE mfa_totp SET last_step = $3, failed_attempts = 0, lockouts = 0,
						last_failure_at = NULL, locked_until = NULL, updated_at = $4
					WHERE user_id = $1 AND tenant_id = $2 AND last_step < $3`, string(user), string(tenant), step, now)
				if err != nil || tag.RowsAffected() == 1 {
					reason = ""
					return err
				}
				reason = users.ReasonReplayedCode
			} else if _, seen := h.signIn.otp.Verify(secret, f.Code, now, -1); seen {
				reason = users.ReasonReplayedCode
			}
		case f.Factor == users.FactorRecoveryCode:
			if i, ok := h.signIn.otp.MatchRecoveryCode(f.Code, row.hashes); ok {
				tag, err := tx.Exec(ctx, `UPDATE mfa_totp SET recovery_hashes = array_remove(recovery_hashes, $3),
						failed_attempts = 0, lockouts = 0, last_failure_at = NULL, locked_until = NULL, updated_at = $4
					WHERE user_id = $1 AND tenant_id = $2 AND $3 = ANY (recovery_hashes)`, string(user), string(tenant), row.hashes[i], now)
				if err != nil || tag.RowsAffected() == 1 {
					reason, remaining = "", len(row.hashes)-1
					return err
				}
			}
		}
		lockedUntil, err = countMFAFailure(ctx, tx, tenant, user, row.throttle, now)
		return err
	})
	if err != nil {
		return err
	}
	switch reason {
	case "":
		if remaining >= 0 {
			h.appendBestEffort(ctx, tenant, user, meta, func(s users.MFAState) ([]domain.Event, error) {
				return users.UseRecoveryCode(s, remaining, now)
			})
		}
		return nil
	case users.ReasonLocked:
		h.recordMFAFailure(ctx, tenant, user, meta, f.Factor, reason, time.Time{})
		return ErrMFALocked
	}
	h.recordMFAFailure(ctx, tenant, user, meta, f.Factor, reason, lockedUntil)
	return refused
}

// checkPasswordForMFA verifies the password of a signed-in user who turns
// the second factor off. It refuses unchecked while the second factor is
// locked, and counts a wrong password like a wrong code.
func (h *Handler) checkPasswordForMFA(ctx context.Context, tenant domain.TenantID, user domain.UserID, password string, meta eventstore.Metadata) error {
	now := h.now()
	var lockedUntil *time.Time
	err := h.pool.QueryRow(ctx, `SELECT locked_until FROM mfa_totp WHERE user_id = $1 AND tenant_id = $2 AND NOT pending`,
		string(user), string(tenant)).Scan(&lockedUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return users.ErrMFANotEnabled
	}
	if err != nil {
		return err
	}
	if lockedUntil != nil && now.Before(*lockedUntil) {
		h.recordMFAFailure(ctx, tenant, user, meta, users.FactorPassword, users.ReasonLocked, time.Time{})
		return ErrMFALocked
	}
	err = h.CheckPassword(ctx, user, password)
	if !errors.Is(err, ErrWrongPassword) {
		return err
	}
	var until time.Time
	err = pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		row, err := lockMFARow(ctx, tx, tenant, user)
		if err != nil {
			return err
		}
		until, err = countMFAFailure(ctx, tx, tenant, user, row.throttle, now)
		return err
	})
	if err != nil {
		return err
	}
	h.recordMFAFailure(ctx, tenant, user, meta, users.FactorPassword, users.ReasonBadPassword, until)
	return ErrWrongPassword
}

// recordMFAFailure appends user.mfa_failed. Like recordFailure, failing to
// record must not change the answer, so the error is dropped.
func (h *Handler) recordMFAFailure(ctx context.Context, tenant domain.TenantID, user domain.UserID, meta eventstore.Metadata,
	factor, reason string, lockedUntil time.Time) {
	now := h.now()
	h.appendBestEffort(ctx, tenant, user, meta, func(s users.MFAState) ([]domain.Event, error) {
		return users.RecordMFAFailure(s, factor, reason, lockedUntil, now)
	})
}

// appendBestEffort appends what decide returns to user's stream, for records
// of what already happened in a committed transaction.
func (h *Handler) appendBestEffort(ctx context.Context, tenant domain.TenantID, user domain.UserID, meta eventstore.Metadata,
	decide func(users.MFAState) ([]domain.Event, error)) {
	if meta.Actor == "" {
		meta.Actor, meta.ActorType = string(user), "user"
	}
	_, _ = h.update(ctx, userKey(tenant, user), meta, 0, func(history []domain.Event) ([]domain.Event, error) {
		return decide(domain.Fold(users.EvolveMFA, history))
	}, nil)
}

// ipKey is the throttling key of a client address: an IPv4 address itself,
// an IPv6 address's /64 (what one subscriber is given), anything else as it
// is.
func ipKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// throttleNameKey hides a user name that names no account: the throttle table keeps
// its SHA-256 only (people type passwords into the user name field).
func throttleNameKey(username string) string {
	sum := sha256.Sum256([]byte("velocicompanion login throttle\x00" + users.UsernameKey(username)))
	return hex.EncodeToString(sum[:])
}

// checkIPThrottle refuses an address with too many failures in its window.
func (h *Handler) checkIPThrottle(ctx context.Context, ip string) error {
	limit, window := h.ipLimits()
	var failures int
	var start time.Time
	err := h.pool.QueryRow(ctx, `SELECT failures, window_start FROM login_throttle WHERE scope = 'ip' AND key = $1`, ip).
		Scan(&failures, &start)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sign-in throttle: %w", err)
	}
	end := start.Add(window)
	if now := h.now(); failures >= limit && now.Before(end) {
		return &throttledError{err: ErrIPThrottled, after: end.Sub(now)}
	}
	return nil
}

// checkNameThrottle applies an account's sign-in delays (users.CheckLogin)
// to a user name that names no account, with its failures counted here.
// Names of accounts are throttled by VerifyPassword.
func (h *Handler) checkNameThrottle(ctx context.Context, username string) error {
	var failures int
	var last time.Time
	err := h.pool.QueryRow(ctx, `SELECT failures, last_failure_at FROM login_throttle
		WHERE scope = 'username' AND key = $1
			AND NOT EXISTS (SELECT 1 FROM identities WHERE username_key = $2 AND status <> 'deleted')`,
		throttleNameKey(username), users.UsernameKey(username)).Scan(&failures, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sign-in throttle: %w", err)
	}
	return users.CheckLogin(users.State{Exists: true, FailedLogins: failures, LastFailureAt: last}, h.now())
}

// recordSignInFailure counts a failed sign-in for the address and, when
// username names no account, for the name; and drops counters that can no
// longer throttle anything. Like recordFailure it never fails the request.
func (h *Handler) recordSignInFailure(ctx context.Context, ip, username string) {
	now := h.now()
	_, window := h.ipLimits()
	_, _ = h.pool.Exec(ctx, `INSERT INTO login_throttle AS t (scope, key, failures, window_start, last_failure_at)
		VALUES ('ip', $1, 1, $2, $2)
		ON CONFLICT (scope, key) DO UPDATE SET
			failures = CASE WHEN t.window_start <= $3 THEN 1 ELSE t.failures + 1 END,
			window_start = CASE WHEN t.window_start <= $3 THEN $2 ELSE t.window_start END,
			last_failure_at = $2`, ip, now, now.Add(-window))
	if username != "" {
		_, _ = h.pool.Exec(ctx, `INSERT INTO login_throttle AS t (scope, key, failures, window_start, last_failure_at)
			SELECT 'username', $1, 1, $2, $2
			WHERE NOT EXISTS (SELECT 1 FROM identities WHERE username_key = $3 AND status <> 'deleted')
			ON CONFLICT (scope, key) DO UPDATE SET failures = t.failures + 1, last_failure_at = $2`,
			throttleNameKey(username), now, users.UsernameKey(username))
	}
	_, _ = h.pool.Exec(ctx, `DELETE FROM login_throttle
		WHERE (scope = 'ip' AND last_failure_at < $1) OR (scope = 'username' AND last_failure_at < $2)`,
		now.Add(-window), now.Add(-unknownNameRetention))
}
