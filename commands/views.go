package commands

import (
	"context"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// View is an aggregate's state as of its latest event, read from its stream:
// it is what a command's response shows, consistent with the write it follows.
type View[S any] struct {
	State     S
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

func view[S any](ctx context.Context, h *Handler, key eventstore.Key, evolve func(S, domain.Event) S) (View[S], error) {
	var v View[S]
	envs, err := h.store.Load(ctx, key)
	if err != nil {
		return v, err
	}
	if len(envs) == 0 {
		return v, domain.ErrNotFound
	}
	for _, e := range envs {
		if e.Event != nil {
			v.State = evolve(v.State, e.Event)
		}
	}
	v.Version = int64(envs[len(envs)-1].Version)
	v.CreatedAt = envs[0].RecordedAt
	v.UpdatedAt = envs[len(envs)-1].RecordedAt
	return v, nil
}

// TenantView returns tenant id's current state, or domain.ErrNotFound.
func (h *Handler) TenantView(ctx context.Context, id domain.TenantID) (View[tenants.State], error) {
	return view(ctx, h, tenantKey(id), tenants.Evolve)
}

// UserView returns the state of user id in tenant, or domain.ErrNotFound
// (also for a deleted user and for a user of another tenant).
func (h *Handler) UserView(ctx context.Context, tenant domain.TenantID, id domain.UserID) (View[users.State], error) {
	v, err := view(ctx, h, userKey(tenant, id), users.Evolve)
	if err == nil && v.State.Deleted {
		return View[users.State]{}, domain.ErrNotFound
	}
	return v, err
}

// UserMFAView is UserView with the state of the user's second factor.
func (h *Handler) UserMFAView(ctx context.Context, tenant domain.TenantID, id domain.UserID) (View[users.MFAState], error) {
	v, err := view(ctx, h, userKey(tenant, id), users.EvolveMFA)
	if err == nil && v.State.Deleted {
		return View[users.MFAState]{}, domain.ErrNotFound
	}
	return v, err
}
