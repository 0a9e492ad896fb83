package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/mail/mailtest"
)

var tokenInLink = regexp.MustCompile(`#token=([A-Za-z0-9_-]+)`)

// mailedToken waits for the n-th mail to addr whose subject contains what and
// returns the token in its link.
func mailedToken(t *testing.T, mp *mailtest.Server, addr, what string, n int) string {
	t.Helper()
	var found []mailtest.Message
	mp.WaitFor(t, 20*time.Second, func(m mailtest.Message) bool {
		found = found[:0]
		for _, msg := range mp.Messages(t) {
			if strings.Contains(strings.ToLower(msg.Subject), what) && strings.Contains(strings.Join(msg.Recipients(), ","), addr) {
				found = append(found, msg)
			}
		}
		return len(found) >= n
	})
	m := found[n-1]
	match := tokenInLink.FindStringSubmatch(m.Text)
	if match == nil {
		t.Fatalf("mail %q has no token link:\n%s", m.Subject, m.Text)
	}
	if !strings.Contains(m.Text, "http://localhost:8000/") {
		t.Fatalf("mail link does not use the configured public base URL:\n%s", m.Text)
	}
	return match[1]
}

func TestEndToEndPasswordResetAndVerification(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	mp := mailtest.Start(t)
	s := startServer(t, mp.Env()...)
	admin := s.login(t, "admin", s.bootstrapPassword(t))
	r := s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Acme"})
	expectStatus(t, r, http.StatusCreated, "tenant")
	var tenant struct{ ID string }
	r.json(t, &tenant)
	const addr = "alice@acme.example"
	r = s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
		"username": "alice", "password": "the first password", "email": addr, "role": "analyst", "tenant_id": tenant.ID})
	expectStatus(t, r, http.StatusCreated, "alice")

	// Known and unknown addresses get the same answer; a forged Host header
	// does not change the link.
	known := s.do(t, http.MethodPost, "/api/auth/password-reset/request", "", map[string]string{"email": addr}, "Host", "evil.example")
	unknown := s.do(t, http.MethodPost, "/api/auth/password-reset/request", "", map[string]string{"email": "nobody@acme.example"})
	if known.status != http.StatusOK || unknown.status != http.StatusOK || string(known.body) != string(unknown.body) {
		t.Fatalf("known %d %s, unknown %d %s", known.status, known.body, unknown.status, unknown.body)
	}
	first := mailedToken(t, mp, addr, "password", 1)
	// A second request supersedes the first link.
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/password-reset/request", "", map[string]string{"email": addr}), http.StatusOK, "second request")
	second := mailedToken(t, mp, addr, "password", 2)
	if first == second {
		t.Fatal("the second mail repeats the first token")
	}
	r = s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": first, "new_password": "the superseded password"})
	expectStatus(t, r, http.StatusBadRequest, "superseded token")
	// The policy applies to the new password, and a refused attempt leaves the token usable.
	r = s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": second, "new_password": "short"})
	expectStatus(t, r, http.StatusUnprocessableEntity, "weak new password")
	r = s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": second, "new_password": "the second password"})
	expectStatus(t, r, http.StatusOK, "reset")
	r = s.do(t, http.MethodPost, "/api/auth/password-reset/confirm", "", map[string]string{"token": second, "new_password": "a third password"})
	expectStatus(t, r, http.StatusBadRequest, "token reuse")
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "alice", "password": "the first password"}),
		http.StatusUnauthorized, "old password")
	alice := s.login(t, "alice", "the second password")
	// Tokens are accepted only in the body.
	r = s.do(t, http.MethodPost, "/api/auth/password-reset/confirm?token="+second, "", map[string]string{"new_password": "the fourth password"})
	if r.status < 400 || r.status >= 500 {
		t.Fatalf("token in query: %d", r.status)
	}

	// E-mail verification.
	r = s.do(t, http.MethodPost, "/api/auth/verify-email/request", alice, nil)
	expectStatus(t, r, http.StatusAccepted, "verification request")
	token := mailedToken(t, mp, addr, "verify", 1)
	r = s.do(t, http.MethodPost, "/api/auth/verify-email/confirm", "", map[string]string{"token": token})
	expectStatus(t, r, http.StatusOK, "verify")
	r = s.do(t, http.MethodGet, "/api/auth/me", alice, nil)
	expectStatus(t, r, http.StatusOK, "me")
	var me struct {
		EmailVerified bool `json:"email_verified"`
	}
	r.json(t, &me)
	if !me.EmailVerified {
		t.Fatalf("me after verification: %s", r.body)
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/verify-email/confirm", "", map[string]string{"token": token}),
		http.StatusBadRequest, "verification token reuse")

	// A tenant that requires verified addresses refuses sign-in until the
	// user follows the link mailed to them at the refused attempt.
	r = s.do(t, http.MethodPatch, "/api/tenants/"+tenant.ID, admin, map[string]any{"require_verified_email": true})
	expectStatus(t, r, http.StatusOK, "require verified e-mail")
	const bobAddr = "bob@acme.example"
	r = s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
		"username": "bob", "password": "bob's own password", "email": bobAddr, "role": "viewer", "tenant_id": tenant.ID})
	expectStatus(t, r, http.StatusCreated, "bob")
	r = s.do(t, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "bob", "password": "bob's own password"})
	expectStatus(t, r, http.StatusForbidden, "unverified sign-in")
	if code := r.errorCode(t); code != "email_not_verified" {
		t.Fatalf("unverified sign-in answered %s", code)
	}
	bobToken := mailedToken(t, mp, bobAddr, "verify", 1)
	expectStatus(t, s.do(t, http.MethodPost, "/api/auth/verify-email/confirm", "", map[string]string{"token": bobToken}), http.StatusOK, "bob verifies")
	s.login(t, "bob", "bob's own password")
	// Alice verified earlier and still signs in.
	s.login(t, "alice", "the second password")

	// No token or password is in the events or the server's log.
	assertEventsClean(t, s, []string{first, second, token, bobToken, "the first password", "the second password"},
		"user.password_reset_requested", "user.password_changed", "user.email_verification_requested", "user.email_verified")
	_, logs := s.output()
	for _, secret := range []string{first, second, token, "the second password"} {
		if strings.Contains(logs, secret) {
			t.Fatal("the server log contains a token or password")
		}
	}
}
