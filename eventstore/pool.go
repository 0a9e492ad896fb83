package eventstore

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AppRole is the database role the application's queries run as. It may read
// and append events but never update or delete them; every component's
// migrations grant it what its tables need.
const AppRole = "vc_app"

// OwnerPoolConfig parses url into a pool configuration for migrations and
// administration: queries run as the connecting role, with search_path set to
// schema unless schema is "".
func OwnerPoolConfig(url string, schema string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if schema != "" {
		if err := ValidateSchemaName(schema); err != nil {
			return nil, err
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	}
	return cfg, nil
}

// AppPoolConfig is OwnerPoolConfig whose sessions run as AppRole (the login
// role must be a member of it, or a superuser).
func AppPoolConfig(url string, schema string) (*pgxpool.Config, error) {
	cfg, err := OwnerPoolConfig(url, schema)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["role"] = AppRole
	return cfg, nil
}

// ValidateSchemaName accepts a schema name made of ASCII letters, digits and
// underscores, not starting with a digit, of at most 63 bytes. Callers still
// quote it (pgx.Identifier) wherever it reaches SQL.
func ValidateSchemaName(schema string) error {
	if schema == "" || len(schema) > 63 {
		return fmt.Errorf("invalid schema name %q: want 1 to 63 bytes", schema)
	}
	for i, c := range []byte(schema) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return fmt.Errorf("invalid schema name %q: only letters, digits and '_', not starting with a digit", schema)
		}
	}
	return nil
}
