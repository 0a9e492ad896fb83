package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultPruneBatch is how many rows one statement of DeleteBatches deletes
// at most when the caller gives no batch size.
const DefaultPruneBatch = 5000

// DeleteBatches runs query, a DELETE whose first parameter ($1) is a row
// limit, with batch as that limit (DefaultPruneBatch if batch < 1) and args as
// its further parameters, again and again until a run deletes fewer rows than
// the limit. Each run is a statement of its own (its own transaction), so a
// large backlog never holds its locks for long. It returns how many rows the
// runs deleted, also when a later run fails.
//
// The maintenance task uses it on the owner pool: the application role may
// not delete from most tables.
func DeleteBatches(ctx context.Context, pool *pgxpool.Pool, batch int, query string, args ...any) (int64, error) {
	if pool == nil {
		return 0, errors.New("delete in batches: no pool")
	}
	if batch < 1 {
		batch = DefaultPruneBatch
	}
	params := append([]any{batch}, args...)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := pool.Exec(ctx, query, params...)
		if err != nil {
			return total, fmt.Errorf("delete in batches: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
