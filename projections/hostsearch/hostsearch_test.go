package hostsearch_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
	"velocicompanion/projections/hostsearch"
	"velocicompanion/projections/readmodel"
)

const (
	tenantA domain.TenantID = "0190a000-0000-7000-8000-00000000000a"
	tenantB domain.TenantID = "0190b000-0000-7000-8000-00000000000b"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	db       *pgtest.DB
	versions map[string]int64
	pos      int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t)
	if err := projections.Migrate(context.Background(), db.Owner, hostsearch.Projector{}); err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, versions: map[string]int64{}}
}

// hid returns the host id (a UUID, as in the system) the tests call name.
func hid(name string) hosts.ID {
	return hosts.ID(uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)).String())
}

// envelopes numbers events of the host the test calls name, of tenant, as
// the store would.
func (f *fixture) envelopes(tenant domain.TenantID, name string, events ...domain.Event) []eventstore.Envelope {
	var out []eventstore.Envelope
	id := string(hid(name))
	for _, e := range events {
		key := string(tenant) + "/" + id
		f.versions[key]++
		f.pos++
		out = append(out, eventstore.Envelope{
			Position: f.pos, Tenant: tenant, StreamType: "host", StreamID: id, Version: eventstore.Version(f.versions[key]),
			Name: e.EventName(), Event: e, RecordedAt: t0.Add(time.Duration(f.pos) * time.Second),
		})
	}
	return out
}

// applyEnvs applies envs (of one tenant) through the projector as the
// application role, scoped to their tenant.
func (f *fixture) applyEnvs(t testing.TB, envs ...eventstore.Envelope) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, f.db.App, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(envs[0].Tenant)); err != nil {
			return err
		}
		for _, env := range envs {
			if err := (hostsearch.Projector{}).Apply(ctx, tx, env); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) apply(t testing.TB, tenant domain.TenantID, id string, events ...domain.Event) {
	t.Helper()
	f.applyEnvs(t, f.envelopes(tenant, id, events...)...)
}

// register records host id with a normalised profile p.
func (f *fixture) register(t testing.TB, tenant domain.TenantID, id string, p hosts.Profile) {
	t.Helper()
	p, err := hosts.NormalizeProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(t, tenant, id, hosts.Registered{ID: hosts.ID(id), Profile: p, Source: hosts.SourceAnalyst, By: "u1"})
}

func list(t *testing.T, f *fixture, tenant domain.TenantID, q hostsearch.Query) []hostsearch.Host {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 100
	}
	rows, _, err := hostsearch.List(context.Background(), f.db.App, tenant, q)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func names(rows []hostsearch.Host) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Hostname)
	}
	return strings.Join(out, ",")
}

