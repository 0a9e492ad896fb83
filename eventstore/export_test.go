package eventstore

import "context"

// CanonicalJSON exposes canonicalJSON to the external tests.
func CanonicalJSON(src []byte) ([]byte, error) { return canonicalJSON(nil, src) }

// SetAfterInsertHook makes every Append of s that has an Also callback call f
// after inserting its events and before committing.
func SetAfterInsertHook(s *Store, f func(ctx context.Context, key Key)) { s.afterInsert = f }

// ReadAllSQL is the query ReadAll runs.
const ReadAllSQL = readAllSQL
