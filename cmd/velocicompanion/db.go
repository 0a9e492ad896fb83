package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/commands"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
	"velocicompanion/projections/artifactlist"
	"velocicompanion/projections/auditlog"
	"velocicompanion/projections/caselist"
	"velocicompanion/projections/hostsearch"
	"velocicompanion/projections/notifications"
	"velocicompanion/projections/tenantlist"
	"velocicompanion/projections/userlist"
)

// projectors lists every read model the server maintains.
func projectors() []projections.Projector {
	return []projections.Projector{
		tenantlist.Projector{},
		userlist.Projector{},
		auditlog.Projector{},
		artifactlist.Projector{},
		caselist.Projector{},
		hostsearch.Projector{},
		notifications.Projector{},
	}
}

// database holds the two pools: the owner's for migrations and rebuilds, and
// the application role's (vc_app, no UPDATE or DELETE on events) for the rest.
type database struct {
	owner, app *pgxpool.Pool
}

func (d database) close() {
	if d.app != nil {
		d.app.Close()
	}
	if d.owner != nil {
		d.owner.Close()
	}
}

// openDatabase connects, creating the database when it does not exist and the
// role may, and runs every migration.
func openDatabase(ctx context.Context, cfg config) (database, error) {
	if err := ensureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return database{}, err
	}
	var db database
	ownerCfg, err := eventstore.OwnerPoolConfig(cfg.DatabaseURL, cfg.DatabaseSchema)
	if err != nil {
		return db, err
	}
	ownerCfg.MaxConns = 4
	if db.owner, err = connect(ctx, ownerCfg); err != nil {
		return db, err
	}
	if err := migrate(ctx, db.owner); err != nil {
		db.close()
		return database{}, err
	}
	appCfg, err := eventstore.AppPoolConfig(cfg.DatabaseURL, cfg.DatabaseSchema)
	if err != nil {
		db.close()
		return database{}, err
	}
	appCfg.MaxConns = 24
	if db.app, err = connect(ctx, appCfg); err != nil {
		db.close()
		return database{}, err
	}
	return db, nil
}

// connect opens a pool, waiting up to 30 s for PostgreSQL to accept connections.
func connect(ctx context.Context, pc *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = pool.Ping(ctx)
		if err == nil {
			return pool, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			pool.Close()
			return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func migrate(ctx context.Context, owner *pgxpool.Pool) error {
	if err := eventstore.MigrateStore(ctx, owner); err != nil {
		return fmt.Errorf("migrate event store: %w", err)
	}
	if err := commands.Migrate(ctx, owner); err != nil {
		return fmt.Errorf("migrate commands: %w", err)
	}
	if err := projections.MigrateSeen(ctx, owner); err != nil {
		return fmt.Errorf("migrate projections: %w", err)
	}
	for _, p := range projectors() {
		if err := projections.Migrate(ctx, owner, p); err != nil {
			return fmt.Errorf("migrate %s: %w", p.Name(), err)
		}
	}
	return nil
}

// ensureDatabase creates the database named in rawURL if it is missing.
func ensureDatabase(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil // a key=value DSN: leave it to the operator
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	conn, err := pgx.Connect(ctx, rawURL)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return nil // unreachable now: connect() reports it with retries
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err = pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P04"
}
