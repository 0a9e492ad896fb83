package commands_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/apikeys"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

var meta = eventstore.Metadata{SourceIP: "192.0.2.10", UserAgent: "session-test/1"}

func (f *fixture) signIn(t *testing.T, username string, policy commands.SessionPolicy) commands.Session {
	t.Helper()
	s, err := f.h.SignIn(context.Background(), commands.Login{Username: username, Password: "password of " + username, Meta: meta}, policy)
	if err != nil {
		t.Fatalf("sign in %s: %v", username, err)
	}
	return s
}

func (f *fixture) refresh(token string, policy commands.SessionPolicy) (commands.Session, error) {
	return f.h.Refresh(context.Background(), commands.Refresh{Token: token, Policy: policy, Meta: meta})
}

// sessionOpen reports whether an access token of s would still be accepted.
func (f *fixture) sessionOpen(t *testing.T, s commands.Session) bool {
	t.Helper()
	_, err := f.h.Authenticate(context.Background(), s.Identity.User, s.ID)
	switch {
	case err == nil:
		return true
	case errors.Is(err, commands.ErrSessionEnded):
		return false
	}
	t.Fatalf("authenticate: %v", err)
	return false
}

// userEvents returns the events of a user's stream.
func (f *fixture) userEvents(t *testing.T, tenant domain.TenantID, user domain.UserID) []eventstore.Envelope {
	t.Helper()
	envs, err := f.st.Load(context.Background(), eventstore.Key{Tenant: tenant, Type: "user", ID: string(user)})
	if err != nil {
		t.Fatal(err)
	}
	return envs
}

func countEvents(envs []eventstore.Envelope, name string) int {
	n := 0
	for _, e := range envs {
		if e.Name == name {
			n++
		}
	}
	return n
}

// assertNoSecrets fails if any event or metadata stored carries one of secrets.
func (f *fixture) assertNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	rows, err := f.db.Owner.Query(context.Background(), `SELECT name, payload::text, metadata::text FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, payload, md string
		if err := rows.Scan(&name, &payload, &md); err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if s != "" && (strings.Contains(payload, s) || strings.Contains(md, s)) {
				t.Fatalf("event %s carries a secret", name)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSignInOpensSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)

	s := f.signIn(t, "carol", commands.DefaultSessionPolicy)
	if s.ID == "" || len(s.RefreshToken) != 43 || s.Identity.User != carol || s.Result.Position == 0 {
		t.Fatalf("session %+v", s)
	}
	if want := f.clock().Add(30 * 24 * time.Hour); !s.ExpiresAt.Equal(want) {
		t.Fatalf("absolute end %v, want %v", s.ExpiresAt, want)
	}
	if !f.sessionOpen(t, s) {
		t.Fatal("new session is not open")
	}
	// A made-up session id, or another user's, is not open.
	if _, err := f.h.Authenticate(ctx, carol, "0190c7a4-0000-7000-8000-000000000000"); !errors.Is(err, commands.ErrSessionEnded) {
		t.Fatalf("unknown session: %v", err)
	}
	f.user(t, a, "dave", users.RoleViewer)
	dave := f.signIn(t, "dave", commands.DefaultSessionPolicy)
	if _, err := f.h.Authenticate(ctx, carol, dave.ID); !errors.Is(err, commands.ErrSessionEnded) {
		t.Fatalf("another user's session: %v", err)
	}

	var ip, ua string
	var abs, created time.Time
	if err := f.db.Owner.QueryRow(ctx, `SELECT ip, user_agent, absolute_expires_at, created_at FROM sessions WHERE session_id = $1`, s.ID).
		Scan(&ip, &ua, &abs, &created); err != nil {
		t.Fatal(err)
	}
	if ip != meta.SourceIP || ua != meta.UserAgent || !abs.Equal(created.Add(30*24*time.Hour)) {
		t.Fatalf("session row: %s %s %v %v", ip, ua, created, abs)
	}
	envs := f.userEvents(t, a, carol)
	if countEvents(envs, users.EventLoggedIn) != 1 || countEvents(envs, users.EventSessionStarted) != 1 {
		t.Fatalf("sign-in recorded %v", envs)
	}
	for _, e := range envs {
		if st, ok := e.Event.(users.SessionStarted); ok && st.Session != s.ID {
			t.Fatalf("session_started names %s, want %s", st.Session, s.ID)
		}
	}
	// Only the token's SHA-256 is stored, and no event carries the token.
	var n int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM refresh_tokens
		WHERE session_id = $2 AND token_hash = sha256(convert_to($1, 'UTF8'))`, s.RefreshToken, s.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatal("the refresh token is not stored as its SHA-256")
	}
	f.assertNoSecrets(t, s.RefreshToken, dave.RefreshToken, "password of carol")
}

