package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerSessionEvents) }

func registerSessionEvents(c *eventstore.Codec) {
	eventstore.Register[users.SessionStarted](c, 1)
	eventstore.Register[users.LoggedOut](c, 1)
	eventstore.Register[users.SessionRevoked](c, 1)
	eventstore.Register[users.RefreshTokenReused](c, 1)
}

// SessionPolicy bounds the life of sessions and their refresh tokens.
type SessionPolicy struct {
	// Lifetime is the absolute lifetime of a session from sign-in; refreshing
	// never extends it. Zero means DefaultSessionPolicy's.
	Lifetime time.Duration
	// IdleTimeout ends a session whose tokens were not refreshed for this
	// long. Zero means DefaultSessionPolicy's; it never exceeds Lifetime.
	IdleTimeout time.Duration
	// ReuseGrace is how long after a refresh token was exchanged presenting
	// it again is taken for a race between two tabs of the same client rather
	// than a replay: the request is refused but the session lives on, provided
	// the token's successor has not been used yet. Zero disables the grace.
	ReuseGrace time.Duration
}

// DefaultSessionPolicy is the policy of a server configured with defaults.
var DefaultSessionPolicy = SessionPolicy{Lifetime: 30 * 24 * time.Hour, IdleTimeout: 24 * time.Hour, ReuseGrace: 10 * time.Second}

func (p SessionPolicy) normalized() SessionPolicy {
	if p.Lifetime <= 0 {
		p.Lifetime = DefaultSessionPolicy.Lifetime
	}
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = DefaultSessionPolicy.IdleTimeout
	}
	p.IdleTimeout = min(p.IdleTimeout, p.Lifetime)
	p.ReuseGrace = max(p.ReuseGrace, 0)
	return p
}

// Errors of the session commands.
var (
	// ErrRefreshInvalid answers every refresh token that cannot be exchanged,
	// whatever the reason (unknown, used, replayed, session ended or expired),
	// so that the answer tells an attacker nothing.
	ErrRefreshInvalid = domain.Unauthenticated("refresh_token_invalid", "the refresh token is not valid; sign in again")
	// ErrSessionEnded answers an access token whose session is over.
	ErrSessionEnded = domain.Unauthenticated("session_ended", "the session has ended; sign in again")
	// ErrSignInAgain answers a sign-in that raced with a change of the
	// account's credentials, role or status.
	ErrSignInAgain = domain.Unauthenticated("sign_in_again", "the account changed while signing in; sign in again")
)

// secretLen is the length of an opaque secret: 32 random bytes in unpadded
// base64url.
const secretLen = 43

