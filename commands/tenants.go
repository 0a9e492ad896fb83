package commands

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
	"velocicompanion/eventstore"
)

// ErrTenantNameTaken is returned when another tenant already has the name.
var ErrTenantNameTaken = domain.Conflict("tenant_name_taken", "a tenant with this name already exists")

// PlatformTenantName is the name of the tenant that holds the platform administrators.
const PlatformTenantName = "platform"

func tenantKey(id domain.TenantID) eventstore.Key {
	return eventstore.Key{Tenant: id, Type: "tenant", ID: string(id)}
}

// CreateTenant asks to create a client organisation.
type CreateTenant struct {
	Name        string
	Description string
	By          domain.UserID
	Meta        eventstore.Metadata
}

// CreateTenant creates a tenant with a new id and reserves its name.
func (h *Handler) CreateTenant(ctx context.Context, cmd CreateTenant) (Result, error) {
	return h.createTenant(ctx, domain.TenantID(h.newID()), cmd)
}

func (h *Handler) createTenant(ctx context.Context, id domain.TenantID, cmd CreateTenant) (Result, error) {
	return h.update(ctx, tenantKey(id), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return tenants.Create(domain.Fold(tenants.Evolve, history), id, cmd.Name, cmd.Description, cmd.By)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			created := events[0].(tenants.Created)
			_, err := tx.Exec(ctx, `INSERT INTO tenant_registry (tenant_id, name, name_key) VALUES ($1, $2, $3)`,
				string(id), created.Name, nameKey(created.Name))
			return uniqueAs(err, ErrTenantNameTaken)
		})
}

// EnsurePlatformTenant creates the platform tenant on first start; it is a
// no-op once the tenant exists.
func (h *Handler) EnsurePlatformTenant(ctx context.Context) error {
	var exists bool
	err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant_registry WHERE tenant_id = $1)`,
		string(domain.PlatformTenant)).Scan(&exists)
	if err != nil || exists {
		return err
	}
	_, err = h.createTenant(ctx, domain.PlatformTenant, CreateTenant{
		Name:        PlatformTenantName,
		Description: "Platform administrators of this installation",
		By:          "system",
		Meta:        eventstore.Metadata{Actor: "system", ActorType: "system"},
	})
	if errors.Is(err, tenants.ErrExists) || errors.Is(err, ErrTenantNameTaken) {
		return nil // another replica won the race
	}
	return err
}

// UpdateTenant renames a tenant, changes its description, or deactivates or
// reactivates it; nil fields stay as they are. While a tenant is inactive its
// users cannot sign in and their tokens stop working on the next request.
type UpdateTenant struct {
	Tenant      domain.TenantID
	Name        *string
	Description *string
	Active      *bool
	// RequireVerifiedEmail sets the sign-in policy: see tenants.PolicyChanged.
	RequireVerifiedEmail *bool
	IfMatch              int64
	By                   domain.UserID
	Meta                 eventstore.Metadata
}

// UpdateTenant decides all of cmd's changes on one state and appends them
// together, keeping the name reservation and the active flag in step.
func (h *Handler) UpdateTenant(ctx context.Context, cmd UpdateTenant) (Result, error) {
	return h.update(ctx, tenantKey(cmd.Tenant), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(tenants.Evolve, history)
			var out []domain.Event
			if cmd.Name != nil || cmd.Description != nil {
				events, err := tenants.Update(s, tenants.Changes{Name: cmd.Name, Description: cmd.Description}, cmd.By)
				if err != nil {
					return nil, err
				}
				out = append(out, events...)
			}
			if cmd.Active != nil {
				decide := tenants.Deactivate
				if *cmd.Active {
					decide = tenants.Reactivate
				}
				events, err := decide(s, cmd.By)
				if err != nil {
					return nil, err
				}
				out = append(out, events...)
			}
			if cmd.RequireVerifiedEmail != nil {
				events, err := tenants.SetPolicy(s, *cmd.RequireVerifiedEmail, cmd.By)
				if err != nil {
					return nil, err
				}
				out = append(out, events...)
			}
			return out, nil
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			for _, e := range events {
				var err error
				switch e := e.(type) {
				case tenants.Updated:
					_, err = tx.Exec(ctx, `UPDATE tenant_registry SET name = $2, name_key = $3, updated_at = now() WHERE tenant_id = $1`,
						string(cmd.Tenant), e.Name, nameKey(e.Name))
				case tenants.Deactivated, tenants.Reactivated:
					_, active := e.(tenants.Reactivated)
					_, err = tx.Exec(ctx, `UPDATE tenant_registry SET active = $2, updated_at = now() WHERE tenant_id = $1`,
						string(cmd.Tenant), active)
				case tenants.PolicyChanged:
					_, err = tx.Exec(ctx, `UPDATE tenant_registry SET require_verified_email = $2, updated_at = now() WHERE tenant_id = $1`,
						string(cmd.Tenant), e.RequireVerifiedEmail)
				}
				if err != nil {
					return uniqueAs(err, ErrTenantNameTaken)
				}
			}
			return nil
		})
}

// TenantActive reports whether tenant exists and is active, from the write side.
func (h *Handler) TenantActive(ctx context.Context, tenant domain.TenantID) (bool, error) {
	var active bool
	err := h.pool.QueryRow(ctx, `SELECT active FROM tenant_registry WHERE tenant_id = $1`, string(tenant)).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return active, err
}

// nameKey is the case-insensitive form under which a name is unique.
func nameKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// uniqueAs turns a unique violation into e; other errors pass through.
func uniqueAs(err error, e *domain.Error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		return e
	}
	return err
}