func TestApplyProjectsEveryEventIdempotently(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p, _ := hosts.NormalizeProfile(hosts.Profile{Hostname: "WS-0001", FQDN: "ws-0001.corp.example", IPs: []string{"2001:db8::5", "10.0.0.5"},
		OS: "Windows", OSVersion: "11 23H2", Labels: []string{"Finance"}, ClientID: "C.1234567890abcdef",
		Metadata: []byte(`{"owner":"alice"}`)})
	os, ips, meta := "Linux", []string{"10.9.9.9"}, []byte(`{}`)
	envs := f.envelopes(tenantA, "h1",
		hosts.Registered{ID: "h1", Profile: p, Source: hosts.SourceAnalyst, By: "u1"},
		hosts.Updated{OS: &os, IPs: &ips, Metadata: meta, Source: hosts.SourceAnalyst, By: "u1"},
		hosts.LabelsChanged{Labels: []string{"dmz", "finance"}, Added: []string{"dmz"}, Source: hosts.SourceAnalyst, By: "u1"},
		hosts.Seen{At: t0.Add(-time.Hour), Source: hosts.SourceVelociraptor},
		hosts.Seen{At: t0.Add(-2 * time.Hour), Source: hosts.SourceVelociraptor},
		hosts.ScoreChanged{Score: 72, Class: hosts.ClassHigh},
	)
	for i := range envs {
		f.applyEnvs(t, envs[:i+1]...) // every prefix again: each event is applied many times
	}
	h, err := hostsearch.Get(ctx, f.db.App, tenantA, hid("h1"))
	if err != nil {
		t.Fatal(err)
	}
	if h.OS != "Linux" || fmt.Sprint(h.IPs) != "[10.9.9.9]" || h.Metadata != nil || fmt.Sprint(h.Labels) != "[dmz finance]" ||
		h.FQDN != "ws-0001.corp.example" || h.ClientID != "C.1234567890abcdef" || h.OSVersion != "11 23H2" ||
		h.Score != 72 || h.Class != hosts.ClassHigh || h.Version != 6 || h.Source != hosts.SourceAnalyst {
		t.Fatalf("host = %+v", h)
	}
	if h.FirstSeen == nil || !h.FirstSeen.Equal(t0.Add(-2*time.Hour)) || h.LastSeen == nil || !h.LastSeen.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("seen %v .. %v", h.FirstSeen, h.LastSeen)
	}
	// The child tables follow: the old address no longer matches, the new one does.
	for ip, want := range map[string]string{"10.0.0.5": "", "2001:db8::5": "", "10.9.9.9": "WS-0001"} {
		pfx, _ := hostsearch.ParseIP(ip)
		if got := names(list(t, f, tenantA, hostsearch.Query{Filter: hostsearch.Filter{IP: pfx}})); got != want {
			t.Errorf("ip %s selects %q, want %q", ip, got, want)
		}
	}
	if got := names(list(t, f, tenantA, hostsearch.Query{Filter: hostsearch.Filter{Label: "dmz"}})); got != "WS-0001" {
		t.Errorf("label dmz selects %q", got)
	}

	// Deletion hides the host and drops its children; replaying changes nothing.
	del := f.envelopes(tenantA, "h1", hosts.Deleted{By: "u1"})
	f.applyEnvs(t, del...)
	f.applyEnvs(t, append(envs, del...)...)
	if _, err := hostsearch.Get(ctx, f.db.App, tenantA, hid("h1")); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("deleted host: %v", err)
	}
	if rows := list(t, f, tenantA, hostsearch.Query{}); len(rows) != 0 {
		t.Fatalf("deleted host listed: %s", names(rows))
	}
	var children int
	if err := f.db.Owner.QueryRow(ctx, `SELECT (SELECT count(*) FROM host_search_ip) + (SELECT count(*) FROM host_search_label)`).Scan(&children); err != nil || children != 0 {
		t.Fatalf("%d child rows left (%v)", children, err)
	}
}

// seedFilters registers hosts in both tenants for the filter tests.
func seedFilters(t *testing.T, f *fixture) {
	t.Helper()
	f.register(t, tenantA, "a1", hosts.Profile{Hostname: "WS-0001", IPs: []string{"10.0.0.5", "2001:db8::5"}, OS: "Windows", Labels: []string{"Finance"}})
	f.register(t, tenantA, "a2", hosts.Profile{Hostname: "ws_0002", IPs: []string{"10.0.1.7"}, OS: "windows"})
	f.register(t, tenantA, "a3", hosts.Profile{Hostname: "wsx0002", IPs: []string{"192.168.1.1"}, OS: "Linux", Labels: []string{"dmz"}})
	f.register(t, tenantA, "a4", hosts.Profile{Hostname: "db-01.corp", IPs: []string{"fe80::1"}, OS: "Linux"})
	f.apply(t, tenantA, "a1", hosts.Seen{At: t0.Add(-48 * time.Hour)}, hosts.ScoreChanged{Score: 80, Class: hosts.ClassHigh})
	f.apply(t, tenantA, "a2", hosts.Seen{At: t0.Add(-time.Hour)}, hosts.ScoreChanged{Score: 30, Class: hosts.ClassLow})
	f.apply(t, tenantA, "a3", hosts.Seen{At: t0})
	// Tenant B has a host that matches every filter; it must never show.
	f.register(t, tenantB, "b1", hosts.Profile{Hostname: "WS-0001", IPs: []string{"10.0.0.5", "2001:db8::5"}, OS: "Windows", Labels: []string{"finance", "dmz"}})
	f.apply(t, tenantB, "b1", hosts.Seen{At: t0.Add(-time.Hour)}, hosts.ScoreChanged{Score: 99, Class: hosts.ClassCritical})
}

