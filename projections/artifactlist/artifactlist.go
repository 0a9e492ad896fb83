// Package artifactlist projects artifact events into the artifact_list read
// model that the artifact routes query: one row per artifact with its kind,
// normalised value, case and host, description, tags, TLP, IOC flag, source,
// metadata, sighting count and first and last sightings; and
// artifact_list_hosts, every host an artifact was added on or sighted on.
//
// Package artifactlist imports eventstore, domain and projections/readmodel
// only.
package artifactlist

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
	"velocicompanion/projections/readmodel"
)

// Name is this projector's checkpoint and consumer group.
// WARNING: changing it rebuilds the tables and replays the topic.
const Name = "artifactlist.v1"

//go:embed migrations/*.sql
var migrations embed.FS

// Projector maintains artifact_list and artifact_list_hosts.
type Projector struct{}

// Name returns the projector's durable name.
func (Projector) Name() string { return Name }

// Migrations returns the DDL of the tables the projector owns.
func (Projector) Migrations() fs.FS { return readmodel.Sub(migrations) }

// Tables lists the tables the projector owns.
func (Projector) Tables() []string { return []string{"artifact_list", "artifact_list_hosts"} }

// ValueDigest is the SHA-256 of a normalised value, under which the read
// model (and the write side's artifact_keys) index values of any length.
func ValueDigest(value string) []byte {
	d := sha256.Sum256([]byte(value))
	return d[:]
}

// Apply updates the read model for one event; applying it twice changes
// nothing (rows remember the stream version they reflect, and host rows are
// inserted once).
func (Projector) Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error {
	tenant, id, v, at := string(env.Tenant), env.StreamID, int64(env.Version), env.RecordedAt
	set := func(assign string, args ...any) error {
		if assign != "" {
			assign += ", "
		}
		_, err := tx.Exec(ctx, `UPDATE artifact_list SET `+assign+`updated_at = $3, version = $4
			WHERE tenant_id = $1 AND artifact_id = $2 AND version < $4`, append([]any{tenant, id, at, v}, args...)...)
		return err
	}
	addHost := func(host hosts.ID) error {
		if host == "" {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO artifact_list_hosts (tenant_id, host_id, artifact_id)
			VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, tenant, string(host), id)
		return err
	}
	switch e := env.Event.(type) {
	case artifacts.Added:
		_, err := tx.Exec(ctx, `INSERT INTO artifact_list (tenant_id, artifact_id, kind, value, value_sha256,
				case_id, host_id, description, tags, tlp, is_ioc, source, metadata, sightings,
				first_seen, last_seen, created_at, updated_at, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14, $14, $14, $15)
			ON CONFLICT (tenant_id, artifact_id) DO NOTHING`,
			tenant, id, string(e.Kind), e.Value, ValueDigest(e.Value), string(e.Case), string(e.Host),
			e.Description, nonNil(e.Tags), string(e.TLP), e.IOC, e.Source, jsonArg(e.Metadata), at, v)
		if err != nil {
			return err
		}
		return addHost(e.Host)
	case artifacts.Updated:
		var assign []string
		var args []any
		add := func(column string, value any) {
			args = append(args, value)
			assign = append(assign, fmt.Sprintf("%s = $%d", column, 4+len(args)))
		}
		if e.Description != nil {
			add("description", *e.Description)
		}
		if e.Tags != nil {
			add("tags", nonNil(*e.Tags))
		}
		if e.TLP != nil {
			add("tlp", string(*e.TLP))
		}
		if e.IOC != nil {
			add("is_ioc", *e.IOC)
		}
		if e.Source != nil {
			add("source", *e.Source)
		}
		if e.Metadata != nil {
			add("metadata", jsonArg(e.Metadata))
		}
		return set(strings.Join(assign, ", "), args...)
	case artifacts.Sighted:
		if err := set(`sightings = sightings + 1, first_seen = least(first_seen, $5), last_seen = greatest(last_seen, $5)`, e.At); err != nil {
			return err
		}
		return addHost(e.Host)
	case artifacts.Deleted:
		return set(`deleted = true`)
	}
	return nil
}

// nonNil returns tags, or an empty list for none (the column is NOT NULL).
func nonNil(tags []string) []string {
	if tags == nil {
		return []string{}
	}
	return tags
}

