package commands_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"velocicompanion/adapters/auth"
	"velocicompanion/commands"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// captureMailer records the tokens the handler mails.
type captureMailer struct{ tokens chan string }

func (m captureMailer) SendPasswordReset(_ context.Context, _, _, token string, _ time.Duration) error {
	m.tokens <- token
	return nil
}

func (m captureMailer) SendEmailVerification(_ context.Context, _, _, token string, _ time.Duration) error {
	m.tokens <- token
	return nil
}

func (m captureMailer) next(t *testing.T) string {
	t.Helper()
	select {
	case tok := <-m.tokens:
		return tok
	case <-time.After(10 * time.Second):
		t.Fatal("no mail was sent")
		return ""
	}
}

func TestPasswordResetTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	mails := captureMailer{tokens: make(chan string, 10)}
	hasher, err := auth.NewHasher(auth.HasherOptions{Params: auth.MinimumParams})
	if err != nil {
		t.Fatal(err)
	}
	h := commands.New(eventstore.NewStore(f.db.App, commands.NewCodec()), hasher,
		commands.WithClock(f.clock), commands.WithMailer(mails, nil))
	a := f.tenant(t, "Acme")
	res, err := h.RegisterUser(ctx, commands.RegisterUser{Tenant: a, Username: "alice", Email: "alice@acme.example",
		Password: "the first password", Role: users.RoleAnalyst, By: platform})
	if err != nil {
		t.Fatal(err)
	}
	_ = res

	// An unknown address is no error and sends nothing.
	if err := h.RequestPasswordReset(ctx, "nobody@acme.example", eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	if err := h.RequestPasswordReset(ctx, "ALICE@acme.example", eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	expired := mails.next(t)
	f.advance(commands.PasswordResetTTL + time.Second)
	if err := h.ConfirmPasswordReset(ctx, expired, "a brand new password", eventstore.Metadata{}); !errors.Is(err, commands.ErrTokenInvalid) {
		t.Fatalf("expired token: %v", err)
	}
	// At most MaxResetsPerHour mails an hour reach one account.
	for i := 0; i < commands.MaxResetsPerHour+2; i++ {
		if err := h.RequestPasswordReset(ctx, "alice@acme.example", eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	var tokens []string
	for i := 0; i < commands.MaxResetsPerHour; i++ {
		tokens = append(tokens, mails.next(t))
	}
	select {
	case <-mails.tokens:
		t.Fatal("more reset mails than the hourly limit")
	case <-time.After(300 * time.Millisecond):
	}
	// Only the newest token works, once.
	latest := tokens[len(tokens)-1]
	if err := h.ConfirmPasswordReset(ctx, tokens[0], "a brand new password", eventstore.Metadata{}); !errors.Is(err, commands.ErrTokenInvalid) {
		t.Fatalf("superseded token: %v", err)
	}
	if err := h.ConfirmPasswordReset(ctx, latest, "a brand new password", eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	if err := h.ConfirmPasswordReset(ctx, latest, "another new password", eventstore.Metadata{}); !errors.Is(err, commands.ErrTokenInvalid) {
		t.Fatalf("reused token: %v", err)
	}
	if _, _, err := h.Login(ctx, commands.Login{Username: "alice", Password: "a brand new password"}); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
}
