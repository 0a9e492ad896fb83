package eventstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
)

// emptySchema creates a schema without any migration, dropped when t ends,
// and returns an owner pool on it.
func emptySchema(t *testing.T, db *pgtest.DB, name string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	schema := db.Schema + "_" + name
	if _, err := db.Owner.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Owner.Exec(context.Background(), `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	cfg, err := eventstore.OwnerPoolConfig(db.URL, schema)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func countMigrations(t *testing.T, pool *pgxpool.Pool, component string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM schema_migrations WHERE component = $1`, component).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateStoreIsIdempotentAndRaceSafe(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if err := eventstore.MigrateStore(ctx, db.Owner); err != nil {
		t.Fatalf("second MigrateStore: %v", err)
	}
	if n := countMigrations(t, db.Owner, eventstore.StoreComponent); n != 3 {
		t.Fatalf("%d migrations recorded, want 3", n)
	}
	// Replicas starting together migrate a fresh schema once.
	pool := emptySchema(t, db, "race")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- eventstore.MigrateStore(ctx, pool)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent MigrateStore: %v", err)
		}
	}
	if n := countMigrations(t, pool, eventstore.StoreComponent); n != 3 {
		t.Fatalf("%d migrations recorded, want 3", n)
	}
}

func TestMigrateComponent(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	files := fstest.MapFS{
		"002_more.sql":  {Data: []byte(`INSERT INTO widgets VALUES (2); ALTER TABLE widgets ADD COLUMN note text;`)},
		"001_first.sql": {Data: []byte(`CREATE TABLE widgets (id int PRIMARY KEY); INSERT INTO widgets VALUES (1);`)},
		"README.md":     {Data: []byte(`not a migration`)},
	}
	if err := eventstore.Migrate(ctx, db.Owner, "widgets", files); err != nil {
		t.Fatal(err)
	}
	files["003_third.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO widgets VALUES (3, 'x');`)}
	if err := eventstore.Migrate(ctx, db.Owner, "widgets", files); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Owner.QueryRow(ctx, `SELECT count(*) FROM widgets`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("widgets: %d rows, %v: each file must run once, in order", n, err)
	}
	// A failing file is rolled back and not recorded.
	files["004_bad.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO widgets VALUES (4); SELECT no_such_function();`)}
	if err := eventstore.Migrate(ctx, db.Owner, "widgets", files); err == nil || !strings.Contains(err.Error(), "004_bad.sql") {
		t.Fatalf("failing migration: %v", err)
	}
	if err := db.Owner.QueryRow(ctx, `SELECT count(*) FROM widgets`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("a failed migration left %d rows (%v)", n, err)
	}
	if got := countMigrations(t, db.Owner, "widgets"); got != 3 {
		t.Fatalf("%d migrations recorded, want 3", got)
	}
	for name, bad := range map[string]fstest.MapFS{
		"bad name":     {"first.sql": {Data: []byte(`SELECT 1`)}},
		"same version": {"001_a.sql": {Data: []byte(`SELECT 1`)}, "1_b.sql": {Data: []byte(`SELECT 1`)}},
		"version zero": {"000_a.sql": {Data: []byte(`SELECT 1`)}},
	} {
		if err := eventstore.Migrate(ctx, db.Owner, "bad", bad); err == nil {
			t.Errorf("%s: Migrate accepted it", name)
		}
	}
}

func TestMigrateNeedsAnExistingSchema(t *testing.T) {
	t.Parallel()
	cfg, err := eventstore.OwnerPoolConfig(pgtest.URL(), "no_such_schema_for_migrate")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = eventstore.MigrateStore(context.Background(), pool)
	if err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("got %v, want a clear error about the missing schema", err)
	}
}

func TestPoolConfigs(t *testing.T) {
	t.Parallel()
	const url = "postgres://u@localhost:5432/db"
	app, err := eventstore.AppPoolConfig(url, "tenant_data")
	if err != nil {
		t.Fatal(err)
	}
	if got := app.ConnConfig.RuntimeParams; got["role"] != "vc_app" || got["search_path"] != `"tenant_data"` {
		t.Fatalf("app runtime params %v", got)
	}
	owner, err := eventstore.OwnerPoolConfig(url, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := owner.ConnConfig.RuntimeParams["role"]; ok {
		t.Fatal("owner pool sets a role")
	}
	if _, ok := owner.ConnConfig.RuntimeParams["search_path"]; ok {
		t.Fatal("owner pool without schema sets search_path")
	}
	for _, bad := range []string{`x"; DROP TABLE events; --`, "a b", "1abc", "é", strings.Repeat("a", 64), "a,public"} {
		if _, err := eventstore.AppPoolConfig(url, bad); err == nil {
			t.Errorf("schema %q accepted", bad)
		}
	}
	for _, good := range []string{"public", "_x", "Tenant_1", strings.Repeat("a", 63)} {
		if err := eventstore.ValidateSchemaName(good); err != nil {
			t.Errorf("schema %q refused: %v", good, err)
		}
	}
}
