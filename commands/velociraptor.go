package commands

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
)

func init() { eventRegistrations = append(eventRegistrations, registerVelociraptorEvents) }

func registerVelociraptorEvents(c *eventstore.Codec) {
	eventstore.Register[velociraptor.Configured](c, 1)
	eventstore.Register[velociraptor.Checked](c, 1)
	eventstore.Register[velociraptor.Removed](c, 1)
	eventstore.Register[velociraptor.CertificateExpiring](c, 1)
	eventstore.Register[velociraptor.CollectionRequested](c, 1)
	eventstore.Register[velociraptor.CollectionScheduled](c, 1)
	eventstore.Register[velociraptor.CollectionCompleted](c, 1)
	eventstore.Register[velociraptor.CollectionFailed](c, 1)
	eventstore.Register[velociraptor.CollectionCancelRequested](c, 1)
	eventstore.Register[velociraptor.CollectionCancelled](c, 1)
	eventstore.Register[velociraptor.HuntRequested](c, 1)
	eventstore.Register[velociraptor.HuntScheduled](c, 1)
	eventstore.Register[velociraptor.HuntProgressed](c, 1)
	eventstore.Register[velociraptor.HuntResultsReceived](c, 1)
	eventstore.Register[velociraptor.HuntStopRequested](c, 1)
	eventstore.Register[velociraptor.HuntStopped](c, 1)
	eventstore.Register[velociraptor.HuntFailed](c, 1)
}

// sealPurposeVelociraptor is the associated-data purpose of a sealed
// api_client configuration.
// WARNING: stored configurations are bound to it; never change it.
const sealPurposeVelociraptor = "velociraptor"

// MaxVelociraptorConfig bounds an api_client YAML.
const MaxVelociraptorConfig = 1 << 20

// Job kinds and states of the Velociraptor worker.
//
// WARNING: stored in velociraptor_jobs; never rename one.
const (
	JobCollection = "collection"
	JobHunt       = "hunt"

	JobRequested  = "requested"
	JobScheduled  = "scheduled"
	JobStopping   = "stopping"
	JobCancelling = "cancelling" // a collection asked to be cancelled
	JobDone       = "done"
)

// Page sizes of Results, Hunts and Collections.
const (
	DefaultResultPage = 100
	MaxResultPage     = 1000
	MaxHuntPage       = 500
	MaxCollectionPage = 500
)

// resultChunk is how many result rows one INSERT stores.
const resultChunk = 500

// Errors of the Velociraptor commands.
var (
	ErrVelociraptorNotConfigured = domain.Conflict("velociraptor_not_configured",
		"Velociraptor is not configured for this tenant: an administrator posts its api_client configuration to /api/velociraptor/config")
	ErrVelociraptorConfig = domain.Invalid("velociraptor_config_invalid", "the api_client configuration must be 1 byte to 1 MiB of YAML")
	ErrClientIDMismatch   = domain.Invalid("client_id_mismatch", "the client id is not the Velociraptor client id of the host")
	ErrCursorInvalid      = domain.Invalid("cursor_invalid", "the page cursor is not one this server returned")
	ErrOwnerKindInvalid   = domain.Invalid("owner_kind_invalid", "results belong to a collection or a hunt")
	ErrRowInvalid         = domain.Invalid("result_row_invalid", "a result row must be JSON")
	ErrStatusInvalid      = domain.Invalid("status_invalid", "status must be requested, scheduled, completed, failed or cancelled")
)

// systemMeta is the metadata of the events the worker records.
var systemMeta = eventstore.Metadata{Actor: "velociraptor", ActorType: "system"}

// Velociraptor executes the commands on a tenant's Velociraptor connection,
// collections, hunts and host quarantines. It is the Handler with the sealer
// of api_client configurations.
type Velociraptor struct {
	h      *Handler
	sealer SIEMSealer
}

// NewVelociraptor returns the Velociraptor commands of h, sealing api_client
// configurations with sealer.
func NewVelociraptor(h *Handler, sealer SIEMSealer) *Velociraptor {
	if sealer == nil {
		panic("commands: NewVelociraptor needs a sealer")
	}
	return &Velociraptor{h: h, sealer: sealer}
}

// VelociraptorSummary describes an api_client identity without its secrets.
type VelociraptorSummary = velociraptor.Summary

func connectionKey(tenant domain.TenantID) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: velociraptor.StreamType, ID: velociraptor.ConnectionID}
}

func collectionKey(tenant domain.TenantID, id string) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: velociraptor.CollectionStreamType, ID: id}
}

func huntKey(tenant domain.TenantID, id string) eventstore.Key {
	return eventstore.Key{Tenant: tenant, Type: velociraptor.HuntStreamType, ID: id}
}

// ---- Connection ----

// ConfigureVelociraptor asks to give a tenant its Velociraptor connection.
// Config is the whole api_client YAML, already validated by the adapter that
// produced Summary from it; it is sealed, never recorded.
type ConfigureVelociraptor struct {
	Tenant  domain.TenantID
	OrgID   string
	Config  []byte
	Summary velociraptor.Summary
	By      users.Actor
	Meta    eventstore.Metadata
}

