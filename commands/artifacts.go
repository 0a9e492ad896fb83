package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerArtifactEvents) }

func registerArtifactEvents(c *eventstore.Codec) {
	eventstore.Register[artifacts.Added](c, 1)
	eventstore.Register[artifacts.Updated](c, 1)
	eventstore.Register[artifacts.Sighted](c, 1)
	eventstore.Register[artifacts.Deleted](c, 1)
}

// Errors of the artifact commands. A case or host of another tenant is not
// found, exactly like one that does not exist.
var (
	ErrArtifactCaseNotFound = domain.NotFound("case_not_found", "the case the artifact is attached to does not exist")
	ErrArtifactHostNotFound = domain.NotFound("host_not_found", "the host the artifact is attached to or sighted on does not exist")
)

// errArtifactKeyTaken reports, inside an append, that another artifact took
// the uniqueness key first; the append is rolled back and AddArtifact records
// a sighting of that artifact instead.
var errArtifactKeyTaken = errors.New("artifact key taken")

func artifactKey(tenant domain.TenantID, id artifacts.ID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: "artifact", ID: string(id)}
}

// artifactScope returns the scope within which an artifact's value is unique:
// its case ("case:<id>"), or its host ("host:<id>") when it is on a host
// alone. The same value on the same case with another host is the same
// artifact, sighted on that host.
func artifactScope(c cases.ID, h hosts.ID) string {
	if c != "" {
		return "case:" + string(c)
	}
	return "host:" + string(h)
}

// AddArtifact asks to add an artifact to a case, a host or both. The value is
// normalised for its kind; Artifact.ID is ignored (a new id is made).
type AddArtifact struct {
	Tenant   domain.TenantID
	Artifact artifacts.NewArtifact
	By       domain.UserID
	Meta     eventstore.Metadata
}

// ArtifactAdded is the outcome of AddArtifact: where the write landed and
// whether it added a new artifact or, the value being known already in its
// scope, recorded a sighting of the existing one (Sighted; Result.ID is then
// that artifact's id).
type ArtifactAdded struct {
	Result
	Sighted bool
}

