package commands_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"velocicompanion/adapters/auth"
	"velocicompanion/adapters/secrets"
	"velocicompanion/adapters/totp"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// otpEdge adapts adapters/totp to commands.OTP, as cmd does.
type otpEdge struct{}

func (otpEdge) Generate(issuer, account string) (commands.OTPSecret, error) {
	s, err := totp.Generate(issuer, account)
	return commands.OTPSecret{Base32: s.Base32, URI: s.URI, QRPNG: s.QRPNG}, err
}

func (otpEdge) Verify(secret, code string, now time.Time, last int64) (int64, bool) {
	return totp.Verify(secret, code, now, last)
}

func (otpEdge) NewRecoveryCodes(n int) ([]string, []string, error) { return totp.NewRecoveryCodes(n) }

func (otpEdge) MatchRecoveryCode(code string, hashes []string) (int, bool) {
	return totp.MatchRecoveryCode(code, hashes)
}

// oathtool returns the TOTP code of secret at the time at, computed by the
// OATH Toolkit, independently of the code under test. The secret goes in on
// standard input, never on the command line.
func oathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is needed to make codes independently (apt-get install -y oathtool): %v", err)
	}
	cmd := exec.Command(path, "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), "-")
	cmd.Stdin = strings.NewReader(secret + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool: %v: %s", err, out)
	}
	code := strings.TrimSpace(string(out))
	if len(code) != 6 {
		t.Fatalf("oathtool printed %q", out)
	}
	return code
}

func newKeyring(t *testing.T) *secrets.Keyring {
	t.Helper()
	key := make([]byte, secrets.KeyLen)
	_, _ = rand.Read(key)
	kr, err := secrets.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// mfaHandler returns a handler of f's database and clock with second factors
// sealed by sealer (nil: no master key).
func (f *fixture) mfaHandler(t *testing.T, sealer commands.Sealer, opts ...commands.Option) *commands.Handler {
	t.Helper()
	hasher, err := auth.NewHasher(auth.HasherOptions{Params: auth.MinimumParams})
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]commands.Option{commands.WithClock(f.clock), commands.WithMFA(sealer, otpEdge{}, "VelociCompanion Test")}, opts...)
	return commands.New(eventstore.NewStore(f.db.App, commands.NewCodec()), hasher, opts...)
}

// newMFAFixture is newFixture whose handler has second factors.
func newMFAFixture(t *testing.T, opts ...commands.Option) (*fixture, *secrets.Keyring) {
	t.Helper()
	f := newFixture(t)
	kr := newKeyring(t)
	f.h = f.mfaHandler(t, kr, opts...)
	return f, kr
}

func from(ip string) eventstore.Metadata {
	return eventstore.Metadata{SourceIP: ip, UserAgent: "totp-test/1"}
}

// enrol sets a TOTP factor up for user and confirms it with oathtool's code
// of the current step; it returns the secret and the recovery codes.
func (f *fixture) enrol(t *testing.T, tenant domain.TenantID, user domain.UserID) (string, []string) {
	t.Helper()
	ctx := context.Background()
	e, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: tenant, User: user})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	_, codes, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: tenant, User: user, Code: oathtool(t, e.Secret, f.clock())})
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	return e.Secret, codes
}

func (f *fixture) passwordStep(t *testing.T, username string, md eventstore.Metadata) commands.PasswordStep {
	t.Helper()
	step, err := f.h.BeginSignIn(context.Background(), commands.Login{Username: username, Password: "password of " + username, Meta: md})
	if err != nil {
		t.Fatalf("password step of %s: %v", username, err)
	}
	return step
}

func (f *fixture) complete(step commands.PasswordStep, factor commands.SecondFactor, jti string) (commands.Session, error) {
	return f.h.CompleteSignIn(context.Background(), commands.CompleteSignIn{Identity: step.Identity, TokenID: jti,
		TokenExpiresAt: f.clock().Add(5 * time.Minute), Factor: factor, Policy: commands.DefaultSessionPolicy, Meta: from("198.51.100.1")})
}

// mfaRow is what the credential table holds for a user.
type mfaRow struct {
	sealed      []byte
	pending     bool
	lastStep    int64
	failures    int
	lockedUntil *time.Time
	hashes      []string
}

