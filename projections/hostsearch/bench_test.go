package hostsearch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
	"velocicompanion/projections/readmodel"
)

// benchHosts is the number of hosts of the measured tenant; VC_BENCH_HOSTS
// overrides it.
func benchHosts() int {
	if n, err := strconv.Atoi(os.Getenv("VC_BENCH_HOSTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

const (
	benchTenant domain.TenantID = "0190c000-0000-7000-8000-00000000000c"
	otherTenant domain.TenantID = "0190d000-0000-7000-8000-00000000000d"
	benchLimit                  = 50
)

var (
	depts = []string{"fin", "hr", "eng", "ops", "sales", "mkt", "lab", "dev", "qa", "sec",
		"it", "legal", "supp", "rnd", "log", "pay", "crm", "erp", "web", "db"}
	kinds  = []string{"WS", "lt", "srv", "vm"}
	oses   = []string{"Windows", "Linux", "macOS"}
	labels = []string{"finance", "dmz", "vip", "pci", "server", "workstation", "quarantine-candidate"}
)

// benchEvents returns the events that make host i of a tenant: discovered by
// the sync with one or two addresses and a few labels, and for half of them
// scored. Host names look like "fin-WS-00042"; one in twenty has "fin-".
func benchEvents(rng *rand.Rand, tenant domain.TenantID, i int, now time.Time) []eventstore.Envelope {
	id := fmt.Sprintf("0190e000-%04x-7000-8000-%012x", i>>16, i)
	p := hosts.Profile{
		Hostname: fmt.Sprintf("%s-%s-%05d", depts[i%len(depts)], kinds[(i/len(depts))%len(kinds)], i),
		OS:       oses[rng.IntN(len(oses))],
		IPs:      []string{fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)},
		ClientID: fmt.Sprintf("C.%016x", i),
	}
	p.FQDN = strings.ToLower(p.Hostname) + ".corp.example"
	if i%3 == 0 {
		p.IPs = append(p.IPs, fmt.Sprintf("2001:db8:%x::%x", i>>16, i&0xffff))
	}
	for _, l := range labels {
		if rng.IntN(5) == 0 {
			p.Labels = append(p.Labels, l)
		}
	}
	last := now.Add(-time.Duration(rng.IntN(30*24*60)) * time.Minute)
	envs := []eventstore.Envelope{{
		Tenant: tenant, StreamType: "host", StreamID: id, Version: 1, RecordedAt: now.Add(-time.Duration(i) * time.Second),
		Event: hosts.Discovered{ID: hosts.ID(id), Profile: p, Source: hosts.SourceVelociraptor,
			FirstSeen: last.Add(-time.Duration(rng.IntN(365*24)) * time.Hour), LastSeen: last},
	}}
	if i%2 == 0 {
		envs = append(envs, eventstore.Envelope{Tenant: tenant, StreamType: "host", StreamID: id, Version: 2, RecordedAt: now,
			Event: hosts.ScoreChanged{Score: rng.IntN(101), Class: hosts.ClassLow}})
	}
	return envs
}

// loadBench applies the events of n hosts of tenant through the projector, in
// transactions of a few thousand events on several connections.
func loadBench(b *testing.B, pool *pgxpool.Pool, tenant domain.TenantID, n int) {
	b.Helper()
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	const perTx, workers = 2000, 8
	starts := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range starts {
				rng := rand.New(rand.NewPCG(uint64(start), uint64(len(tenant))))
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(tenant)); err != nil {
						return err
					}
					for i := start; i < min(start+perTx, n); i++ {
						for _, env := range benchEvents(rng, tenant, i, now) {
							if err := (Projector{}).Apply(ctx, tx, env); err != nil {
								return err
							}
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for start := 0; start < n; start += perTx {
		select {
		case starts <- start:
		case err := <-errs:
			close(starts)
			wg.Wait()
			b.Fatal(err)
		}
	}
	close(starts)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// benchDB is the loaded schema, shared by the sub-benchmarks.
type benchDB struct {
	db *pgtest.DB
}

func setupBench(b *testing.B) benchDB {
	b.Helper()
	db := pgtest.New(b)
	ctx := context.Background()
	if err := projections.Migrate(ctx, db.Owner, Projector{}); err != nil {
		b.Fatal(err)
	}
	n := benchHosts()
	start := time.Now()
	loadBench(b, db.App, benchTenant, n)
	loadBench(b, db.App, otherTenant, n/10)
	for _, table := range (Projector{}).Tables() {
		if _, err := db.Owner.Exec(ctx, `VACUUM ANALYZE `+pgx.Identifier{table}.Sanitize()); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d + %d hosts through Apply in %s", n, n/10, time.Since(start).Round(time.Millisecond))
	rows, err := db.Owner.Query(ctx, `SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'host_search%' ORDER BY c.relkind DESC, c.relname`)
	if err != nil {
		b.Fatal(err)
	}
	sizes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name, size string
		err := r.Scan(&name, &size)
		return name + " " + size, err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("sizes: %s", strings.Join(sizes, ", "))
	return benchDB{db: db}
}

// BenchmarkHostSearch measures List on 100,000 hosts of one tenant (and
// 10,000 of another): a hostname substring filter with a sort, on the first
// page and on the 50th page reached by walking the cursor, plus a few other
// shapes for comparison. Each sub-benchmark reports p50 and p99 latency in
// milliseconds and logs the query plan (EXPLAIN ANALYZE, as the application
// role under row-level security).
//
//	go test ./projections/hostsearch -run '^$' -bench HostSearch -benchtime 2000x
func BenchmarkHostSearch(b *testing.B) {
	bdb := setupBench(b)
	pool := bdb.db.App
	ctx := context.Background()
	must := func(s Sort, err error) Sort {
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	cidr, _ := ParseIP("10.0.128.0/17")
	for _, bc := range []struct {
		name   string
		filter Filter
		sort   Sort
		page   int
	}{
		{"substring_hostname_asc/page1", Filter{Hostname: "FIN-"}, DefaultSort, 1},
		{"substring_hostname_asc/page50", Filter{Hostname: "FIN-"}, DefaultSort, 50},
		{"substring_last_seen_desc/page1", Filter{Hostname: "fin-"}, must(ParseSort("last_seen", "desc")), 1},
		{"substring_last_seen_desc/page50", Filter{Hostname: "fin-"}, must(ParseSort("last_seen", "desc")), 50},
		{"substring_score_desc/page50", Filter{Hostname: "-ws-"}, must(ParseSort("score", "desc")), 50},
		{"prefix_hostname_asc/page50", Filter{HostnamePrefix: "fin-"}, DefaultSort, 50},
		{"cidr_hostname_asc/page50", Filter{IP: cidr}, DefaultSort, 50},
		{"nofilter_created_desc/page50", Filter{}, must(ParseSort("created_at", "desc")), 50},
		{"rare_substring_hostname_asc/page1", Filter{Hostname: "ws-0424"}, DefaultSort, 1},
		{"no_match_substring_last_seen_desc/page1", Filter{Hostname: "nomatch"}, must(ParseSort("last_seen", "desc")), 1},
	} {
		q := Query{Filter: bc.filter, Sort: bc.sort, Limit: benchLimit}
		// Walk the cursor to the page.
		for page := 1; page < bc.page; page++ {
			_, next, err := List(ctx, pool, benchTenant, q)
			if err != nil {
				b.Fatal(err)
			}
			if next == "" { // a small VC_BENCH_HOSTS
				b.Logf("%s: only %d pages; measuring the last", bc.name, page)
				break
			}
			if q.Cursor, err = readmodel.DecodeCursor(next); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(bc.name, func(b *testing.B) {
			explain(b, pool, q)
			samples := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t := time.Now()
				_, _, err := List(ctx, pool, benchTenant, q)
				samples = append(samples, time.Since(t))
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportPercentiles(b, samples)
		})
	}
}

// reportPercentiles reports the p50 and p99 of samples in milliseconds.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	slices.Sort(samples)
	at := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(p*float64(len(samples))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

var explained sync.Map

// explain logs the plan of q's query, once per sub-benchmark.
func explain(b *testing.B, pool *pgxpool.Pool, q Query) {
	if _, done := explained.LoadOrStore(b.Name(), true); done {
		return
	}
	sql, args, err := listSQL(benchTenant, q)
	if err != nil {
		b.Fatal(err)
	}
	var plan []string
	ctx := context.Background()
	err = readmodel.Read(ctx, pool, readmodel.Scope{Tenant: benchTenant}, func(tx pgx.Tx) error {
		if err := steer(ctx, tx, q.Filter); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+sql, args...)
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("plan:\n%s", strings.Join(plan, "\n"))
}