// AddArtifact adds the artifact cmd describes, or, when its kind and
// normalised value are already an artifact in the same scope — the same case
// (whatever the host), or for an artifact on a host alone the same host —
// records a sighting of that artifact on cmd's host, by cmd's source, now.
// The other fields of a repeated add are not applied: a sighting is a count,
// not an edit.
//
// The case and host must exist in cmd.Tenant (ErrArtifactCaseNotFound,
// ErrArtifactHostNotFound otherwise). An artifact on a case without a TLP
// takes the case's marking.
//
// The uniqueness key is reserved in artifact_keys in the transaction that
// appends artifact.added. Two concurrent adds of one value both find it
// free, but only one reservation commits: the other's transaction fails on
// the unique index, rolls back, and is retried as a sighting, so they make
// one artifact sighted twice.
func (h *Handler) AddArtifact(ctx context.Context, cmd AddArtifact) (ArtifactAdded, error) {
	a := cmd.Artifact
	a.ID = artifacts.ID(h.newID())
	// Validate and normalise before any I/O.
	events, err := artifacts.Add(artifacts.State{}, a, cmd.By)
	if err != nil {
		return ArtifactAdded{}, err
	}
	first := events[0].(artifacts.Added)
	if first.Case != "" {
		cs, _, err := load(ctx, h, eventstore.Key{Tenant: cmd.Tenant, Type: "case", ID: string(first.Case)}, cases.Evolve)
		if err != nil {
			return ArtifactAdded{}, err
		}
		if !cs.Exists {
			return ArtifactAdded{}, ErrArtifactCaseNotFound
		}
		if a.TLP == "" && cs.TLP.Valid() {
			a.TLP = cs.TLP
		}
	}
	if first.Host != "" {
		if err := h.checkArtifactHost(ctx, cmd.Tenant, first.Host); err != nil {
			return ArtifactAdded{}, err
		}
	}
	scope := artifactScope(first.Case, first.Host)
	digest := sha256.Sum256([]byte(first.Value))
	sighting := artifacts.Sighting{Host: first.Host, Source: first.Source}

	for attempt := 0; attempt < maxAttempts; attempt++ {
		var existing string
		err := h.pool.QueryRow(ctx, `SELECT artifact_id FROM artifact_keys
			WHERE tenant_id = $1 AND scope = $2 AND kind = $3 AND value_sha256 = $4 AND NOT released`,
			string(cmd.Tenant), scope, string(first.Kind), digest[:]).Scan(&existing)
		switch {
		case err == nil:
			res, err := h.sightArtifact(ctx, cmd.Tenant, artifacts.ID(existing), sighting, cmd.By, cmd.Meta)
			if errors.Is(err, domain.ErrNotFound) {
				continue // deleted since we looked: its key is released, so add anew
			}
			return ArtifactAdded{Result: res, Sighted: err == nil}, err
		case !errors.Is(err, pgx.ErrNoRows):
			return ArtifactAdded{}, fmt.Errorf("look up artifact key: %w", err)
		}
		res, err := h.update(ctx, artifactKey(cmd.Tenant, a.ID), cmd.Meta, 0,
			func(history []domain.Event) ([]domain.Event, error) {
				return artifacts.Add(domain.Fold(artifacts.Evolve, history), a, cmd.By)
			},
			func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
				e := events[0].(artifacts.Added)
				_, err := tx.Exec(ctx, `INSERT INTO artifact_keys (tenant_id, artifact_id, scope, kind, value, value_sha256)
					VALUES ($1, $2, $3, $4, $5, $6)`,
					string(cmd.Tenant), string(e.ID), scope, string(e.Kind), e.Value, digest[:])
				var pg *pgconn.PgError
				if errors.As(err, &pg) && pg.Code == "23505" {
					return errArtifactKeyTaken
				}
				return err
			})
		if errors.Is(err, errArtifactKeyTaken) {
			continue // another add took the key first: sight its artifact
		}
		return ArtifactAdded{Result: res}, err
	}
	// Only adds and deletes of the same value racing each other again and
	// again end here; the client may retry.
	return ArtifactAdded{}, fmt.Errorf("add artifact after %d attempts: %w", maxAttempts, eventstore.ErrVersionConflict)
}

// checkArtifactHost refuses a host that does not exist, or was deleted, in
// tenant.
func (h *Handler) checkArtifactHost(ctx context.Context, tenant domain.TenantID, id hosts.ID) error {
	s, _, err := load(ctx, h, eventstore.Key{Tenant: tenant, Type: "host", ID: string(id)}, hosts.Evolve)
	if err != nil {
		return err
	}
	if !s.Exists || s.Deleted {
		return ErrArtifactHostNotFound
	}
	return nil
}

// SightArtifact asks to record one more sighting of an artifact's value.
type SightArtifact struct {
	Tenant   domain.TenantID
	Artifact artifacts.ID
	Sighting artifacts.Sighting
	By       domain.UserID
	Meta     eventstore.Metadata
}

// SightArtifact records a sighting of an artifact, optionally on a host of
// the tenant (ErrArtifactHostNotFound otherwise) and by a source; a zero
// Sighting.At means now. Every call counts: a retried request is counted
// twice.
func (h *Handler) SightArtifact(ctx context.Context, cmd SightArtifact) (Result, error) {
	// Validate the sighting itself before any I/O.
	events, err := artifacts.Sight(artifacts.State{Exists: true}, cmd.Sighting, h.now(), cmd.By)
	if err != nil {
		return Result{}, err
	}
	if host := events[0].(artifacts.Sighted).Host; host != "" {
		if err := h.checkArtifactHost(ctx, cmd.Tenant, host); err != nil {
			return Result{}, err
		}
	}
	return h.sightArtifact(ctx, cmd.Tenant, cmd.Artifact, cmd.Sighting, cmd.By, cmd.Meta)
}

// sightRounds bounds the rounds of update that sightArtifact runs. Sightings
// commute, so one that lost a version race to many others (a sync reporting
// one value from many hosts at once) only needs to try again, after a short
// random pause that spreads the contenders out.
const sightRounds = 8