// newOpaqueSecret returns 256 random bits in unpadded base64url.
func newOpaqueSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// plausibleSecret reports whether s could be a secret newOpaqueSecret made;
// anything else is refused without a database round trip.
func plausibleSecret(s string) bool {
	if len(s) != secretLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

func hashSecret(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// Session is a sign-in as its client receives it. RefreshToken is shown
// to the client once and stored only as a hash.
type Session struct {
	ID           string
	Identity     Identity
	RefreshToken string
	// ExpiresAt is the absolute end of the session.
	ExpiresAt time.Time
	// IdleExpiresAt is when the session ends unless refreshed before.
	IdleExpiresAt time.Time
	Result        Result
}

// SignIn verifies cmd's password and opens a session under policy. A second
// factor fits between the two steps: call VerifyPassword, check the factor,
// then StartSession with the method that was used.
func (h *Handler) SignIn(ctx context.Context, cmd Login, policy SessionPolicy) (Session, error) {
	id, err := h.VerifyPassword(ctx, cmd)
	if err != nil {
		return Session{}, err
	}
	return h.StartSession(ctx, StartSession{Identity: id, Method: users.MethodPassword, Policy: policy, Meta: cmd.Meta})
}

// StartSession asks to open a session for an identity whose credentials were
// verified (VerifyPassword and any second factor).
type StartSession struct {
	Identity Identity
	Method   string // users.MethodPassword, users.MethodPasswordTOTP, ...
	Policy   SessionPolicy
	Meta     eventstore.Metadata
}

// StartSession records user.logged_in and user.session_started and stores the
// session with its first refresh token in the same transaction. It refuses
// (ErrSignInAgain) if the account's credential epoch, status or tenant changed
// since cmd.Identity was read, so that a password change racing a sign-in with
// the old password never leaves a session behind.
func (h *Handler) StartSession(ctx context.Context, cmd StartSession) (Session, error) {
	p := cmd.Policy.normalized()
	id := cmd.Identity
	now := h.now()
	sid := h.newID()
	token, err := newOpaqueSecret()
	if err != nil {
		return Session{}, err
	}
	expires := now.Add(p.Lifetime)
	idle := now.Add(p.IdleTimeout)
	meta := cmd.Meta
	meta.Actor, meta.ActorType, meta.Role = string(id.User), "user", string(id.Role)
	key := userKey(id.Tenant, id.User)
	res, err := h.update(ctx, key, meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(users.Evolve, history)
			logged, err := users.RecordLogin(s, cmd.Method, now)
			if err != nil {
				return nil, err
			}
			for _, e := range logged {
				s = users.Evolve(s, e)
			}
			started, err := users.StartSession(s, sid, now, expires)
			if err != nil {
				return nil, err
			}
			return append(logged, started...), nil
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			var epoch int64
			var status string
			var active bool
			err := tx.QueryRow(ctx, `SELECT i.auth_epoch, i.status, t.active
				FROM identities i JOIN tenant_registry t ON t.tenant_id = i.tenant_id
				WHERE i.user_id = $1 AND i.tenant_id = $2`, string(id.User), string(id.Tenant)).Scan(&epoch, &status, &active)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && (epoch != id.Epoch || status != "active" || !active)) {
				return ErrSignInAgain
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO sessions (session_id, tenant_id, user_id, created_at,
				absolute_expires_at, idle_expires_at, last_used_at, ip, user_agent)
				VALUES ($1, $2, $3, $4, $5, $6, $4, $7, $8)`,
				sid, string(id.Tenant), string(id.User), now, expires, idle, meta.SourceIP, meta.UserAgent); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)`,
				hashSecret(token), sid, now)
			return err
		})
	if errors.Is(err, users.ErrDisabled) {
		h.recordFailure(ctx, key, meta, users.ReasonDisabled)
	}
	if err != nil {
		return Session{}, err
	}
	return Session{ID: sid, Identity: id, RefreshToken: token, ExpiresAt: expires, IdleExpiresAt: idle, Result: res}, nil
}

// Authenticate returns the identity behind an access token of user for
// session, checking in one query that the account exists and that the session
// is the user's and still open. It returns domain.ErrNotFound for an unknown
// user and ErrSessionEnded for a session that is not open. The caller checks
// Identity.Usable, the tenant and the epoch.
func (h *Handler) Authenticate(ctx context.Context, user domain.UserID, session string) (Identity, error) {
	var id Identity
	var uid, tenant, role string
	var open bool
	err := h.pool.QueryRow(ctx, `SELECT i.user_id, i.tenant_id, i.username, i.role, i.status, t.active, i.auth_epoch,
			coalesce(s.revoked_at IS NULL AND s.absolute_expires_at > $3 AND s.idle_expires_at > $3, false)
		FROM identities i
		JOIN tenant_registry t ON t.tenant_id = i.tenant_id
		LEFT JOIN sessions s ON s.session_id = $2 AND s.user_id = i.user_id
		WHERE i.user_id = $1`, string(user), session, h.now()).
		Scan(&uid, &tenant, &id.Username, &role, &id.Status, &id.TenantActive, &id.Epoch, &open)
	if errors.Is(err, pgx.ErrNoRows) {
		return Identity{}, domain.ErrNotFound
	}
	if err != nil {
		return Identity{}, fmt.Errorf("authenticate: %w", err)
	}
	id.User, id.Tenant, id.Role = domain.UserID(uid), domain.TenantID(tenant), users.Role(role)
	if !open {
		return Identity{}, ErrSessionEnded
	}
	return id, nil
}

