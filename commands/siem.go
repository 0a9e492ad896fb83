package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/siem"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerSIEMEvents) }

func registerSIEMEvents(c *eventstore.Codec) {
	eventstore.Register[siem.Created](c, 1)
	eventstore.Register[siem.Updated](c, 1)
	eventstore.Register[siem.Deleted](c, 1)
}

// sealPurposeSIEM is the associated-data purpose of a sealed SIEM secret.
// WARNING: stored secrets are bound to it; never change it.
const sealPurposeSIEM = "siem"

// SIEMSealer encrypts SIEM secrets at rest for one tenant and purpose;
// adapters/secrets.Keyring implements it.
type SIEMSealer interface {
	Seal(tenant domain.TenantID, purpose string, plaintext []byte) ([]byte, error)
	Open(tenant domain.TenantID, purpose string, sealed []byte) ([]byte, error)
}

// SIEM executes the commands on SIEM destinations. It is the Handler with the
// sealer of destination secrets.
type SIEM struct {
	h      *Handler
	sealer SIEMSealer
}

// NewSIEM returns the SIEM destination commands of h, sealing secrets with
// sealer.
func NewSIEM(h *Handler, sealer SIEMSealer) *SIEM {
	if sealer == nil {
		panic("commands: NewSIEM needs a sealer")
	}
	return &SIEM{h: h, sealer: sealer}
}

func siemKey(tenant domain.TenantID, id siem.ID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: siem.StreamType, ID: string(id)}
}

// SIEMDestination is a destination as the write side knows it, never with its
// secret.
type SIEMDestination struct {
	ID        siem.ID
	Tenant    domain.TenantID
	Settings  siem.Settings
	HasSecret bool
	Version   int64
	CreatedBy domain.UserID
	CreatedAt time.Time
	UpdatedAt time.Time
}

// CreateSIEMDestination asks to add a destination. Secret, when not empty,
// is sealed into the credential table, never into the event.
type CreateSIEMDestination struct {
	Tenant   domain.TenantID
	Settings siem.Settings
	Secret   string
	By       users.Actor
	Meta     eventstore.Metadata
}

// Create adds a destination.
func (s *SIEM) Create(ctx context.Context, cmd CreateSIEMDestination) (SIEMDestination, Result, error) {
	id := siem.ID(s.h.newID())
	now := s.h.now().UTC()
	if cmd.Secret != "" {
		if err := siem.CheckSecret(cmd.Secret); err != nil {
			return SIEMDestination{}, Result{}, err
		}
	}
	var d SIEMDestination
	res, err := s.h.update(ctx, siemKey(cmd.Tenant, id), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return siem.Create(domain.Fold(siem.Evolve, history), cmd.By, cmd.Tenant, id, cmd.Settings, cmd.Secret != "", now)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			e := events[0].(siem.Created)
			sealed, err := s.seal(cmd.Tenant, cmd.Secret)
			if err != nil {
				return err
			}
			settings, err := json.Marshal(e.Settings)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO siem_destinations (tenant_id, destination_id, name, kind, enabled, settings,
				sealed_secret, version, created_by, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9)`,
				string(cmd.Tenant), string(id), e.Name, string(e.Config.Kind), e.Enabled, settings, sealed, string(e.By), now)
			d = SIEMDestination{ID: id, Tenant: cmd.Tenant, Settings: e.Settings, HasSecret: e.HasSecret, Version: 1,
				CreatedBy: e.By, CreatedAt: now, UpdatedAt: now}
			return err
		})
	if err != nil {
		return SIEMDestination{}, Result{}, err
	}
	return d, res, nil
}

// UpdateSIEMDestination asks to change a destination. Nil fields stay as
// they are; Secret nil keeps the secret, "" removes it, anything else
// replaces it.
type UpdateSIEMDestination struct {
	Tenant     domain.TenantID
	ID         siem.ID
	Name       *string
	Enabled    *bool
	Config     *siem.Config
	Filter     *siem.Filter
	TLPCeiling *string
	Secret     *string
	IfMatch    int64
	By         users.Actor
	Meta       eventstore.Metadata
}

// Update changes a destination; a change that changes nothing records
// nothing.
func (s *SIEM) Update(ctx context.Context, cmd UpdateSIEMDestination) (SIEMDestination, Result, error) {
	now := s.h.now().UTC()
	change := siem.SecretKeep
	if cmd.Secret != nil {
		change = siem.SecretRemove
		if *cmd.Secret != "" {
			if err := siem.CheckSecret(*cmd.Secret); err != nil {
				return SIEMDestination{}, Result{}, err
			}
			change = siem.SecretSet
		}
	}
	res, err := s.h.update(ctx, siemKey(cmd.Tenant, cmd.ID), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			st := domain.Fold(siem.Evolve, history)
			next := st.Settings
			if cmd.Name != nil {
				next.Name = *cmd.Name
			}
			if cmd.Enabled != nil {
				next.Enabled = *cmd.Enabled
			}
			if cmd.Config != nil {
				next.Config = *cmd.Config
			}
			if cmd.Filter != nil {
				next.Filter = *cmd.Filter
			}
			if cmd.TLPCeiling != nil {
				next.TLPCeiling = *cmd.TLPCeiling
			}
			return siem.Update(st, cmd.By, next, change, now)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			e := events[0].(siem.Updated)
			settings, err := json.Marshal(e.Settings)
			if err != nil {
				return err
			}
			if !e.SecretChanged {
				_, err = tx.Exec(ctx, `UPDATE siem_destinations SET name = $3, kind = $4, enabled = $5, settings = $6,
					version = version + 1, updated_at = $7 WHERE tenant_id = $1 AND destination_id = $2`,
					string(cmd.Tenant), string(cmd.ID), e.Name, string(e.Config.Kind), e.Enabled, settings, now)
				return err
			}
			var secret string
			if cmd.Secret != nil {
				secret = *cmd.Secret
			}
			sealed, err := s.seal(cmd.Tenant, secret)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE siem_destinations SET name = $3, kind = $4, enabled = $5, settings = $6,
				sealed_secret = $7, version = version + 1, updated_at = $8 WHERE tenant_id = $1 AND destination_id = $2`,
				string(cmd.Tenant), string(cmd.ID), e.Name, string(e.Config.Kind), e.Enabled, settings, sealed, now)
			return err
		})
	if err != nil {
		return SIEMDestination{}, Result{}, err
	}
	d, err := s.Get(ctx, cmd.Tenant, cmd.ID)
	return d, res, err
}

