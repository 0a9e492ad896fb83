package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/eventstore"
)

// lockKeySQL is the advisory-lock key of a projector: the live runner takes it
// shared in every transaction, Rebuild takes it exclusively for the swap.
const lockKeySQL = `hashtextextended('velocicompanion.projector:' || $1::text, 0)`

// setTenant scopes the rest of tx to tenant (row-level security).
func setTenant(ctx context.Context, tx pgx.Tx, tenant domain.TenantID) error {
	if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1::text, true)`, string(tenant)); err != nil {
		return fmt.Errorf("set tenant %s: %w", tenant, err)
	}
	return nil
}

// byTenant splits envs into one slice per tenant, keeping each tenant's events
// in their original order (so stream order is kept), tenants in order of first
// appearance. Events of one tenant are usually clustered, so this avoids a
// set_config round trip per event without reordering within a stream.
func byTenant(envs []eventstore.Envelope) [][]eventstore.Envelope {
	groups := byTenantIndex(envs)
	out := make([][]eventstore.Envelope, len(groups))
	for g, idx := range groups {
		out[g] = make([]eventstore.Envelope, len(idx))
		for k, i := range idx {
			out[g][k] = envs[i]
		}
	}
	return out
}

// byTenantIndex is byTenant returning indexes into envs.
func byTenantIndex(envs []eventstore.Envelope) [][]int {
	index := map[domain.TenantID]int{}
	var groups [][]int
	for i, env := range envs {
		g, ok := index[env.Tenant]
		if !ok {
			g = len(groups)
			index[env.Tenant] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// applyTenant scopes tx to the tenant of envs (all one tenant) and applies them.
func applyTenant(ctx context.Context, tx pgx.Tx, p Projector, envs []eventstore.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if err := setTenant(ctx, tx, envs[0].Tenant); err != nil {
		return err
	}
	return applyScoped(ctx, tx, p, envs)
}

// applyScoped applies envs, all of the tenant tx is scoped to, through
// ApplyBatch when p implements BatchApplier.
func applyScoped(ctx context.Context, tx pgx.Tx, p Projector, envs []eventstore.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if b, ok := p.(BatchApplier); ok && len(envs) > 1 {
		if err := b.ApplyBatch(ctx, tx, envs); err != nil {
			return fmt.Errorf("apply %d events of tenant %s: %w", len(envs), envs[0].Tenant, err)
		}
		return nil
	}
	for _, env := range envs {
		if err := p.Apply(ctx, tx, env); err != nil {
			return fmt.Errorf("apply %s at position %d: %w", env.Name, env.Position, err)
		}
	}
	return nil
}