func (f *fixture) mfaRow(t *testing.T, user domain.UserID) mfaRow {
	t.Helper()
	var r mfaRow
	err := f.db.Owner.QueryRow(context.Background(), `SELECT sealed_secret, pending, last_step, failed_attempts, locked_until, recovery_hashes
		FROM mfa_totp WHERE user_id = $1`, string(user)).Scan(&r.sealed, &r.pending, &r.lastStep, &r.failures, &r.lockedUntil, &r.hashes)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mfaFailures returns the reasons of the user's user.mfa_failed events, in order.
func (f *fixture) mfaFailures(t *testing.T, tenant domain.TenantID, user domain.UserID) []string {
	t.Helper()
	var out []string
	for _, e := range f.userEvents(t, tenant, user) {
		if ev, ok := e.Event.(users.MFAFailed); ok {
			out = append(out, ev.Reason)
		}
	}
	return out
}

func lastLoginMethod(t *testing.T, envs []eventstore.Envelope) string {
	t.Helper()
	for i := len(envs) - 1; i >= 0; i-- {
		if e, ok := envs[i].Event.(users.LoggedIn); ok {
			return e.Method
		}
	}
	t.Fatal("no user.logged_in")
	return ""
}

func TestTOTPSetupAndConfirm(t *testing.T) {
	f, kr := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)

	first, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: a, User: carol})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Secret) != 32 || !strings.HasPrefix(first.URI, "otpauth://totp/") || !strings.Contains(first.URI, "carol") ||
		!strings.Contains(first.URI, "issuer=VelociCompanion%20Test") || !bytes.HasPrefix(first.QRPNG, []byte("\x89PNG")) ||
		!first.ExpiresAt.Equal(f.clock().Add(commands.TOTPSetupTTL)) {
		t.Fatalf("enrolment %+v", first)
	}
	row := f.mfaRow(t, carol)
	if !row.pending || bytes.Contains(row.sealed, []byte(first.Secret)) {
		t.Fatal("the pending secret is not stored sealed")
	}
	// Sealed for the tenant and the purpose: it opens with them only.
	if plain, err := kr.Open(a, "totp", row.sealed); err != nil || string(plain) != first.Secret {
		t.Fatalf("open the sealed secret: %v", err)
	}
	if _, err := kr.Open("another-tenant", "totp", row.sealed); !errors.Is(err, secrets.ErrCannotOpen) {
		t.Fatalf("the secret opened for another tenant: %v", err)
	}
	// Nothing changed for sign-in while pending.
	if step := f.passwordStep(t, "carol", from("198.51.100.2")); step.MFARequired() {
		t.Fatal("a pending setup already asks for a second factor")
	}

	// Setting up again replaces the pending secret.
	second, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: a, User: carol})
	if err != nil {
		t.Fatal(err)
	}
	if second.Secret == first.Secret {
		t.Fatal("a second setup gave the same secret")
	}
	oldCode, newCode := oathtool(t, first.Secret, f.clock()), oathtool(t, second.Secret, f.clock())
	if oldCode != newCode {
		if _, _, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: oldCode}); !errors.Is(err, commands.ErrMFACodeWrong) {
			t.Fatalf("the replaced secret's code: %v", err)
		}
	}
	for _, bad := range []string{"000000", "12345", "abcdef", "1234567"} {
		if bad == newCode {
			continue
		}
		if _, _, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: bad}); !errors.Is(err, commands.ErrMFACodeWrong) {
			t.Fatalf("confirm with %q: %v", bad, err)
		}
	}
	if _, _, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: " "}); !errors.Is(err, commands.ErrCodeRequired) {
		t.Fatalf("confirm without a code: %v", err)
	}
	if n := countEvents(f.userEvents(t, a, carol), users.EventMFAEnabled); n != 0 {
		t.Fatal("a refused confirmation recorded user.mfa_enabled")
	}

	// The code of the new secret turns the factor on, with ten recovery codes.
	f.advance(20 * time.Second)
	res, codes, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: oathtool(t, second.Secret, f.clock())})
	if err != nil {
		t.Fatal(err)
	}
	if res.Position == 0 || len(codes) != commands.RecoveryCodeCount {
		t.Fatalf("confirm gave %+v and %d codes", res, len(codes))
	}
	row = f.mfaRow(t, carol)
	if row.pending || row.lastStep != totp.Step(f.clock()) || len(row.hashes) != commands.RecoveryCodeCount {
		t.Fatalf("row after confirming: pending %v, last step %d, %d hashes", row.pending, row.lastStep, len(row.hashes))
	}
	envs := f.userEvents(t, a, carol)
	if countEvents(envs, users.EventMFAEnabled) != 1 {
		t.Fatal("no user.mfa_enabled")
	}
	// Once on: neither a new setup nor another confirmation.
	if _, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: a, User: carol}); !errors.Is(err, users.ErrMFAEnabled) {
		t.Fatalf("setup while on: %v", err)
	}
	f.advance(totp.Period)
	if _, _, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: oathtool(t, second.Secret, f.clock())}); !errors.Is(err, users.ErrMFAEnabled) {
		t.Fatalf("confirm while on: %v", err)
	}
	if step := f.passwordStep(t, "carol", from("198.51.100.2")); !step.MFARequired() ||
		strings.Join(step.Factors, ",") != "totp,recovery_code" {
		t.Fatalf("password step after enabling: %+v", step.Factors)
	}
	f.assertNoSecrets(t, append(codes, first.Secret, second.Secret, strings.ToLower(second.Secret))...)

	// Another tenant's user id is simply not there.
	b := f.tenant(t, "Globex")
	if _, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: b, User: carol}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("setup across tenants: %v", err)
	}
}