// DeleteSIEMDestination asks to remove a destination.
type DeleteSIEMDestination struct {
	Tenant  domain.TenantID
	ID      siem.ID
	IfMatch int64
	By      users.Actor
	Meta    eventstore.Metadata
}

// Delete removes a destination and wipes its secret.
func (s *SIEM) Delete(ctx context.Context, cmd DeleteSIEMDestination) (Result, error) {
	now := s.h.now().UTC()
	return s.h.update(ctx, siemKey(cmd.Tenant, cmd.ID), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			return siem.Delete(domain.Fold(siem.Evolve, history), cmd.By, now)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			_, err := tx.Exec(ctx, `UPDATE siem_destinations SET sealed_secret = NULL, enabled = false,
				version = version + 1, updated_at = $3, deleted_at = $3 WHERE tenant_id = $1 AND destination_id = $2`,
				string(cmd.Tenant), string(cmd.ID), now)
			return err
		})
}

func (s *SIEM) seal(tenant domain.TenantID, secret string) ([]byte, error) {
	if secret == "" {
		return nil, nil
	}
	sealed, err := s.sealer.Seal(tenant, sealPurposeSIEM, []byte(secret))
	if err != nil {
		return nil, fmt.Errorf("seal siem secret: %w", err)
	}
	return sealed, nil
}

// MaxSIEMPage bounds a page of destinations.
const MaxSIEMPage = 500

const siemColumns = `destination_id, tenant_id, settings, sealed_secret IS NOT NULL, version, created_by, created_at, updated_at`

func scanSIEM(r pgx.CollectableRow) (SIEMDestination, error) {
	var d SIEMDestination
	var id, tenant, by string
	var settings []byte
	if err := r.Scan(&id, &tenant, &settings, &d.HasSecret, &d.Version, &by, &d.CreatedAt, &d.UpdatedAt); err != nil {
		return d, err
	}
	d.ID, d.Tenant, d.CreatedBy = siem.ID(id), domain.TenantID(tenant), domain.UserID(by)
	return d, json.Unmarshal(settings, &d.Settings)
}

// List returns a page of tenant's live destinations, newest
// first, after the id after.
func (s *SIEM) List(ctx context.Context, tenant domain.TenantID, after string, limit int) ([]SIEMDestination, error) {
	limit = max(1, min(limit, MaxSIEMPage))
	rows, err := s.h.pool.Query(ctx, `SELECT `+siemColumns+` FROM siem_destinations
		WHERE tenant_id = $1 AND deleted_at IS NULL AND ($2 = '' OR destination_id < $2)
		ORDER BY destination_id DESC LIMIT $3`, string(tenant), after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSIEM)
}

// Get returns one live destination of tenant, or domain.ErrNotFound.
func (s *SIEM) Get(ctx context.Context, tenant domain.TenantID, id siem.ID) (SIEMDestination, error) {
	rows, err := s.h.pool.Query(ctx, `SELECT `+siemColumns+` FROM siem_destinations
		WHERE tenant_id = $1 AND destination_id = $2 AND deleted_at IS NULL`, string(tenant), string(id))
	if err != nil {
		return SIEMDestination{}, err
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanSIEM)
	if errors.Is(err, pgx.ErrNoRows) {
		return SIEMDestination{}, domain.ErrNotFound
	}
	return d, err
}

// Live returns every enabled, live destination of every tenant, for the
// forwarders.
func (s *SIEM) Live(ctx context.Context) ([]SIEMDestination, error) {
	rows, err := s.h.pool.Query(ctx, `SELECT `+siemColumns+` FROM siem_destinations
		WHERE deleted_at IS NULL AND enabled ORDER BY tenant_id, destination_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSIEM)
}

// Secret opens the secret of a live destination of tenant: "" when it has
// none. It is for the forwarders and the test route, never for a response.
func (s *SIEM) Secret(ctx context.Context, tenant domain.TenantID, id siem.ID) (string, error) {
	var sealed []byte
	err := s.h.pool.QueryRow(ctx, `SELECT sealed_secret FROM siem_destinations
		WHERE tenant_id = $1 AND destination_id = $2 AND deleted_at IS NULL`, string(tenant), string(id)).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", domain.ErrNotFound
	}
	if err != nil || sealed == nil {
		return "", err
	}
	plain, err := s.sealer.Open(tenant, sealPurposeSIEM, sealed)
	if err != nil {
		return "", fmt.Errorf("open siem secret of %s/%s: %w", tenant, id, err)
	}
	return string(plain), nil
}
