package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerHostEvents) }

func registerHostEvents(c *eventstore.Codec) {
	eventstore.Register[hosts.Registered](c, 1)
	eventstore.Register[hosts.Discovered](c, 1)
	eventstore.Register[hosts.Updated](c, 1)
	eventstore.Register[hosts.LabelsChanged](c, 1)
	eventstore.Register[hosts.Seen](c, 1)
	eventstore.Register[hosts.ScoreChanged](c, 1)
	eventstore.Register[hosts.Deleted](c, 1)
	eventstore.Register[hosts.QuarantineRequested](c, 1)
	eventstore.Register[hosts.Quarantined](c, 1)
	eventstore.Register[hosts.QuarantineFailed](c, 1)
	eventstore.Register[hosts.ReleaseRequested](c, 1)
	eventstore.Register[hosts.Released](c, 1)
}

// Errors of the host commands.
var (
	// ErrClientIDTaken answers a host whose Velociraptor client id another
	// live host of the tenant already has.
	ErrClientIDTaken = domain.Conflict("client_id_taken", "another host of this tenant has this Velociraptor client id")
	// ErrClientIDRequired answers a sync report without a client id: the sync
	// identifies hosts by it.
	ErrClientIDRequired = domain.Invalid("client_id_required", "a synchronised host must carry its Velociraptor client id")
)

// HostStreamType is the stream type of host streams.
const HostStreamType = "host"

func hostKey(tenant domain.TenantID, id hosts.ID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: HostStreamType, ID: string(id)}
}

// RegisterHost asks to register a host by hand, as an analyst.
type RegisterHost struct {
	Tenant  domain.TenantID
	Profile hosts.Profile
	// SeenAt, when not zero, is when the host was last seen; it is recorded
	// with the registration.
	SeenAt time.Time
	By     domain.UserID
	Meta   eventstore.Metadata
}

// RegisterHost records a new host with a new id, and reserves its client id.
func (h *Handler) RegisterHost(ctx context.Context, cmd RegisterHost) (Result, error) {
	id := hosts.ID(h.newID())
	now := h.now()
	return h.update(ctx, hostKey(cmd.Tenant, id), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			st := hostSteps{s: domain.Fold(hosts.Evolve, history)}
			if err := st.do(hosts.Register(st.s, id, cmd.Profile, cmd.By)); err != nil {
				return nil, err
			}
			if !cmd.SeenAt.IsZero() {
				if err := st.do(hosts.RecordSeen(st.s, cmd.SeenAt, now, hosts.SourceAnalyst, cmd.By)); err != nil {
					return nil, err
				}
			}
			return st.out, nil
		},
		hostRegistry(cmd.Tenant, id))
}

// UpdateHost changes some of a host's facts in one atomic step; nil and zero
// fields stay as they are.
type UpdateHost struct {
	Tenant  domain.TenantID
	Host    hosts.ID
	Changes hosts.Changes
	// Labels, when not nil, replaces the host's labels by exactly this set.
	Labels *[]string
	// AddLabels and RemoveLabels change the labels relative to what the host
	// has (after Labels, if both are given).
	AddLabels, RemoveLabels []string
	// SeenAt, when not zero, records a sighting.
	SeenAt time.Time
	// Source says who supplies the facts; hosts.SourceAnalyst when empty.
	Source  hosts.Source
	IfMatch int64
	By      domain.UserID
	Meta    eventstore.Metadata
}