func TestTOTPSetupExpires(t *testing.T) {
	f, _ := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	if _, _, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: "123456"}); !errors.Is(err, commands.ErrNoPendingSetup) {
		t.Fatalf("confirm without setup: %v", err)
	}
	e, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: a, User: carol})
	if err != nil {
		t.Fatal(err)
	}
	f.advance(commands.TOTPSetupTTL + time.Second)
	if _, _, err := f.h.ConfirmTOTP(ctx, commands.ConfirmTOTP{Tenant: a, User: carol, Code: oathtool(t, e.Secret, f.clock())}); !errors.Is(err, commands.ErrSetupExpired) {
		t.Fatalf("confirm after %s: %v", commands.TOTPSetupTTL, err)
	}
}

func TestTOTPSignInWindowAndReplay(t *testing.T) {
	f, _ := newMFAFixture(t)
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	f.user(t, a, "dave", users.RoleViewer)
	secret, _ := f.enrol(t, a, carol)
	enrolled := totp.Step(f.clock())

	// Without a factor the password suffices.
	if step := f.passwordStep(t, "dave", from("198.51.100.3")); step.MFARequired() {
		t.Fatal("dave has no second factor")
	}
	// The code used to enrol is spent.
	step := f.passwordStep(t, "carol", from("198.51.100.3"))
	if _, err := f.complete(step, commands.TOTPCode(oathtool(t, secret, f.clock())), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
		t.Fatalf("the enrolment code again: %v", err)
	}

	// Three steps later: the previous step's code is accepted (-1) ...
	f.advance(3 * totp.Period)
	now := f.clock()
	prev := oathtool(t, secret, now.Add(-totp.Period))
	s, err := f.complete(step, commands.TOTPCode(prev[:3]+" "+prev[3:]), "")
	if err != nil {
		t.Fatalf("code of step -1: %v", err)
	}
	if m := lastLoginMethod(t, f.userEvents(t, a, carol)); m != users.MethodPasswordTOTP || !f.sessionOpen(t, s) {
		t.Fatalf("signed in with method %q", m)
	}
	if got := f.mfaRow(t, carol).lastStep; got != enrolled+2 {
		t.Fatalf("last step %d, want %d", got, enrolled+2)
	}
	// ... once: the same code a few seconds later is a replay.
	f.advance(5 * time.Second)
	if _, err := f.complete(step, commands.TOTPCode(prev), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
		t.Fatalf("replay within the step: %v", err)
	}
	// The next step's code is accepted (+1); after it, the current step's is not.
	next, current := oathtool(t, secret, now.Add(totp.Period)), oathtool(t, secret, now)
	if _, err := f.complete(step, commands.TOTPCode(next), ""); err != nil {
		t.Fatalf("code of step +1: %v", err)
	}
	if current != next {
		if _, err := f.complete(step, commands.TOTPCode(current), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
			t.Fatalf("a code of a step before the last used one: %v", err)
		}
	}
	// Codes two steps away are refused.
	f.advance(4 * totp.Period)
	now = f.clock()
	window := map[string]bool{}
	for off := -1; off <= 1; off++ {
		window[oathtool(t, secret, now.Add(time.Duration(off)*totp.Period))] = true
	}
	outside := 0
	for _, off := range []time.Duration{-2, 2} {
		code := oathtool(t, secret, now.Add(off*totp.Period))
		if window[code] {
			continue // the same digits as a code inside the window (one chance in 10^5)
		}
		outside++
		if _, err := f.complete(step, commands.TOTPCode(code), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
			t.Fatalf("code of step %+d: %v", off, err)
		}
	}
	if _, err := f.complete(step, commands.TOTPCode(oathtool(t, secret, now)), ""); err != nil {
		t.Fatalf("code of the current step after refusals: %v", err)
	}
	want := []string{users.ReasonReplayedCode, users.ReasonReplayedCode}
	if current != next {
		want = append(want, users.ReasonReplayedCode)
	}
	for range outside {
		want = append(want, users.ReasonBadCode)
	}
	if got := f.mfaFailures(t, a, carol); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("recorded failures %v, want %v", got, want)
	}
	// A success resets the count.
	if r := f.mfaRow(t, carol); r.failures != 0 || r.lockedUntil != nil {
		t.Fatalf("after a success: %d failures, locked until %v", r.failures, r.lockedUntil)
	}
	f.assertNoSecrets(t, secret, prev, next, current)
}

