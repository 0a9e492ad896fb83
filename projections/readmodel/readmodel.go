// Package readmodel holds what every read model's queries share: the tenant
// scope applied through row-level security, keyset page cursors, and migration
// file helpers.
//
// Package readmodel imports domain only.
package readmodel

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
)

// Scope is whose rows a query may see: one tenant's, or, for a platform
// administrator's installation-wide listings, every tenant's.
type Scope struct {
	Tenant   domain.TenantID
	Platform bool
}

// Read runs fn in a read-only transaction whose row-level security settings
// are those of scope. The tenant filter in fn's SQL stays the first line of
// defence; the policy is the second.
func Read(ctx context.Context, pool *pgxpool.Pool, scope Scope, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		platform := "off"
		if scope.Platform {
			platform = "on"
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true), set_config('app.platform', $2, true)`,
			string(scope.Tenant), platform); err != nil {
			return err
		}
		return fn(tx)
	})
}

// MaxLimit is the largest page a list query returns.
const MaxLimit = 500

// Page selects one page of a keyset-paginated list.
type Page struct {
	Limit  int
	Cursor []string // the sort key of the last row of the previous page
}

// After returns the first two parts of the cursor, or empty strings.
func (p Page) After() (string, string) {
	if len(p.Cursor) < 2 {
		return "", ""
	}
	return p.Cursor[0], p.Cursor[1]
}

// EncodeCursor packs a row's sort key into an opaque cursor.
func EncodeCursor(parts ...string) string {
	b, _ := json.Marshal(parts)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ErrBadCursor is returned for a cursor this server did not make.
var ErrBadCursor = domain.Invalid("invalid_cursor", "cursor is not valid")

// DecodeCursor unpacks a cursor made by EncodeCursor.
func DecodeCursor(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, ErrBadCursor
	}
	var parts []string
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) == 0 {
		return nil, ErrBadCursor
	}
	return parts, nil
}

// Sub returns the "migrations" directory of an embedded file system.
func Sub(f fs.FS) fs.FS {
	sub, err := fs.Sub(f, "migrations")
	if err != nil {
		panic("readmodel: embedded migrations: " + err.Error())
	}
	return sub
}
