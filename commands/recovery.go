package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerRecoveryEvents) }

func registerRecoveryEvents(c *eventstore.Codec) {
	eventstore.Register[users.PasswordResetRequested](c, 1)
	eventstore.Register[users.EmailVerificationRequested](c, 1)
	eventstore.Register[users.EmailVerified](c, 1)
}

// Mailer delivers the account-recovery mails; adapters/mail implements it.
// Send calls happen after the request was answered, so their duration never
// tells the caller whether an account exists.
type Mailer interface {
	SendPasswordReset(ctx context.Context, to, name, token string, validFor time.Duration) error
	SendEmailVerification(ctx context.Context, to, name, token string, validFor time.Duration) error
}

// Lifetimes and limits of recovery tokens.
const (
	PasswordResetTTL     = time.Hour
	EmailVerificationTTL = 48 * time.Hour
	// MaxResetsPerHour bounds the reset mails one account receives, so that
	// the request route cannot be used to flood someone's mailbox.
	MaxResetsPerHour = 3
)

const (
	purposeReset  = "password_reset"
	purposeVerify = "email_verification"
)

// ErrTokenInvalid answers every unusable recovery token alike: unknown, used,
// superseded or expired.
var ErrTokenInvalid = domain.Invalid("token_invalid", "the link is not valid or has expired")

// WithMailer makes the handler send recovery mails through m, from a
// background queue that log receives failures on.
func WithMailer(m Mailer, log *slog.Logger) Option {
	return func(h *Handler) {
		h.mailer = m
		h.mailLog = log
	}
}

func newToken() (token string, hash []byte, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	return token, sum[:], nil
}

func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// mail sends in the background, detached from the request.
func (h *Handler) mail(what string, send func(ctx context.Context, m Mailer) error) {
	if h.mailer == nil {
		if h.mailLog != nil {
			h.mailLog.Warn("no mail server configured; a recovery mail was not sent", slog.String("mail", what))
		}
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := send(ctx, h.mailer); err != nil && h.mailLog != nil {
			h.mailLog.Error("recovery mail failed", slog.String("mail", what), slog.String("error", err.Error()))
		}
	}()
}

