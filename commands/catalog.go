package commands

import (
	"context"
	"crypto/rand"
	"encoding/base64"

	"velocicompanion/domain"
	"velocicompanion/domain/tenants"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// eventRegistrations register each aggregate's events with a codec. Each
// aggregate's command file adds its own function in an init.
var eventRegistrations = []func(*eventstore.Codec){registerTenantEvents, registerUserEvents}

// NewCodec returns a codec that knows every event this installation records,
// at its current schema with the upcasters of older ones.
func NewCodec() *eventstore.Codec {
	c := eventstore.NewCodec()
	for _, register := range eventRegistrations {
		register(c)
	}
	return c
}

func registerTenantEvents(c *eventstore.Codec) {
	eventstore.Register[tenants.Created](c, 1)
	eventstore.Register[tenants.Updated](c, 1)
	eventstore.Register[tenants.Deactivated](c, 1)
	eventstore.Register[tenants.Reactivated](c, 1)
	eventstore.Register[tenants.PolicyChanged](c, 1)
}

func registerUserEvents(c *eventstore.Codec) {
	eventstore.Register[users.Registered](c, 1)
	eventstore.Register[users.LoggedIn](c, 1)
	eventstore.Register[users.LoginFailed](c, 1)
	eventstore.Register[users.RoleChanged](c, 1)
	eventstore.Register[users.UsernameChanged](c, 1)
	eventstore.Register[users.EmailChanged](c, 1)
	eventstore.Register[users.PasswordChanged](c, 1)
	eventstore.Register[users.Disabled](c, 1)
	eventstore.Register[users.Enabled](c, 1)
	eventstore.Register[users.Deleted](c, 1)
}

// CreatePlatformAdmin creates a platform administrator from the command line.
func (h *Handler) CreatePlatformAdmin(ctx context.Context, username, password string) (Result, error) {
	if err := h.EnsurePlatformTenant(ctx); err != nil {
		return Result{}, err
	}
	return h.RegisterUser(ctx, RegisterUser{
		Tenant: domain.PlatformTenant, Username: username, Password: password,
		Role: users.RolePlatformAdmin, By: users.System,
		Meta: eventstore.Metadata{Actor: "system", ActorType: "system", Role: string(users.RolePlatformAdmin)},
	})
}

// BootstrapPlatformAdmin creates the platform administrator "admin" with a
// random password when the installation has none, and returns that password
// so that it can be shown once. It returns "" when an administrator exists.
func (h *Handler) BootstrapPlatformAdmin(ctx context.Context) (string, error) {
	if err := h.EnsurePlatformTenant(ctx); err != nil {
		return "", err
	}
	var exists bool
	err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM identities WHERE tenant_id = $1 AND status <> 'deleted')`,
		string(domain.PlatformTenant)).Scan(&exists)
	if err != nil || exists {
		return "", err
	}
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	password := base64.RawURLEncoding.EncodeToString(b[:])
	if _, err := h.CreatePlatformAdmin(ctx, "admin", password); err != nil {
		return "", err
	}
	return password, nil
}