// Configure records the tenant's connection and seals its configuration in
// the same transaction. Configuring what is configured records nothing.
func (v *Velociraptor) Configure(ctx context.Context, cmd ConfigureVelociraptor) (Result, error) {
	if len(cmd.Config) == 0 || len(cmd.Config) > MaxVelociraptorConfig {
		return Result{}, ErrVelociraptorConfig
	}
	now := v.h.now().UTC()
	return v.h.update(ctx, connectionKey(cmd.Tenant), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return velociraptor.Configure(domain.Fold(velociraptor.EvolveConnection, history), cmd.By, cmd.Tenant, cmd.OrgID, cmd.Summary, now)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			e := events[0].(velociraptor.Configured)
			sealed, err := v.sealer.Seal(cmd.Tenant, sealPurposeVelociraptor, cmd.Config)
			if err != nil {
				return fmt.Errorf("seal velociraptor config: %w", err)
			}
			summary, err := json.Marshal(e.Summary)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO velociraptor_connections (tenant_id, org_id, sealed_config, summary, version, updated_at)
				VALUES ($1, $2, $3, $4, 1, $5)
				ON CONFLICT (tenant_id) DO UPDATE SET org_id = EXCLUDED.org_id, sealed_config = EXCLUDED.sealed_config,
					summary = EXCLUDED.summary, version = velociraptor_connections.version + 1,
					updated_at = EXCLUDED.updated_at, removed_at = NULL`,
				string(cmd.Tenant), e.OrgID, sealed, summary, now)
			return err
		})
}

// RemoveVelociraptor asks to remove a tenant's connection.
type RemoveVelociraptor struct {
	Tenant domain.TenantID
	By     users.Actor
	Meta   eventstore.Metadata
}

// Remove removes the tenant's connection and wipes its sealed configuration;
// domain.ErrNotFound when there is none.
func (v *Velociraptor) Remove(ctx context.Context, cmd RemoveVelociraptor) (Result, error) {
	now := v.h.now().UTC()
	return v.h.update(ctx, connectionKey(cmd.Tenant), cmd.Meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return velociraptor.Remove(domain.Fold(velociraptor.EvolveConnection, history), cmd.By, cmd.Tenant)
		},
		func(ctx context.Context, tx pgx.Tx, _ []domain.Event) error {
			_, err := tx.Exec(ctx, `UPDATE velociraptor_connections SET sealed_config = NULL, removed_at = $2, updated_at = $2
				WHERE tenant_id = $1`, string(cmd.Tenant), now)
			return err
		})
}

// ConnectionCheck is the last recorded outcome of reaching the server; At is
// zero when none was recorded since the connection was configured.
type ConnectionCheck struct {
	OK    bool
	Error string
	At    time.Time
}

// Connection is a tenant's connection as the write side knows it, never with
// its configuration.
type Connection struct {
	OrgID     string
	Summary   velociraptor.Summary
	Version   int64 // of the connection's stream
	Checked   ConnectionCheck
	By        domain.UserID
	UpdatedAt time.Time
}

// Connection returns tenant's connection, or domain.ErrNotFound.
func (v *Velociraptor) Connection(ctx context.Context, tenant domain.TenantID) (Connection, error) {
	vw, err := view(ctx, v.h, connectionKey(tenant), velociraptor.EvolveConnection)
	if err != nil {
		return Connection{}, err
	}
	s := vw.State
	if !s.Configured {
		return Connection{}, domain.ErrNotFound
	}
	return Connection{OrgID: s.OrgID, Summary: s.Summary, Version: vw.Version,
		Checked: ConnectionCheck{OK: s.Check.OK, Error: s.Check.Error, At: s.Check.At}, By: s.By, UpdatedAt: vw.UpdatedAt}, nil
}

// Credentials opens tenant's api_client configuration with its org id and
// the number of its configuration, which changes whenever it is configured
// again. It is for the worker and the sync, never for a response.
func (v *Velociraptor) Credentials(ctx context.Context, tenant domain.TenantID) (config []byte, orgID string, version int64, err error) {
	var sealed []byte
	err = v.h.pool.QueryRow(ctx, `SELECT sealed_config, org_id, version FROM velociraptor_connections
		WHERE tenant_id = $1 AND sealed_config IS NOT NULL`, string(tenant)).Scan(&sealed, &orgID, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", 0, domain.ErrNotFound
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("read velociraptor config of %s: %w", tenant, err)
	}
	config, err = v.sealer.Open(tenant, sealPurposeVelociraptor, sealed)
	if err != nil {
		return nil, "", 0, fmt.Errorf("open velociraptor config of %s: %w", tenant, err)
	}
	return config, orgID, version, nil
}

// Configured returns the tenants that have a connection, for the sync.
func (v *Velociraptor) Configured(ctx context.Context) ([]domain.TenantID, error) {
	rows, err := v.h.pool.Query(ctx, `SELECT tenant_id FROM velociraptor_connections
		WHERE sealed_config IS NOT NULL ORDER BY tenant_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.TenantID, error) {
		var t string
		err := r.Scan(&t)
		return domain.TenantID(t), err
	})
}

// WarnExpiry records, once per certificate, that the client certificate of
// tenant's connection expires within the window, and reports whether it did.
func (v *Velociraptor) WarnExpiry(ctx context.Context, tenant domain.TenantID, within time.Duration) (bool, error) {
	now := v.h.now().UTC()
	res, err := v.h.update(ctx, connectionKey(tenant), systemMeta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return velociraptor.WarnExpiry(domain.Fold(velociraptor.EvolveConnection, history), now, within)
		}, nil)
	return err == nil && res.Position != 0, err
}

// RecordCheck records the outcome of reaching tenant's server when it differs
// from the last one: ok, or failing with errText (a client-safe message).
func (v *Velociraptor) RecordCheck(ctx context.Context, tenant domain.TenantID, ok bool, errText string) error {
	now := v.h.now().UTC()
	_, err := v.h.update(ctx, connectionKey(tenant), systemMeta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			return velociraptor.RecordCheck(domain.Fold(velociraptor.EvolveConnection, history), ok, errText, now)
		}, nil)
	return err
}

// requireConnection answers ErrVelociraptorNotConfigured for a tenant
// without a connection.
func (v *Velociraptor) requireConnection(ctx context.Context, tenant domain.TenantID) error {
	var ok bool
	err := v.h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM velociraptor_connections
		WHERE tenant_id = $1 AND sealed_config IS NOT NULL)`, string(tenant)).Scan(&ok)
	if err != nil {
		return fmt.Errorf("look up velociraptor connection of %s: %w", tenant, err)
	}
	if !ok {
		return ErrVelociraptorNotConfigured
	}
	return nil
}

// ---- Jobs ----

// Job is one open collection or hunt of the worker.
type Job struct {
	Tenant   domain.TenantID
	Kind     string // JobCollection or JobHunt
	ID       string
	State    string // JobRequested, JobScheduled, JobStopping or JobCancelling
	Attempts int
}

// DueJobs returns up to limit open jobs of every tenant that are due at now,
// the longest due first.
func (v *Velociraptor) DueJobs(ctx context.Context, now time.Time, limit int) ([]Job, error) {
	limit = max(1, min(limit, 1000))
	rows, err := v.h.pool.Query(ctx, `SELECT tenant_id, kind, id, state, attempts FROM velociraptor_jobs
		WHERE state <> 'done' AND due_at <= $1 ORDER BY due_at, tenant_id, kind, id LIMIT $2`, now, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) {
		var j Job
		var t string
		err := r.Scan(&t, &j.Kind, &j.ID, &j.State, &j.Attempts)
		j.Tenant = domain.TenantID(t)
		return j, err
	})
}

// DeferJob puts off an open job that failed for a passing reason until until,
// counting the attempt.
func (v *Velociraptor) DeferJob(ctx context.Context, job Job, until time.Time) error {
	_, err := v.h.pool.Exec(ctx, `UPDATE velociraptor_jobs SET due_at = $4, attempts = attempts + 1, updated_at = now()
		WHERE tenant_id = $1 AND kind = $2 AND id = $3 AND state <> 'done'`, string(job.Tenant), job.Kind, job.ID, until)
	return err
}

// WaitJob puts off an open job that is waiting for Velociraptor until until;
// its step succeeded, so its failed attempts start again from zero.
func (v *Velociraptor) WaitJob(ctx context.Context, job Job, until time.Time) error {
	_, err := v.h.pool.Exec(ctx, `UPDATE velociraptor_jobs SET due_at = $4, attempts = 0, updated_at = now()
		WHERE tenant_id = $1 AND kind = $2 AND id = $3 AND state <> 'done'`, string(job.Tenant), job.Kind, job.ID, until)
	return err
}

func insertJob(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, kind, id string, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO velociraptor_jobs (tenant_id, kind, id, state, due_at, attempts, created_at, updated_at)
		VALUES ($1, $2, $3, 'requested', $4, 0, $4, $4)`, string(tenant), kind, id, now)
	return err
}