func TestRefreshRotates(t *testing.T) {
	f := newFixture(t)
	a := f.tenant(t, "Acme")
	f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy
	s0 := f.signIn(t, "carol", policy)

	f.advance(10 * time.Minute)
	s1, err := f.refresh(s0.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	if s1.ID != s0.ID || s1.RefreshToken == s0.RefreshToken || !s1.ExpiresAt.Equal(s0.ExpiresAt) ||
		s1.Identity.User != s0.Identity.User || s1.Identity.Epoch != s0.Identity.Epoch {
		t.Fatalf("refresh gave %+v after %+v", s1, s0)
	}
	if want := f.clock().Add(policy.IdleTimeout); !s1.IdleExpiresAt.Equal(want) {
		t.Fatalf("idle end %v, want %v", s1.IdleExpiresAt, want)
	}
	f.advance(10 * time.Minute)
	s2, err := f.refresh(s1.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	if s2.RefreshToken == s1.RefreshToken || s2.ID != s0.ID {
		t.Fatalf("second refresh gave %+v", s2)
	}
	// Malformed and unknown tokens are refused alike.
	for _, bad := range []string{"", "short", strings.Repeat("A", 43), s2.RefreshToken + "x", strings.ToUpper(s2.RefreshToken)} {
		if _, err := f.refresh(bad, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
			t.Fatalf("refresh %q: %v", bad, err)
		}
	}
	if !f.sessionOpen(t, s2) {
		t.Fatal("rotation closed the session")
	}
	// Refreshing records no event: only the sign-in did.
	envs := f.userEvents(t, a, s0.Identity.User)
	if n := countEvents(envs, users.EventSessionStarted); n != 1 || len(envs) != 3 {
		t.Fatalf("stream after refreshes has %d events", len(envs))
	}
	var lastUsed time.Time
	if err := f.db.Owner.QueryRow(context.Background(), `SELECT last_used_at FROM sessions WHERE session_id = $1`, s0.ID).Scan(&lastUsed); err != nil {
		t.Fatal(err)
	}
	if !lastUsed.Equal(f.clock()) {
		t.Fatalf("last used %v, want %v", lastUsed, f.clock())
	}
	f.assertNoSecrets(t, s0.RefreshToken, s1.RefreshToken, s2.RefreshToken)
}

func TestRefreshReuseRevokesTheFamily(t *testing.T) {
	f := newFixture(t)
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy
	s0 := f.signIn(t, "carol", policy)
	other := f.signIn(t, "carol", policy) // another device: not part of the family
	s1, err := f.refresh(s0.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	f.advance(policy.ReuseGrace + time.Second)

	// The old token comes back: a replay. Refused, and the whole session ends.
	if _, err := f.refresh(s0.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := f.refresh(s1.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("the newer token after the replay: %v", err)
	}
	if f.sessionOpen(t, s1) {
		t.Fatal("the session survived a replay")
	}
	if !f.sessionOpen(t, other) {
		t.Fatal("a replay ended another session of the user")
	}
	if _, err := f.refresh(other.RefreshToken, policy); err != nil {
		t.Fatalf("the other session's token: %v", err)
	}

	envs := f.userEvents(t, a, carol)
	var reused *users.RefreshTokenReused
	var revoked *users.SessionRevoked
	for _, e := range envs {
		switch ev := e.Event.(type) {
		case users.RefreshTokenReused:
			reused = &ev
			if e.Metadata.SourceIP != meta.SourceIP {
				t.Fatalf("reuse metadata %+v", e.Metadata)
			}
		case users.SessionRevoked:
			revoked = &ev
		}
	}
	if reused == nil || reused.Session != s0.ID || reused.SourceIP != meta.SourceIP || reused.UserAgent != meta.UserAgent {
		t.Fatalf("reuse event %+v", reused)
	}
	if revoked == nil || revoked.Session != s0.ID || revoked.Reason != users.RevokedTokenReused {
		t.Fatalf("revocation event %+v", revoked)
	}
	// A further replay is recorded again, but revokes nothing more.
	if _, err := f.refresh(s0.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatal(err)
	}
	envs = f.userEvents(t, a, carol)
	if countEvents(envs, users.EventRefreshTokenReused) != 2 || countEvents(envs, users.EventSessionRevoked) != 1 {
		t.Fatalf("after a second replay: %d reuses, %d revocations",
			countEvents(envs, users.EventRefreshTokenReused), countEvents(envs, users.EventSessionRevoked))
	}
	var reason string
	if err := f.db.Owner.QueryRow(context.Background(), `SELECT revoke_reason FROM sessions WHERE session_id = $1`, s0.ID).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if reason != users.RevokedTokenReused {
		t.Fatalf("revoke reason %q", reason)
	}
	f.assertNoSecrets(t, s0.RefreshToken, s1.RefreshToken, other.RefreshToken)
}

// Two tabs of one client refreshing with the same token at once: the loser is
// refused but the session lives on, as long as the loser comes within the
// grace and the winner's new token was not used yet.
func TestRefreshRaceWithinGrace(t *testing.T) {
	f := newFixture(t)
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy
	s0 := f.signIn(t, "carol", policy)
	s1, err := f.refresh(s0.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	f.advance(policy.ReuseGrace / 2)
	if _, err := f.refresh(s0.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("loser of the race: %v", err)
	}
	if !f.sessionOpen(t, s1) {
		t.Fatal("a race within the grace ended the session")
	}
	if countEvents(f.userEvents(t, a, carol), users.EventRefreshTokenReused) != 0 {
		t.Fatal("a race within the grace was recorded as a replay")
	}
	s2, err := f.refresh(s1.RefreshToken, policy)
	if err != nil {
		t.Fatalf("the winner's token after the race: %v", err)
	}
	// Once the successor was used, the old token is a replay even within the grace.
	s3, err := f.refresh(s2.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.refresh(s1.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatal(err)
	}
	if f.sessionOpen(t, s3) {
		t.Fatal("replaying a token whose successor was used did not end the session")
	}

	// Without a grace, even an immediate second use is a replay.
	strict := policy
	strict.ReuseGrace = 0
	t0 := f.signIn(t, "carol", strict)
	if _, err := f.refresh(t0.RefreshToken, strict); err != nil {
		t.Fatal(err)
	}
	if _, err := f.refresh(t0.RefreshToken, strict); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatal(err)
	}
	if f.sessionOpen(t, t0) {
		t.Fatal("with no grace, a second use did not end the session")
	}
}

func TestConcurrentRefreshHasOneWinner(t *testing.T) {
	f := newFixture(t)
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy
	s0 := f.signIn(t, "carol", policy)

	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make(chan error, n)
	tokens := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, err := f.refresh(s0.RefreshToken, policy)
			if err == nil {
				tokens <- s.RefreshToken
			}
			results <- err
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	close(tokens)
	var ok, refused int
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, commands.ErrRefreshInvalid):
			refused++
		default:
			t.Fatalf("refresh: %v", err)
		}
	}
	if ok != 1 || refused != n-1 {
		t.Fatalf("%d succeeded and %d were refused, want 1 and %d", ok, refused, n-1)
	}
	// The losers came within the grace: the session and the winner's token live on.
	winner := <-tokens
	if _, err := f.refresh(winner, policy); err != nil {
		t.Fatalf("the winner's token: %v", err)
	}
	if countEvents(f.userEvents(t, a, carol), users.EventRefreshTokenReused) != 0 {
		t.Fatal("losers of a race were recorded as replays")
	}
	var issued int
	if err := f.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM refresh_tokens WHERE session_id = $1`, s0.ID).Scan(&issued); err != nil {
		t.Fatal(err)
	}
	if issued != 3 { // the first, the winner's and its successor
		t.Fatalf("%d refresh tokens issued, want 3", issued)
	}
}

func TestSessionLifetimeIsAbsolute(t *testing.T) {
	f := newFixture(t)
	a := f.tenant(t, "Acme")
	f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy
	s := f.signIn(t, "carol", policy)
	first := s
	// Refreshing every 20 hours keeps the session from idling out, but not
	// beyond its 30 days.
	for f.clock().Add(20 * time.Hour).Before(first.ExpiresAt) {
		f.advance(20 * time.Hour)
		next, err := f.refresh(s.RefreshToken, policy)
		if err != nil {
			t.Fatalf("refresh at %v: %v", f.clock(), err)
		}
		if !next.ExpiresAt.Equal(first.ExpiresAt) || next.IdleExpiresAt.After(first.ExpiresAt) {
			t.Fatalf("refresh moved the absolute end: %v → %v (idle %v)", first.ExpiresAt, next.ExpiresAt, next.IdleExpiresAt)
		}
		s = next
	}
	if !f.sessionOpen(t, s) {
		t.Fatal("session ended before its lifetime")
	}
	f.advance(first.ExpiresAt.Sub(f.clock()))
	if f.sessionOpen(t, s) {
		t.Fatal("access tokens still work after the absolute end")
	}
	if _, err := f.refresh(s.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("refresh after the absolute end: %v", err)
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	f := newFixture(t)
	a := f.tenant(t, "Acme")
	f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.SessionPolicy{Lifetime: 30 * 24 * time.Hour, IdleTimeout: time.Hour}
	s := f.signIn(t, "carol", policy)
	f.advance(59 * time.Minute)
	s, err := f.refresh(s.RefreshToken, policy)
	if err != nil {
		t.Fatal(err)
	}
	f.advance(61 * time.Minute)
	if _, err := f.refresh(s.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("refresh after idling: %v", err)
	}
	if f.sessionOpen(t, s) {
		t.Fatal("idle session still open")
	}
	list, err := f.h.ListSessions(context.Background(), a, s.Identity.User, "", 100)
	if err != nil || len(list) != 0 {
		t.Fatalf("idle session listed: %v %v", list, err)
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	policy := commands.DefaultSessionPolicy
	s := f.signIn(t, "carol", policy)
	keep := f.signIn(t, "carol", policy)

	res, err := f.h.Logout(ctx, commands.Logout{Tenant: a, User: carol, Session: s.ID, Meta: meta})
	if err != nil || res.Position == 0 {
		t.Fatalf("logout: %+v %v", res, err)
	}
	if f.sessionOpen(t, s) {
		t.Fatal("access tokens work after logout")
	}
	if _, err := f.refresh(s.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
		t.Fatalf("refresh after logout: %v", err)
	}
	if !f.sessionOpen(t, keep) {
		t.Fatal("logout ended another session")
	}
	// Logging out again records nothing; another user's session is not found.
	if _, err := f.h.Logout(ctx, commands.Logout{Tenant: a, User: carol, Session: s.ID, Meta: meta}); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(f.userEvents(t, a, carol), users.EventLoggedOut); n != 1 {
		t.Fatalf("%d logged_out events, want 1", n)
	}
	dave := f.user(t, a, "dave", users.RoleViewer)
	if _, err := f.h.Logout(ctx, commands.Logout{Tenant: a, User: dave, Session: keep.ID, Meta: meta}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("logging out someone else's session: %v", err)
	}
	if !f.sessionOpen(t, keep) {
		t.Fatal("someone else ended carol's session")
	}
}

func TestAccountChangesEndSessions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	admin := f.user(t, a, "admin1", users.RoleAdmin)
	by := users.Actor{User: admin, Tenant: a, Role: users.RoleAdmin}
	policy := commands.DefaultSessionPolicy
	pw := "a brand new password"
	viewer, off := users.RoleViewer, false

	for _, tc := range []struct {
		name   string
		change func(u domain.UserID) error
		reason string
	}{
		{"password", func(u domain.UserID) error {
			_, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: u, Password: &pw, By: by})
			return err
		}, users.ReasonPasswordChanged},
		{"role", func(u domain.UserID) error {
			_, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: u, Role: &viewer, By: by})
			return err
		}, users.ReasonRoleChanged},
		{"disable", func(u domain.UserID) error {
			_, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: u, Active: &off, By: by})
			return err
		}, users.ReasonUserDisabled},
		{"delete", func(u domain.UserID) error {
			_, err := f.h.DeleteUser(ctx, commands.DeleteUser{Tenant: a, User: u, By: by})
			return err
		}, users.ReasonUserDeleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "user-" + tc.name
			u := f.user(t, a, name, users.RoleAnalyst)
			s1, s2 := f.signIn(t, name, policy), f.signIn(t, name, policy)
			bystander := f.signIn(t, "admin1", policy)
			if err := tc.change(u); err != nil {
				t.Fatal(err)
			}
			for _, s := range []commands.Session{s1, s2} {
				if _, err := f.refresh(s.RefreshToken, policy); !errors.Is(err, commands.ErrRefreshInvalid) {
					t.Fatalf("refresh after the change: %v", err)
				}
				var reason string
				if err := f.db.Owner.QueryRow(ctx, `SELECT revoke_reason FROM sessions WHERE session_id = $1`, s.ID).Scan(&reason); err != nil {
					t.Fatal(err)
				}
				if reason != tc.reason {
					t.Fatalf("revoke reason %q, want %q", reason, tc.reason)
				}
			}
			if !f.sessionOpen(t, bystander) {
				t.Fatal("another user's session ended")
			}
		})
	}
}

func TestSignInRacingPasswordChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	id, err := f.h.VerifyPassword(ctx, commands.Login{Username: "carol", Password: "password of carol"})
	if err != nil {
		t.Fatal(err)
	}
	// The password changes between the password step and the session.
	pw := "a brand new password"
	if _, err := f.h.UpdateUser(ctx, commands.UpdateUser{Tenant: a, User: carol, Password: &pw,
		By: users.Actor{User: carol, Tenant: a, Role: users.RoleAnalyst}}); err != nil {
		t.Fatal(err)
	}
	_, err = f.h.StartSession(ctx, commands.StartSession{Identity: id, Method: users.MethodPassword, Policy: commands.DefaultSessionPolicy})
	if !errors.Is(err, commands.ErrSignInAgain) {
		t.Fatalf("session for the old password: %v", err)
	}
	var n int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE user_id = $1`, string(carol)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d sessions left behind", n)
	}
}

func TestRevokeAndListSessions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	b := f.tenant(t, "Globex")
	admin := f.user(t, a, "admin1", users.RoleAdmin)
	carol := f.user(t, a, "carol", users.RoleAnalyst)
	dave := f.user(t, a, "dave", users.RoleAnalyst)
	bob := f.user(t, b, "bob", users.RoleAdmin)
	policy := commands.DefaultSessionPolicy
	asAdmin := users.Actor{User: admin, Tenant: a, Role: users.RoleAdmin}
	asCarol := users.Actor{User: carol, Tenant: a, Role: users.RoleAnalyst}
	asDave := users.Actor{User: dave, Tenant: a, Role: users.RoleAnalyst}
	asBob := users.Actor{User: bob, Tenant: b, Role: users.RoleAdmin}

	var sessions []commands.Session
	for range 5 {
		f.advance(time.Second)
		sessions = append(sessions, f.signIn(t, "carol", policy))
	}
	// Newest first, in pages.
	page1, err := f.h.ListSessions(ctx, a, carol, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	page2, err := f.h.ListSessions(ctx, a, carol, page1[len(page1)-1].ID, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(page1) != 3 || len(page2) != 2 || page1[0].ID != sessions[4].ID || page2[1].ID != sessions[0].ID {
		t.Fatalf("pages %v / %v", page1, page2)
	}
	if page1[0].IP != meta.SourceIP || page1[0].UserAgent != meta.UserAgent || page1[0].CreatedAt.IsZero() {
		t.Fatalf("session info %+v", page1[0])
	}
	// Carol ends one of hers; dave cannot end hers (not found), nor can an
	// admin of another tenant.
	_, n, err := f.h.RevokeSessions(ctx, commands.RevokeSessions{Tenant: a, User: carol, Session: sessions[0].ID, By: asCarol, Meta: meta})
	if err != nil || n != 1 {
		t.Fatalf("own revocation: %d %v", n, err)
	}
	if _, _, err := f.h.RevokeSessions(ctx, commands.RevokeSessions{Tenant: a, User: dave, Session: sessions[1].ID, By: asDave}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("dave naming carol's session as his: %v", err)
	}
	if _, _, err := f.h.RevokeSessions(ctx, commands.RevokeSessions{Tenant: a, User: carol, Session: sessions[1].ID, By: asDave}); !errors.Is(err, users.ErrNotAllowed) {
		t.Fatalf("dave ending carol's session: %v", err)
	}
	if _, _, err := f.h.RevokeSessions(ctx, commands.RevokeSessions{Tenant: b, User: carol, By: asBob}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("other tenant's admin: %v", err)
	}
	if _, err := f.h.ListSessions(ctx, b, carol, "", 10); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("listing under another tenant: %v", err)
	}
	// Revoking it again records nothing.
	if _, n, err := f.h.RevokeSessions(ctx, commands.RevokeSessions{Tenant: a, User: carol, Session: sessions[0].ID, By: asCarol}); err != nil || n != 0 {
		t.Fatalf("second revocation: %d %v", n, err)
	}
	// The admin ends the rest.
	_, n, err = f.h.RevokeSessions(ctx, commands.RevokeSessions{Tenant: a, User: carol, By: asAdmin, Meta: meta})
	if err != nil || n != 4 {
		t.Fatalf("admin ended %d sessions: %v", n, err)
	}
	for _, s := range sessions {
		if f.sessionOpen(t, s) {
			t.Fatalf("session %s still open", s.ID)
		}
	}
	if list, err := f.h.ListSessions(ctx, a, carol, "", 10); err != nil || len(list) != 0 {
		t.Fatalf("after revoking all: %v %v", list, err)
	}
	envs := f.userEvents(t, a, carol)
	byAdmin := 0
	for _, e := range envs {
		if r, ok := e.Event.(users.SessionRevoked); ok && r.Reason == users.RevokedByAdmin && r.By == admin {
			byAdmin++
		}
	}
	if byAdmin != 4 || countEvents(envs, users.EventSessionRevoked) != 5 {
		t.Fatalf("%d revocations by the admin of %d", byAdmin, countEvents(envs, users.EventSessionRevoked))
	}
}

func TestAPIKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	b := f.tenant(t, "Globex")
	admin := f.user(t, a, "admin1", users.RoleAdmin)
	asAdmin := users.Actor{User: admin, Tenant: a, Role: users.RoleAdmin}
	asBob := users.Actor{User: f.user(t, b, "bob", users.RoleAdmin), Tenant: b, Role: users.RoleAdmin}
	month := f.clock().Add(30 * 24 * time.Hour)

	k, err := f.h.CreateAPIKey(ctx, commands.CreateAPIKey{Tenant: a, Name: "ci", Role: users.RoleAnalyst, ExpiresAt: month, By: asAdmin, Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	want := commands.APIKeyPrefix + string(k.State.ID) + "_"
	if !strings.HasPrefix(k.Key, want) || len(k.Key) != len(want)+43 || k.Result.Position == 0 {
		t.Fatalf("created %+v", k)
	}
	who, err := f.h.AuthenticateAPIKey(ctx, k.Key)
	if err != nil {
		t.Fatal(err)
	}
	if who.ID != k.State.ID || who.Tenant != a || who.Role != users.RoleAnalyst || who.Name != "ci" || who.Actor() != domain.UserID("apikey:"+string(k.State.ID)) {
		t.Fatalf("key acts as %+v", who)
	}
	// A changed secret, another key's id, and garbage are refused alike.
	other, err := f.h.CreateAPIKey(ctx, commands.CreateAPIKey{Tenant: a, Name: "other", Role: users.RoleViewer, ExpiresAt: month, By: asAdmin})
	if err != nil {
		t.Fatal(err)
	}
	secret := k.Key[len(want):]
	flipped := "A" // a last character other than the key's own
	if strings.HasSuffix(k.Key, "A") {
		flipped = "B"
	}
	for _, bad := range []string{
		k.Key[:len(k.Key)-1] + flipped, k.Key[:len(k.Key)-1],
		commands.APIKeyPrefix + string(other.State.ID) + "_" + secret,
		commands.APIKeyPrefix + "0190c7a4-0000-7000-8000-000000000000_" + secret,
		"vck_", "vck__", "vck_x", k.Key[4:],
	} {
		if _, err := f.h.AuthenticateAPIKey(ctx, bad); !errors.Is(err, commands.ErrAPIKeyInvalid) {
			t.Fatalf("key %q: %v", bad, err)
		}
	}
	// Rules: role, expiry, and only the tenant's own admins.
	for _, tc := range []struct {
		cmd  commands.CreateAPIKey
		want error
	}{
		{commands.CreateAPIKey{Tenant: a, Name: "x", Role: users.RolePlatformAdmin, ExpiresAt: month, By: asAdmin}, apikeys.ErrRoleInvalid},
		{commands.CreateAPIKey{Tenant: a, Name: "x", Role: users.RoleViewer, By: asAdmin}, apikeys.ErrExpiryMissing},
		{commands.CreateAPIKey{Tenant: a, Name: "x", Role: users.RoleViewer, ExpiresAt: f.clock().AddDate(1, 0, 2), By: asAdmin}, apikeys.ErrExpiryTooFar},
		{commands.CreateAPIKey{Tenant: a, Name: "x", Role: users.RoleViewer, ExpiresAt: month, By: asBob}, domain.ErrNotFound},
	} {
		if _, err := f.h.CreateAPIKey(ctx, tc.cmd); !errors.Is(err, tc.want) {
			t.Fatalf("create %+v: %v, want %v", tc.cmd, err, tc.want)
		}
	}
	list, err := f.h.ListAPIKeys(ctx, a, "", 10)
	if err != nil || len(list) != 2 || list[0].ID != other.State.ID || list[1].CreatedBy != admin {
		t.Fatalf("list %+v %v", list, err)
	}
	if l, err := f.h.ListAPIKeys(ctx, b, "", 10); err != nil || len(l) != 0 {
		t.Fatalf("other tenant lists %v %v", l, err)
	}

	// Revocation works at once; another tenant's admin cannot revoke.
	if _, err := f.h.RevokeAPIKey(ctx, commands.RevokeAPIKey{Tenant: b, ID: k.State.ID, By: asBob}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("cross-tenant revoke: %v", err)
	}
	if _, err := f.h.AuthenticateAPIKey(ctx, k.Key); err != nil {
		t.Fatalf("key after a refused revocation: %v", err)
	}
	if _, err := f.h.RevokeAPIKey(ctx, commands.RevokeAPIKey{Tenant: a, ID: k.State.ID, By: asAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.AuthenticateAPIKey(ctx, k.Key); !errors.Is(err, commands.ErrAPIKeyInvalid) {
		t.Fatalf("revoked key: %v", err)
	}
	// Expiry, with the injected clock.
	if _, err := f.h.AuthenticateAPIKey(ctx, other.Key); err != nil {
		t.Fatal(err)
	}
	f.advance(month.Sub(f.clock()))
	if _, err := f.h.AuthenticateAPIKey(ctx, other.Key); !errors.Is(err, commands.ErrAPIKeyInvalid) {
		t.Fatalf("expired key: %v", err)
	}
	// A deactivated tenant's keys stop working.
	third, err := f.h.CreateAPIKey(ctx, commands.CreateAPIKey{Tenant: a, Name: "third", Role: users.RoleViewer, ExpiresAt: f.clock().Add(time.Hour), By: asAdmin})
	if err != nil {
		t.Fatal(err)
	}
	off := false
	if _, err := f.h.UpdateTenant(ctx, commands.UpdateTenant{Tenant: a, Active: &off, By: platform.User}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.AuthenticateAPIKey(ctx, third.Key); !errors.Is(err, commands.ErrAPIKeyInvalid) {
		t.Fatalf("key of an inactive tenant: %v", err)
	}
	f.assertNoSecrets(t, secret, other.Key[len(other.Key)-43:], third.Key[len(third.Key)-43:])
}
