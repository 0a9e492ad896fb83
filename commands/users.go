package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// Errors of the identity commands.
var (
	// ErrBadCredentials answers a wrong password and an unknown user alike.
	ErrBadCredentials = domain.Unauthenticated("invalid_credentials", "incorrect username or password")
	ErrUsernameTaken  = domain.Conflict("username_taken", "this username is already in use")
	ErrEmailTaken     = domain.Conflict("email_taken", "this email address is already in use")
	// ErrEmailNotVerified answers a correct password when the tenant requires
	// a verified e-mail address and the account's is not.
	ErrEmailNotVerified = domain.Forbidden("email_not_verified", "your tenant requires a verified e-mail address; use the link in the verification mail")
	ErrTenantInactive   = domain.NotFound("tenant_not_found", "tenant not found or inactive")
)

func userKey(tenant domain.TenantID, id domain.UserID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: "user", ID: string(id)}
}

// identityUnique maps the unique constraints of the identities table to errors.
func identityUnique(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		switch pg.ConstraintName {
		case "identities_email_key_key":
			return ErrEmailTaken
		default:
			return ErrUsernameTaken
		}
	}
	return err
}

// RegisterUser asks to create an account in a tenant.
type RegisterUser struct {
	Tenant   domain.TenantID
	Username string
	Email    string
	Password string
	Role     users.Role
	By       users.Actor
	Meta     eventstore.Metadata
}

// RegisterUser creates an account and stores its password hash in the same
// transaction as user.registered, which never carries it.
func (h *Handler) RegisterUser(ctx context.Context, cmd RegisterUser) (Result, error) {
	id := domain.UserID(h.newID())
	reg := users.Registration{ID: id, Tenant: cmd.Tenant, Username: cmd.Username, Email: cmd.Email,
		Role: cmd.Role, Password: cmd.Password}
	return h.register(ctx, reg, cmd.Meta, func(s users.State) ([]domain.Event, error) {
		return users.Register(s, cmd.By, reg)
	})
}

// register runs decide for a new account: once before hashing, so that a
// refused request costs no hash, then for real with the identity row.
func (h *Handler) register(ctx context.Context, reg users.Registration, meta eventstore.Metadata,
	decide func(users.State) ([]domain.Event, error)) (Result, error) {
	if _, err := decide(users.State{}); err != nil {
		return Result{}, err
	}
	active, err := h.TenantActive(ctx, reg.Tenant)
	if err != nil {
		return Result{}, err
	}
	if !active {
		return Result{}, ErrTenantInactive
	}
	hash, err := h.hasher.Hash(ctx, reg.Password)
	if err != nil {
		return Result{}, fmt.Errorf("hash password: %w", err)
	}
	return h.update(ctx, userKey(reg.Tenant, reg.ID), meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return decide(domain.Fold(users.Evolve, history))
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			r := events[0].(users.Registered)
			_, err := tx.Exec(ctx, `INSERT INTO identities (user_id, tenant_id, username, username_key, email_key, password_hash, role)
				VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7)`,
				string(reg.ID), string(reg.Tenant), r.Username, users.UsernameKey(r.Username), nameKey(r.Email), hash, string(r.Role))
			return identityUnique(err)
		})
}

// Identity is the write side's current view of an account, used to
// authenticate every request.
type Identity struct {
	User         domain.UserID
	Tenant       domain.TenantID
	Username     string
	Role         users.Role
	Status       string // active, disabled, deleted
	TenantActive bool
	Epoch        int64
}

// Usable reports whether the identity may act at all.
func (i Identity) Usable() bool { return i.Status == "active" && i.TenantActive }

const identitySelect = `SELECT i.user_id, i.tenant_id, i.username, i.role, i.status, t.active, i.auth_epoch, i.password_hash
	FROM identities i JOIN tenant_registry t ON t.tenant_id = i.tenant_id `

