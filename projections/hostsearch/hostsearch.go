// Package hostsearch projects host events into the hostsearch.v1 read model
// that the host routes query: a tenant's hosts with every field of their
// profile, their addresses and labels in child tables, filtered by hostname
// (substring or prefix), IP address (exact or CIDR, IPv4 and IPv6), operating
// system, label, last-seen window and threat score, sorted by an allow-listed
// column and paginated with keyset cursors.
//
// Package hostsearch imports eventstore, projections/readmodel and domain
// only.
package hostsearch

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the tables and replays the topic.
const Name = "hostsearch.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains host_search and its child tables.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the tables the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string {
	return []string{"host_search", "host_search_ip", "host_search_label"}
}

// insertHost inserts a host row and its addresses and labels in one
// statement; a row that exists already (a redelivery) is left alone, children
// included.
const insertHost = `WITH h AS (
	INSERT INTO host_search (tenant_id, host_id, hostname, hostname_key, fqdn, fqdn_key, ip_addresses, os, os_key,
		os_version, labels, client_id, metadata, first_seen, last_seen, source, created_at, updated_at, version)
	VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $9, $10, $11::text[], $12, $13::jsonb,
		COALESCE($14::timestamptz, '-infinity'), COALESCE($15::timestamptz, '-infinity'), $16, $17, $17, $18)
	ON CONFLICT (tenant_id, host_id) DO NOTHING
	RETURNING tenant_id, host_id
), ips AS (
	INSERT INTO host_search_ip (tenant_id, host_id, ip)
	SELECT h.tenant_id, h.host_id, a::inet FROM h, unnest($7::text[]) AS a
)
INSERT INTO host_search_label (tenant_id, host_id, label)
SELECT h.tenant_id, h.host_id, l FROM h, unnest($11::text[]) AS l`

// Apply updates the read model for one event; applying it twice changes
// nothing (rows remember the stream version they reflect, and child rows
// change only with their host row). Every event of a host stream advances
// the row's version, the quarantine events included.
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	if env.StreamType != "host" {
		return nil
	}
	if !isUUID(string(env.Tenant)) || !isUUID(env.StreamID) {
		return fmt.Errorf("host stream %s: tenant and host ids must be UUIDs", env.Key())
	}
	tenant, id, v, at := string(env.Tenant), env.StreamID, int64(env.Version), env.RecordedAt
	// set updates the host row if it is older than this event, and reports
	// whether it did.
	set := func(assign string, args ...any) (bool, error) {
		if assign != "" {
			assign += ", "
		}
		tag, err := tx.Exec(ctx, `UPDATE host_search SET `+assign+`updated_at = $3, version = $4
			WHERE tenant_id = $1 AND host_id = $2 AND version < $4`, append([]any{tenant, id, at, v}, args...)...)
		return tag.RowsAffected() > 0, err
	}
	switch e := env.Event.(type) {
	case hosts.Registered:
		return insert(ctx, tx, env, e.Profile, e.Source, nil, nil)
	case hosts.Discovered:
		return insert(ctx, tx, env, e.Profile, e.Source, timeOrNil(e.FirstSeen), timeOrNil(e.LastSeen))
	case hosts.Updated:
		var assign []string
		args := []any{}
		add := func(col string, val any) {
			args = append(args, val)
			assign = append(assign, col+" = $"+itoa(4+len(args)))
		}
		if e.Hostname != nil {
			add("hostname", *e.Hostname)
			add("hostname_key", hosts.HostnameKey(*e.Hostname))
		}
		if e.FQDN != nil {
			add("fqdn", *e.FQDN)
			add("fqdn_key", strings.ToLower(*e.FQDN))
		}
		if e.IPs != nil {
			add("ip_addresses", nonNil(*e.IPs))
		}
		if e.OS != nil {
			add("os", *e.OS)
			add("os_key", strings.ToLower(*e.OS))
		}
		if e.OSVersion != nil {
			add("os_version", *e.OSVersion)
		}
		if e.ClientID != nil {
			add("client_id", *e.ClientID)
		}
		if e.Metadata != nil {
			add("metadata", metadataOrNil(e.Metadata))
		}
		done, err := set(strings.Join(assign, ", "), args...)
		if err != nil || !done || e.IPs == nil {
			return err
		}
		return replaceChildren(ctx, tx, tenant, id, "host_search_ip", "ip", "inet", *e.IPs)
	case hosts.LabelsChanged:
		done, err := set(`labels = $5`, nonNil(e.Labels))
		if err != nil || !done {
			return err
		}
		return replaceChildren(ctx, tx, tenant, id, "host_search_label", "label", "text", e.Labels)
	case hosts.Seen:
		_, err := set(`first_seen = CASE WHEN first_seen = '-infinity' OR $5 < first_seen THEN $5 ELSE first_seen END,
			last_seen = GREATEST(last_seen, $5)`, e.At)
		return err
	case hosts.ScoreChanged:
		_, err := set(`threat_score = $5, threat_class = $6`, e.Score, string(e.Class))
		return err
	case hosts.Deleted:
		done, err := set(`deleted = true`)
		if err != nil || !done {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM host_search_ip WHERE tenant_id = $1 AND host_id = $2`, tenant, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM host_search_label WHERE tenant_id = $1 AND host_id = $2`, tenant, id)
		return err
	case hosts.QuarantineRequested:
		return setQuarantine(set, hosts.StatusQuarantineRequested, e.Collection)
	case hosts.Quarantined:
		return setQuarantine(set, hosts.StatusQuarantined, e.Collection)
	case hosts.QuarantineFailed:
		return setQuarantine(set, hosts.StatusQuarantineFailed, e.Collection)
	case hosts.ReleaseRequested:
		return setQuarantine(set, hosts.StatusReleaseRequested, e.Collection)
	case hosts.Released:
		return setQuarantine(set, hosts.StatusReleased, e.Collection)
	}
	// Another event of the stream (one this projector does not show, or one
	// the codec does not know yet) still advances the host's version and
	// update time, so that they, and the ETag made of the version, stay those
	// of the stream.
	_, err := set("")
	return err
}