// Refresh asks to exchange a refresh token for its successor.
type Refresh struct {
	Token  string
	Policy SessionPolicy
	Meta   eventstore.Metadata
}

// errNotFresh tells Refresh that the token was not exchanged: unknown, or
// used already.
var errNotFresh = errors.New("refresh token not fresh")

// Refresh rotates a refresh token: the presented token is marked used with
// one atomic UPDATE (so of concurrent requests with one token at most one
// succeeds), and a new token of the same session is returned. The session's
// absolute end does not move; its idle end does.
//
// A token presented after it was used is a replay: the session is revoked
// and user.refresh_token_reused is recorded, unless the token was exchanged
// within the policy's ReuseGrace and its successor is still unused, which is
// what two tabs of one client racing to refresh look like. Every refusal is
// ErrRefreshInvalid.
func (h *Handler) Refresh(ctx context.Context, cmd Refresh) (Session, error) {
	if !plausibleSecret(cmd.Token) {
		return Session{}, ErrRefreshInvalid
	}
	p := cmd.Policy.normalized()
	now := h.now()
	hash := hashSecret(cmd.Token)
	next, err := newOpaqueSecret()
	if err != nil {
		return Session{}, err
	}
	nextHash := hashSecret(next)
	out := Session{RefreshToken: next}
	err = pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE refresh_tokens SET used_at = $2, replaced_by = $3
			WHERE token_hash = $1 AND used_at IS NULL RETURNING session_id`, hash, now, nextHash).Scan(&out.ID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFresh
		}
		if err != nil {
			return err
		}
		var sessTenant, uid, tenant, role string
		var revoked bool
		var idleEnd time.Time
		// FOR UPDATE orders this refresh with a concurrent revocation: it
		// either sees the session revoked or commits before the revocation.
		err = tx.QueryRow(ctx, `SELECT s.tenant_id, s.absolute_expires_at, s.idle_expires_at, s.revoked_at IS NOT NULL,
				i.user_id, i.tenant_id, i.username, i.role, i.status, t.active, i.auth_epoch
			FROM sessions s
			JOIN identities i ON i.user_id = s.user_id
			JOIN tenant_registry t ON t.tenant_id = i.tenant_id
			WHERE s.session_id = $1 FOR UPDATE OF s`, out.ID).
			Scan(&sessTenant, &out.ExpiresAt, &idleEnd, &revoked, &uid, &tenant, &out.Identity.Username, &role,
				&out.Identity.Status, &out.Identity.TenantActive, &out.Identity.Epoch)
		if err != nil {
			return err
		}
		out.Identity.User, out.Identity.Tenant, out.Identity.Role = domain.UserID(uid), domain.TenantID(tenant), users.Role(role)
		if revoked || !now.Before(out.ExpiresAt) || !now.Before(idleEnd) || !out.Identity.Usable() || sessTenant != tenant {
			return ErrRefreshInvalid // rolls the exchange back; the token stays as it was
		}
		out.IdleExpiresAt = minTime(now.Add(p.IdleTimeout), out.ExpiresAt)
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)`,
			nextHash, out.ID, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET last_used_at = $2, idle_expires_at = $3 WHERE session_id = $1`,
			out.ID, now, out.IdleExpiresAt)
		return err
	})
	switch {
	case errors.Is(err, errNotFresh):
		if err := h.detectReuse(ctx, hash, cmd.Meta, p.ReuseGrace, now); err != nil {
			// The client's answer does not depend on the bookkeeping.
			slog.Default().Error("refresh token reuse not recorded", slog.String("error", err.Error()))
		}
		return Session{}, ErrRefreshInvalid
	case err != nil:
		return Session{}, err
	}
	return out, nil
}

// detectReuse looks at a refresh token that could not be exchanged. A used
// token outside the grace (see Refresh) revokes its session and records the
// replay. It returns nil unless recording failed.
func (h *Handler) detectReuse(ctx context.Context, hash []byte, meta eventstore.Metadata, grace time.Duration, now time.Time) error {
	var sid, user, tenant string
	var usedAt *time.Time
	var successorUsed bool
	err := h.pool.QueryRow(ctx, `SELECT r.session_id, r.used_at, s.user_id, s.tenant_id,
			EXISTS (SELECT 1 FROM refresh_tokens n WHERE n.token_hash = r.replaced_by AND n.used_at IS NOT NULL)
		FROM refresh_tokens r JOIN sessions s ON s.session_id = r.session_id
		WHERE r.token_hash = $1`, hash).Scan(&sid, &usedAt, &user, &tenant, &successorUsed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // never issued
	case err != nil:
		return fmt.Errorf("look up refresh token: %w", err)
	case usedAt == nil:
		return nil // a concurrent exchange was rolled back; the client may retry
	case grace > 0 && !successorUsed && now.Sub(*usedAt) <= grace:
		return nil // lost a race with another tab of the same client
	}
	meta.Actor, meta.ActorType = user, "user"
	// Every replay is a security event that must be recorded, even when many
	// arrive at once (an attacker racing the client): keep retrying lost
	// version races, with a growing random pause, well beyond the usual few.
	for attempt := 1; ; attempt++ {
		_, err = h.update(ctx, userKey(domain.TenantID(tenant), domain.UserID(user)), meta, 0,
			func(history []domain.Event) ([]domain.Event, error) {
				open, err := h.sessionOpen(ctx, sid)
				if err != nil {
					return nil, err
				}
				return users.RecordRefreshReuse(domain.Fold(users.Evolve, history), sid, open,
					meta.SourceIP, meta.UserAgent, *usedAt, now)
			},
			func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
				return revokeSessions(ctx, tx, events, now)
			})
		if !errors.Is(err, eventstore.ErrVersionConflict) || attempt == 25 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Duration(1+mrand.IntN(5)) * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("record refresh token reuse: %w", err)
	}
	return nil
}

// sessionOpen reports whether session has not been revoked. Revocations all
// append to the user's stream, so a decision that reads this inside update
// is ordered with them by the stream's version.
func (h *Handler) sessionOpen(ctx context.Context, session string) (bool, error) {
	var open bool
	err := h.pool.QueryRow(ctx, `SELECT revoked_at IS NULL FROM sessions WHERE session_id = $1`, session).Scan(&open)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return open, err
}

// revokeSessions marks the sessions that events end as revoked, with the
// event's reason.
func revokeSessions(ctx context.Context, tx pgx.Tx, events []domain.Event, now time.Time) error {
	for _, e := range events {
		var sid, reason string
		switch e := e.(type) {
		case users.SessionRevoked:
			sid, reason = e.Session, e.Reason
		case users.LoggedOut:
			sid, reason = e.Session, users.ReasonLogout
		default:
			continue
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoke_reason = $3
			WHERE session_id = $1 AND revoked_at IS NULL`, sid, now, reason); err != nil {
			return err
		}
	}
	return nil
}