func TestMFALockoutIsPerUserAndTimeBoxed(t *testing.T) {
	f, kr := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	erin := f.user(t, a, "erin", users.RoleAnalyst)
	secret, _ := f.enrol(t, a, carol)
	erinSecret, _ := f.enrol(t, a, erin)
	f.advance(totp.Period)

	step := f.passwordStep(t, "carol", from("198.51.100.4"))
	good := oathtool(t, secret, f.clock())
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	for i := 1; i <= users.MaxMFAFailures; i++ {
		if _, err := f.complete(step, commands.TOTPCode(bad), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
			t.Fatalf("bad code %d: %v", i, err)
		}
	}
	row := f.mfaRow(t, carol)
	if row.lockedUntil == nil || !row.lockedUntil.Equal(f.clock().Add(users.MFALockout)) {
		t.Fatalf("locked until %v after %d failures", row.lockedUntil, users.MaxMFAFailures)
	}
	// Locked: even the right code is refused unchecked, and not spent. A
	// second replica (another handler on the same database) sees the lock.
	replica := f.mfaHandler(t, kr)
	if _, err := replica.CompleteSignIn(ctx, commands.CompleteSignIn{Identity: step.Identity, Factor: commands.TOTPCode(good),
		Policy: commands.DefaultSessionPolicy, Meta: from("198.51.100.4")}); !errors.Is(err, commands.ErrMFALocked) {
		t.Fatalf("right code while locked: %v", err)
	}
	if got := f.mfaRow(t, carol).lastStep; got != row.lastStep {
		t.Fatal("a code was spent while locked")
	}
	// Only carol is locked.
	erinStep := f.passwordStep(t, "erin", from("198.51.100.4"))
	if _, err := f.complete(erinStep, commands.TOTPCode(oathtool(t, erinSecret, f.clock())), ""); err != nil {
		t.Fatalf("another user while carol is locked: %v", err)
	}
	reasons := f.mfaFailures(t, a, carol)
	if len(reasons) != users.MaxMFAFailures+1 || reasons[len(reasons)-1] != users.ReasonLocked {
		t.Fatalf("failures recorded: %v", reasons)
	}
	var locking *users.MFAFailed
	for _, e := range f.userEvents(t, a, carol) {
		if ev, ok := e.Event.(users.MFAFailed); ok && !ev.LockedUntil.IsZero() {
			locking = &ev
		}
	}
	if locking == nil || !locking.LockedUntil.Equal(*row.lockedUntil) {
		t.Fatalf("the locking failure: %+v", locking)
	}

	// The lock ends by itself.
	f.advance(users.MFALockout)
	if _, err := f.complete(step, commands.TOTPCode(oathtool(t, secret, f.clock())), ""); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	// A success started over: it takes MaxMFAFailures again, and locks for MFALockout.
	for range users.MaxMFAFailures - 1 {
		if _, err := f.complete(step, commands.TOTPCode(bad), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
			t.Fatal(err)
		}
	}
	if r := f.mfaRow(t, carol); r.lockedUntil != nil || r.failures != users.MaxMFAFailures-1 {
		t.Fatalf("locked after %d failures: %+v", users.MaxMFAFailures-1, r)
	}
	if _, err := f.complete(step, commands.TOTPCode(bad), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
		t.Fatal(err)
	}
	// The next lockout without a success in between lasts twice as long.
	f.advance(users.MFALockout)
	for range users.MaxMFAFailures {
		if _, err := f.complete(step, commands.TOTPCode(bad), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
			t.Fatal(err)
		}
	}
	if r := f.mfaRow(t, carol); r.lockedUntil == nil || !r.lockedUntil.Equal(f.clock().Add(2*users.MFALockout)) {
		t.Fatalf("second lockout until %v, want %v", r.lockedUntil, f.clock().Add(2*users.MFALockout))
	}
}

