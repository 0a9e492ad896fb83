package projections

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/eventstore"
)

// Projector keeps one read model up to date from the event stream.
//
// Events reach a projector in stream order, but events of different streams
// may arrive in any relative order (Kafka orders per partition, and the runner
// and Rebuild group a batch by tenant), so a projector must not depend on the
// global order across streams.
type Projector interface {
	// Name identifies the projector: it is its consumer group, its key in
	// projector_seen and its migration component.
	// WARNING: changing Name renames the consumer group and replays the topic;
	// rebuild the read model when you do.
	Name() string
	// Migrations returns the projector's own "NNN_name.sql" files: the tables
	// it owns, their row-level security and the grants to vc_app. The SQL must
	// use unqualified names, because Rebuild runs it again in a shadow schema,
	// and must create nothing but the tables listed by Tables (with their
	// indexes, policies, sequences and grants).
	Migrations() fs.FS
	// Tables lists the tables the projector owns; Rebuild swaps exactly these.
	Tables() []string
	// Apply applies one event to the read model within tx, which is scoped to
	// env.Tenant (app.tenant_id). It is called for every event, including
	// those whose name the codec does not know (env.Event == nil), and returns
	// nil for events that are not its concern. The runner calls it at most
	// once per event position, but Apply should still be idempotent.
	Apply(ctx context.Context, tx pgx.Tx, env eventstore.Envelope) error
}

// BatchApplier is implemented by projectors that can apply several events in
// fewer statements than one Apply each. Rebuild uses it to replay quickly, and
// the runner when several messages of one tenant share a transaction; a single
// event always goes through Apply. ApplyBatch must have the same effect as
// calling Apply for each envelope in order. All envelopes of one call belong
// to one tenant, and tx is scoped to it.
type BatchApplier interface {
	ApplyBatch(ctx context.Context, tx pgx.Tx, envs []eventstore.Envelope) error
}

// Component is the migration component of the package's own tables.
const Component = "projections"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrateSeen creates or updates the tables this package owns (projector_seen)
// in the schema of ownerPool's search_path. Migrate calls it too.
func MigrateSeen(ctx context.Context, ownerPool *pgxpool.Pool) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", Component, err)
	}
	if err := eventstore.Migrate(ctx, ownerPool, Component, files); err != nil {
		return fmt.Errorf("migrate %s: %w", Component, err)
	}
	return nil
}

// Migrate runs this package's migrations and then p's, as component p.Name(),
// on ownerPool (the owner role, whose search_path is the live schema).
func Migrate(ctx context.Context, ownerPool *pgxpool.Pool, p Projector) error {
	if err := MigrateSeen(ctx, ownerPool); err != nil {
		return err
	}
	if err := eventstore.Migrate(ctx, ownerPool, p.Name(), p.Migrations()); err != nil {
		return fmt.Errorf("migrate projector %s: %w", p.Name(), err)
	}
	return nil
}
