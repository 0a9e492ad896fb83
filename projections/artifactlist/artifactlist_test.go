package artifactlist_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
	"velocicompanion/domain/cases"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
	"velocicompanion/projections/artifactlist"
	"velocicompanion/projections/readmodel"
)

const (
	tenantA domain.TenantID = "tenant-a"
	tenantB domain.TenantID = "tenant-b"
	sha                     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

type fixture struct {
	db    *pgtest.DB
	store *eventstore.Store
	p     artifactlist.Projector
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t)
	c := eventstore.NewCodec()
	eventstore.Register[artifacts.Added](c, 1)
	eventstore.Register[artifacts.Updated](c, 1)
	eventstore.Register[artifacts.Sighted](c, 1)
	eventstore.Register[artifacts.Deleted](c, 1)
	f := &fixture{db: db, store: eventstore.NewStore(db.App, c)}
	if err := projections.Migrate(context.Background(), db.Owner, f.p); err != nil {
		t.Fatal(err)
	}
	return f
}

// record appends events to an artifact's stream and applies them, each
// twice, as the projection runner would (in a transaction scoped to the
// tenant, as the application role).
func (f *fixture) record(t *testing.T, tenant domain.TenantID, id string, events ...domain.Event) {
	t.Helper()
	ctx := context.Background()
	key := eventstore.Key{Tenant: tenant, Type: "artifact", ID: id}
	before, err := f.store.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Append(ctx, eventstore.AppendRequest{Key: key, Expected: eventstore.Any, Events: events}); err != nil {
		t.Fatal(err)
	}
	envs, err := f.store.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginTxFunc(ctx, f.db.App, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(tenant)); err != nil {
			return err
		}
		for _, env := range envs[len(before):] {
			for range 2 {
				if err := f.p.Apply(ctx, tx, env); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(list []artifactlist.Artifact) []string {
	var out []string
	for _, a := range list {
		out = append(out, string(a.ID))
	}
	slices.Sort(out)
	return out
}

func list(t *testing.T, f *fixture, tenant domain.TenantID, flt artifactlist.Filter) []string {
	t.Helper()
	rows, err := artifactlist.List(context.Background(), f.db.App, tenant, flt, artifactlist.DefaultSort, readmodel.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return ids(rows)
}

func TestArtifactList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

	f.record(t, tenantA, "x", artifacts.Added{ID: "x", Kind: artifacts.KindSHA256, Value: sha, Case: "c1", Host: "h1",
		Tags: []string{"malware", "stage1"}, TLP: cases.TLPRed, IOC: true, Source: "misp",
		Metadata: json.RawMessage(`{"family":"emotet"}`), By: "ann"})
	f.record(t, tenantA, "x",
		artifacts.Sighted{Host: "h2", Source: "edr", At: past, By: "ann"},
		artifacts.Sighted{At: time.Now().Add(time.Hour).UTC(), By: "ann"})
	f.record(t, tenantA, "y", artifacts.Added{ID: "y", Kind: artifacts.KindOther, Value: sha, Case: "c2", TLP: cases.TLPAmber,
		Metadata: json.RawMessage(`{"k":1}`), By: "ann"})
	tags, no, desc := []string{}, false, "renamed"
	f.record(t, tenantA, "y", artifacts.Updated{Tags: &tags, IOC: &no, Description: &desc, Metadata: json.RawMessage(`{}`), By: "ann"})
	f.record(t, tenantA, "z", artifacts.Added{ID: "z", Kind: artifacts.KindIPv4, Value: "192.0.2.1", Host: "h2", TLP: cases.TLPGreen, IOC: true, By: "ann"})
	f.record(t, tenantA, "w", artifacts.Added{ID: "w", Kind: artifacts.KindSHA256, Value: sha, Case: "c3", TLP: cases.TLPAmber, By: "ann"},
		artifacts.Deleted{By: "ann"})
	f.record(t, tenantB, "b1", artifacts.Added{ID: "b1", Kind: artifacts.KindSHA256, Value: sha, Case: "c1", Host: "h1", TLP: cases.TLPAmber, IOC: true, By: "bob"})

	x, err := artifactlist.Get(ctx, f.db.App, tenantA, "x")
	if err != nil {
		t.Fatal(err)
	}
	if x.Kind != artifacts.KindSHA256 || x.Value != sha || x.Case != "c1" || x.Host != "h1" || x.TLP != cases.TLPRed ||
		!x.IOC || x.Source != "misp" || !slices.Equal(x.Tags, []string{"malware", "stage1"}) || x.Version != 3 {
		t.Fatalf("x = %+v", x)
	}
	// Applied twice, each sighting still counted once.
	if x.Sightings != 3 || !x.FirstSeen.Equal(past) || !x.LastSeen.After(x.CreatedAt) {
		t.Fatalf("x sightings %d, first %v, last %v, created %v", x.Sightings, x.FirstSeen, x.LastSeen, x.CreatedAt)
	}
	var md map[string]string
	if err := json.Unmarshal(x.Metadata, &md); err != nil || md["family"] != "emotet" {
		t.Fatalf("x metadata %s (%v)", x.Metadata, err)
	}
	y, err := artifactlist.Get(ctx, f.db.App, tenantA, "y")
	if err != nil {
		t.Fatal(err)
	}
	if y.Tags != nil || y.IOC || y.Description != "renamed" || y.Metadata != nil || y.Version != 2 || y.Sightings != 1 {
		t.Fatalf("y after update = %+v", y)
	}
	// Deleted artifacts and other tenants' artifacts are not found.
	for _, tc := range []struct {
		tenant domain.TenantID
		id     artifacts.ID
	}{{tenantA, "w"}, {tenantA, "b1"}, {tenantB, "x"}, {tenantA, "nothing"}} {
		if _, err := artifactlist.Get(ctx, f.db.App, tc.tenant, tc.id); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("get %s in %s: %v", tc.id, tc.tenant, err)
		}
	}

	truth := true
	for _, tc := range []struct {
		name   string
		tenant domain.TenantID
		filter artifactlist.Filter
		want   []string
	}{
		{"all", tenantA, artifactlist.Filter{}, []string{"x", "y", "z"}},
		{"other_tenant", tenantB, artifactlist.Filter{}, []string{"b1"}},
		{"case", tenantA, artifactlist.Filter{Case: "c1"}, []string{"x"}},
		{"deleted_case", tenantA, artifactlist.Filter{Case: "c3"}, nil},
		{"host_attached_or_sighted", tenantA, artifactlist.Filter{Host: "h2"}, []string{"x", "z"}},
		{"host_attached", tenantA, artifactlist.Filter{Host: "h1"}, []string{"x"}},
		{"kind", tenantA, artifactlist.Filter{Kind: artifacts.KindSHA256}, []string{"x"}},
		{"ioc", tenantA, artifactlist.Filter{IOC: &truth}, []string{"x", "z"}},
		{"not_ioc", tenantA, artifactlist.Filter{IOC: &no}, []string{"y"}},
		{"tag", tenantA, artifactlist.Filter{Tag: "stage1"}, []string{"x"}},
		{"value_of_one_kind", tenantA, artifactlist.Filter{Values: []artifactlist.Value{{Kind: artifacts.KindSHA256, Value: sha}}}, []string{"x"}},
		{"value_of_any_kind", tenantA, artifactlist.Filter{Values: []artifactlist.Value{
			{Kind: artifacts.KindSHA256, Value: sha}, {Kind: artifacts.KindOther, Value: sha}, {Kind: artifacts.KindIPv4, Value: sha}}}, []string{"x", "y"}},
		{"value_in_other_tenant", tenantB, artifactlist.Filter{Values: []artifactlist.Value{{Kind: artifacts.KindSHA256, Value: sha}}}, []string{"b1"}},
		{"no_values", tenantA, artifactlist.Filter{Values: []artifactlist.Value{}}, nil},
		{"combined", tenantA, artifactlist.Filter{Host: "h2", IOC: &truth, Kind: artifacts.KindIPv4}, []string{"z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list(t, f, tc.tenant, tc.filter); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	// Row-level security hides other tenants' rows even from a query that
	// forgets its tenant filter.
	var n int
	err = readmodel.Read(ctx, f.db.App, readmodel.Scope{Tenant: tenantB}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM artifact_list) + (SELECT count(*) FROM artifact_list_hosts)`).Scan(&n)
	})
	if err != nil || n != 2 { // b1 and its host
		t.Fatalf("tenant B sees %d rows (%v), want 2", n, err)
	}
}

func TestArtifactListPages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	values := []string{"192.0.2.5", "192.0.2.3", "192.0.2.1", "192.0.2.4", "192.0.2.2"}
	for i, v := range values {
		id := string(rune('a' + i))
		f.record(t, tenantA, id, artifacts.Added{ID: artifacts.ID(id), Kind: artifacts.KindIPv4, Value: v, Host: "h", TLP: cases.TLPAmber, By: "ann"})
		for range i {
			f.record(t, tenantA, id, artifacts.Sighted{At: time.Now().UTC(), By: "ann"})
		}
	}
	walk := func(s artifactlist.Sort) []string {
		t.Helper()
		var got []string
		page := readmodel.Page{Limit: 2}
		for range 10 {
			rows, err := artifactlist.List(ctx, f.db.App, tenantA, artifactlist.Filter{Host: "h"}, s, page)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				got = append(got, r.Value)
			}
			if len(rows) < page.Limit {
				return got
			}
			if page.Cursor, err = readmodel.DecodeCursor(artifactlist.Cursor(rows[len(rows)-1], s)); err != nil {
				t.Fatal(err)
			}
		}
		t.Fatal("pagination does not end")
		return nil
	}
	byValue, err := artifactlist.ParseSort("value", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := walk(byValue); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"}) {
		t.Fatalf("by value: %v", got)
	}
	if got := walk(artifactlist.DefaultSort); !slices.Equal(got, []string{"192.0.2.2", "192.0.2.4", "192.0.2.1", "192.0.2.3", "192.0.2.5"}) {
		t.Fatalf("newest first: %v", got)
	}
	bySightings, _ := artifactlist.ParseSort("sightings", "asc")
	if got := walk(bySightings); !slices.Equal(got, values) {
		t.Fatalf("by sightings: %v", got)
	}
	lastSeen, _ := artifactlist.ParseSort("last_seen", "desc")
	if got := walk(lastSeen); len(got) != len(values) {
		t.Fatalf("by last seen: %v", got)
	}

	// A cursor made for one order is refused by another; so is garbage.
	rows, err := artifactlist.List(ctx, f.db.App, tenantA, artifactlist.Filter{}, byValue, readmodel.Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := readmodel.DecodeCursor(artifactlist.Cursor(rows[0], byValue))
	for _, tc := range []struct {
		sort artifactlist.Sort
		cur  []string
	}{
		{artifactlist.DefaultSort, cur},
		{artifactlist.Sort{Field: "value", Desc: true}, cur},
		{artifactlist.DefaultSort, []string{"created_at", "desc", "not a time", "x"}},
		{bySightings, []string{"sightings", "asc", "many", "x"}},
	} {
		if _, err := artifactlist.List(ctx, f.db.App, tenantA, artifactlist.Filter{}, tc.sort, readmodel.Page{Limit: 1, Cursor: tc.cur}); !errors.Is(err, readmodel.ErrBadCursor) {
			t.Fatalf("cursor %v with sort %+v: %v", tc.cur, tc.sort, err)
		}
	}
	for _, tc := range [][2]string{{"hostname", ""}, {"value", "up"}} {
		if _, err := artifactlist.ParseSort(tc[0], tc[1]); domain.KindOf(err) != domain.KindInvalid {
			t.Fatalf("ParseSort(%q, %q): %v", tc[0], tc[1], err)
		}
	}
}

// TestArtifactListRebuild checks that a rebuild from the event store gives
// exactly the rows the live projection built.
func TestArtifactListRebuild(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.record(t, tenantA, "x", artifacts.Added{ID: "x", Kind: artifacts.KindDomain, Value: "xn--bcher-kva.example", Case: "c1", Host: "h1",
		TLP: cases.TLPAmber, Metadata: json.RawMessage(`{"a":[1,2]}`), By: "ann"},
		artifacts.Sighted{Host: "h9", At: time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC), By: "ann"})
	f.record(t, tenantB, "y", artifacts.Added{ID: "y", Kind: artifacts.KindURL, Value: "https://example.com/", Host: "h2",
		TLP: cases.TLPClear, By: "bob"}, artifacts.Deleted{By: "bob"})
	dump := func() string {
		t.Helper()
		var s string
		err := f.db.Owner.QueryRow(ctx, `SELECT
			(SELECT string_agg(row_to_json(a)::text, E'\n' ORDER BY tenant_id, artifact_id) FROM artifact_list a) || E'\n' ||
			(SELECT string_agg(row_to_json(h)::text, E'\n' ORDER BY tenant_id, host_id, artifact_id) FROM artifact_list_hosts h)`).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := dump()
	if err := projections.Rebuild(ctx, f.db.Owner, f.store, f.p, nil); err != nil {
		t.Fatal(err)
	}
	if after := dump(); after != before {
		t.Fatalf("rebuilt rows differ:\nlive:\n%s\nrebuilt:\n%s", before, after)
	}
}
