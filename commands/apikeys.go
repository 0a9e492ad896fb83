package commands

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/apikeys"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerAPIKeyEvents) }

func registerAPIKeyEvents(c *eventstore.Codec) {
	eventstore.Register[apikeys.Created](c, 1)
	eventstore.Register[apikeys.Revoked](c, 1)
}

// APIKeyPrefix starts every API key: "vck_<id>_<secret>". The prefix lets the
// edge tell a key from an access token, and secret scanners find leaked keys.
const APIKeyPrefix = "vck_"

// ErrAPIKeyInvalid answers every API key that cannot be used, whatever the
// reason (malformed, unknown, wrong secret, expired, revoked, tenant inactive).
var ErrAPIKeyInvalid = domain.Unauthenticated("api_key_invalid", "the API key is not valid, has expired or was revoked")

// IsAPIKey reports whether a bearer credential is meant as an API key.
func IsAPIKey(credential string) bool { return strings.HasPrefix(credential, APIKeyPrefix) }

func apiKeyKey(tenant domain.TenantID, id apikeys.ID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: "apikey", ID: string(id)}
}

// CreateAPIKey asks to create an API key in a tenant.
type CreateAPIKey struct {
	Tenant    domain.TenantID
	Name      string
	Role      users.Role
	ExpiresAt time.Time
	By        users.Actor
	Meta      eventstore.Metadata
}

// NewAPIKey is a created key. Key is the whole credential; it is returned
// this once and stored only as its SHA-256.
type NewAPIKey struct {
	Key    string
	State  apikeys.State
	Result Result
}

// CreateAPIKey creates a key and stores its hash in the same transaction as
// apikey.created. The key carries 256 random bits, so SHA-256 suffices: slow
// password hashes exist to make guessing low-entropy secrets expensive, and
// nobody can guess among 2^256; a fast hash also keeps checking a key on every
// request cheap, so that keys cannot be used to exhaust the CPU.
func (h *Handler) CreateAPIKey(ctx context.Context, cmd CreateAPIKey) (NewAPIKey, error) {
	id := apikeys.ID(h.newID())
	now := h.now()
	secret, err := newOpaqueSecret()
	if err != nil {
		return NewAPIKey{}, err
	}
	key := APIKeyPrefix + string(id) + "_" + secret
	var created apikeys.Created
	res, err := h.update(ctx, apiKeyKey(cmd.Tenant, id), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return apikeys.Create(domain.Fold(apikeys.Evolve, history), cmd.By,
				apikeys.Spec{ID: id, Tenant: cmd.Tenant, Name: cmd.Name, Role: cmd.Role, ExpiresAt: cmd.ExpiresAt}, now)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			created = events[0].(apikeys.Created)
			_, err := tx.Exec(ctx, `INSERT INTO api_keys (key_id, tenant_id, name, role, secret_hash, created_by, created_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				string(id), string(cmd.Tenant), created.Name, string(created.Role), hashSecret(key), string(cmd.By.User), now, created.ExpiresAt)
			return err
		})
	if err != nil {
		return NewAPIKey{}, err
	}
	return NewAPIKey{Key: key, State: apikeys.Evolve(apikeys.State{}, created), Result: res}, nil
}

// RevokeAPIKey asks to revoke a key.
type RevokeAPIKey struct {
	Tenant domain.TenantID
	ID     apikeys.ID
	By     users.Actor
	Meta   eventstore.Metadata
}

// RevokeAPIKey revokes a key: it stops working on the next request. A key of
// another tenant is domain.ErrNotFound.
func (h *Handler) RevokeAPIKey(ctx context.Context, cmd RevokeAPIKey) (Result, error) {
	now := h.now()
	return h.update(ctx, apiKeyKey(cmd.Tenant, cmd.ID), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return apikeys.Revoke(domain.Fold(apikeys.Evolve, history), cmd.By, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			_, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $3, revoked_by = $4
				WHERE key_id = $1 AND tenant_id = $2 AND revoked_at IS NULL`,
				string(cmd.ID), string(cmd.Tenant), now, string(cmd.By.User))
			return err
		})
}