func TestFilters(t *testing.T) {
	f := newFixture(t)
	seedFilters(t, f)
	ip := func(s string) hostsearch.Filter {
		p, err := hostsearch.ParseIP(s)
		if err != nil {
			t.Fatalf("ParseIP(%q): %v", s, err)
		}
		return hostsearch.Filter{IP: p}
	}
	score := func(n int) *int { return &n }
	for _, tc := range []struct {
		name   string
		filter hostsearch.Filter
		want   string // hostnames in hostname order
	}{
		{"none", hostsearch.Filter{}, "db-01.corp,WS-0001,ws_0002,wsx0002"},
		{"substring_any_case", hostsearch.Filter{Hostname: "WS"}, "WS-0001,ws_0002,wsx0002"},
		{"substring_middle", hostsearch.Filter{Hostname: "0002"}, "ws_0002,wsx0002"},
		{"substring_underscore_is_literal", hostsearch.Filter{Hostname: "s_0"}, "ws_0002"},
		{"substring_percent_is_literal", hostsearch.Filter{Hostname: "%"}, ""},
		{"substring_backslash_is_literal", hostsearch.Filter{Hostname: `\`}, ""},
		{"prefix", hostsearch.Filter{HostnamePrefix: "Ws-"}, "WS-0001"},
		{"prefix_underscore_is_literal", hostsearch.Filter{HostnamePrefix: "ws_"}, "ws_0002"},
		{"prefix_percent_is_literal", hostsearch.Filter{HostnamePrefix: "%"}, ""},
		{"prefix_non_ascii", hostsearch.Filter{HostnamePrefix: "wé"}, ""},
		{"prefix_and_substring", hostsearch.Filter{HostnamePrefix: "ws", Hostname: "x"}, "wsx0002"},
		{"ipv4_exact", ip("10.0.0.5"), "WS-0001"},
		{"ipv4_mapped", ip("::ffff:10.0.1.7"), "ws_0002"},
		{"ipv4_cidr", ip("10.0.0.0/16"), "WS-0001,ws_0002"},
		{"ipv4_cidr_host_bits_ignored", ip("10.0.1.200/24"), "ws_0002"},
		{"ipv4_everything", ip("0.0.0.0/0"), "WS-0001,ws_0002,wsx0002"},
		{"ipv6_exact", ip("2001:DB8:0::5"), "WS-0001"},
		{"ipv6_cidr", ip("2001:db8::/32"), "WS-0001"},
		{"ipv6_link_local", ip("fe80::/10"), "db-01.corp"},
		{"ipv6_everything", ip("::/0"), "db-01.corp,WS-0001"},
		{"ip_no_match", ip("172.16.0.0/12"), ""},
		{"os_any_case", hostsearch.Filter{OS: "WINDOWS"}, "WS-0001,ws_0002"},
		{"label", hostsearch.Filter{Label: "Finance"}, "WS-0001"},
		{"label_other", hostsearch.Filter{Label: "dmz"}, "wsx0002"},
		{"last_seen_before", hostsearch.Filter{LastSeenBefore: t0.Add(-30 * time.Minute)}, "WS-0001,ws_0002"},
		{"last_seen_after", hostsearch.Filter{LastSeenAfter: t0.Add(-2 * time.Hour)}, "ws_0002,wsx0002"},
		{"last_seen_window", hostsearch.Filter{LastSeenAfter: t0.Add(-2 * time.Hour), LastSeenBefore: t0}, "ws_0002"},
		{"score_min", hostsearch.Filter{ScoreMin: score(30)}, "WS-0001,ws_0002"},
		{"score_min_high", hostsearch.Filter{ScoreMin: score(81)}, ""},
		{"combined", hostsearch.Filter{Hostname: "ws", OS: "windows", ScoreMin: score(50), Label: "finance", IP: ip("10.0.0.0/8").IP}, "WS-0001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := list(t, f, tenantA, hostsearch.Query{Filter: tc.filter})
			if got := names(rows); got != tc.want {
				t.Fatalf("selects %q, want %q", got, tc.want)
			}
			for _, r := range rows {
				if r.Tenant != tenantA {
					t.Fatalf("row of tenant %s", r.Tenant)
				}
			}
			n, err := hostsearch.Count(context.Background(), f.db.App, tenantA, tc.filter)
			if err != nil || n != int64(len(rows)) {
				t.Fatalf("count = %d (%v), want %d", n, err, len(rows))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "10.0.0", "10.0.0.0/33", "2001:db8::/129", "example.com", "10.0.0.1/", "/8"} {
		if _, err := hostsearch.ParseIP(s); !errors.Is(err, hostsearch.ErrBadIPFilter) {
			t.Errorf("ParseIP(%q) = %v, want invalid_ip_filter", s, err)
		}
	}
	for _, s := range [][2]string{{"password", ""}, {"hostname;drop", ""}, {"hostname", "up"}, {"id", "asc"}} {
		if _, err := hostsearch.ParseSort(s[0], s[1]); err == nil {
			t.Errorf("ParseSort(%q, %q) accepted", s[0], s[1])
		}
	}
	if s, err := hostsearch.ParseSort("Threat_Score", "DESC"); err != nil || s.String() != "score.desc" {
		t.Errorf("ParseSort(Threat_Score, DESC) = %v, %v", s, err)
	}
}

// TestSortsPaginateStably walks every sort in both directions in small pages
// over hosts with many equal sort values, and checks that the pages join up to
// the whole list, in order, without repeats or gaps.
func TestSortsPaginateStably(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 23
	for i := range n {
		id := fmt.Sprintf("h%02d", (i*7)%n) // ids not in hostname order
		f.register(t, tenantA, id, hosts.Profile{
			Hostname: fmt.Sprintf("host-%d", i%5), // equal hostnames
			FQDN:     []string{"", "a.example", "B.example"}[i%3],
			OS:       []string{"", "Linux", "linux", "Windows"}[i%4],
		})
		if i%3 != 0 { // some hosts never seen
			f.apply(t, tenantA, id, hosts.Seen{At: t0.Add(time.Duration(i%4) * time.Hour)})
		}
		if i%2 == 0 {
			f.apply(t, tenantA, id, hosts.ScoreChanged{Score: 10 * (i % 3), Class: hosts.ClassLow})
		}
	}
	f.register(t, tenantB, "b1", hosts.Profile{Hostname: "host-0"})
	all := list(t, f, tenantA, hostsearch.Query{Limit: 500})
	if len(all) != n {
		t.Fatalf("%d hosts, want %d", len(all), n)
	}
	timeKey := func(p *time.Time) time.Time {
		if p == nil {
			return time.Time{}
		}
		return *p
	}
	keys := map[string]func(a, b hostsearch.Host) int{
		"hostname": func(a, b hostsearch.Host) int {
			return strings.Compare(strings.ToLower(a.Hostname), strings.ToLower(b.Hostname))
		},
		"fqdn": func(a, b hostsearch.Host) int {
			return strings.Compare(strings.ToLower(a.FQDN), strings.ToLower(b.FQDN))
		},
		"os":         func(a, b hostsearch.Host) int { return strings.Compare(strings.ToLower(a.OS), strings.ToLower(b.OS)) },
		"last_seen":  func(a, b hostsearch.Host) int { return timeKey(a.LastSeen).Compare(timeKey(b.LastSeen)) },
		"first_seen": func(a, b hostsearch.Host) int { return timeKey(a.FirstSeen).Compare(timeKey(b.FirstSeen)) },
		"score":      func(a, b hostsearch.Host) int { return cmp.Compare(a.Score, b.Score) },
		"created_at": func(a, b hostsearch.Host) int { return a.CreatedAt.Compare(b.CreatedAt) },
	}
	for field, key := range keys {
		for _, order := range []string{"asc", "desc"} {
			t.Run(field+"_"+order, func(t *testing.T) {
				s, err := hostsearch.ParseSort(field, order)
				if err != nil {
					t.Fatal(err)
				}
				want := slices.Clone(all)
				slices.SortFunc(want, func(a, b hostsearch.Host) int {
					c := cmp.Or(key(a, b), strings.Compare(string(a.ID), string(b.ID)))
					if s.Desc {
						return -c
					}
					return c
				})
				var got []hostsearch.Host
				var cursor []string
				for pages := 0; ; pages++ {
					if pages > n {
						t.Fatal("pagination does not end")
					}
					rows, next, err := hostsearch.List(ctx, f.db.App, tenantA, hostsearch.Query{Sort: s, Limit: 4, Cursor: cursor})
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, rows...)
					if next == "" {
						break
					}
					if cursor, err = readmodel.DecodeCursor(next); err != nil {
						t.Fatal(err)
					}
				}
				ids := func(hs []hostsearch.Host) string {
					var out []string
					for _, h := range hs {
						out = append(out, string(h.ID))
					}
					return strings.Join(out, " ")
				}
				if ids(got) != ids(want) {
					t.Fatalf("pages give\n%s\nwant\n%s", ids(got), ids(want))
				}
			})
		}
	}

	// A cursor only fits the sort it was made for.
	_, next, err := hostsearch.List(ctx, f.db.App, tenantA, hostsearch.Query{Sort: hostsearch.DefaultSort, Limit: 2})
	if err != nil || next == "" {
		t.Fatalf("first page: %q, %v", next, err)
	}
	cur, _ := readmodel.DecodeCursor(next)
	desc, _ := hostsearch.ParseSort("hostname", "desc")
	if _, _, err := hostsearch.List(ctx, f.db.App, tenantA, hostsearch.Query{Sort: desc, Limit: 2, Cursor: cur}); !errors.Is(err, hostsearch.ErrCursorSort) {
		t.Fatalf("cursor with another order: %v", err)
	}
	score, _ := hostsearch.ParseSort("score", "")
	for _, bad := range [][]string{{"score.asc", "ten", string(hid("h01"))}, {"score.asc", "1"}, {"score.asc", "1", "h01"}, {"hostname.asc", "x", "y", "z"}} {
		if _, _, err := hostsearch.List(ctx, f.db.App, tenantA, hostsearch.Query{Sort: score, Limit: 2, Cursor: bad}); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

// TestRowLevelSecurity checks the policies themselves: a transaction scoped to
// one tenant sees none of another's rows even without a tenant filter, and
// one without a tenant sees nothing.
func TestRowLevelSecurity(t *testing.T) {
	f := newFixture(t)
	seedFilters(t, f)
	ctx := context.Background()
	count := func(scope domain.TenantID) (n [3]int) {
		err := readmodel.Read(ctx, f.db.App, readmodel.Scope{Tenant: scope}, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM host_search), (SELECT count(*) FROM host_search_ip),
				(SELECT count(*) FROM host_search_label)`).Scan(&n[0], &n[1], &n[2])
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := count(tenantA); got != [3]int{4, 5, 2} {
		t.Errorf("tenant A sees %v rows", got)
	}
	if got := count(tenantB); got != [3]int{1, 2, 2} {
		t.Errorf("tenant B sees %v rows", got)
	}
	if got := count(""); got != [3]int{} {
		t.Errorf("no tenant sees %v rows", got)
	}
	// The query functions filter by tenant as well: B's host is invisible to A
	// by id, and A's list never holds it.
	if _, err := hostsearch.Get(ctx, f.db.App, tenantA, hid("b1")); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("tenant A reads B's host: %v", err)
	}
	if _, err := hostsearch.Get(ctx, f.db.App, tenantB, hid("b1")); err != nil {
		t.Fatal(err)
	}
	// Ids that are not UUIDs find nothing, without an error.
	for _, id := range []hosts.ID{"not-a-uuid", "", hosts.ID(strings.ToUpper(string(hid("a1")))) + "x"} {
		if _, err := hostsearch.Get(ctx, f.db.App, tenantA, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Get(%q): %v, want not found", id, err)
		}
	}
	if rows, _, err := hostsearch.List(ctx, f.db.App, "not-a-tenant", hostsearch.Query{Limit: 10}); err != nil || len(rows) != 0 {
		t.Errorf("List of a non-UUID tenant: %d rows, %v", len(rows), err)
	}
	// Writing another tenant's rows from a scoped transaction is refused.
	asA := func(sql string, args ...any) (int64, error) {
		var n int64
		err := pgx.BeginFunc(ctx, f.db.App, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(tenantA)); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, sql, args...)
			n = tag.RowsAffected()
			return err
		})
		return n, err
	}
	if n, err := asA(`UPDATE host_search SET os = 'pwned' WHERE host_id = $1`, string(hid("b1"))); err != nil || n != 0 {
		t.Fatalf("tenant A updated %d rows of B (%v)", n, err)
	}
	if _, err := asA(`INSERT INTO host_search_ip (tenant_id, host_id, ip) VALUES ($1, $2, '10.6.6.6')`, string(tenantB), string(hid("b1"))); err == nil {
		t.Fatal("tenant A inserted a row of B")
	}
}