func TestMFATokenIsSingleUse(t *testing.T) {
	f, _ := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	secret, _ := f.enrol(t, a, carol)
	f.advance(totp.Period)

	step := f.passwordStep(t, "carol", from("198.51.100.5"))
	if _, err := f.complete(step, commands.TOTPCode(oathtool(t, secret, f.clock())), "jti-1"); err != nil {
		t.Fatal(err)
	}
	// The same token with a fresh code: refused before the code is checked,
	// so the code is not spent.
	f.advance(totp.Period)
	fresh := oathtool(t, secret, f.clock())
	last := f.mfaRow(t, carol).lastStep
	if _, err := f.complete(step, commands.TOTPCode(fresh), "jti-1"); !errors.Is(err, commands.ErrMFATokenInvalid) {
		t.Fatalf("reused mfa token: %v", err)
	}
	if f.mfaRow(t, carol).lastStep != last {
		t.Fatal("a reused token spent a code")
	}

	// Concurrent requests with one token and two valid codes: one session.
	step2 := f.passwordStep(t, "carol", from("198.51.100.5"))
	codes := []string{fresh, oathtool(t, secret, f.clock().Add(totp.Period))}
	var wg sync.WaitGroup
	results := make([]error, len(codes))
	for i, code := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = f.complete(step2, commands.TOTPCode(code), "jti-2")
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range results {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, commands.ErrMFATokenInvalid), errors.Is(err, commands.ErrMFACodeInvalid):
		default:
			t.Fatalf("concurrent use: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d sessions from one mfa token", wins)
	}

	// Claims naming another tenant are refused.
	f.advance(2 * totp.Period)
	step3 := f.passwordStep(t, "carol", from("198.51.100.5"))
	forged := step3
	forged.Identity.Tenant = f.tenant(t, "Globex")
	if _, err := f.complete(forged, commands.TOTPCode(oathtool(t, secret, f.clock())), "jti-3"); !errors.Is(err, commands.ErrSignInAgain) {
		t.Fatalf("mfa step for another tenant: %v", err)
	}
	// The account changed between the steps (password changed): sign in again.
	pw := "a brand new password"
	if _, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: carol, Password: &pw, By: platform}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.complete(step3, commands.TOTPCode(oathtool(t, secret, f.clock())), "jti-4"); !errors.Is(err, commands.ErrSignInAgain) {
		t.Fatalf("mfa step after a password change: %v", err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	f, _ := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	secret, codes := f.enrol(t, a, carol)

	step := f.passwordStep(t, "carol", from("198.51.100.6"))
	s, err := f.complete(step, commands.RecoveryCode(strings.ToUpper(codes[0])), "")
	if err != nil {
		t.Fatalf("sign in with a recovery code: %v", err)
	}
	envs := f.userEvents(t, a, carol)
	if m := lastLoginMethod(t, envs); m != users.MethodPasswordRecoveryCode || !f.sessionOpen(t, s) {
		t.Fatalf("method %q", m)
	}
	var used *users.RecoveryCodeUsed
	for _, e := range envs {
		if ev, ok := e.Event.(users.RecoveryCodeUsed); ok {
			used = &ev
		}
	}
	if used == nil || used.Remaining != commands.RecoveryCodeCount-1 {
		t.Fatalf("recovery code use recorded as %+v", used)
	}
	// Single use.
	if _, err := f.complete(step, commands.RecoveryCode(codes[0]), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
		t.Fatalf("a used recovery code again: %v", err)
	}
	if n := len(f.mfaRow(t, carol).hashes); n != commands.RecoveryCodeCount-1 {
		t.Fatalf("%d hashes left", n)
	}

	// Regenerating (proven with a TOTP code) replaces them all.
	f.advance(totp.Period)
	if _, _, err := f.h.RegenerateRecoveryCodes(ctx, commands.RegenerateRecoveryCodes{Tenant: a, User: carol, Code: "999999"}); !errors.Is(err, commands.ErrMFACodeWrong) &&
		oathtool(t, secret, f.clock()) != "999999" {
		t.Fatalf("regenerate with a wrong code: %v", err)
	}
	res, fresh, err := f.h.RegenerateRecoveryCodes(ctx, commands.RegenerateRecoveryCodes{Tenant: a, User: carol, Code: oathtool(t, secret, f.clock())})
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) != commands.RecoveryCodeCount || res.Position == 0 || countEvents(f.userEvents(t, a, carol), users.EventRecoveryCodesRegenerated) != 1 {
		t.Fatalf("regenerate gave %d codes, %+v", len(fresh), res)
	}
	if _, err := f.complete(step, commands.RecoveryCode(codes[1]), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
		t.Fatalf("an old recovery code after regenerating: %v", err)
	}
	if _, err := f.complete(step, commands.CodeFactor(fresh[4]), ""); err != nil {
		t.Fatalf("a new recovery code: %v", err)
	}
	// Regenerating with a recovery code works too, and spends it.
	_, again, err := f.h.RegenerateRecoveryCodes(ctx, commands.RegenerateRecoveryCodes{Tenant: a, User: carol, Code: fresh[5]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.complete(step, commands.RecoveryCode(fresh[6]), ""); !errors.Is(err, commands.ErrMFACodeInvalid) {
		t.Fatalf("a code of the replaced set: %v", err)
	}
	f.assertNoSecrets(t, append(append(append([]string{secret}, codes...), fresh...), again...)...)
	// Hashes only.
	for _, h := range f.mfaRow(t, carol).hashes {
		for _, c := range again {
			if strings.Contains(h, c) || strings.Contains(h, strings.ReplaceAll(c, "-", "")) {
				t.Fatal("a recovery code is stored in the clear")
			}
		}
	}
}

func TestDisableTOTP(t *testing.T) {
	f, _ := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	secret, codes := f.enrol(t, a, carol)
	self := users.Actor{User: carol, Tenant: a, Role: users.RoleAnalyst}
	f.advance(totp.Period)
	step := f.passwordStep(t, "carol", from("198.51.100.7"))
	here, err := f.complete(step, commands.RecoveryCode(codes[0]), "")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := f.complete(step, commands.RecoveryCode(codes[1]), "")
	if err != nil {
		t.Fatal(err)
	}
	disable := func(password, code string) error {
		_, err := f.h.DisableTOTP(ctx, commands.DisableTOTP{Tenant: a, User: carol, Session: here.ID, Password: password,
			Code: code, By: self, Meta: from("198.51.100.7")})
		return err
	}
	good, bad := oathtool(t, secret, f.clock()), "000000"
	if bad == good {
		bad = "111111"
	}
	if err := disable("not the password", good); !errors.Is(err, commands.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := disable("password of carol", ""); !errors.Is(err, commands.ErrCodeRequired) {
		t.Fatalf("no code: %v", err)
	}
	if err := disable("password of carol", bad); !errors.Is(err, commands.ErrMFACodeWrong) {
		t.Fatalf("wrong code: %v", err)
	}
	if r := f.mfaRow(t, carol); r.pending || r.failures != 2 {
		t.Fatalf("after a wrong password and a wrong code: pending %v, %d failures", r.pending, r.failures)
	}
	var factors []string
	for _, e := range f.userEvents(t, a, carol) {
		if ev, ok := e.Event.(users.MFAFailed); ok {
			factors = append(factors, ev.Factor+":"+ev.Reason)
		}
	}
	if strings.Join(factors, ",") != "password:bad_password,totp:bad_code" {
		t.Fatalf("failures recorded: %v", factors)
	}

	// Password and a recovery code: off, and the other session ends.
	if err := disable("password of carol", codes[2]); err != nil {
		t.Fatal(err)
	}
	if !f.sessionOpen(t, here) || f.sessionOpen(t, elsewhere) {
		t.Fatal("turning the factor off must end the other sessions only")
	}
	var off *users.MFADisabled
	for _, e := range f.userEvents(t, a, carol) {
		if ev, ok := e.Event.(users.MFADisabled); ok {
			off = &ev
		}
	}
	if off == nil || off.By != carol || off.With != users.FactorRecoveryCode {
		t.Fatalf("user.mfa_disabled %+v", off)
	}
	if r := f.mfaRow(t, carol); !r.pending || r.sealed != nil || len(r.hashes) != 0 {
		t.Fatalf("the secret and codes were not wiped: %+v", r)
	}
	if s := f.passwordStep(t, "carol", from("198.51.100.7")); s.MFARequired() {
		t.Fatal("a second factor is still asked for")
	}
	if err := disable("password of carol", good); !errors.Is(err, users.ErrMFANotEnabled) {
		t.Fatalf("off again: %v", err)
	}
	// It can be set up again, with a new secret.
	again, _ := f.enrol(t, a, carol)
	if again == secret {
		t.Fatal("the same secret again")
	}
}

func TestMFAWithoutMasterKey(t *testing.T) {
	f, _ := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	dave := f.user(t, a, "dave", users.RoleViewer)
	secret, codes := f.enrol(t, a, carol)
	f.advance(totp.Period)

	f.h = f.mfaHandler(t, nil)
	if _, err := f.h.SetupTOTP(ctx, commands.SetupTOTP{Tenant: a, User: dave}); !errors.Is(err, commands.ErrMFAUnavailable) ||
		domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("setup without a master key: %v", err)
	}
	step := f.passwordStep(t, "carol", from("198.51.100.8"))
	if _, err := f.complete(step, commands.TOTPCode(oathtool(t, secret, f.clock())), ""); !errors.Is(err, commands.ErrMFAUnavailable) {
		t.Fatalf("totp without a master key: %v", err)
	}
	if _, err := f.complete(step, commands.RecoveryCode(codes[0]), ""); err != nil {
		t.Fatalf("a recovery code does not need the master key: %v", err)
	}
	// A keyring without the key that sealed the secret cannot open it: an internal error.
	f.h = f.mfaHandler(t, newKeyring(t))
	_, err := f.complete(step, commands.TOTPCode(oathtool(t, secret, f.clock())), "")
	if err == nil || !errors.Is(err, secrets.ErrCannotOpen) {
		t.Fatalf("totp under another master key: %v", err)
	}
}

func TestSignInThrottledPerAddress(t *testing.T) {
	f, kr := newMFAFixture(t, commands.WithLoginThrottle(4, 5*time.Minute))
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	f.user(t, a, "carol", users.RoleAnalyst)
	f.user(t, a, "dave", users.RoleViewer)
	login := func(h *commands.Handler, username, password, ip string) error {
		_, err := h.BeginSignIn(ctx, commands.Login{Username: username, Password: password, Meta: from(ip)})
		return err
	}
	const attacker, bystander = "203.0.113.66", "203.0.113.67"
	// Failures of known and unknown names alike count for the address.
	for i, name := range []string{"carol", "nobody", "dave", "nobody2"} {
		if err := login(f.h, name, "wrong password!", attacker); !errors.Is(err, commands.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Now every sign-in from that address is refused, the right password
	// and unknown names too, the same way, on every replica.
	replica := f.mfaHandler(t, kr, commands.WithLoginThrottle(4, 5*time.Minute))
	for _, try := range []struct{ name, password string }{{"carol", "password of carol"}, {"nobody", "whatever it is"}, {"dave", "wrong"}} {
		err := login(replica, try.name, try.password, attacker)
		if !errors.Is(err, commands.ErrIPThrottled) {
			t.Fatalf("%s from the throttled address: %v", try.name, err)
		}
		if after, ok := commands.RetryAfter(err); !ok || after <= 0 || after > 5*time.Minute {
			t.Fatalf("retry after %v, %v", after, ok)
		}
	}
	// Another address, and so the account's owner, is not affected.
	if err := login(f.h, "carol", "password of carol", bystander); err != nil {
		t.Fatalf("carol from another address: %v", err)
	}
	// The throttle is time-boxed.
	f.advance(5 * time.Minute)
	if err := login(f.h, "carol", "password of carol", attacker); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// IPv6 addresses count by /64.
	for i := range 4 {
		if err := login(f.h, "nobody", "wrong password!", fmt.Sprintf("2001:db8:1:2::%x", i+10)); !errors.Is(err, commands.ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	if err := login(f.h, "carol", "password of carol", "2001:db8:1:2:ffff::1"); !errors.Is(err, commands.ErrIPThrottled) {
		t.Fatalf("same /64: %v", err)
	}
	if err := login(f.h, "carol", "password of carol", "2001:db8:1:3::1"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	// Stale counters are dropped as further failures come in.
	f.advance(25 * time.Hour)
	if err := login(f.h, "nobody", "wrong password!", bystander); !errors.Is(err, commands.ErrBadCredentials) {
		t.Fatal(err)
	}
	var rows int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM login_throttle`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 { // the bystander's address and "nobody"
		t.Fatalf("%d throttle rows after a day, want 2", rows)
	}
}

func TestSecondStepFailuresCountForTheAddress(t *testing.T) {
	f, _ := newMFAFixture(t, commands.WithLoginThrottle(3, 5*time.Minute))
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	secret, _ := f.enrol(t, a, carol)
	f.advance(totp.Period)
	step := f.passwordStep(t, "carol", from("203.0.113.70"))
	good := oathtool(t, secret, f.clock())
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	md := from("203.0.113.70")
	for range 3 {
		_, err := f.h.CompleteSignIn(ctx, commands.CompleteSignIn{Identity: step.Identity, TokenID: "t", Factor: commands.TOTPCode(bad),
			Policy: commands.DefaultSessionPolicy, Meta: md})
		if !errors.Is(err, commands.ErrMFACodeInvalid) {
			t.Fatal(err)
		}
	}
	_, err := f.h.CompleteSignIn(ctx, commands.CompleteSignIn{Identity: step.Identity, TokenID: "t", Factor: commands.TOTPCode(good),
		Policy: commands.DefaultSessionPolicy, Meta: md})
	if !errors.Is(err, commands.ErrIPThrottled) {
		t.Fatalf("second step from a throttled address: %v", err)
	}
}

// TestUnknownNamesThrottleLikeAccounts checks that throttling does not tell
// which user names exist: an account and a name without one answer the same
// after the same failures, and the name is not stored.
func TestUnknownNamesThrottleLikeAccounts(t *testing.T) {
	f, _ := newMFAFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	f.user(t, a, "carol", users.RoleAnalyst)
	try := func(name string, i int) error {
		// A fresh address each time: only the per-name throttle is at work.
		_, err := f.h.BeginSignIn(ctx, commands.Login{Username: name, Password: "wrong password!",
			Meta: from(fmt.Sprintf("192.0.2.%d", i+1))})
		return err
	}
	for _, name := range []string{"carol", "mallory.secret-name"} {
		for i := range users.FreeLoginFailures {
			if err := try(name, i); !errors.Is(err, commands.ErrBadCredentials) {
				t.Fatalf("%s failure %d: %v", name, i, err)
			}
		}
	}
	var answers []error
	for _, name := range []string{"carol", "mallory.secret-name"} {
		answers = append(answers, try(name, 50))
	}
	if !errors.Is(answers[0], users.ErrLoginThrottled) || !errors.Is(answers[1], users.ErrLoginThrottled) {
		t.Fatalf("after %d failures: account %v, unknown name %v", users.FreeLoginFailures, answers[0], answers[1])
	}
	if _, ok := commands.RetryAfter(answers[1]); ok {
		t.Fatal("the per-name throttle says more than the per-account one")
	}
	f.advance(users.LoginDelay(users.State{FailedLogins: users.FreeLoginFailures}))
	for _, name := range []string{"carol", "mallory.secret-name"} {
		if err := try(name, 60); !errors.Is(err, commands.ErrBadCredentials) {
			t.Fatalf("%s after the delay: %v", name, err)
		}
	}
	var dump string
	if err := f.db.Owner.QueryRow(ctx, `SELECT string_agg(key, ',') FROM login_throttle`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, "mallory") {
		t.Fatal("the throttle table stores a user name")
	}
}

func TestCodeShapes(t *testing.T) {
	for _, tc := range []struct {
		in     string
		factor string
		code   string
		looks  bool
	}{
		{"123456", users.FactorTOTP, "123456", true},
		{" 123 456 ", users.FactorTOTP, "123456", true},
		{"7k2m-x9qa-b3cd-e4fg", users.FactorRecoveryCode, "7k2m-x9qa-b3cd-e4fg", true},
		{"7K2MX9QAB3CDE4FG", users.FactorRecoveryCode, "7K2MX9QAB3CDE4FG", true},
		{"openid", users.FactorRecoveryCode, "openid", false},
		{"12345", users.FactorRecoveryCode, "12345", false},
		{"", users.FactorRecoveryCode, "", false},
	} {
		f := commands.CodeFactor(tc.in)
		if f.Factor != tc.factor || f.Code != tc.code || commands.LooksLikeCode(tc.in) != tc.looks {
			t.Errorf("CodeFactor(%q) = %+v, LooksLikeCode %v", tc.in, f, commands.LooksLikeCode(tc.in))
		}
	}
}