// setJob moves a job to state, due at once; done is final.
func setJob(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, kind, id, state string, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE velociraptor_jobs SET state = $4, due_at = $5, attempts = 0, updated_at = $5
		WHERE tenant_id = $1 AND kind = $2 AND id = $3 AND state <> 'done'`, string(tenant), kind, id, state, now)
	return err
}

// ---- Collections ----

// RequestCollection asks to collect artifacts from one client, named by its
// client id or by the host that has it.
type RequestCollection struct {
	Tenant domain.TenantID
	// ID, when set, makes the request idempotent: asking again with the same
	// ID and the same request returns the same collection; with another
	// request it is a conflict. A new id is made when empty.
	ID         string
	ClientID   string
	HostID     hosts.ID
	Artifacts  []string
	Parameters map[string]string
	By         users.Actor
	Meta       eventstore.Metadata
}

// Collection is a collection as the write side knows it (the summary kept
// in velociraptor_collections with its events).
type Collection struct {
	ID         string                     `json:"id"`
	Tenant     domain.TenantID            `json:"-"`
	ClientID   string                     `json:"client_id"`
	HostID     hosts.ID                   `json:"host_id"`
	Artifacts  []string                   `json:"artifacts"`
	Parameters map[string]string          `json:"parameters"`
	Purpose    velociraptor.Purpose       `json:"purpose"`
	Status     velociraptor.Status        `json:"status"`
	FlowID     string                     `json:"flow_id"`
	Rows       int64                      `json:"rows"`
	Sources    []velociraptor.SourceCount `json:"sources"`
	Logs       []string                   `json:"logs"`
	Error      string                     `json:"error"`
	// CancelRequested is set once someone asked to cancel the collection,
	// CancelBy is who.
	CancelRequested bool          `json:"cancel_requested"`
	CancelBy        domain.UserID `json:"cancel_by"`
	By              domain.UserID `json:"by"`
	// Version, CreatedAt and UpdatedAt come from the table's columns.
	Version   int64     `json:"-"`
	CreatedAt time.Time `json:"-"`
	UpdatedAt time.Time `json:"-"`
}

func collectionOf(s velociraptor.Collection) Collection {
	return Collection{ID: s.ID, ClientID: s.ClientID, HostID: s.HostID, Artifacts: s.Artifacts, Parameters: s.Parameters,
		Purpose: s.Purpose, Status: s.Status, FlowID: s.FlowID, Rows: s.Rows, Sources: s.Sources, Logs: s.Logs, Error: s.Error,
		CancelRequested: s.CancelBy != "", CancelBy: s.CancelBy, By: s.By}
}

// collectionJobState is the state of the worker's job for the collection s.
func collectionJobState(s velociraptor.Collection) string {
	switch {
	case s.Done():
		return JobDone
	case s.CancelBy != "":
		return JobCancelling
	case s.FlowID != "":
		return JobScheduled
	}
	return JobRequested
}

// updateSummarized decides on the stream at key, folded with evolve, and in
// the transaction that appends the decision writes the summary of the
// stream with write: the state before the new events, the state after them,
// and the stream's new version. A decision of no events writes nothing.
func updateSummarized[S any](ctx context.Context, h *Handler, key eventstore.Key, meta eventstore.Metadata,
	evolve func(S, domain.Event) S, decide func(S) ([]domain.Event, error),
	write func(ctx context.Context, tx pgx.Tx, before, after S, version int64) error) (S, Result, error) {
	var st S
	var version int64
	res, err := h.update(ctx, key, meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			st, version = domain.Fold(evolve, history), int64(len(history))
			return decide(st)
		},
		func(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
			next := st
			for _, e := range events {
				next = evolve(next, e)
			}
			return write(ctx, tx, st, next, version+int64(len(events)))
		})
	return st, res, err
}

// updateCollection decides on collection id of tenant and appends the
// outcome with the collection's row, its job and extra's writes, in one
// transaction, so that the list, the worker and the stream never disagree.
// It returns the state the decision saw.
func (v *Velociraptor) updateCollection(ctx context.Context, tenant domain.TenantID, id string, meta eventstore.Metadata,
	decide func(velociraptor.Collection) ([]domain.Event, error),
	extra func(ctx context.Context, tx pgx.Tx, st velociraptor.Collection) error) (velociraptor.Collection, Result, error) {
	now := v.h.now().UTC()
	return updateSummarized(ctx, v.h, collectionKey(tenant, id), meta, velociraptor.EvolveCollection, decide,
		func(ctx context.Context, tx pgx.Tx, st, next velociraptor.Collection, version int64) error {
			summary, err := json.Marshal(collectionOf(next))
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO velociraptor_collections (tenant_id, collection_id, client_id, host_id, status, purpose,
					summary, version, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
				ON CONFLICT (tenant_id, collection_id) DO UPDATE SET status = EXCLUDED.status, summary = EXCLUDED.summary,
					version = EXCLUDED.version, updated_at = EXCLUDED.updated_at`,
				string(tenant), id, next.ClientID, string(next.HostID), string(next.Status), string(next.Purpose), summary,
				version, now)
			if err != nil {
				return fmt.Errorf("record collection %s: %w", id, err)
			}
			if extra != nil {
				if err := extra(ctx, tx, st); err != nil {
					return err
				}
			}
			if !st.Exists {
				return insertJob(ctx, tx, tenant, JobCollection, id, now)
			}
			return setJob(ctx, tx, tenant, JobCollection, id, collectionJobState(next), now)
		})
}