// TestRebuild replays host events from the store into a shadow schema and
// swaps it in: the migration creates nothing Rebuild cannot move, and the
// rebuilt model answers like the live one.
func TestRebuild(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	codec := eventstore.NewCodec()
	eventstore.Register[hosts.Registered](codec, 1)
	eventstore.Register[hosts.Updated](codec, 1)
	eventstore.Register[hosts.LabelsChanged](codec, 1)
	eventstore.Register[hosts.Seen](codec, 1)
	eventstore.Register[hosts.Deleted](codec, 1)
	eventstore.Register[hosts.QuarantineRequested](codec, 1)
	eventstore.Register[hosts.Quarantined](codec, 1)
	store := eventstore.NewStore(f.db.App, codec)
	appendHost := func(tenant domain.TenantID, id string, events ...domain.Event) {
		t.Helper()
		if _, err := store.Append(ctx, eventstore.AppendRequest{Key: eventstore.Key{Tenant: tenant, Type: "host", ID: string(hid(id))},
			Expected: eventstore.Any, Events: events}); err != nil {
			t.Fatal(err)
		}
	}
	os, ips := "Linux", []string{"10.1.2.3"}
	appendHost(tenantA, "r1", hosts.Registered{ID: "r1", Profile: hosts.Profile{Hostname: "WS-1", IPs: []string{"10.0.0.1"}}, Source: hosts.SourceAnalyst},
		hosts.Updated{OS: &os, IPs: &ips, Source: hosts.SourceAnalyst}, hosts.LabelsChanged{Labels: []string{"dmz"}, Added: []string{"dmz"}})
	appendHost(tenantA, "r2", hosts.Registered{ID: "r2", Profile: hosts.Profile{Hostname: "ws-2"}, Source: hosts.SourceAnalyst},
		hosts.Seen{At: t0}, hosts.Deleted{})
	appendHost(tenantB, "r3", hosts.Registered{ID: "r3", Profile: hosts.Profile{Hostname: "db-1", IPs: []string{"10.1.2.3"}}, Source: hosts.SourceAnalyst})
	appendHost(tenantA, "r4", hosts.Registered{ID: "r4", Profile: hosts.Profile{Hostname: "ws-4", ClientID: "C.1234567890abcdef"}, Source: hosts.SourceAnalyst},
		hosts.QuarantineRequested{Collection: "c1", By: "u1"}, hosts.Quarantined{Collection: "c1", FlowID: "F.1"})
	before := tableShape(t, f)
	if !slices.ContainsFunc(before, func(c string) bool { return strings.HasPrefix(c, "quarantine_status text NO ''") }) {
		t.Fatalf("the migrated host_search has no quarantine_status:\n%s", strings.Join(before, "\n"))
	}
	if err := projections.Rebuild(ctx, f.db.Owner, store, hostsearch.Projector{}, nil); err != nil {
		t.Fatal(err)
	}
	// The shadow's migrations (001 and 002) made the table the live
	// migrations made: the same columns, types, defaults and indexes.
	if after := tableShape(t, f); !slices.Equal(after, before) {
		t.Fatalf("rebuilt host_search differs from the migrated one:\n%s\nwant\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	yes := true
	q, err := hostsearch.Get(ctx, f.db.App, tenantA, hid("r4"))
	if err != nil || q.Quarantine.Status != hosts.StatusQuarantined || q.Quarantine.Collection != "c1" || q.Version != 3 {
		t.Fatalf("rebuilt quarantined host: %+v, %v", q, err)
	}
	if got := names(list(t, f, tenantA, hostsearch.Query{Filter: hostsearch.Filter{Quarantined: &yes}})); got != "ws-4" {
		t.Fatalf("rebuilt model selects %q as quarantined", got)
	}
	pfx, _ := hostsearch.ParseIP("10.1.2.3")
	if got := names(list(t, f, tenantA, hostsearch.Query{Filter: hostsearch.Filter{IP: pfx, Label: "dmz", OS: "linux"}})); got != "WS-1" {
		t.Fatalf("rebuilt model selects %q", got)
	}
	if got := names(list(t, f, tenantB, hostsearch.Query{})); got != "db-1" {
		t.Fatalf("rebuilt model of tenant B holds %q", got)
	}
}

// tableShape describes the columns and indexes of host_search in the test's
// schema, for comparing a rebuilt table with a migrated one.
func tableShape(t *testing.T, f *fixture) []string {
	t.Helper()
	rows, err := f.db.Owner.Query(context.Background(), `
		SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
		FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'host_search'
		UNION ALL
		SELECT indexname || ' ' || regexp_replace(indexdef, ' ON \S+ ', ' ON ') FROM pg_indexes
		WHERE schemaname = current_schema() AND tablename = 'host_search'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("host_search has no columns")
	}
	return out
}

// TestQuarantine follows a host through quarantine and release: every event
// advances its version, the read model shows where the quarantine stands,
// the quarantined filter selects by it, and applying again changes nothing.
func TestQuarantine(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seedFilters(t, f)
	get := func(name string) hostsearch.Host {
		t.Helper()
		h, err := hostsearch.Get(ctx, f.db.App, tenantA, hid(name))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if q := get("a1").Quarantine; q.Status != hosts.StatusNotQuarantined || q.Collection != "" || q.UpdatedAt != nil {
		t.Fatalf("a host never quarantined: %+v", q)
	}
	steps := []struct {
		event domain.Event
		want  hosts.QuarantineStatus
		coll  string
	}{
		{hosts.QuarantineRequested{Collection: "c1", Message: "isolated", By: "u1"}, hosts.StatusQuarantineRequested, "c1"},
		{hosts.QuarantineFailed{Collection: "c1", Error: "flow failed"}, hosts.StatusQuarantineFailed, "c1"},
		{hosts.ReleaseRequested{Collection: "c2", By: "u2"}, hosts.StatusReleaseRequested, "c2"},
		{hosts.Released{Collection: "c2"}, hosts.StatusReleased, "c2"},
		{hosts.QuarantineRequested{Collection: "c3", By: "u1"}, hosts.StatusQuarantineRequested, "c3"},
		{hosts.Quarantined{Collection: "c3", FlowID: "F.3"}, hosts.StatusQuarantined, "c3"},
	}
	var all []eventstore.Envelope
	for _, st := range steps {
		envs := f.envelopes(tenantA, "a2", st.event)
		all = append(all, envs...)
		f.applyEnvs(t, envs...)
		f.applyEnvs(t, envs...) // a redelivery
		h := get("a2")
		env := envs[0]
		if h.Version != int64(env.Version) || !h.UpdatedAt.Equal(env.RecordedAt) {
			t.Fatalf("after %s: version %d at %v, want %d at %v", env.Name, h.Version, h.UpdatedAt, env.Version, env.RecordedAt)
		}
		q := h.Quarantine
		if q.Status != st.want || q.Collection != st.coll || q.UpdatedAt == nil || !q.UpdatedAt.Equal(env.RecordedAt) {
			t.Fatalf("after %s: quarantine %+v, want %s of %s at %v", env.Name, q, st.want, st.coll, env.RecordedAt)
		}
	}
	// Older events applied again (a replay from an earlier offset) leave the
	// row as it is.
	want := get("a2")
	f.applyEnvs(t, all...)
	if got := get("a2"); got.Version != want.Version || got.Quarantine.Status != hosts.StatusQuarantined ||
		got.Quarantine.Collection != "c3" || !got.Quarantine.UpdatedAt.Equal(*want.Quarantine.UpdatedAt) {
		t.Fatalf("replay changed the host: version %d, quarantine %+v", got.Version, got.Quarantine)
	}

	// An event of the stream that the codec does not know still advances
	// the version, and later events are not skipped.
	unknown := f.envelopes(tenantA, "a2", hosts.Seen{At: t0})
	unknown[0].Event, unknown[0].Name = nil, "host.something_new"
	f.applyEnvs(t, unknown...)
	if h := get("a2"); h.Version != int64(unknown[0].Version) || h.Quarantine.Status != hosts.StatusQuarantined {
		t.Fatalf("after an unknown event: version %d (want %d), quarantine %+v", h.Version, unknown[0].Version, h.Quarantine)
	}
	f.apply(t, tenantA, "a2", hosts.ReleaseRequested{Collection: "c4", By: "u1"})
	if h := get("a2"); h.Version != int64(unknown[0].Version)+1 || h.Quarantine.Status != hosts.StatusReleaseRequested {
		t.Fatalf("after release: version %d, quarantine %+v", h.Version, h.Quarantine)
	}
	f.apply(t, tenantA, "a2", hosts.Released{Collection: "c4"})

	// The filter: a3 is quarantined in tenant A, and B's host too, which A
	// never sees.
	f.apply(t, tenantA, "a3", hosts.QuarantineRequested{Collection: "c5", By: "u1"}, hosts.Quarantined{Collection: "c5"})
	f.apply(t, tenantA, "a4", hosts.QuarantineRequested{Collection: "c6", By: "u1"})
	f.apply(t, tenantB, "b1", hosts.QuarantineRequested{Collection: "c7", By: "u9"}, hosts.Quarantined{Collection: "c7"})
	yes, no := true, false
	for _, tc := range []struct {
		filter hostsearch.Filter
		want   string
	}{
		{hostsearch.Filter{Quarantined: &yes}, "wsx0002"},
		{hostsearch.Filter{Quarantined: &no}, "db-01.corp,WS-0001,ws_0002"},
		{hostsearch.Filter{Quarantined: &yes, OS: "windows"}, ""},
		{hostsearch.Filter{Quarantined: &no, OS: "linux"}, "db-01.corp"},
	} {
		if got := names(list(t, f, tenantA, hostsearch.Query{Filter: tc.filter})); got != tc.want {
			t.Errorf("quarantined=%v os=%q selects %q, want %q", *tc.filter.Quarantined, tc.filter.OS, got, tc.want)
		}
		n, err := hostsearch.Count(ctx, f.db.App, tenantA, tc.filter)
		if want := len(strings.Split(tc.want, ",")); err != nil || (tc.want != "" && n != int64(want)) || (tc.want == "" && n != 0) {
			t.Errorf("Count(quarantined=%v os=%q) = %d, %v", *tc.filter.Quarantined, tc.filter.OS, n, err)
		}
	}
	// A deleted host keeps its quarantine columns but is never listed.
	f.apply(t, tenantA, "a3", hosts.Deleted{By: "u1"})
	if got := names(list(t, f, tenantA, hostsearch.Query{Filter: hostsearch.Filter{Quarantined: &yes}})); got != "" {
		t.Errorf("a deleted quarantined host is listed: %q", got)
	}
}