func (h *Handler) sightArtifact(ctx context.Context, tenant domain.TenantID, id artifacts.ID, sg artifacts.Sighting,
	by domain.UserID, meta eventstore.Metadata) (Result, error) {
	// Times are kept to the microsecond, as PostgreSQL keeps them, so that the
	// read model shows what the write answered.
	now := h.now().Truncate(time.Microsecond)
	sg.At = sg.At.Truncate(time.Microsecond)
	for round := 1; ; round++ {
		res, err := h.update(ctx, artifactKey(tenant, id), meta, 0, func(history []domain.Event) ([]domain.Event, error) {
			return artifacts.Sight(domain.Fold(artifacts.Evolve, history), sg, now, by)
		}, nil)
		if !errors.Is(err, eventstore.ErrVersionConflict) || round == sightRounds {
			return res, err
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(rand.N(time.Duration(round) * 5 * time.Millisecond)):
		}
	}
}

// UpdateArtifact asks to change some of an artifact's fields; nil fields
// stay as they are. Kind, value, case and host never change.
type UpdateArtifact struct {
	Tenant   domain.TenantID
	Artifact artifacts.ID
	Changes  artifacts.Changes
	IfMatch  int64
	By       domain.UserID
	Meta     eventstore.Metadata
}

// UpdateArtifact applies cmd. An update that changes nothing records
// nothing and answers the current version.
func (h *Handler) UpdateArtifact(ctx context.Context, cmd UpdateArtifact) (Result, error) {
	return h.update(ctx, artifactKey(cmd.Tenant, cmd.Artifact), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			return artifacts.Update(domain.Fold(artifacts.Evolve, history), cmd.Changes, cmd.By)
		}, nil)
}

// DeleteArtifact asks to delete an artifact.
type DeleteArtifact struct {
	Tenant   domain.TenantID
	Artifact artifacts.ID
	IfMatch  int64
	By       domain.UserID
	Meta     eventstore.Metadata
}

// DeleteArtifact deletes an artifact softly: its history stays, the API no
// longer finds it, and its uniqueness key is released in the same
// transaction, so that adding the same value to the same case again makes a
// new artifact (whose sightings start again from one). Deleting a deleted
// artifact is not found.
func (h *Handler) DeleteArtifact(ctx context.Context, cmd DeleteArtifact) (Result, error) {
	return h.update(ctx, artifactKey(cmd.Tenant, cmd.Artifact), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(artifacts.Evolve, history)
			if s.Deleted {
				return nil, domain.ErrNotFound
			}
			return artifacts.Delete(s, cmd.By)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			_, err := tx.Exec(ctx, `UPDATE artifact_keys SET released = true
				WHERE tenant_id = $1 AND artifact_id = $2`, string(cmd.Tenant), string(cmd.Artifact))
			return err
		})
}

// ArtifactView is an artifact's state as of its latest event, with when its
// value was first and last seen: the earliest and latest of the time it was
// added and the times of its sightings.
type ArtifactView struct {
	View[artifacts.State]
	FirstSeen time.Time
	LastSeen  time.Time
}

// ArtifactView returns artifact id of tenant, or domain.ErrNotFound (also for
// a deleted artifact and for one of another tenant).
func (h *Handler) ArtifactView(ctx context.Context, tenant domain.TenantID, id artifacts.ID) (ArtifactView, error) {
	var v ArtifactView
	envs, err := h.store.Load(ctx, artifactKey(tenant, id))
	if err != nil {
		return v, fmt.Errorf("load artifact %s: %w", id, err)
	}
	for _, e := range envs {
		if e.Event == nil {
			continue
		}
		v.State = artifacts.Evolve(v.State, e.Event)
		switch ev := e.Event.(type) {
		case artifacts.Added:
			v.CreatedAt, v.FirstSeen, v.LastSeen = e.RecordedAt, e.RecordedAt, e.RecordedAt
		case artifacts.Sighted:
			if ev.At.Before(v.FirstSeen) {
				v.FirstSeen = ev.At
			}
			if ev.At.After(v.LastSeen) {
				v.LastSeen = ev.At
			}
		}
	}
	if !v.State.Exists || v.State.Deleted {
		return ArtifactView{}, domain.ErrNotFound
	}
	v.Version = int64(envs[len(envs)-1].Version)
	v.UpdatedAt = envs[len(envs)-1].RecordedAt
	return v, nil
}