// UpdateHost decides every requested change on one loaded state and appends
// them together: a request is applied whole or not at all. A request that
// changes nothing appends nothing and returns the current version.
func (h *Handler) UpdateHost(ctx context.Context, cmd UpdateHost) (Result, error) {
	src := sourceOr(cmd.Source, hosts.SourceAnalyst)
	now := h.now()
	return h.update(ctx, hostKey(cmd.Tenant, cmd.Host), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			st := hostSteps{s: domain.Fold(hosts.Evolve, history)}
			if err := st.live(); err != nil {
				return nil, err
			}
			if err := st.do(hosts.Update(st.s, cmd.Changes, src, cmd.By)); err != nil {
				return nil, err
			}
			if cmd.Labels != nil {
				if err := st.do(hosts.SetLabels(st.s, *cmd.Labels, src, cmd.By)); err != nil {
					return nil, err
				}
			}
			if len(cmd.AddLabels) > 0 || len(cmd.RemoveLabels) > 0 {
				if err := st.do(hosts.ChangeLabels(st.s, cmd.AddLabels, cmd.RemoveLabels, src, cmd.By)); err != nil {
					return nil, err
				}
			}
			if !cmd.SeenAt.IsZero() {
				if err := st.do(hosts.RecordSeen(st.s, cmd.SeenAt, now, src, cmd.By)); err != nil {
					return nil, err
				}
			}
			return st.out, nil
		},
		hostRegistry(cmd.Tenant, cmd.Host))
}

// ChangeHostLabels asks to add and remove some of a host's labels.
type ChangeHostLabels struct {
	Tenant      domain.TenantID
	Host        hosts.ID
	Add, Remove []string
	Source      hosts.Source // hosts.SourceAnalyst when empty
	IfMatch     int64
	By          domain.UserID
	Meta        eventstore.Metadata
}

// ChangeHostLabels applies cmd; adding a label the host has, or removing one
// it lacks, changes nothing.
func (h *Handler) ChangeHostLabels(ctx context.Context, cmd ChangeHostLabels) (Result, error) {
	return h.UpdateHost(ctx, UpdateHost{Tenant: cmd.Tenant, Host: cmd.Host, AddLabels: cmd.Add, RemoveLabels: cmd.Remove,
		Source: cmd.Source, IfMatch: cmd.IfMatch, By: cmd.By, Meta: cmd.Meta})
}

// SetHostLabels asks to give a host exactly a set of labels.
type SetHostLabels struct {
	Tenant  domain.TenantID
	Host    hosts.ID
	Labels  []string
	Source  hosts.Source // hosts.SourceAnalyst when empty
	IfMatch int64
	By      domain.UserID
	Meta    eventstore.Metadata
}

// SetHostLabels applies cmd.
func (h *Handler) SetHostLabels(ctx context.Context, cmd SetHostLabels) (Result, error) {
	labels := cmd.Labels
	if labels == nil {
		labels = []string{}
	}
	return h.UpdateHost(ctx, UpdateHost{Tenant: cmd.Tenant, Host: cmd.Host, Labels: &labels,
		Source: cmd.Source, IfMatch: cmd.IfMatch, By: cmd.By, Meta: cmd.Meta})
}

// RecordHostSeen asks to record that a host was seen at a time.
type RecordHostSeen struct {
	Tenant domain.TenantID
	Host   hosts.ID
	At     time.Time
	Source hosts.Source // hosts.SourceAnalyst when empty
	By     domain.UserID
	Meta   eventstore.Metadata
}

// RecordHostSeen applies cmd. A sighting between the host's first and last
// seen times is no news and appends nothing.
func (h *Handler) RecordHostSeen(ctx context.Context, cmd RecordHostSeen) (Result, error) {
	if cmd.At.IsZero() {
		return Result{}, hosts.ErrSeenAtRequired
	}
	return h.UpdateHost(ctx, UpdateHost{Tenant: cmd.Tenant, Host: cmd.Host, SeenAt: cmd.At,
		Source: cmd.Source, By: cmd.By, Meta: cmd.Meta})
}

// DeleteHost asks to delete a host. Deletion is soft: the history stays.
type DeleteHost struct {
	Tenant  domain.TenantID
	Host    hosts.ID
	IfMatch int64
	By      domain.UserID
	Meta    eventstore.Metadata
}