// APIKeyView returns key id of tenant as of its latest event, or
// domain.ErrNotFound (also for a key of another tenant).
func (h *Handler) APIKeyView(ctx context.Context, tenant domain.TenantID, id apikeys.ID) (View[apikeys.State], error) {
	return view(ctx, h, apiKeyKey(tenant, id), apikeys.Evolve)
}

// APIKeyInfo is what administrators see of a key: never its secret or hash.
type APIKeyInfo struct {
	ID        apikeys.ID
	Name      string
	Role      users.Role
	CreatedBy domain.UserID
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// ListAPIKeys returns tenant's keys, revoked and expired ones included, newest
// first, at most limit of them after the key id after ("" for the first page).
func (h *Handler) ListAPIKeys(ctx context.Context, tenant domain.TenantID, after string, limit int) ([]APIKeyInfo, error) {
	limit = max(1, min(limit, MaxSessionPage))
	rows, err := h.pool.Query(ctx, `SELECT key_id, name, role, created_by, created_at, expires_at, revoked_at
		FROM api_keys WHERE tenant_id = $1 AND ($2 = '' OR key_id < $2)
		ORDER BY key_id DESC LIMIT $3`, string(tenant), after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKeyInfo, error) {
		var k APIKeyInfo
		var id, role, by string
		err := r.Scan(&id, &k.Name, &role, &by, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt)
		k.ID, k.Role, k.CreatedBy = apikeys.ID(id), users.Role(role), domain.UserID(by)
		return k, err
	})
}

// APIKeyIdentity is who a valid API key acts as.
type APIKeyIdentity struct {
	ID     apikeys.ID
	Tenant domain.TenantID
	Role   users.Role
	Name   string
}

// Actor is the id recorded as the actor of what the key does.
func (k APIKeyIdentity) Actor() domain.UserID { return domain.UserID("apikey:" + string(k.ID)) }

// dummyKeyHash is compared against when a key id is unknown, so that the
// answer takes about as long as for a wrong secret.
var dummyKeyHash = make([]byte, 32)

// AuthenticateAPIKey checks an API key in one query: it must be well formed,
// known, match its stored hash (compared in constant time), unexpired,
// unrevoked, and its tenant active. Every failure is ErrAPIKeyInvalid.
func (h *Handler) AuthenticateAPIKey(ctx context.Context, key string) (APIKeyIdentity, error) {
	rest, ok := strings.CutPrefix(key, APIKeyPrefix)
	if !ok {
		return APIKeyIdentity{}, ErrAPIKeyInvalid
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || len(id) > 64 || !plausibleSecret(secret) {
		return APIKeyIdentity{}, ErrAPIKeyInvalid
	}
	var k APIKeyIdentity
	var tenant, role string
	var stored []byte
	var expires time.Time
	var revoked, active bool
	err := h.pool.QueryRow(ctx, `SELECT k.tenant_id, k.role, k.name, k.secret_hash, k.expires_at, k.revoked_at IS NOT NULL, t.active
		FROM api_keys k JOIN tenant_registry t ON t.tenant_id = k.tenant_id
		WHERE k.key_id = $1`, id).Scan(&tenant, &role, &k.Name, &stored, &expires, &revoked, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		subtle.ConstantTimeCompare(hashSecret(key), dummyKeyHash)
		return APIKeyIdentity{}, ErrAPIKeyInvalid
	}
	if err != nil {
		return APIKeyIdentity{}, fmt.Errorf("look up api key: %w", err)
	}
	if subtle.ConstantTimeCompare(hashSecret(key), stored) != 1 || revoked || !active || !h.now().Before(expires) {
		return APIKeyIdentity{}, ErrAPIKeyInvalid
	}
	k.ID, k.Tenant, k.Role = apikeys.ID(id), domain.TenantID(tenant), users.Role(role)
	return k, nil
}