func scanIdentity(row pgx.Row) (Identity, string, error) {
	var id Identity
	var user, tenant, role, hash string
	err := row.Scan(&user, &tenant, &id.Username, &role, &id.Status, &id.TenantActive, &id.Epoch, &hash)
	id.User, id.Tenant, id.Role = domain.UserID(user), domain.TenantID(tenant), users.Role(role)
	return id, hash, err
}

// LookupIdentity returns user's identity, or domain.ErrNotFound.
func (h *Handler) LookupIdentity(ctx context.Context, user domain.UserID) (Identity, error) {
	id, _, err := scanIdentity(h.pool.QueryRow(ctx, identitySelect+`WHERE i.user_id = $1`, string(user)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Identity{}, domain.ErrNotFound
	}
	return id, err
}

// Login asks to sign in with a user name and password.
type Login struct {
	Username string
	Password string
	Meta     eventstore.Metadata
}

// Login verifies cmd's credentials and signs the user in with a session under
// DefaultSessionPolicy, like SignIn, for callers that need no tokens.
func (h *Handler) Login(ctx context.Context, cmd Login) (Identity, Result, error) {
	s, err := h.SignIn(ctx, cmd, DefaultSessionPolicy)
	return s.Identity, s.Result, err
}

// VerifyPassword is the first step of a sign-in: it checks cmd's password and
// that the account may sign in, recording every refusal on the user's stream,
// and records nothing on success (StartSession does, once every factor was
// checked). An unknown user name and a wrong password give the same error
// after the same amount of work.
func (h *Handler) VerifyPassword(ctx context.Context, cmd Login) (Identity, error) {
	id, hash, err := scanIdentity(h.pool.QueryRow(ctx, identitySelect+`WHERE i.username_key = $1`,
		users.UsernameKey(cmd.Username)))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && id.Status == "deleted") {
		_ = h.hasher.DummyVerify(ctx, cmd.Password)
		return Identity{}, ErrBadCredentials
	}
	if err != nil {
		return Identity{}, fmt.Errorf("look up identity: %w", err)
	}
	key := userKey(id.Tenant, id.User)
	now := h.now()
	meta := cmd.Meta
	meta.Actor, meta.ActorType = string(id.User), "user"
	s, _, err := load(ctx, h, key, users.Evolve)
	if err != nil {
		return Identity{}, err
	}
	if err := users.CheckLogin(s, now); err != nil {
		if errors.Is(err, users.ErrLoginThrottled) {
			h.recordFailure(ctx, key, meta, users.ReasonThrottled)
		}
		if errors.Is(err, domain.ErrNotFound) {
			_ = h.hasher.DummyVerify(ctx, cmd.Password)
			return Identity{}, ErrBadCredentials
		}
		return Identity{}, err
	}
	ok, err := h.hasher.Verify(ctx, cmd.Password, hash)
	if err != nil {
		return Identity{}, fmt.Errorf("verify password: %w", err)
	}
	if !ok {
		h.recordFailure(ctx, key, meta, users.ReasonBadPassword)
		return Identity{}, ErrBadCredentials
	}
	switch {
	case !id.TenantActive:
		h.recordFailure(ctx, key, meta, "tenant_inactive")
		return Identity{}, users.ErrDisabled
	case s.Disabled || id.Status != "active":
		h.recordFailure(ctx, key, meta, users.ReasonDisabled)
		return Identity{}, users.ErrDisabled
	}
	var required, verified bool
	if err := h.pool.QueryRow(ctx, `SELECT t.require_verified_email, i.email_verified
		FROM identities i JOIN tenant_registry t ON t.tenant_id = i.tenant_id WHERE i.user_id = $1`,
		string(id.User)).Scan(&required, &verified); err != nil {
		return Identity{}, fmt.Errorf("sign-in policy: %w", err)
	}
	if required && !verified {
		h.recordFailure(ctx, key, meta, "email_unverified")
		// Send a verification link, as a required action, at most every ten
		// minutes; the answer is the same whether one was sent.
		var recent bool
		if err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM recovery_tokens
			WHERE user_id = $1 AND purpose = $2 AND created_at > $3)`, string(id.User), purposeVerify, now.Add(-10*time.Minute)).Scan(&recent); err == nil && !recent {
			_, _ = h.RequestEmailVerification(ctx, id.Tenant, id.User, meta)
		}
		return Identity{}, ErrEmailNotVerified
	}
	return id, nil
}

// recordFailure appends user.login_failed. Failing to record must not change
// the answer the client gets, so the error is only returned to be logged.
func (h *Handler) recordFailure(ctx context.Context, key eventstore.Key, meta eventstore.Metadata, reason string) {
	now := h.now()
	_, _ = h.update(ctx, key, meta, 0, func(history []domain.Event) ([]domain.Event, error) {
		return users.RecordLoginFailure(domain.Fold(users.Evolve, history), reason, now)
	}, nil)
}

// UpdateUser changes some of an account's fields; nil fields stay as they are.
type UpdateUser struct {
	Tenant   domain.TenantID
	User     domain.UserID
	Username *string
	Email    *string
	Password *string
	Role     *users.Role
	Active   *bool
	IfMatch  int64
	By       users.Actor
	Meta     eventstore.Metadata
}

// UpdateUser decides every requested change on one loaded state and appends
// them together, so that a request is applied whole or not at all.
func (h *Handler) UpdateUser(ctx context.Context, cmd UpdateUser) (Result, error) {
	now := h.now()
	var hash string
	if cmd.Password != nil {
		if err := users.CheckPassword(*cmd.Password); err != nil {
			return Result{}, err
		}
		// Authorisation is decided below before anything is written; hashing
		// first keeps the slow work out of the retry loop.
		s, _, err := load(ctx, h, userKey(cmd.Tenant, cmd.User), users.Evolve)
		if err != nil {
			return Result{}, err
		}
		if _, err := users.ChangePassword(s, cmd.By, *cmd.Password, now); err != nil {
			return Result{}, err
		}
		if hash, err = h.hasher.Hash(ctx, *cmd.Password); err != nil {
			return Result{}, fmt.Errorf("hash password: %w", err)
		}
	}
	return h.update(ctx, userKey(cmd.Tenant, cmd.User), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(users.Evolve, history)
			if !s.Exists || s.Deleted {
				return nil, domain.ErrNotFound
			}
			var out []domain.Event
			step := func(events []domain.Event, err error) error {
				if err != nil {
					return err
				}
				for _, e := range events {
					s = users.Evolve(s, e)
				}
				out = append(out, events...)
				return nil
			}
			if cmd.Username != nil {
				if err := step(users.ChangeUsername(s, cmd.By, *cmd.Username)); err != nil {
					return nil, err
				}
			}
			if cmd.Email != nil {
				if err := step(users.ChangeEmail(s, cmd.By, *cmd.Email)); err != nil {
					return nil, err
				}
			}
			if cmd.Password != nil {
				if err := step(users.ChangePassword(s, cmd.By, *cmd.Password, now)); err != nil {
					return nil, err
				}
			}
			if cmd.Role != nil {
				if err := step(users.ChangeRole(s, cmd.By, *cmd.Role)); err != nil {
					return nil, err
				}
			}
			if cmd.Active != nil {
				decide := users.Disable
				if *cmd.Active {
					decide = users.Enable
				}
				if err := step(decide(s, cmd.By)); err != nil {
					return nil, err
				}
			}
			return out, nil
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			return applyIdentity(ctx, tx, cmd.User, events, hash)
		})
}

// DeleteUser soft-deletes an account: its history stays, it can no longer sign in.
type DeleteUser struct {
	Tenant  domain.TenantID
	User    domain.UserID
	IfMatch int64
	By      users.Actor
	Meta    eventstore.Metadata
}

// DeleteUser applies cmd.
func (h *Handler) DeleteUser(ctx context.Context, cmd DeleteUser) (Result, error) {
	return h.update(ctx, userKey(cmd.Tenant, cmd.User), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			return users.Delete(domain.Fold(users.Evolve, history), cmd.By)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			return applyIdentity(ctx, tx, cmd.User, events, "")
		})
}

// applyIdentity keeps the identities row in step with the user events being
// appended. Every change that affects what a token may do bumps auth_epoch,
// and a password, role or status change (users.SessionEndReason) also ends
// every session of the user, so that their refresh tokens stop working too.
func applyIdentity(ctx context.Context, tx pgx.Tx, user domain.UserID, events []domain.Event, hash string) error {
	for _, e := range events {
		var err error
		switch e := e.(type) {
		case users.UsernameChanged:
			_, err = tx.Exec(ctx, `UPDATE identities SET username = $2, username_key = $3, updated_at = now() WHERE user_id = $1`,
				string(user), e.To, users.UsernameKey(e.To))
		case users.EmailChanged:
			_, err = tx.Exec(ctx, `UPDATE identities SET email_key = NULLIF($2, ''), email_verified = false, updated_at = now() WHERE user_id = $1`,
				string(user), nameKey(e.To))
		case users.PasswordChanged:
			_, err = tx.Exec(ctx, `UPDATE identities SET password_hash = $2, auth_epoch = auth_epoch + 1, updated_at = now() WHERE user_id = $1`,
				string(user), hash)
		case users.RoleChanged:
			_, err = tx.Exec(ctx, `UPDATE identities SET role = $2, auth_epoch = auth_epoch + 1, updated_at = now() WHERE user_id = $1`,
				string(user), string(e.To))
		case users.Disabled:
			_, err = tx.Exec(ctx, `UPDATE identities SET status = 'disabled', auth_epoch = auth_epoch + 1, updated_at = now() WHERE user_id = $1`, string(user))
		case users.Enabled:
			_, err = tx.Exec(ctx, `UPDATE identities SET status = 'active', updated_at = now() WHERE user_id = $1`, string(user))
		case users.Deleted:
			_, err = tx.Exec(ctx, `UPDATE identities SET status = 'deleted', auth_epoch = auth_epoch + 1, updated_at = now() WHERE user_id = $1`, string(user))
		}
		if err != nil {
			return identityUnique(err)
		}
		if reason := users.SessionEndReason(e); reason != "" {
			if err := endAllSessions(ctx, tx, user, reason); err != nil {
				return err
			}
		}
	}
	return nil
}

// SelfRegister asks to create an account for the caller themselves.
type SelfRegister struct {
	Tenant   domain.TenantID
	Username string
	Email    string
	Password string
	Meta     eventstore.Metadata
}

// SelfRegister creates a viewer account in an active tenant for an anonymous
// caller. The HTTP edge allows it only when the installation enables it.
func (h *Handler) SelfRegister(ctx context.Context, cmd SelfRegister) (Result, error) {
	id := domain.UserID(h.newID())
	reg := users.Registration{ID: id, Tenant: cmd.Tenant, Username: cmd.Username, Email: cmd.Email,
		Role: users.RoleViewer, Password: cmd.Password}
	meta := cmd.Meta
	meta.Actor, meta.ActorType, meta.Role = string(id), "self_registration", string(users.RoleViewer)
	return h.register(ctx, reg, meta, func(s users.State) ([]domain.Event, error) {
		return users.SelfRegister(s, reg)
	})
}

// ErrWrongPassword answers a wrong current password when changing one's own.
var ErrWrongPassword = domain.Forbidden("current_password_wrong", "the current password is not correct")

// CheckPassword verifies user's current password.
func (h *Handler) CheckPassword(ctx context.Context, user domain.UserID, password string) error {
	var hash string
	err := h.pool.QueryRow(ctx, `SELECT password_hash FROM identities WHERE user_id = $1`, string(user)).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.ErrNotFound
	}
	if err != nil {
		return err
	}
	ok, err := h.hasher.Verify(ctx, password, hash)
	if err != nil {
		return err
	}
	if !ok {
		return ErrWrongPassword
	}
	return nil
}