// RequestPasswordReset mails a reset link to the account with email, if there
// is one that may recover its password, and records that it did. The caller
// learns nothing either way: the error is nil unless the system failed.
func (h *Handler) RequestPasswordReset(ctx context.Context, email string, meta eventstore.Metadata) error {
	email = strings.TrimSpace(email)
	var user, tenant string
	err := h.pool.QueryRow(ctx, `SELECT user_id, tenant_id FROM identities WHERE email_key = $1 AND status = 'active'`,
		nameKey(email)).Scan(&user, &tenant)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	now := h.now()
	var recent int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM recovery_tokens
		WHERE user_id = $1 AND purpose = $2 AND created_at > $3`, user, purposeReset, now.Add(-time.Hour)).Scan(&recent); err != nil {
		return err
	}
	if recent >= MaxResetsPerHour {
		return nil
	}
	token, hash, err := newToken()
	if err != nil {
		return err
	}
	meta.Actor, meta.ActorType = user, "user"
	var to, name string
	_, err = h.update(ctx, userKey(domain.TenantID(tenant), domain.UserID(user)), meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(users.Evolve, history)
			to, name = s.Email, s.Username
			return users.RequestPasswordReset(s, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			return storeToken(ctx, tx, purposeReset, hash, user, tenant, to, now, PasswordResetTTL)
		})
	if err != nil {
		if domain.KindOf(err) == domain.KindInternal {
			return err
		}
		return nil // refused for this account: same answer as no account
	}
	h.mail("password reset", func(ctx context.Context, m Mailer) error {
		return m.SendPasswordReset(ctx, to, name, token, PasswordResetTTL)
	})
	return nil
}

// storeToken records a new token and supersedes the user's earlier ones of
// the same purpose.
func storeToken(ctx context.Context, tx pgx.Tx, purpose string, hash []byte, user, tenant, email string, now time.Time, ttl time.Duration) error {
	if _, err := tx.Exec(ctx, `UPDATE recovery_tokens SET superseded_at = $3
		WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL AND superseded_at IS NULL`, user, purpose, now); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO recovery_tokens (token_hash, purpose, user_id, tenant_id, email, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, hash, purpose, user, tenant, email, now, now.Add(ttl))
	return err
}

// claimToken marks a live token of purpose as used, atomically, and returns
// whom it was for. A second claim of the same token fails.
func claimToken(ctx context.Context, tx pgx.Tx, purpose, token string, now time.Time) (user, tenant, email string, err error) {
	err = tx.QueryRow(ctx, `UPDATE recovery_tokens SET used_at = $3
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND superseded_at IS NULL AND expires_at > $3
		RETURNING user_id, tenant_id, email`, tokenHash(token), purpose, now).Scan(&user, &tenant, &email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", "", ErrTokenInvalid
	}
	return user, tenant, email, err
}

// lookupToken returns whom a live token of purpose is for, without using it.
func (h *Handler) lookupToken(ctx context.Context, purpose, token string, now time.Time) (user, tenant, email string, err error) {
	err = h.pool.QueryRow(ctx, `SELECT user_id, tenant_id, email FROM recovery_tokens
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND superseded_at IS NULL AND expires_at > $3`,
		tokenHash(token), purpose, now).Scan(&user, &tenant, &email)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", "", ErrTokenInvalid
	}
	return user, tenant, email, err
}

// ConfirmPasswordReset sets a new password with a reset token. The token is
// used up in the same transaction that records the change; every session and
// token of the account is revoked with the password.
func (h *Handler) ConfirmPasswordReset(ctx context.Context, token, password string, meta eventstore.Metadata) error {
	if len(token) > 256 {
		return ErrTokenInvalid
	}
	now := h.now()
	user, tenant, _, err := h.lookupToken(ctx, purposeReset, token, now)
	if err != nil {
		return err
	}
	if err := users.CheckPassword(password); err != nil {
		return err
	}
	hash, err := h.hasher.Hash(ctx, password)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	meta.Actor, meta.ActorType = user, "user"
	_, err = h.update(ctx, userKey(domain.TenantID(tenant), domain.UserID(user)), meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(users.Evolve, history)
			self := users.Actor{User: domain.UserID(user), Tenant: domain.TenantID(tenant), Role: s.Role}
			return users.ChangePassword(s, self, password, now)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			if _, _, _, err := claimToken(ctx, tx, purposeReset, token, now); err != nil {
				return err
			}
			return applyIdentity(ctx, tx, domain.UserID(user), events, hash)
		})
	if errors.Is(err, users.ErrDisabled) || errors.Is(err, domain.ErrNotFound) {
		return ErrTokenInvalid
	}
	return err
}

// RequestEmailVerification mails a verification link to the user's current
// address.
func (h *Handler) RequestEmailVerification(ctx context.Context, tenant domain.TenantID, user domain.UserID, meta eventstore.Metadata) (Result, error) {
	token, hash, err := newToken()
	if err != nil {
		return Result{}, err
	}
	now := h.now()
	var to, name string
	res, err := h.update(ctx, userKey(tenant, user), meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(users.Evolve, history)
			to, name = s.Email, s.Username
			return users.RequestEmailVerification(s, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			return storeToken(ctx, tx, purposeVerify, hash, string(user), string(tenant), to, now, EmailVerificationTTL)
		})
	if err != nil {
		return Result{}, err
	}
	h.mail("email verification", func(ctx context.Context, m Mailer) error {
		return m.SendEmailVerification(ctx, to, name, token, EmailVerificationTTL)
	})
	return res, nil
}

// ConfirmEmailVerification marks the address a verification token was sent
// to as verified, if it is still the account's address.
func (h *Handler) ConfirmEmailVerification(ctx context.Context, token string, meta eventstore.Metadata) (Result, error) {
	if len(token) > 256 {
		return Result{}, ErrTokenInvalid
	}
	now := h.now()
	user, tenant, sentTo, err := h.lookupToken(ctx, purposeVerify, token, now)
	if err != nil {
		return Result{}, err
	}
	meta.Actor, meta.ActorType = user, "user"
	res, err := h.update(ctx, userKey(domain.TenantID(tenant), domain.UserID(user)), meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return users.VerifyEmail(domain.Fold(users.Evolve, history), sentTo, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			if _, _, _, err := claimToken(ctx, tx, purposeVerify, token, now); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE identities SET email_verified = true, updated_at = now() WHERE user_id = $1`, user)
			return err
		})
	if errors.Is(err, users.ErrDisabled) || errors.Is(err, domain.ErrNotFound) {
		return Result{}, ErrTokenInvalid
	}
	res.ID = user
	return res, err
}
