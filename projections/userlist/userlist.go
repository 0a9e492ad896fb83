// Package userlist projects user events into the user_list read model that
// the user-management routes query.
//
// Package userlist imports eventstore and domain only.
package userlist

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the table and replays the topic.
const Name = "userlist.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains user_list.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the tables the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string { return []string{"user_list"} }

// Apply updates user_list for one event; applying it twice changes nothing
// (rows remember the stream version they reflect).
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	tenant, id, v, at := string(env.Tenant), env.StreamID, int64(env.Version), env.RecordedAt
	set := func(assign string, args ...any) error {
		if assign != "" {
			assign += ", "
		}
		_, err := tx.Exec(ctx, `UPDATE user_list SET `+assign+`updated_at = $3, version = $4
			WHERE tenant_id = $1 AND user_id = $2 AND version < $4`, append([]any{tenant, id, at, v}, args...)...)
		return err
	}
	switch e := env.Event.(type) {
	case users.Registered:
		_, err := tx.Exec(ctx, `INSERT INTO user_list (tenant_id, user_id, username, username_key, email, role, status,
				created_at, updated_at, version)
			VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7, $8) ON CONFLICT (tenant_id, user_id) DO NOTHING`,
			tenant, id, e.Username, users.UsernameKey(e.Username), e.Email, string(e.Role), at, v)
		return err
	case users.LoggedIn:
		return set(`last_login_at = $5`, e.At)
	case users.RoleChanged:
		return set(`role = $5`, string(e.To))
	case users.UsernameChanged:
		return set(`username = $5, username_key = $6`, e.To, users.UsernameKey(e.To))
	case users.EmailChanged:
		return set(`email = $5, email_verified = false`, e.To)
	case users.MFAEnabled:
		return set(`totp_enabled = true`)
	case users.MFADisabled:
		return set(`totp_enabled = false`)
	case users.EmailVerified:
		return set(`email_verified = lower(email) = lower($5)`, e.Email)
	case users.PasswordResetRequested, users.EmailVerificationRequested:
		return set(``)
	case users.Disabled:
		return set(`status = 'disabled'`)
	case users.Enabled:
		return set(`status = 'active'`)
	case users.Deleted:
		return set(`status = 'deleted'`)
	case users.LoginFailed, users.PasswordChanged:
		return set(``)
	}
	return nil
}

// User is one row of the read model.
type User struct {
	ID            domain.UserID
	Tenant        domain.TenantID
	Username      string
	Email         string
	Role          users.Role
	Status        string
	EmailVerified bool
	TOTPEnabled   bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
	LastLoginAt   *time.Time
	Version       int64
}

const columns = `tenant_id, user_id, username, email, role, status, email_verified, totp_enabled,
	created_at, updated_at, last_login_at, version`

func scan(row pgx.Row) (User, error) {
	var u User
	var tenant, id, role string
	err := row.Scan(&tenant, &id, &u.Username, &u.Email, &role, &u.Status, &u.EmailVerified, &u.TOTPEnabled,
		&u.CreatedAt, &u.UpdatedAt, &u.LastLoginAt, &u.Version)
	u.Tenant, u.ID, u.Role = domain.TenantID(tenant), domain.UserID(id), users.Role(role)
	return u, err
}

// Get returns user id of tenant, or domain.ErrNotFound. Deleted users are not found.
func Get(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, id domain.UserID) (User, error) {
	var u User
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		var err error
		u, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM user_list
			WHERE tenant_id = $1 AND user_id = $2 AND status <> 'deleted'`, string(tenant), string(id)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, domain.ErrNotFound
	}
	return u, err
}

// List returns the tenant's users that are not deleted, ordered by user name.
func List(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, page readmodel.Page) ([]User, error) {
	var out []User
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		afterName, afterID := page.After()
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM user_list
			WHERE tenant_id = $1 AND status <> 'deleted'
			  AND (($2 = '' AND $3 = '') OR (username_key, user_id) > ($2, $3))
			ORDER BY username_key, user_id LIMIT $4`, string(tenant), afterName, afterID, page.Limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scan(r) })
		return err
	})
	return out, err
}

// Cursor returns the page cursor after u.
func Cursor(u User) string {
	return readmodel.EncodeCursor(users.UsernameKey(u.Username), string(u.ID))
}
