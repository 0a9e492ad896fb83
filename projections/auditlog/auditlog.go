// Package auditlog projects every event of every tenant into the audit_log
// read model: who did what to which resource, when, from where, with what
// result, and a redacted summary of the change that never carries a secret.
// The audit trail is not a second write: it falls out of the event stream, and
// the tamper evidence lives with the events (eventstore's hash chains and
// signed checkpoints).
//
// The table is insert-only: the projector adds rows with ON CONFLICT DO
// NOTHING, and the application role may only read and insert.
//
// Package auditlog imports eventstore, projections/readmodel and domain only.
package auditlog

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain/velociraptor"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the table and replays the topic.
const Name = "auditlog.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains audit_log.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the table the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string { return []string{"audit_log"} }

// Apply records one event, whatever its name (an unknown one too); applying
// it again changes nothing.
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	return insert(ctx, tx, []eventstore.Envelope{env})
}

// ApplyBatch records several events of one tenant in one statement.
func (Projector) ApplyBatch(ctx context.Context, tx pgx.Tx, envs []eventstore.Envelope) error {
	return insert(ctx, tx, envs)
}

// Results of an entry.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// failureSuffixes mark the names of events that record a refused or failed
// attempt (user.login_failed, user.refresh_token_reused, …) or a failed
// operation (collection.failed, host.quarantine_failed) rather than a change
// that happened.
var failureSuffixes = []string{"_failed", ".failed", "_failure", "_reused", "_denied", "_rejected", "_refused", "_replayed"}

// ResultOf returns the result of an event called name: ResultFailure for the
// security events that record a failed or refused attempt and for failed
// operations, ResultSuccess for every other fact.
func ResultOf(name string) string {
	for _, s := range failureSuffixes {
		if strings.HasSuffix(name, s) {
			return ResultFailure
		}
	}
	return ResultSuccess
}

// Actor types besides the metadata's own ("user", "api_key",
// "self_registration").
const (
	ActorSystem = "system"
	ActorUser   = "user"
)

// Describe returns the audit entry of one event.
func Describe(env eventstore.Envelope) Entry {
	m := env.Metadata
	actorType := m.ActorType
	switch {
	case actorType != "":
	case m.Actor == "" || m.Actor == ActorSystem:
		actorType = ActorSystem
	default:
		actorType = ActorUser
	}
	return Entry{
		ID:            env.EventID,
		Tenant:        env.Tenant,
		Time:          env.RecordedAt.UTC(),
		Actor:         m.Actor,
		ActorType:     actorType,
		Role:          m.Role,
		Action:        env.Name,
		ResourceType:  env.StreamType,
		ResourceID:    env.StreamID,
		Result:        resultOf(env),
		SourceIP:      m.SourceIP,
		UserAgent:     clip(m.UserAgent, 512),
		RequestID:     m.RequestID,
		CorrelationID: m.CorrelationID,
		Position:      env.Position,
		Details:       summarize(env.Name, env.Payload),
	}
}

// resultOf is ResultOf for one event, which for a Velociraptor connection
// check depends on what it found: a check that could not reach the server
// is a failure.
func resultOf(env eventstore.Envelope) string {
	if env.Name == velociraptor.EventChecked {
		var c struct {
			OK *bool `json:"ok"`
		}
		if err := json.Unmarshal(env.Payload, &c); err == nil && c.OK != nil && !*c.OK {
			return ResultFailure
		}
	}
	return ResultOf(env.Name)
}

const insertSQL = `INSERT INTO audit_log (tenant_id, event_id, position, recorded_at, actor, actor_type, role, action,
	resource_type, resource_id, result, source_ip, user_agent, request_id, correlation_id, details)
SELECT t, e::uuid, p, r, a, at, ro, ac, rt, ri, re, ip, ua, rq, co, d::jsonb
FROM unnest($1::text[], $2::text[], $3::int8[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])
	AS u(t, e, p, r, a, at, ro, ac, rt, ri, re, ip, ua, rq, co, d)
ON CONFLICT (tenant_id, event_id) DO NOTHING`

// insert adds the entries of envs, skipping those already recorded.
func insert(ctx context.Context, tx pgx.Tx, envs []eventstore.Envelope) error {
	n := len(envs)
	var (
		tenants, ids, actors, actorTypes, roles, actions = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rtypes, rids, results, ips, uas, reqs, corrs     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		details                                          = make([]string, n)
		positions                                        = make([]int64, n)
		times                                            = make([]time.Time, n)
	)
	for i, env := range envs {
		e := Describe(env)
		tenants[i], ids[i], positions[i], times[i] = string(e.Tenant), e.ID, e.Position, e.Time
		actors[i], actorTypes[i], roles[i], actions[i] = e.Actor, e.ActorType, e.Role, e.Action
		rtypes[i], rids[i], results[i] = e.ResourceType, e.ResourceID, e.Result
		ips[i], uas[i], reqs[i], corrs[i], details[i] = e.SourceIP, e.UserAgent, e.RequestID, e.CorrelationID, string(e.Details)
	}
	_, err := tx.Exec(ctx, insertSQL, tenants, ids, positions, times, actors, actorTypes, roles, actions,
		rtypes, rids, results, ips, uas, reqs, corrs, details)
	return err
}
