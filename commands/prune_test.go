package commands_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"velocicompanion/commands"
	"velocicompanion/domain/users"
)

// pruned returns p as a map of table to rows.
func pruned(p []commands.Pruned) map[string]int64 {
	m := map[string]int64{}
	for _, x := range p {
		m[x.Table] = x.Rows
	}
	return m
}

// count returns the rows of table that match where, read as the owner.
func (f *fixture) count(t *testing.T, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM `+table+` WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := f.db.Owner.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestPrune(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	f.user(t, a, "dave", users.RoleAnalyst)
	erin := f.user(t, a, "erin", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy // idle 24h

	// dave's session idles out a day after it starts: 9 days before the
	// prune. erin logs out a day before it. carol signs in just before it.
	dave0 := f.signIn(t, "dave", policy)
	f.advance(time.Hour)
	dave1, err := f.refresh(dave0.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	f.advance(9 * 24 * time.Hour)
	gone := f.signIn(t, "erin", policy)
	if _, err := f.h.Logout(ctx, commands.Logout{Tenant: a, User: erin, Session: gone.ID, Meta: meta}); err != nil {
		t.Fatal(err)
	}
	f.advance(24 * time.Hour)
	live := f.signIn(t, "carol", policy)
	now := f.clock()

	// Recovery tokens: dead for 8 days (used, superseded, expired), dead
	// for a day, and live.
	for _, tok := range []struct {
		name             string
		created, expires time.Duration // before now (expires: negative is ahead)
		used, superseded time.Duration // before now; 0 is never
		wantKept         bool
	}{
		{"used-old", 9 * 24 * time.Hour, 8 * 24 * time.Hour, 8*24*time.Hour + time.Minute, 0, false},
		{"superseded-old", 9 * 24 * time.Hour, -time.Hour, 0, 8 * 24 * time.Hour, false},
		{"expired-old", 9 * 24 * time.Hour, 8 * 24 * time.Hour, 0, 0, false},
		{"used-recent", 2 * 24 * time.Hour, 24 * time.Hour, 24 * time.Hour, 0, true},
		{"live", time.Minute, -time.Hour, 0, 0, true},
	} {
		var used, superseded *time.Time
		if tok.used != 0 {
			u := now.Add(-tok.used)
			used = &u
		}
		if tok.superseded != 0 {
			s := now.Add(-tok.superseded)
			superseded = &s
		}
		f.exec(t, `INSERT INTO recovery_tokens (token_hash, purpose, user_id, tenant_id, email, created_at, expires_at, used_at, superseded_at)
			VALUES ($1, 'password_reset', $2, $3, 'carol@example.com', $4, $5, $6, $7)`,
			hashOf(tok.name), string(carol), string(a), now.Add(-tok.created), now.Add(-tok.expires), used, superseded)
	}
	// MFA token uses: 25 expired two hours ago (more than a batch), one
	// expired a minute ago (within the margin), one not expired yet.
	for i := range 25 {
		f.exec(t, `INSERT INTO mfa_token_uses (jti, user_id, used_at, expires_at) VALUES ($1, $2, $3, $4)`,
			fmt.Sprintf("old-%d", i), string(carol), now.Add(-3*time.Hour), now.Add(-2*time.Hour))
	}
	f.exec(t, `INSERT INTO mfa_token_uses (jti, user_id, used_at, expires_at) VALUES
		('recent', $1, $2, $3), ('live', $1, $2, $4)`, string(carol), now.Add(-5*time.Minute), now.Add(-time.Minute), now.Add(time.Minute))
	// Throttle counters: an address whose window (5m) ended and one within
	// it; an unknown name last failed over a day ago and one an hour ago.
	f.exec(t, `INSERT INTO login_throttle (scope, key, failures, window_start, last_failure_at) VALUES
		('ip', 'stale', 3, $1, $1), ('ip', 'fresh', 3, $2, $2),
		('username', 'stale', 3, $3, $3), ('username', 'fresh', 3, $4, $4)`,
		now.Add(-10*time.Minute), now.Add(-time.Minute), now.Add(-25*time.Hour), now.Add(-time.Hour))

	out, err := commands.Prune(ctx, f.db.Owner, now, commands.Retention{Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"refresh_tokens": 2, "sessions": 1, "recovery_tokens": 3, "mfa_token_uses": 25, "login_throttle": 2}
	if got := pruned(out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pruned %v, want %v", got, want)
	}

	// dave's ended session and both its tokens are gone; erin's, ended a
	// day ago, and carol's open one stay.
	if n := f.count(t, "sessions", "session_id = $1", dave0.ID); n != 0 {
		t.Fatal("a session ended 9 days ago was kept")
	}
	if n := f.count(t, "sessions", "session_id = ANY($1)", []string{gone.ID, live.ID}); n != 2 {
		t.Fatalf("%d of the recent sessions kept, want 2", n)
	}
	if n := f.count(t, "refresh_tokens", "session_id = ANY($1)", []string{gone.ID, live.ID}); n != 2 {
		t.Fatalf("%d refresh tokens of the recent sessions kept, want 2", n)
	}
	// The live session still refreshes, the pruned one does not, and the
	// ended one that was kept still detects a replay.
	if _, err := f.refresh(live.RefreshToken, policy); err != nil {
		t.Fatalf("refresh a live session after pruning: %v", err)
	}
	if _, err := f.refresh(dave1.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("refresh a pruned session: %v", err)
	}
	if !f.sessionOpen(t, live) || f.sessionOpen(t, dave1) {
		t.Fatal("authentication changed with pruning")
	}
	for _, kept := range []string{"used-recent", "live"} {
		if f.count(t, "recovery_tokens", "token_hash = $1", hashOf(kept)) != 1 {
			t.Fatalf("recovery token %s was pruned", kept)
		}
	}
	if n := f.count(t, "mfa_token_uses", "jti IN ('recent', 'live')"); n != 2 {
		t.Fatalf("%d MFA token uses within their margin kept, want 2", n)
	}
	if n := f.count(t, "login_throttle", "key = 'fresh'"); n != 2 {
		t.Fatalf("%d live throttle counters kept, want 2", n)
	}

	// A second run finds nothing more.
	out, err = commands.Prune(ctx, f.db.Owner, now, commands.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range out {
		if p.Rows != 0 {
			t.Fatalf("second prune removed %d rows of %s", p.Rows, p.Table)
		}
	}
	// Nothing of the record goes: the events stay as they were.
	if n := f.count(t, "events", "tenant_id = $1 AND stream_type = 'user' AND stream_id = $2", string(a), string(dave0.Identity.User)); n == 0 {
		t.Fatal("dave's events are gone")
	}
}

// TestPruneNeedsTheOwner shows why the task runs on the owner pool: the
// application role may not delete sessions.
func TestPruneNeedsTheOwner(t *testing.T) {
	f := newFixture(t)
	if _, err := commands.Prune(context.Background(), f.db.App, f.clock(), commands.Retention{}); err == nil {
		t.Fatal("the application role pruned sessions")
	}
}