// jsonArg returns metadata as a query argument: NULL for none, {} included.
func jsonArg(m json.RawMessage) any {
	if len(m) == 0 || string(m) == "{}" || string(m) == "null" {
		return nil
	}
	return string(m)
}

// Artifact is one row of the read model.
type Artifact struct {
	ID          artifacts.ID
	Tenant      domain.TenantID
	Kind        artifacts.Kind
	Value       string
	Case        cases.ID
	Host        hosts.ID
	Description string
	Tags        []string
	TLP         cases.TLP
	IOC         bool
	Source      string
	Metadata    json.RawMessage // nil for none
	Sightings   int
	FirstSeen   time.Time
	LastSeen    time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int64
}

const columns = `tenant_id, artifact_id, kind, value, case_id, host_id, description, tags, tlp, is_ioc, source,
	metadata::text, sightings, first_seen, last_seen, created_at, updated_at, version`

func scan(row pgx.Row) (Artifact, error) {
	var a Artifact
	var tenant, id, kind, caseID, hostID, tlp string
	var metadata *string
	err := row.Scan(&tenant, &id, &kind, &a.Value, &caseID, &hostID, &a.Description, &a.Tags, &tlp, &a.IOC,
		&a.Source, &metadata, &a.Sightings, &a.FirstSeen, &a.LastSeen, &a.CreatedAt, &a.UpdatedAt, &a.Version)
	a.Tenant, a.ID, a.Kind = domain.TenantID(tenant), artifacts.ID(id), artifacts.Kind(kind)
	a.Case, a.Host, a.TLP = cases.ID(caseID), hosts.ID(hostID), cases.TLP(tlp)
	if metadata != nil {
		a.Metadata = json.RawMessage(*metadata)
	}
	if len(a.Tags) == 0 {
		a.Tags = nil
	}
	return a, err
}

