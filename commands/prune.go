package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/eventstore"
)

// Default retentions of Prune.
const (
	// DefaultEndedSessionRetention keeps an ended session and its refresh
	// tokens for a week after it ended, so that a replayed token is still
	// recognised (and recorded) as one for that long.
	DefaultEndedSessionRetention = 7 * 24 * time.Hour
	// DefaultRecoveryTokenRetention keeps a used, superseded or expired
	// recovery token for a week.
	DefaultRecoveryTokenRetention = 7 * 24 * time.Hour
	// DefaultMFATokenUseMargin keeps a spent MFA token's row this long after
	// the token expired: far more than the clock skew that token checks allow
	// (auth.Leeway), after which the token itself is refused.
	DefaultMFATokenUseMargin = time.Hour
)

// Retention says how long Prune keeps rows that no longer decide anything.
// A zero field means its default.
type Retention struct {
	// EndedSessions is how long a session (and its refresh tokens) is kept
	// after it ended: revoked, or past its idle or absolute end.
	EndedSessions time.Duration
	// RecoveryTokens is how long a recovery token is kept after it was used,
	// superseded or expired, whichever came first.
	RecoveryTokens time.Duration
	// MFATokenUses is how long the record of a spent MFA token is kept after
	// the token expired.
	MFATokenUses time.Duration
	// LoginIPWindow is the sign-in throttle's window per address (the
	// server's WithLoginThrottle window); DefaultIPFailureWindow if zero.
	LoginIPWindow time.Duration
	// Batch is how many rows one DELETE removes at most; see
	// eventstore.DeleteBatches.
	Batch int
}

func (r Retention) normalized() Retention {
	or := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	r.EndedSessions = or(r.EndedSessions, DefaultEndedSessionRetention)
	// The reset and verification rate limits count a user's tokens of the
	// last hour: never delete one that young.
	r.RecoveryTokens = max(or(r.RecoveryTokens, DefaultRecoveryTokenRetention), time.Hour)
	r.MFATokenUses = or(r.MFATokenUses, DefaultMFATokenUseMargin)
	r.LoginIPWindow = or(r.LoginIPWindow, DefaultIPFailureWindow)
	return r
}

// Pruned is how many rows a prune removed from one table.
type Pruned struct {
	Table string
	Rows  int64
}

// pruneStep deletes the rows of one table that can no longer matter, with $1
// the batch limit and $2 (and $3) the cutoffs that args returns: rows that
// stopped mattering before them go.
type pruneStep struct {
	table string
	args  func(now time.Time, r Retention) []any
	query string
}

// before returns args for one cutoff, d before now.
func before(d func(Retention) time.Duration) func(time.Time, Retention) []any {
	return func(now time.Time, r Retention) []any { return []any{now.Add(-d(r))} }
}

func endedSessions(r Retention) time.Duration { return r.EndedSessions }

// pruneSteps are in the order Prune runs them: refresh tokens before the
// sessions they reference.
//
// Why each is safe:
//   - refresh_tokens: only those of a session that ended before the cutoff.
//     Refresh refuses every token of an ended session, and an ended session
//     never opens again (revocation is final, a refresh never moves the idle
//     end once it passed, and the absolute end never moves). The only loss is
//     that a replay of such a token, later than the retention, is refused as
//     an unknown token instead of being recorded as a replay.
//   - sessions: the same ended sessions, once no refresh token refers to
//     them. Authenticate treats a missing session as ended, and only open
//     sessions are listed or revoked.
//   - recovery_tokens: tokens used, superseded or expired before the
//     cutoff, which no claim or lookup accepts; the rate limits count only
//     tokens created within the last hour, and a dead token was created
//     before it died.
//   - mfa_token_uses: the spent tokens that expired before the cutoff (their
//     expiry plus a margin): an expired MFA token fails its signature check
//     before its jti is looked up.
//   - login_throttle: counters whose window ended, with the conditions the
//     server itself deletes them on after each failure (recordSignInFailure).
//     The server only does that when a failure happens, so without one the
//     rows stay; deleting them changes no answer.
var pruneSteps = []pruneStep{
	{
		table: "refresh_tokens",
		args:  before(endedSessions),
		query: `DELETE FROM refresh_tokens WHERE token_hash IN (
			SELECT r.token_hash FROM refresh_tokens r JOIN sessions s ON s.session_id = r.session_id
			WHERE ` + sessionEndedBefore + ` LIMIT $1)`,
	},
	{
		table: "sessions",
		args:  before(endedSessions),
		query: `DELETE FROM sessions WHERE session_id IN (
			SELECT s.session_id FROM sessions s
			WHERE ` + sessionEndedBefore + `
				AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.session_id)
			LIMIT $1)`,
	},
	{
		table: "recovery_tokens",
		args:  before(func(r Retention) time.Duration { return r.RecoveryTokens }),
		// least ignores nulls: the moment the token stopped working.
		query: `DELETE FROM recovery_tokens WHERE token_hash IN (
			SELECT token_hash FROM recovery_tokens
			WHERE least(used_at, superseded_at, expires_at) < $2 AND created_at < $2
			LIMIT $1)`,
	},
	{
		table: "mfa_token_uses",
		args:  before(func(r Retention) time.Duration { return r.MFATokenUses }),
		query: `DELETE FROM mfa_token_uses WHERE jti IN (
			SELECT jti FROM mfa_token_uses WHERE expires_at < $2 LIMIT $1)`,
	},
	{
		table: "login_throttle",
		args: func(now time.Time, r Retention) []any {
			return []any{now.Add(-r.LoginIPWindow), now.Add(-unknownNameRetention)}
		},
		query: `DELETE FROM login_throttle WHERE (scope, key) IN (
			SELECT scope, key FROM login_throttle
			WHERE (scope = 'ip' AND last_failure_at < $2) OR (scope = 'username' AND last_failure_at < $3)
			LIMIT $1)`,
	},
}

// sessionEndedBefore is true for a session s that ended before $2.
const sessionEndedBefore = `(s.revoked_at < $2 OR s.idle_expires_at < $2 OR s.absolute_expires_at < $2)`

// Prune deletes the write-side rows that expired beyond r's retentions
// (ended sessions and their refresh tokens, dead recovery tokens, records of
// expired MFA tokens, sign-in throttle counters whose window ended), in
// batches, and reports how many rows it removed per table, in the order it
// pruned them. now is the current time.
//
// owner must be a pool of the owner role: the application role (vc_app) has
// no DELETE on these tables, by design. Prune never touches events,
// identities, live credentials or any record of what happened.
func Prune(ctx context.Context, owner *pgxpool.Pool, now time.Time, r Retention) ([]Pruned, error) {
	r = r.normalized()
	out := make([]Pruned, 0, len(pruneSteps))
	for _, st := range pruneSteps {
		n, err := eventstore.DeleteBatches(ctx, owner, r.Batch, st.query, st.args(now, r)...)
		out = append(out, Pruned{Table: st.table, Rows: n})
		if err != nil {
			return out, fmt.Errorf("prune %s: %w", st.table, err)
		}
	}
	return out, nil
}
