// Package pgtest gives tests a fresh PostgreSQL schema with the event store
// migrated into it, and the event store's conformance suite.
//
// It is for tests only: production code must not import it. It imports
// eventstore and domain and no other package of ours.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/eventstore"
)

// DefaultURL is the server tests use unless VC_TEST_DATABASE_URL is set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// URLEnv names the environment variable that overrides DefaultURL.
const URLEnv = "VC_TEST_DATABASE_URL"

// DB is one test's schema.
type DB struct {
	URL    string        // the server, without the schema
	Schema string        // the test's own schema, dropped when the test ends
	Owner  *pgxpool.Pool // as the connecting (owner) role, search_path = Schema
	App    *pgxpool.Pool // as eventstore.AppRole, search_path = Schema
}

// maxConns bounds each pool so that many parallel tests fit in the server's
// max_connections.
const maxConns = 12

// URL returns the test server's URL.
func URL() string {
	if u := os.Getenv(URLEnv); u != "" {
		return u
	}
	return DefaultURL
}

// New creates a uniquely named schema, migrates the event store into it and
// returns pools on it. The schema is dropped (CASCADE) when t ends. If the
// server is unreachable, New fails t: tests never skip for want of a database.
func New(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	db := &DB{URL: URL(), Schema: schemaName(t.Name())}
	admin, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatalf("pgtest: cannot reach PostgreSQL at %s (set %s to another server): %v", redact(db.URL), URLEnv, err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{db.Schema}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", db.Schema, err)
	}
	t.Cleanup(func() { db.drop(t) })

	db.Owner = openPool(t, ctx, db.URL, db.Schema, eventstore.OwnerPoolConfig)
	if err := eventstore.MigrateStore(ctx, db.Owner); err != nil {
		t.Fatalf("pgtest: migrate event store in %s: %v", db.Schema, err)
	}
	db.App = openPool(t, ctx, db.URL, db.Schema, eventstore.AppPoolConfig)
	return db
}

func openPool(t testing.TB, ctx context.Context, u, schema string,
	config func(string, string) (*pgxpool.Config, error)) *pgxpool.Pool {
	t.Helper()
	cfg, err := config(u, schema)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: open pool on %s: %v", redact(u), err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pgtest: cannot reach PostgreSQL at %s (set %s to another server): %v", redact(u), URLEnv, err)
	}
	return pool
}

// drop removes the schema; the pools are closed by then (cleanups run last
// registered first).
func (db *DB) drop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Errorf("pgtest: drop schema %s: %v", db.Schema, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{db.Schema}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("pgtest: drop schema %s: %v", db.Schema, err)
	}
}

// schemaName makes a valid, unique schema name that hints at the test.
func schemaName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, c := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(err)
	}
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(r[:]))
	return b.String()
}

// redact hides a password in u.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	return p.Redacted()
}

// String describes db for test logs.
func (db *DB) String() string { return fmt.Sprintf("%s schema %s", redact(db.URL), db.Schema) }