// endAllSessions revokes every open session of user because of an account
// change (users.SessionEndReason). It runs inside applyIdentity, in the
// transaction of the event that causes it, which is the audit record.
func endAllSessions(ctx context.Context, tx pgx.Tx, user domain.UserID, reason string) error {
	_, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = statement_timestamp(), revoke_reason = $2
		WHERE user_id = $1 AND revoked_at IS NULL`, string(user), reason)
	return err
}

// Logout asks to end the caller's own session.
type Logout struct {
	Tenant  domain.TenantID
	User    domain.UserID
	Session string
	Meta    eventstore.Metadata
}

// Logout ends cmd.Session: its refresh tokens stop working, and so do its
// access tokens, on their next request. Ending an ended session records nothing.
func (h *Handler) Logout(ctx context.Context, cmd Logout) (Result, error) {
	now := h.now()
	return h.update(ctx, userKey(cmd.Tenant, cmd.User), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			open, err := h.userSessionOpen(ctx, cmd.Tenant, cmd.User, cmd.Session)
			if err != nil {
				return nil, err
			}
			return users.Logout(domain.Fold(users.Evolve, history), cmd.Session, open, now)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			return revokeSessions(ctx, tx, events, now)
		})
}

// userSessionOpen reports whether session is user's and open; a session of
// someone else is domain.ErrNotFound.
func (h *Handler) userSessionOpen(ctx context.Context, tenant domain.TenantID, user domain.UserID, session string) (bool, error) {
	var open bool
	err := h.pool.QueryRow(ctx, `SELECT revoked_at IS NULL FROM sessions
		WHERE session_id = $1 AND user_id = $2 AND tenant_id = $3`, session, string(user), string(tenant)).Scan(&open)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, domain.ErrNotFound
	}
	return open, err
}

// RevokeSessions asks to end sessions of a user: one (Session set) or every
// open one (Session empty).
type RevokeSessions struct {
	Tenant  domain.TenantID
	User    domain.UserID
	Session string
	By      users.Actor
	Meta    eventstore.Metadata
}

// RevokeSessions ends the sessions cmd names, recording user.session_revoked
// for each, and returns how many it ended. The user may end their own, an
// administrator those of their tenant's users; a session or user that is not
// there for cmd.By is domain.ErrNotFound.
func (h *Handler) RevokeSessions(ctx context.Context, cmd RevokeSessions) (Result, int, error) {
	now := h.now()
	var n int
	res, err := h.update(ctx, userKey(cmd.Tenant, cmd.User), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(users.Evolve, history)
			var ids []string
			if cmd.Session != "" {
				open, err := h.userSessionOpen(ctx, cmd.Tenant, cmd.User, cmd.Session)
				if err != nil {
					return nil, err
				}
				if open {
					ids = []string{cmd.Session}
				}
			} else {
				all, err := h.openSessionIDs(ctx, cmd.Tenant, cmd.User)
				if err != nil {
					return nil, err
				}
				ids = all
			}
			events, err := users.RevokeSessions(s, cmd.By, ids, now)
			n = len(events)
			return events, err
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			return revokeSessions(ctx, tx, events, now)
		})
	if err != nil {
		return Result{}, 0, err
	}
	return res, n, nil
}

// openSessionIDs returns the ids of user's sessions that are not revoked,
// expired ones included: revoking them too says so for good.
func (h *Handler) openSessionIDs(ctx context.Context, tenant domain.TenantID, user domain.UserID) ([]string, error) {
	rows, err := h.pool.Query(ctx, `SELECT session_id FROM sessions
		WHERE user_id = $1 AND tenant_id = $2 AND revoked_at IS NULL ORDER BY session_id`, string(user), string(tenant))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// SessionInfo is what a user or administrator sees of a session: never a token.
type SessionInfo struct {
	ID         string
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time // absolute end
	IdleEndsAt time.Time // end unless refreshed before
	IP         string
	UserAgent  string
}

// MaxSessionPage is the largest page ListSessions returns.
const MaxSessionPage = 500

// ListSessions returns user's open sessions in tenant, newest first, at most
// limit of them after the session id after (a keyset cursor; "" for the first
// page). A user who is not in tenant, or was deleted, is domain.ErrNotFound.
func (h *Handler) ListSessions(ctx context.Context, tenant domain.TenantID, user domain.UserID, after string, limit int) ([]SessionInfo, error) {
	limit = max(1, min(limit, MaxSessionPage))
	var exists bool
	if err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM identities
		WHERE user_id = $1 AND tenant_id = $2 AND status <> 'deleted')`, string(user), string(tenant)).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, domain.ErrNotFound
	}
	rows, err := h.pool.Query(ctx, `SELECT session_id, created_at, last_used_at, absolute_expires_at, idle_expires_at, ip, user_agent
		FROM sessions
		WHERE user_id = $1 AND tenant_id = $2 AND revoked_at IS NULL AND idle_expires_at > $3
			AND ($4 = '' OR session_id < $4)
		ORDER BY session_id DESC LIMIT $5`, string(user), string(tenant), h.now(), after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SessionInfo, error) {
		var s SessionInfo
		err := r.Scan(&s.ID, &s.CreatedAt, &s.LastUsedAt, &s.ExpiresAt, &s.IdleEndsAt, &s.IP, &s.UserAgent)
		return s, err
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