// RecordedFlows returns the flow ids that tenant's collections from clientID
// recorded as theirs, so that a flow found again after a crash is bound to
// one collection only.
func (v *Velociraptor) RecordedFlows(ctx context.Context, tenant domain.TenantID, clientID string) (map[string]bool, error) {
	rows, err := v.h.pool.Query(ctx, `SELECT summary->>'flow_id' FROM velociraptor_collections
		WHERE tenant_id = $1 AND client_id = $2 AND coalesce(summary->>'flow_id', '') <> ''`, string(tenant), clientID)
	if err != nil {
		return nil, fmt.Errorf("recorded flows of %s: %w", clientID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("recorded flows of %s: %w", clientID, err)
	}
	taken := make(map[string]bool, len(ids))
	for _, id := range ids {
		taken[id] = true
	}
	return taken, nil
}

// SourceRows are the result rows of one artifact source ("Name" or
// "Name/Source").
type SourceRows struct {
	Source string
	Rows   []json.RawMessage
}

// RequestCollection records a collection for the worker to perform.
func (v *Velociraptor) RequestCollection(ctx context.Context, cmd RequestCollection) (Collection, Result, error) {
	if err := velociraptor.MayRun(cmd.By, cmd.Tenant); err != nil {
		return Collection{}, Result{}, err
	}
	req := velociraptor.CollectionRequest{ClientID: cmd.ClientID, HostID: cmd.HostID, Artifacts: cmd.Artifacts,
		Parameters: cmd.Parameters, Purpose: velociraptor.PurposeCollect}
	if cmd.HostID != "" {
		host, err := v.h.HostView(ctx, cmd.Tenant, cmd.HostID)
		if err != nil {
			return Collection{}, Result{}, err
		}
		if host.State.ClientID == "" {
			return Collection{}, Result{}, hosts.ErrNoClientID
		}
		if cmd.ClientID != "" {
			id, err := velociraptor.CheckClientID(cmd.ClientID)
			if err != nil {
				return Collection{}, Result{}, err
			}
			if id != host.State.ClientID {
				return Collection{}, Result{}, ErrClientIDMismatch
			}
		}
		req.ClientID = host.State.ClientID
	}
	return v.requestCollection(ctx, cmd.Tenant, cmd.ID, req, cmd.By, cmd.Meta)
}

func (v *Velociraptor) requestCollection(ctx context.Context, tenant domain.TenantID, id string, req velociraptor.CollectionRequest,
	by users.Actor, meta eventstore.Metadata) (Collection, Result, error) {
	if id == "" {
		id = v.h.newID()
	}
	if err := velociraptor.CheckID(id); err != nil {
		return Collection{}, Result{}, err
	}
	if _, err := velociraptor.NormalizeCollection(req); err != nil {
		return Collection{}, Result{}, err
	}
	if err := v.requireConnection(ctx, tenant); err != nil {
		return Collection{}, Result{}, err
	}
	_, res, err := v.updateCollection(ctx, tenant, id, meta,
		func(s velociraptor.Collection) ([]domain.Event, error) {
			return velociraptor.RequestCollection(s, by, tenant, id, req)
		}, nil)
	if err != nil {
		return Collection{}, Result{}, err
	}
	c, err := v.Collection(ctx, tenant, id)
	return c, res, err
}

func scanCollection(tenant domain.TenantID) pgx.RowToFunc[Collection] {
	return func(r pgx.CollectableRow) (Collection, error) {
		var c Collection
		var summary []byte
		var version int64
		var created, updated time.Time
		if err := r.Scan(&summary, &version, &created, &updated); err != nil {
			return c, err
		}
		if err := json.Unmarshal(summary, &c); err != nil {
			return c, err
		}
		c.Tenant, c.Version, c.CreatedAt, c.UpdatedAt = tenant, version, created, updated
		return c, nil
	}
}

// Collection returns collection id of tenant, or domain.ErrNotFound.
func (v *Velociraptor) Collection(ctx context.Context, tenant domain.TenantID, id string) (Collection, error) {
	rows, err := v.h.pool.Query(ctx, `SELECT summary, version, created_at, updated_at FROM velociraptor_collections
		WHERE tenant_id = $1 AND collection_id = $2`, string(tenant), id)
	if err != nil {
		return Collection{}, err
	}
	c, err := pgx.CollectExactlyOneRow(rows, scanCollection(tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return Collection{}, domain.ErrNotFound
	}
	return c, err
}

// CollectionFilter narrows the collection list; a zero field does not.
type CollectionFilter struct {
	ClientID string
	HostID   hosts.ID
	Status   velociraptor.Status
	Purpose  velociraptor.Purpose
}

// Collections returns up to limit collections of tenant that pass f, newest
// first, after the cursor after ("" for the first page), and the cursor of
// the next page ("" after the last).
func (v *Velociraptor) Collections(ctx context.Context, tenant domain.TenantID, f CollectionFilter, after string, limit int) ([]Collection, string, error) {
	if limit <= 0 {
		limit = DefaultResultPage
	}
	limit = min(limit, MaxCollectionPage)
	where := []string{"tenant_id = $1"}
	args := []any{string(tenant)}
	add := func(cond string, value any) {
		args = append(args, value)
		where = append(where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if f.ClientID != "" {
		id, err := velociraptor.CheckClientID(f.ClientID)
		if err != nil {
			return nil, "", err
		}
		add("client_id = $?", id)
	}
	if f.HostID != "" {
		if velociraptor.CheckID(string(f.HostID)) != nil {
			return nil, "", velociraptor.ErrHostIDInvalid
		}
		add("host_id = $? AND host_id <> ''", string(f.HostID)) // the second term lets the partial index serve
	}
	if f.Status != "" {
		if !slices.Contains(velociraptor.CollectionStatuses, f.Status) {
			return nil, "", ErrStatusInvalid
		}
		add("status = $?", string(f.Status))
	}
	if f.Purpose != "" {
		if !f.Purpose.Valid() {
			return nil, "", velociraptor.ErrPurposeInvalid
		}
		add("purpose = $?", string(f.Purpose))
	}
	if after != "" {
		var cur recentCursor
		raw, err := base64.RawURLEncoding.DecodeString(after)
		if err != nil || json.Unmarshal(raw, &cur) != nil || cur.ID == "" {
			return nil, "", ErrCursorInvalid
		}
		args = append(args, cur.At, cur.ID)
		where = append(where, fmt.Sprintf("(created_at, collection_id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	args = append(args, limit+1)
	rows, err := v.h.pool.Query(ctx, `SELECT summary, version, created_at, updated_at FROM velociraptor_collections
		WHERE `+strings.Join(where, " AND ")+fmt.Sprintf(`
		ORDER BY created_at DESC, collection_id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, "", err
	}
	out, err := pgx.CollectRows(rows, scanCollection(tenant))
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	last := out[limit-1]
	next, err := json.Marshal(recentCursor{At: last.CreatedAt, ID: last.ID})
	return out, base64.RawURLEncoding.EncodeToString(next), err
}

// ScheduleCollection records that Velociraptor runs collection id as flowID.
// Recording the same flow again changes nothing; another flow is a conflict.
func (v *Velociraptor) ScheduleCollection(ctx context.Context, tenant domain.TenantID, id, flowID string) error {
	_, _, err := v.updateCollection(ctx, tenant, id, systemMeta,
		func(s velociraptor.Collection) ([]domain.Event, error) {
			return velociraptor.ScheduleCollection(s, flowID)
		}, nil)
	return err
}

// CompleteCollection stores the results of collection id and records that
// it completed, in one transaction, and then records the outcome on the host
// of a quarantine or release. Completing it again stores and records nothing
// but still finishes the host's part, so a retry after a crash completes the
// pair.
func (v *Velociraptor) CompleteCollection(ctx context.Context, tenant domain.TenantID, id string, results []SourceRows, logs []string) error {
	merged, counts, err := prepareResults(results)
	if err != nil {
		return err
	}
	st, _, err := v.updateCollection(ctx, tenant, id, systemMeta,
		func(s velociraptor.Collection) ([]domain.Event, error) {
			return velociraptor.CompleteCollection(s, counts, logs)
		},
		func(ctx context.Context, tx pgx.Tx, st velociraptor.Collection) error {
			for _, r := range merged {
				if err := storeRows(ctx, tx, tenant, JobCollection, id, st.FlowID, st.ClientID, r.source, r.rows); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil || st.Purpose == velociraptor.PurposeCollect || st.HostID == "" {
		return err
	}
	return v.finishHost(ctx, tenant, id)
}

// FailCollection records that collection id failed with errText (a
// client-safe message) and the flow's last log lines, and then the outcome on
// the host of a quarantine or release.
func (v *Velociraptor) FailCollection(ctx context.Context, tenant domain.TenantID, id, errText string, logs []string) error {
	st, _, err := v.updateCollection(ctx, tenant, id, systemMeta,
		func(s velociraptor.Collection) ([]domain.Event, error) {
			return velociraptor.FailCollection(s, errText, logs)
		}, nil)
	if err != nil || st.Purpose == velociraptor.PurposeCollect || st.HostID == "" {
		return err
	}
	return v.finishHost(ctx, tenant, id)
}

// CancelCollection asks to cancel a collection.
type CancelCollection struct {
	Tenant domain.TenantID
	ID     string
	By     users.Actor
	Meta   eventstore.Metadata
}

// RequestCollectionCancel records that cmd.By asked to cancel a collection
// that has not ended; the worker stops its flow in Velociraptor, if it was
// started, and records that it was cancelled. Asking again changes nothing.
// A collection that quarantines or releases a host is never cancelled.
func (v *Velociraptor) RequestCollectionCancel(ctx context.Context, cmd CancelCollection) (Collection, Result, error) {
	_, res, err := v.updateCollection(ctx, cmd.Tenant, cmd.ID, cmd.Meta,
		func(s velociraptor.Collection) ([]domain.Event, error) {
			return velociraptor.RequestCollectionCancel(s, cmd.By, cmd.Tenant)
		}, nil)
	if err != nil {
		return Collection{}, Result{}, err
	}
	c, err := v.Collection(ctx, cmd.Tenant, cmd.ID)
	return c, res, err
}

// RecordCollectionCancelled records that collection id was cancelled as
// asked, and ends its job. Recording it again changes nothing.
func (v *Velociraptor) RecordCollectionCancelled(ctx context.Context, tenant domain.TenantID, id string) error {
	_, _, err := v.updateCollection(ctx, tenant, id, systemMeta, velociraptor.CancelCollection, nil)
	return err
}

// finishHost records the outcome of an ended quarantine or release
// collection on its host. An outcome the host no longer waits for (it moved
// on to another request) is not recorded.
func (v *Velociraptor) finishHost(ctx context.Context, tenant domain.TenantID, id string) error {
	c, _, err := load(ctx, v.h, collectionKey(tenant, id), velociraptor.EvolveCollection)
	if err != nil {
		return err
	}
	if c.Purpose == velociraptor.PurposeCollect || c.HostID == "" || !c.Done() {
		return nil
	}
	_, err = v.h.update(ctx, hostKey(tenant, c.HostID), systemMeta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(hosts.Evolve, history)
			switch {
			case c.Status == velociraptor.StatusFailed:
				return hosts.RecordQuarantineFailed(s, c.ID, c.Error)
			case c.Purpose == velociraptor.PurposeQuarantine:
				return hosts.RecordQuarantined(s, c.ID, c.FlowID)
			default:
				return hosts.RecordReleased(s, c.ID)
			}
		}, nil)
	if errors.Is(err, hosts.ErrQuarantineCollision) || errors.Is(err, domain.ErrNotFound) {
		return nil
	}
	return err
}

// ---- Results ----

type sourceRows struct {
	source string
	rows   []string
}

// prepareResults checks results, merges repeated sources, and returns the
// rows ready to store (valid UTF-8 JSON that jsonb takes) with their counts.
func prepareResults(results []SourceRows) ([]sourceRows, []velociraptor.SourceCount, error) {
	var out []sourceRows
	index := map[string]int{}
	for _, r := range results {
		if err := velociraptor.CheckArtifactName(r.Source); err != nil {
			return nil, nil, err
		}
		rows, err := prepareRows(r.Rows)
		if err != nil {
			return nil, nil, err
		}
		i, ok := index[r.Source]
		if !ok {
			i = len(out)
			index[r.Source] = i
			out = append(out, sourceRows{source: r.Source})
		}
		out[i].rows = append(out[i].rows, rows...)
	}
	counts := make([]velociraptor.SourceCount, len(out))
	for i, r := range out {
		counts[i] = velociraptor.SourceCount{Source: r.source, Rows: int64(len(r.rows))}
	}
	return out, counts, nil
}

func prepareRows(rows []json.RawMessage) ([]string, error) {
	out := make([]string, len(rows))
	for i, raw := range rows {
		if !json.Valid(raw) {
			return nil, ErrRowInvalid
		}
		out[i] = dropNULEscapes(strings.ToValidUTF8(string(raw), "\uFFFD"))
	}
	return out, nil
}

// dropNULEscapes replaces the JSON escape \u0000, which jsonb cannot store,
// with \ufffd. Outside strings valid JSON has no backslash, so every
// backslash starts an escape.
func dropNULEscapes(s string) string {
	if !strings.Contains(s, `\u0000`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		if strings.HasPrefix(s[i+1:], "u0000") {
			b.WriteString(`\ufffd`)
			i += 5
			continue
		}
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}

// storeRows stores rows of source, numbered from 0; rows stored before are
// left as they are.
func storeRows(ctx context.Context, tx pgx.Tx, tenant domain.TenantID, kind, owner, flowID, clientID, source string, rows []string) error {
	for start := 0; start < len(rows); start += resultChunk {
		chunk := rows[start:min(start+resultChunk, len(rows))]
		seqs := make([]int64, len(chunk))
		for i := range chunk {
			seqs[i] = int64(start + i)
		}
		_, err := tx.Exec(ctx, `INSERT INTO velociraptor_results (tenant_id, owner_kind, owner_id, flow_id, client_id, source, seq, row)
			SELECT $1, $2, $3, $4, $5, $6, r.seq, r.row::jsonb FROM unnest($7::bigint[], $8::text[]) AS r(seq, row)
			ON CONFLICT DO NOTHING`, string(tenant), kind, owner, flowID, clientID, source, seqs, chunk)
		if err != nil {
			return fmt.Errorf("store results of %s %s: %w", kind, owner, err)
		}
	}
	return nil
}

// ResultRow is one stored result row.
type ResultRow struct {
	FlowID   string
	ClientID string
	Source   string
	Seq      int64
	Row      json.RawMessage
}

type resultCursor struct {
	Flow   string `json:"f"`
	Source string `json:"s"`
	Seq    int64  `json:"q"`
}

// Results returns up to limit stored rows of tenant's collection or hunt
// (ownerKind JobCollection or JobHunt) ownerID after the cursor after ("" for
// the first page), ordered by flow, source and row, and the cursor of the next
// page ("" after the last).
func (v *Velociraptor) Results(ctx context.Context, tenant domain.TenantID, ownerKind, ownerID string, after string, limit int) ([]ResultRow, string, error) {
	if ownerKind != JobCollection && ownerKind != JobHunt {
		return nil, "", ErrOwnerKindInvalid
	}
	if limit <= 0 {
		limit = DefaultResultPage
	}
	limit = min(limit, MaxResultPage)
	var cur resultCursor
	if after != "" {
		raw, err := base64.RawURLEncoding.DecodeString(after)
		if err != nil || json.Unmarshal(raw, &cur) != nil {
			return nil, "", ErrCursorInvalid
		}
	}
	rows, err := v.h.pool.Query(ctx, `SELECT flow_id, client_id, source, seq, row FROM velociraptor_results
		WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3
			AND ($4 OR (flow_id, source, seq) > ($5, $6, $7))
		ORDER BY flow_id, source, seq LIMIT $8`,
		string(tenant), ownerKind, ownerID, after == "", cur.Flow, cur.Source, cur.Seq, limit+1)
	if err != nil {
		return nil, "", err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ResultRow, error) {
		var row ResultRow
		var raw []byte
		err := r.Scan(&row.FlowID, &row.ClientID, &row.Source, &row.Seq, &raw)
		row.Row = raw
		return row, err
	})
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	last := out[limit-1]
	next, err := json.Marshal(resultCursor{Flow: last.FlowID, Source: last.Source, Seq: last.Seq})
	return out, base64.RawURLEncoding.EncodeToString(next), err
}

// ---- Hunts ----

// RequestHunt asks to hunt the tenant's fleet.
type RequestHunt struct {
	Tenant domain.TenantID
	// ID, when set, makes the request idempotent, as RequestCollection.ID.
	ID            string
	Description   string
	Artifacts     []string
	Parameters    map[string]string
	IncludeLabels []string
	ExcludeLabels []string
	OS            string
	// Expires is when Velociraptor stops the hunt; in 7 days when zero, at
	// most 90 days away.
	Expires time.Time
	By      users.Actor
	Meta    eventstore.Metadata
}

// Hunt is a hunt as the write side knows it.
type Hunt struct {
	ID            string                 `json:"id"`
	Description   string                 `json:"description"`
	Artifacts     []string               `json:"artifacts"`
	Parameters    map[string]string      `json:"parameters"`
	IncludeLabels []string               `json:"include_labels"`
	ExcludeLabels []string               `json:"exclude_labels"`
	OS            string                 `json:"os"`
	Expires       time.Time              `json:"expires"`
	Status        velociraptor.Status    `json:"status"`
	HuntID        string                 `json:"hunt_id"` // Velociraptor's
	State         string                 `json:"state"`   // as Velociraptor reports it
	Stats         velociraptor.HuntStats `json:"stats"`
	Rows          int64                  `json:"rows"`    // stored result rows
	Results       int                    `json:"results"` // stored (flow, source) pairs
	Error         string                 `json:"error"`
	StopRequested bool                   `json:"stop_requested"`
	By            domain.UserID          `json:"by"`
	// Version, CreatedAt and UpdatedAt come from the table's columns.
	Version   int64     `json:"-"`
	CreatedAt time.Time `json:"-"`
	UpdatedAt time.Time `json:"-"`
}

func huntOf(s velociraptor.Hunt) Hunt {
	return Hunt{ID: s.ID, Description: s.Description, Artifacts: s.Artifacts, Parameters: s.Parameters,
		IncludeLabels: s.IncludeLabels, ExcludeLabels: s.ExcludeLabels, OS: s.OS, Expires: s.Expires, Status: s.Status,
		HuntID: s.HuntID, State: s.State, Stats: s.Stats, Rows: s.Rows, Results: s.Results, Error: s.Error,
		StopRequested: s.Status == velociraptor.StatusStopping || s.StopBy != "", By: s.By}
}

// HuntProgress is what Velociraptor reports about a running hunt.
type HuntProgress struct {
	State                                     string // UNSET, PAUSED, RUNNING, STOPPED or ARCHIVED
	Scheduled, Completed, WithResults, Errors int64
}

// updateHunt decides on hunt id of tenant and appends the outcome with the
// hunt's row, and extra's writes, in one transaction.
func (v *Velociraptor) updateHunt(ctx context.Context, tenant domain.TenantID, id string, meta eventstore.Metadata,
	decide func(velociraptor.Hunt) ([]domain.Event, error),
	extra func(ctx context.Context, tx pgx.Tx, now time.Time) error) (Result, error) {
	now := v.h.now().UTC()
	_, res, err := updateSummarized(ctx, v.h, huntKey(tenant, id), meta, velociraptor.EvolveHunt, decide,
		func(ctx context.Context, tx pgx.Tx, _, next velociraptor.Hunt, version int64) error {
			summary, err := json.Marshal(huntOf(next))
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO velociraptor_hunts (tenant_id, hunt_id, summary, version, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $5)
				ON CONFLICT (tenant_id, hunt_id) DO UPDATE SET summary = EXCLUDED.summary, version = EXCLUDED.version,
					updated_at = EXCLUDED.updated_at`,
				string(tenant), id, summary, version, now)
			if err != nil || extra == nil {
				return err
			}
			return extra(ctx, tx, now)
		})
	return res, err
}

// RequestHunt records a hunt for the worker to create in Velociraptor.
func (v *Velociraptor) RequestHunt(ctx context.Context, cmd RequestHunt) (Hunt, Result, error) {
	if err := velociraptor.MayRun(cmd.By, cmd.Tenant); err != nil {
		return Hunt{}, Result{}, err
	}
	id := cmd.ID
	if id == "" {
		id = v.h.newID()
	}
	if err := velociraptor.CheckID(id); err != nil {
		return Hunt{}, Result{}, err
	}
	if err := v.requireConnection(ctx, cmd.Tenant); err != nil {
		return Hunt{}, Result{}, err
	}
	now := v.h.now().UTC()
	req := velociraptor.HuntRequest{Description: cmd.Description, Artifacts: cmd.Artifacts, Parameters: cmd.Parameters,
		IncludeLabels: cmd.IncludeLabels, ExcludeLabels: cmd.ExcludeLabels, OS: cmd.OS, Expires: cmd.Expires}
	res, err := v.updateHunt(ctx, cmd.Tenant, id, cmd.Meta,
		func(s velociraptor.Hunt) ([]domain.Event, error) {
			return velociraptor.RequestHunt(s, cmd.By, cmd.Tenant, id, req, now)
		},
		func(ctx context.Context, tx pgx.Tx, now time.Time) error {
			return insertJob(ctx, tx, cmd.Tenant, JobHunt, id, now)
		})
	if err != nil {
		return Hunt{}, Result{}, err
	}
	h, err := v.Hunt(ctx, cmd.Tenant, id)
	return h, res, err
}

// ScheduleHunt records that Velociraptor runs hunt id as huntID. Recording
// the same hunt again changes nothing; another is a conflict.
func (v *Velociraptor) ScheduleHunt(ctx context.Context, tenant domain.TenantID, id, huntID string) error {
	_, err := v.updateHunt(ctx, tenant, id, systemMeta,
		func(s velociraptor.Hunt) ([]domain.Event, error) { return velociraptor.ScheduleHunt(s, huntID) },
		func(ctx context.Context, tx pgx.Tx, now time.Time) error {
			return setJob(ctx, tx, tenant, JobHunt, id, JobScheduled, now)
		})
	return err
}

// RecordHuntProgress records the counts and state Velociraptor reports for
// hunt id when they changed.
func (v *Velociraptor) RecordHuntProgress(ctx context.Context, tenant domain.TenantID, id string, p HuntProgress) error {
	stats := velociraptor.HuntStats{Scheduled: p.Scheduled, Completed: p.Completed, WithResults: p.WithResults, Errors: p.Errors}
	_, err := v.updateHunt(ctx, tenant, id, systemMeta,
		func(s velociraptor.Hunt) ([]domain.Event, error) { return velociraptor.ProgressHunt(s, stats, p.State) }, nil)
	return err
}

// StoreHuntResults stores the rows of source from clientID's flow flowID of
// hunt id and records that they arrived, in one transaction. Each (flow,
// source) is stored once; storing it again changes nothing.
func (v *Velociraptor) StoreHuntResults(ctx context.Context, tenant domain.TenantID, id, clientID, flowID, source string, rows []json.RawMessage) error {
	if err := velociraptor.CheckArtifactName(source); err != nil {
		return err
	}
	prepared, err := prepareRows(rows)
	if err != nil {
		return err
	}
	clientID, err = velociraptor.CheckClientID(clientID)
	if err != nil {
		return err
	}
	_, err = v.updateHunt(ctx, tenant, id, systemMeta,
		func(s velociraptor.Hunt) ([]domain.Event, error) {
			return velociraptor.ReceiveHuntResults(s, clientID, flowID, source, int64(len(prepared)))
		},
		func(ctx context.Context, tx pgx.Tx, _ time.Time) error {
			return storeRows(ctx, tx, tenant, JobHunt, id, flowID, clientID, source, prepared)
		})
	return err
}

// StopHunt asks to stop a hunt.
type StopHunt struct {
	Tenant domain.TenantID
	ID     string
	By     users.Actor
	Meta   eventstore.Metadata
}

// RequestHuntStop records that by asked to stop a scheduled or running hunt;
// the worker stops it in Velociraptor.
func (v *Velociraptor) RequestHuntStop(ctx context.Context, cmd StopHunt) (Result, error) {
	return v.updateHunt(ctx, cmd.Tenant, cmd.ID, cmd.Meta,
		func(s velociraptor.Hunt) ([]domain.Event, error) {
			return velociraptor.RequestHuntStop(s, cmd.By, cmd.Tenant)
		},
		func(ctx context.Context, tx pgx.Tx, now time.Time) error {
			return setJob(ctx, tx, cmd.Tenant, JobHunt, cmd.ID, JobStopping, now)
		})
}

// RecordHuntStopped records that hunt id ended, and ends its job.
func (v *Velociraptor) RecordHuntStopped(ctx context.Context, tenant domain.TenantID, id string) error {
	_, err := v.updateHunt(ctx, tenant, id, systemMeta, velociraptor.StopHunt,
		func(ctx context.Context, tx pgx.Tx, now time.Time) error {
			return setJob(ctx, tx, tenant, JobHunt, id, JobDone, now)
		})
	return err
}

// FailHunt records that hunt id failed with errText (a client-safe message),
// and ends its job.
func (v *Velociraptor) FailHunt(ctx context.Context, tenant domain.TenantID, id, errText string) error {
	_, err := v.updateHunt(ctx, tenant, id, systemMeta,
		func(s velociraptor.Hunt) ([]domain.Event, error) { return velociraptor.FailHunt(s, errText) },
		func(ctx context.Context, tx pgx.Tx, now time.Time) error {
			return setJob(ctx, tx, tenant, JobHunt, id, JobDone, now)
		})
	return err
}

func scanHunt(r pgx.CollectableRow) (Hunt, error) {
	var h Hunt
	var summary []byte
	if err := r.Scan(&summary, &h.Version, &h.CreatedAt, &h.UpdatedAt); err != nil {
		return h, err
	}
	version, created, updated := h.Version, h.CreatedAt, h.UpdatedAt
	if err := json.Unmarshal(summary, &h); err != nil {
		return h, err
	}
	h.Version, h.CreatedAt, h.UpdatedAt = version, created, updated
	return h, nil
}

// Hunt returns hunt id of tenant, or domain.ErrNotFound.
func (v *Velociraptor) Hunt(ctx context.Context, tenant domain.TenantID, id string) (Hunt, error) {
	rows, err := v.h.pool.Query(ctx, `SELECT summary, version, created_at, updated_at FROM velociraptor_hunts
		WHERE tenant_id = $1 AND hunt_id = $2`, string(tenant), id)
	if err != nil {
		return Hunt{}, err
	}
	h, err := pgx.CollectExactlyOneRow(rows, scanHunt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Hunt{}, domain.ErrNotFound
	}
	return h, err
}

// recentCursor is the position of a page of a newest-first list.
type recentCursor struct {
	At time.Time `json:"t"`
	ID string    `json:"i"`
}

// Hunts returns up to limit hunts of tenant, newest first, after the cursor
// after ("" for the first page), and the cursor of the next page ("" after
// the last).
func (v *Velociraptor) Hunts(ctx context.Context, tenant domain.TenantID, after string, limit int) ([]Hunt, string, error) {
	if limit <= 0 {
		limit = DefaultResultPage
	}
	limit = min(limit, MaxHuntPage)
	var cur recentCursor
	if after != "" {
		raw, err := base64.RawURLEncoding.DecodeString(after)
		if err != nil || json.Unmarshal(raw, &cur) != nil {
			return nil, "", ErrCursorInvalid
		}
	}
	rows, err := v.h.pool.Query(ctx, `SELECT summary, version, created_at, updated_at FROM velociraptor_hunts
		WHERE tenant_id = $1 AND ($2 OR (created_at, hunt_id) < ($3, $4))
		ORDER BY created_at DESC, hunt_id DESC LIMIT $5`, string(tenant), after == "", cur.At, cur.ID, limit+1)
	if err != nil {
		return nil, "", err
	}
	out, err := pgx.CollectRows(rows, scanHunt)
	if err != nil || len(out) <= limit {
		return out, "", err
	}
	out = out[:limit]
	last := out[limit-1]
	next, err := json.Marshal(recentCursor{At: last.CreatedAt, ID: last.ID})
	return out, base64.RawURLEncoding.EncodeToString(next), err
}

// ---- Quarantine ----

// Quarantine asks to isolate a host from the network, showing Message to its
// user.
type Quarantine struct {
	Tenant  domain.TenantID
	Host    hosts.ID
	Message string
	By      users.Actor
	Meta    eventstore.Metadata
}

// Release asks to lift a host's quarantine.
type Release struct {
	Tenant domain.TenantID
	Host   hosts.ID
	By     users.Actor
	Meta   eventstore.Metadata
}

// RequestQuarantine records on the host that it is to be quarantined and the
// collection that does it (Windows.Remediation.Quarantine or
// Linux.Remediation.Quarantine by the host's operating system, with
// MessageBox). The host must exist in the tenant and have a client id.
func (v *Velociraptor) RequestQuarantine(ctx context.Context, cmd Quarantine) (Collection, Result, error) {
	return v.quarantine(ctx, cmd.Tenant, cmd.Host, velociraptor.PurposeQuarantine, cmd.Message, cmd.By, cmd.Meta)
}

// RequestRelease records on the host that its quarantine is to be lifted and
// the collection that does it (the quarantine artifact with RemovePolicy=Y).
func (v *Velociraptor) RequestRelease(ctx context.Context, cmd Release) (Collection, Result, error) {
	return v.quarantine(ctx, cmd.Tenant, cmd.Host, velociraptor.PurposeRelease, "", cmd.By, cmd.Meta)
}

// quarantine appends the host's request first (it refuses a second one while
// one is under way), then the collection. When a crash came between the two,
// asking again creates the missing collection under the id the host recorded.
func (v *Velociraptor) quarantine(ctx context.Context, tenant domain.TenantID, host hosts.ID, purpose velociraptor.Purpose,
	message string, by users.Actor, meta eventstore.Metadata) (Collection, Result, error) {
	if err := velociraptor.MayRun(by, tenant); err != nil {
		return Collection{}, Result{}, err
	}
	hv, err := v.h.HostView(ctx, tenant, host)
	if err != nil {
		return Collection{}, Result{}, err
	}
	hs := hv.State
	if hs.ClientID == "" {
		return Collection{}, Result{}, hosts.ErrNoClientID
	}
	artifact, err := velociraptor.QuarantineArtifact(hs.OS)
	if err != nil {
		return Collection{}, Result{}, err
	}
	if err := v.requireConnection(ctx, tenant); err != nil {
		return Collection{}, Result{}, err
	}
	id := v.h.newID()
	pending := hosts.StatusQuarantineRequested
	if purpose == velociraptor.PurposeRelease {
		pending = hosts.StatusReleaseRequested
	}
	if q := hs.Quarantine; q.Status == pending {
		c, _, err := load(ctx, v.h, collectionKey(tenant, q.Collection), velociraptor.EvolveCollection)
		if err != nil {
			return Collection{}, Result{}, err
		}
		if !c.Exists {
			id, message = q.Collection, q.Message // finish what a crash interrupted
		}
	}
	params := map[string]string{"RemovePolicy": "Y"}
	if purpose == velociraptor.PurposeQuarantine {
		params = nil
		if message = strings.TrimSpace(message); message != "" {
			params = map[string]string{"MessageBox": message}
		}
	}
	req := velociraptor.CollectionRequest{ClientID: hs.ClientID, HostID: host, Artifacts: []string{artifact},
		Parameters: params, Purpose: purpose}
	if _, err := velociraptor.NormalizeCollection(req); err != nil {
		return Collection{}, Result{}, err
	}
	_, err = v.h.update(ctx, hostKey(tenant, host), meta, 0,
		func(history []domain.Event) ([]domain.Event, error) {
			s := domain.Fold(hosts.Evolve, history)
			if purpose == velociraptor.PurposeRelease {
				return hosts.RequestRelease(s, id, by.User)
			}
			return hosts.RequestQuarantine(s, id, message, by.User)
		}, nil)
	if err != nil {
		return Collection{}, Result{}, err
	}
	return v.requestCollection(ctx, tenant, id, req, by, meta)
}