// DeleteHost applies cmd and frees the host's client id. A host that is
// already deleted is not found.
func (h *Handler) DeleteHost(ctx context.Context, cmd DeleteHost) (Result, error) {
	return h.update(ctx, hostKey(cmd.Tenant, cmd.Host), cmd.Meta, cmd.IfMatch,
		func(history []domain.Event) ([]domain.Event, error) {
			st := hostSteps{s: domain.Fold(hosts.Evolve, history)}
			if err := st.live(); err != nil {
				return nil, err
			}
			return hosts.Delete(st.s, cmd.By)
		},
		hostRegistry(cmd.Tenant, cmd.Host))
}

// SyncHost is what a sync (Velociraptor) reports about one of its clients.
type SyncHost struct {
	Tenant domain.TenantID
	// Profile is what the sync knows. ClientID is required: it identifies the
	// host. For a known host, empty strings and nil lists and metadata are
	// "not reported" and leave the host's values alone; non-nil Labels
	// replace the host's labels.
	Profile hosts.Profile
	// Source is the sync; hosts.SourceVelociraptor when empty.
	Source hosts.Source
	// FirstSeen and LastSeen are optional sightings.
	FirstSeen, LastSeen time.Time
	// SeenResolution, when positive, records a known host's LastSeen only
	// once it is at least this much later than the one recorded: a client
	// checking in every minute does not append an event at every sync.
	SeenResolution time.Duration
	By             domain.UserID
	Meta           eventstore.Metadata
}

// SyncResult is the outcome of SyncHost.
type SyncResult struct {
	Result
	// Created is true when the report discovered a host the tenant did not know.
	Created bool
}

// errSyncRetry makes SyncHost look the client id up again: the host it found
// was deleted, or lost the client id, while the report was being decided.
var errSyncRetry = errors.New("host of the client id changed concurrently")

// SyncHost records what a sync reports about the host with cmd's client id:
// it discovers a host the tenant does not know (same events as an analyst's,
// with the sync as their source) or updates the one it knows. The client id
// is unique among the tenant's live hosts, so repeating a report, even
// concurrently, never records the host twice, and a report that brings no news
// appends nothing.
func (h *Handler) SyncHost(ctx context.Context, cmd SyncHost) (SyncResult, error) {
	clientID, err := hosts.CheckClientID(cmd.Profile.ClientID)
	if err != nil {
		return SyncResult{}, err
	}
	if clientID == "" {
		return SyncResult{}, ErrClientIDRequired
	}
	src := sourceOr(cmd.Source, hosts.SourceVelociraptor)
	if !src.Valid() || src == hosts.SourceAnalyst {
		return SyncResult{}, hosts.ErrSourceInvalid
	}
	profile := cmd.Profile
	profile.ClientID = clientID
	for attempt := 0; attempt < maxAttempts; attempt++ {
		id, found, err := h.hostByClientID(ctx, cmd.Tenant, clientID)
		if err != nil {
			return SyncResult{}, err
		}
		if !found {
			res, err := h.discoverHost(ctx, cmd, profile, src)
			if errors.Is(err, ErrClientIDTaken) {
				continue // a concurrent report discovered it first: update that host
			}
			return SyncResult{Result: res, Created: err == nil}, err
		}
		res, err := h.syncKnownHost(ctx, cmd, id, profile, src)
		if errors.Is(err, errSyncRetry) {
			continue
		}
		return SyncResult{Result: res}, err
	}
	return SyncResult{}, eventstore.ErrVersionConflict
}

func (h *Handler) discoverHost(ctx context.Context, cmd SyncHost, p hosts.Profile, src hosts.Source) (Result, error) {
	id := hosts.ID(h.newID())
	now := h.now()
	return h.update(ctx, hostKey(cmd.Tenant, id), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return hosts.Discover(domain.Fold(hosts.Evolve, history), hosts.Discovery{
				ID: id, Profile: p, Source: src, FirstSeen: cmd.FirstSeen, LastSeen: cmd.LastSeen,
			}, now, cmd.By)
		},
		hostRegistry(cmd.Tenant, id))
}

