// Package tenantlist projects tenant events into the tenant_list read model
// that the tenant routes query.
//
// Package tenantlist imports eventstore and domain only.
package tenantlist

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the table and replays the topic.
const Name = "tenantlist.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains tenant_list.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the tables the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string { return []string{"tenant_list"} }

// Apply updates tenant_list for one event; applying it twice changes nothing.
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	var err error
	switch e := env.Event.(type) {
	case tenants.Created:
		_, err = tx.Exec(ctx, `INSERT INTO tenant_list (tenant_id, name, name_key, description, active, created_at, updated_at, version)
			VALUES ($1, $2, $3, $4, true, $5, $5, $6) ON CONFLICT (tenant_id) DO NOTHING`,
			string(env.Tenant), e.Name, strings.ToLower(e.Name), e.Description, env.RecordedAt, int64(env.Version))
	case tenants.Updated:
		_, err = tx.Exec(ctx, `UPDATE tenant_list SET name = $2, name_key = $3, description = $4, updated_at = $5, version = $6
			WHERE tenant_id = $1 AND version < $6`,
			string(env.Tenant), e.Name, strings.ToLower(e.Name), e.Description, env.RecordedAt, int64(env.Version))
	case tenants.PolicyChanged:
		_, err = tx.Exec(ctx, `UPDATE tenant_list SET require_verified_email = $2, updated_at = $3, version = $4
			WHERE tenant_id = $1 AND version < $4`,
			string(env.Tenant), e.RequireVerifiedEmail, env.RecordedAt, int64(env.Version))
	case tenants.Deactivated, tenants.Reactivated:
		_, isActive := e.(tenants.Reactivated)
		_, err = tx.Exec(ctx, `UPDATE tenant_list SET active = $2, updated_at = $3, version = $4
			WHERE tenant_id = $1 AND version < $4`,
			string(env.Tenant), isActive, env.RecordedAt, int64(env.Version))
	}
	return err
}

// Tenant is one row of the read model.
type Tenant struct {
	ID          domain.TenantID
	Name        string
	Description string
	Active      bool
	// RequireVerifiedEmail is the tenant's sign-in policy.
	RequireVerifiedEmail bool
	CreatedAt            time.Time
	UpdatedAt            time.Time
	Version              int64
}

const columns = `tenant_id, name, description, active, require_verified_email, created_at, updated_at, version`

func scan(row pgx.Row) (Tenant, error) {
	var t Tenant
	var id string
	err := row.Scan(&id, &t.Name, &t.Description, &t.Active, &t.RequireVerifiedEmail, &t.CreatedAt, &t.UpdatedAt, &t.Version)
	t.ID = domain.TenantID(id)
	return t, err
}

// Get returns tenant id as seen by scope, or domain.ErrNotFound.
func Get(ctx context.Context, pool *pgxpool.Pool, scope readmodel.Scope, id domain.TenantID) (Tenant, error) {
	var t Tenant
	err := readmodel.Read(ctx, pool, scope, func(tx pgx.Tx) error {
		var err error
		t, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM tenant_list WHERE tenant_id = $1`, string(id)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, domain.ErrNotFound
	}
	return t, err
}

// List returns the tenants visible to scope ordered by name, after the cursor
// (the last name and id of the previous page), at most limit of them.
func List(ctx context.Context, pool *pgxpool.Pool, scope readmodel.Scope, page readmodel.Page) ([]Tenant, error) {
	var out []Tenant
	err := readmodel.Read(ctx, pool, scope, func(tx pgx.Tx) error {
		afterName, afterID := page.After()
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM tenant_list
			WHERE ($1 = '' AND $2 = '') OR (name_key, tenant_id) > ($1, $2)
			ORDER BY name_key, tenant_id LIMIT $3`, afterName, afterID, page.Limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) { return scan(r) })
		return err
	})
	return out, err
}

// Cursor returns the page cursor after t.
func Cursor(t Tenant) string { return readmodel.EncodeCursor(strings.ToLower(t.Name), string(t.ID)) }