// setQuarantine records a quarantine event through set: the status it leads
// to, the collection it is about and, as the time of the change, the
// event's.
func setQuarantine(set func(string, ...any) (bool, error), status hosts.QuarantineStatus, collection string) error {
	_, err := set(`quarantine_status = $5, quarantine_collection = $6, quarantine_updated_at = $3`, string(status), collection)
	return err
}

func insert(ctx context.Context, tx pgx.Tx, env eventstore.Envelope, p hosts.Profile, src hosts.Source, first, last any) error {
	_, err := tx.Exec(ctx, insertHost, string(env.Tenant), env.StreamID, p.Hostname, hosts.HostnameKey(p.Hostname),
		p.FQDN, strings.ToLower(p.FQDN), nonNil(p.IPs), p.OS, strings.ToLower(p.OS), p.OSVersion, nonNil(p.Labels),
		p.ClientID, metadataOrNil(p.Metadata), first, last, string(src), env.RecordedAt, int64(env.Version))
	return err
}

// replaceChildren makes the child rows of one host in table exactly values:
// it deletes the others and adds the missing ones (never deleting and
// inserting the same key in one statement).
func replaceChildren(ctx context.Context, tx pgx.Tx, tenant, id, table, col, typ string, values []string) error {
	values = nonNil(values)
	if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE tenant_id = $1 AND host_id = $2 AND `+col+` <> ALL ($3::`+typ+`[])`,
		tenant, id, values); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+table+` (tenant_id, host_id, `+col+`)
		SELECT $1, $2, v FROM unnest($3::`+typ+`[]) AS v ON CONFLICT DO NOTHING`, tenant, id, values)
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// metadataOrNil returns the metadata as a jsonb argument, nil for none.
func metadataOrNil(m json.RawMessage) any {
	if len(m) == 0 || string(m) == "{}" || string(m) == "null" {
		return nil
	}
	return string(m)
}