func (h *Handler) syncKnownHost(ctx context.Context, cmd SyncHost, id hosts.ID, p hosts.Profile, src hosts.Source) (Result, error) {
	now := h.now()
	ch := hosts.Changes{Metadata: p.Metadata}
	for _, f := range []struct {
		v   string
		dst **string
	}{{p.Hostname, &ch.Hostname}, {p.FQDN, &ch.FQDN}, {p.OS, &ch.OS}, {p.OSVersion, &ch.OSVersion}} {
		if f.v != "" {
			*f.dst = &f.v
		}
	}
	if p.IPs != nil {
		ch.IPs = &p.IPs
	}
	return h.update(ctx, hostKey(cmd.Tenant, id), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			st := hostSteps{s: domain.Fold(hosts.Evolve, history)}
			if !st.s.Exists || st.s.Deleted || st.s.ClientID != p.ClientID {
				return nil, errSyncRetry
			}
			ch := ch
			if ch.Metadata != nil {
				// A sync owns only the top-level keys it reports: what an
				// analyst wrote beside them stays.
				merged, err := mergeMetadata(st.s.Metadata, ch.Metadata)
				if err != nil {
					return nil, err
				}
				ch.Metadata = merged
			}
			if err := st.do(hosts.Update(st.s, ch, src, cmd.By)); err != nil {
				return nil, err
			}
			if p.Labels != nil {
				if err := st.do(hosts.SetLabels(st.s, p.Labels, src, cmd.By)); err != nil {
					return nil, err
				}
			}
			for i, at := range []time.Time{cmd.LastSeen, cmd.FirstSeen} {
				if at.IsZero() {
					continue
				}
				if i == 0 && cmd.SeenResolution > 0 && !st.s.LastSeen.IsZero() && at.After(st.s.LastSeen) &&
					at.Sub(st.s.LastSeen) < cmd.SeenResolution {
					continue // too little news to record: the fleet's pulse is not an event stream
				}
				if err := st.do(hosts.RecordSeen(st.s, at, now, src, cmd.By)); err != nil {
					return nil, err
				}
			}
			return st.out, nil
		},
		hostRegistry(cmd.Tenant, id))
}

