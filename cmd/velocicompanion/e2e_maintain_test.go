package main

import (
	"context"
	"crypto/sha256"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestMaintainTask runs `velocicompanion maintain` against the server's
// schema: it removes a session that ended over a week ago, with its refresh
// token, keeps the open one (which still refreshes), and a second run
// removes nothing.
func TestMaintainTask(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	var seen secrets
	password := s.bootstrapPassword(t)
	old := s.signIn(t, &seen, "admin", password)
	live := s.signIn(t, &seen, "admin", password)

	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sessions, tokens := pgx.Identifier{s.schema(), "sessions"}.Sanitize(), pgx.Identifier{s.schema(), "refresh_tokens"}.Sanitize()
	hash := sha256.Sum256([]byte(old.RefreshToken))
	tag, err := conn.Exec(ctx, `UPDATE `+sessions+` SET revoked_at = now() - interval '8 days', revoke_reason = 'logout'
		WHERE session_id = (SELECT session_id FROM `+tokens+` WHERE token_hash = $1)`, hash[:])
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("end the old session: %v %v", tag, err)
	}

	out := s.runTask(t, "maintain")
	for _, want := range []string{`refresh_tokens\s+1 rows removed`, `sessions\s+1 rows removed`, `projector_seen\s+0 rows removed`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("maintain printed %q, want a line like %q", out, want)
		}
	}
	r := s.do(t, http.MethodPost, "/api/auth/refresh", "", map[string]string{"refresh_token": live.RefreshToken})
	expectStatus(t, r, http.StatusOK, "refresh the open session after maintenance")
	r = s.do(t, http.MethodPost, "/api/auth/refresh", "", map[string]string{"refresh_token": old.RefreshToken})
	expectStatus(t, r, http.StatusUnauthorized, "refresh the pruned session")

	out = s.runTask(t, "maintain")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasSuffix(line, " 0 rows removed") {
			t.Fatalf("second maintain printed %q", out)
		}
	}
}
