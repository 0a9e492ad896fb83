package eventstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var storeMigrations embed.FS

// StoreComponent is the component name under which MigrateStore records the
// event store's migrations in schema_migrations.
const StoreComponent = "eventstore"

// MigrateStore applies the event store's own migrations (the events and
// relay_checkpoints tables and the vc_app role) with Migrate.
func MigrateStore(ctx context.Context, pool *pgxpool.Pool) error {
	files, err := fs.Sub(storeMigrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", StoreComponent, err)
	}
	return Migrate(ctx, pool, StoreComponent, files)
}

// migrationName matches "NNN_name.sql".
var migrationName = regexp.MustCompile(`^([0-9]+)_[A-Za-z0-9_.-]+\.sql$`)

type migration struct {
	version int
	name    string
}

// Migrate applies the files "NNN_name.sql" at the root of files, in version
// order, that schema_migrations does not yet record for component. Each file
// runs in its own transaction together with its record, under a transaction
// advisory lock per schema, so concurrent Migrate calls (several replicas
// starting at once) apply each file exactly once. Files run as the pool's role
// in the first schema of its search_path, which must exist.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, files fs.FS) error {
	if component == "" {
		return errors.New("migrate: empty component")
	}
	migs, err := listMigrations(files)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	err = migrateTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			component  text        NOT NULL,
			version    integer     NOT NULL,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (component, version))`)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for _, m := range migs {
		err := migrateTx(ctx, pool, func(tx pgx.Tx) error {
			var done bool
			if err := tx.QueryRow(ctx,
				`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE component = $1 AND version = $2)`,
				component, m.version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			sql, err := fs.ReadFile(files, m.name)
			if err != nil {
				return err
			}
			// No arguments: pgx uses the simple protocol, which runs a file of
			// several statements.
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err = tx.Exec(ctx,
				`INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)`,
				component, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s %s: %w", component, m.name, err)
		}
	}
	return nil
}

// listMigrations returns the migration files at the root of files in version
// order. Other files are ignored; a .sql file with a malformed name or a
// repeated version is an error.
func listMigrations(files fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var migs []migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		sm := migrationName.FindStringSubmatch(e.Name())
		if sm == nil {
			if len(e.Name()) > 4 && e.Name()[len(e.Name())-4:] == ".sql" {
				return nil, fmt.Errorf("migration file %q is not named NNN_name.sql", e.Name())
			}
			continue
		}
		v, err := strconv.Atoi(sm[1])
		if err != nil || v < 1 {
			return nil, fmt.Errorf("migration file %q: bad version", e.Name())
		}
		if prev, ok := seen[v]; ok {
			return nil, fmt.Errorf("migration files %q and %q share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		migs = append(migs, migration{version: v, name: e.Name()})
	}
	slices.SortFunc(migs, func(a, b migration) int { return a.version - b.version })
	return migs, nil
}

// migrateTx runs fn in a transaction that first takes the migration lock of the
// current schema.
func migrateTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var schema *string
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return err
		}
		if schema == nil {
			return errors.New("no schema of the search_path exists; create it first")
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('velocicompanion.migrate.' || $1, 0))`,
			*schema); err != nil {
			return err
		}
		return fn(tx)
	})
}