// mergeMetadata returns the JSON object base with the top-level keys of over
// set to theirs.
func mergeMetadata(base, over json.RawMessage) (json.RawMessage, error) {
	merged := map[string]json.RawMessage{}
	if len(base) > 0 {
		if err := json.Unmarshal(base, &merged); err != nil {
			return nil, fmt.Errorf("host metadata: %w", err)
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(over, &top); err != nil {
		return nil, hosts.ErrMetadataInvalid
	}
	maps.Copy(merged, top)
	return json.Marshal(merged)
}

// hostByClientID returns the live host of tenant with the client id.
func (h *Handler) hostByClientID(ctx context.Context, tenant domain.TenantID, clientID string) (hosts.ID, bool, error) {
	var id string
	err := h.pool.QueryRow(ctx, `SELECT host_id FROM host_registry WHERE tenant_id = $1 AND client_id = $2`,
		string(tenant), clientID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up client id %s: %w", clientID, err)
	}
	return hosts.ID(id), true, nil
}

// hostRegistry keeps host_registry in step with the host events being
// appended, in their transaction.
func hostRegistry(tenant domain.TenantID, id hosts.ID) alsoFunc {
	return func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
		for _, e := range events {
			var err error
			switch e := e.(type) {
			case hosts.Registered:
				err = insertHostRegistry(ctx, tx, tenant, id, e.ClientID)
			case hosts.Discovered:
				err = insertHostRegistry(ctx, tx, tenant, id, e.ClientID)
			case hosts.Updated:
				if e.ClientID != nil {
					_, err = tx.Exec(ctx, `UPDATE host_registry SET client_id = NULLIF($3, ''), updated_at = now()
						WHERE tenant_id = $1 AND host_id = $2`, string(tenant), string(id), *e.ClientID)
				}
			case hosts.Deleted:
				_, err = tx.Exec(ctx, `UPDATE host_registry SET deleted = true, client_id = NULL, updated_at = now()
					WHERE tenant_id = $1 AND host_id = $2`, string(tenant), string(id))
			}
			if err != nil {
				return uniqueAs(err, ErrClientIDTaken)
			}
		}
		return nil
	}
}

func insertHostRegistry(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, id hosts.ID, clientID string) error {
	_, err := tx.Exec(ctx, `INSERT INTO host_registry (tenant_id, host_id, client_id) VALUES ($1, $2, NULLIF($3, ''))`,
		string(tenant), string(id), clientID)
	return err
}

// hostSteps accumulates the events of several decisions on one host, each
// decided on the state the previous ones left.
type hostSteps struct {
	s   hosts.State
	out []domain.Event
}

func (st *hostSteps) do(events []domain.Event, err error) error {
	if err != nil {
		return err
	}
	for _, e := range events {
		st.s = hosts.Evolve(st.s, e)
	}
	st.out = append(st.out, events...)
	return nil
}

// live answers domain.ErrNotFound for a host that does not exist or was deleted.
func (st *hostSteps) live() error {
	if !st.s.Exists || st.s.Deleted {
		return domain.ErrNotFound
	}
	return nil
}

func sourceOr(s, def hosts.Source) hosts.Source {
	if s == "" {
		return def
	}
	return s
}

// HostView returns the state of host id of tenant, or domain.ErrNotFound (also
// for a deleted host and for a host of another tenant).
func (h *Handler) HostView(ctx context.Context, tenant domain.TenantID, id hosts.ID) (View[hosts.State], error) {
	v, err := view(ctx, h, hostKey(tenant, id), hosts.Evolve)
	if err == nil && (!v.State.Exists || v.State.Deleted) {
		return View[hosts.State]{}, domain.ErrNotFound
	}
	return v, err
}

// HostEvent is one entry of a host's history.
type HostEvent struct {
	Version  int64
	Position int64
	Name     string
	At       time.Time
	Meta     eventstore.Metadata
	// Payload is the event at its current schema (upcast), or as stored for
	// an event this build does not know.
	Payload json.RawMessage
}

// MaxHistoryLimit is the largest page HostHistory returns.
const MaxHistoryLimit = 500

// HostHistory returns up to limit events of host id of tenant whose versions
// are below before (all when before <= 0), newest first. The history of a
// deleted host stays readable; a host that never existed in tenant, such as
// another tenant's, is domain.ErrNotFound.
func (h *Handler) HostHistory(ctx context.Context, tenant domain.TenantID, id hosts.ID, before int64, limit int) ([]HostEvent, error) {
	limit = min(max(limit, 1), MaxHistoryLimit)
	envs, err := h.store.Load(ctx, hostKey(tenant, id))
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, domain.ErrNotFound
	}
	end := len(envs)
	if before > 0 {
		end = int(min(before-1, int64(len(envs))))
	}
	out := make([]HostEvent, 0, min(limit, end))
	for i := end - 1; i >= 0 && len(out) < limit; i-- {
		env := envs[i]
		payload := env.Payload
		if env.Event != nil {
			if payload, err = json.Marshal(env.Event); err != nil {
				return nil, fmt.Errorf("encode %s event %d: %w", env.Name, env.Version, err)
			}
		}
		out = append(out, HostEvent{Version: int64(env.Version), Position: env.Position, Name: env.Name,
			At: env.RecordedAt, Meta: env.Metadata, Payload: slices.Clip(payload)})
	}
	return out, nil
}