// Get returns artifact id of tenant, or domain.ErrNotFound. Deleted
// artifacts are not found.
func Get(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, id artifacts.ID) (Artifact, error) {
	var a Artifact
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		var err error
		a, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM artifact_list
			WHERE tenant_id = $1 AND artifact_id = $2 AND NOT deleted`, string(tenant), string(id)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Artifact{}, domain.ErrNotFound
	}
	return a, err
}

// Value is one normalised value of one kind, for Filter.Values.
type Value struct {
	Kind  artifacts.Kind
	Value string
}

// Filter narrows List. Zero fields do not filter.
type Filter struct {
	Case cases.ID
	// Host matches artifacts attached to the host or sighted on it.
	Host hosts.ID
	Kind artifacts.Kind
	IOC  *bool
	// Tag matches artifacts carrying the tag (in its normalised, lower-case
	// form).
	Tag string
	// Values, when not empty, matches artifacts whose kind and value are one
	// of these pairs; the values must be normalised for their kinds. An empty
	// non-nil list matches nothing.
	Values []Value
}

// Sort orders List: by one of the fields of Sorts, then by id, in the same
// direction.
type Sort struct {
	Field string
	Desc  bool
}

// DefaultSort is newest first.
var DefaultSort = Sort{Field: "created_at", Desc: true}

// Sorts lists the fields List may sort by.
var Sorts = []string{"created_at", "last_seen", "first_seen", "sightings", "value"}

// sortColumns maps Sorts to their columns and how a cursor value parses.
var sortColumns = map[string]struct {
	column, typ string
	parse       func(string) (any, error)
}{
	"created_at": {"created_at", "timestamptz", parseTime},
	"last_seen":  {"last_seen", "timestamptz", parseTime},
	"first_seen": {"first_seen", "timestamptz", parseTime},
	"sightings":  {"sightings", "integer", func(s string) (any, error) { return strconv.Atoi(s) }},
	"value":      {"value", "text", func(s string) (any, error) { return s, nil }},
}

func parseTime(s string) (any, error) { return time.Parse(time.RFC3339Nano, s) }

// ErrSortInvalid answers an unknown sort field.
var ErrSortInvalid = domain.Invalid("invalid_sort", "sort must be one of created_at, last_seen, first_seen, sightings, value")

// ParseSort reads a sort field ("" for the default) and an order ("asc",
// "desc", or "" for the field's default: descending for times and counts,
// ascending for the value).
func ParseSort(field, order string) (Sort, error) {
	if field == "" {
		field = DefaultSort.Field
	}
	if _, ok := sortColumns[field]; !ok {
		return Sort{}, ErrSortInvalid
	}
	s := Sort{Field: field, Desc: field != "value"}
	switch strings.ToLower(order) {
	case "":
	case "asc":
		s.Desc = false
	case "desc":
		s.Desc = true
	default:
		return Sort{}, domain.Invalid("invalid_order", "order must be asc or desc")
	}
	return s, nil
}

func (s Sort) order() string {
	if s.Desc {
		return "desc"
	}
	return "asc"
}

// List returns one page of the tenant's artifacts that are not deleted and
// match f, ordered by s. A page cursor is only valid with the sort it was
// made for.
func List(ctx context.Context, pool *pgxpool.Pool, tenant domain.TenantID, f Filter, s Sort, page readmodel.Page) ([]Artifact, error) {
	sc, ok := sortColumns[s.Field]
	if !ok {
		return nil, ErrSortInvalid
	}
	if f.Values != nil && len(f.Values) == 0 {
		return nil, nil
	}
	args := []any{string(tenant)}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"a.tenant_id = $1", "NOT a.deleted"}
	if f.Case != "" {
		where = append(where, "a.case_id = "+arg(string(f.Case)))
	}
	if f.Host != "" {
		where = append(where, `EXISTS (SELECT 1 FROM artifact_list_hosts h
			WHERE h.tenant_id = a.tenant_id AND h.host_id = `+arg(string(f.Host))+` AND h.artifact_id = a.artifact_id)`)
	}
	if f.Kind != "" {
		where = append(where, "a.kind = "+arg(string(f.Kind)))
	}
	if f.IOC != nil {
		where = append(where, "a.is_ioc = "+arg(*f.IOC))
	}
	if f.Tag != "" {
		where = append(where, "a.tags @> ARRAY["+arg(f.Tag)+"]::text[]")
	}
	if len(f.Values) > 0 {
		kinds, digests := make([]string, len(f.Values)), make([][]byte, len(f.Values))
		for i, v := range f.Values {
			kinds[i], digests[i] = string(v.Kind), ValueDigest(v.Value)
		}
		k, d := arg(kinds), arg(digests)
		where = append(where, "a.value_sha256 = ANY("+d+"::bytea[])",
			`EXISTS (SELECT 1 FROM unnest(`+k+`::text[], `+d+`::bytea[]) AS v(kind, digest)
				WHERE v.kind = a.kind AND v.digest = a.value_sha256)`)
	}
	if len(page.Cursor) > 0 {
		if len(page.Cursor) != 4 || page.Cursor[0] != s.Field || page.Cursor[1] != s.order() {
			return nil, readmodel.ErrBadCursor
		}
		key, err := sc.parse(page.Cursor[2])
		if err != nil {
			return nil, readmodel.ErrBadCursor
		}
		cmp := ">"
		if s.Desc {
			cmp = "<"
		}
		where = append(where, "(a."+sc.column+", a.artifact_id) "+cmp+" ("+arg(key)+"::"+sc.typ+", "+arg(page.Cursor[3])+"::text)")
	}
	dir := "ASC"
	if s.Desc {
		dir = "DESC"
	}
	limit := arg(page.Limit)
	q := `SELECT ` + prefixed(columns) + ` FROM artifact_list a WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY a.` + sc.column + ` ` + dir + `, a.artifact_id ` + dir + ` LIMIT ` + limit
	var out []Artifact
	err := readmodel.Read(ctx, pool, readmodel.Scope{Tenant: tenant}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Artifact, error) { return scan(r) })
		return err
	})
	return out, err
}

// prefixed qualifies every column of cols with the alias a.
func prefixed(cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = "a." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// Cursor returns the cursor of the page after a, listed in order s.
func Cursor(a Artifact, s Sort) string {
	var key string
	switch s.Field {
	case "created_at":
		key = a.CreatedAt.UTC().Format(time.RFC3339Nano)
	case "last_seen":
		key = a.LastSeen.UTC().Format(time.RFC3339Nano)
	case "first_seen":
		key = a.FirstSeen.UTC().Format(time.RFC3339Nano)
	case "sightings":
		key = strconv.Itoa(a.Sightings)
	case "value":
		key = a.Value
	}
	return readmodel.EncodeCursor(s.Field, s.order(), key, string(a.ID))
}
