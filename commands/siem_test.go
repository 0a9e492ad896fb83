package commands_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"velocicompanion/adapters/secrets"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/siem"
	"velocicompanion/domain/users"
)

func siemFixture(t *testing.T) (*fixture, *commands.SIEM) {
	t.Helper()
	f := newFixture(t)
	key := bytes.Repeat([]byte{7}, secrets.KeyLen)
	kr, err := secrets.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return f, commands.NewSIEM(f.h, kr)
}

func splunkSettings() siem.Settings {
	return siem.Settings{Name: "Splunk", Enabled: true, TLPCeiling: "amber",
		Config: siem.Config{Kind: siem.KindSplunk, URL: "https://splunk.example:8088", Index: "main", Ack: true},
		Filter: siem.Filter{Types: []string{"user.*"}, MinThreat: "low"}}
}

func TestSIEMDestinationLifecycle(t *testing.T) {
	f, s := siemFixture(t)
	ctx := context.Background()
	t1, t2 := f.tenant(t, "one"), f.tenant(t, "two")
	admin := users.Actor{User: f.user(t, t1, "alice", users.RoleAdmin), Tenant: t1, Role: users.RoleAdmin}
	analyst := users.Actor{User: f.user(t, t1, "bob", users.RoleAnalyst), Tenant: t1, Role: users.RoleAnalyst}
	otherAdmin := users.Actor{User: f.user(t, t2, "carol", users.RoleAdmin), Tenant: t2, Role: users.RoleAdmin}
	const token = "hec-token-0123456789abcdef"

	d, res, err := s.Create(ctx, commands.CreateSIEMDestination{Tenant: t1, Settings: splunkSettings(), Secret: token, By: admin})
	if err != nil {
		t.Fatal(err)
	}
	if !d.HasSecret || d.Version != 1 || res.Version != 1 || res.Position == 0 || d.Settings.Name != "Splunk" {
		t.Fatalf("created %+v %+v", d, res)
	}

	// The secret is nowhere in the events, sealed in the table, and opens.
	var payloads, sealed []byte
	if err := f.db.Owner.QueryRow(ctx, `SELECT string_agg(payload::text, ' ')::bytea FROM events`).Scan(&payloads); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(payloads, []byte(token)) {
		t.Fatal("secret in the event stream")
	}
	if err := f.db.Owner.QueryRow(ctx, `SELECT sealed_secret FROM siem_destinations`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(token)) {
		t.Fatal("secret stored in clear")
	}
	if got, err := s.Secret(ctx, t1, d.ID); err != nil || got != token {
		t.Fatalf("Secret = %q, %v", got, err)
	}
	if _, err := s.Secret(ctx, t2, d.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("Secret of another tenant: %v", err)
	}

	// Another tenant and a non-admin cannot change it.
	name := "renamed"
	if _, _, err := s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t2, ID: d.ID, Name: &name, By: otherAdmin}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("cross-tenant update: %v", err)
	}
	if _, _, err := s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t1, ID: d.ID, Name: &name, By: analyst}); !errors.Is(err, siem.ErrNotAllowed) {
		t.Fatalf("analyst update: %v", err)
	}
	if _, err := s.Delete(ctx, commands.DeleteSIEMDestination{Tenant: t2, ID: d.ID, By: otherAdmin}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("cross-tenant delete: %v", err)
	}

	// Update: rename, a stale If-Match, a new secret, removing a required secret.
	if _, _, err := s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t1, ID: d.ID, Name: &name, IfMatch: 7, By: admin}); !errors.Is(err, commands.ErrStale) {
		t.Fatalf("stale update: %v", err)
	}
	d, res, err = s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t1, ID: d.ID, Name: &name, IfMatch: 1, By: admin})
	if err != nil || d.Settings.Name != name || d.Version != 2 || res.Version != 2 {
		t.Fatalf("update = %+v %+v %v", d, res, err)
	}
	newToken := "another-token"
	if _, _, err := s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t1, ID: d.ID, Secret: &newToken, By: admin}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Secret(ctx, t1, d.ID); got != newToken {
		t.Fatalf("Secret after update = %q", got)
	}
	empty := ""
	if _, _, err := s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t1, ID: d.ID, Secret: &empty, By: admin}); !errors.Is(err, siem.ErrSecretRequired) {
		t.Fatalf("removing a required secret: %v", err)
	}
	same := name
	if _, res, err := s.Update(ctx, commands.UpdateSIEMDestination{Tenant: t1, ID: d.ID, Name: &same, By: admin}); err != nil || res.Version != 3 || res.Position != 0 {
		t.Fatalf("no-op update = %+v, %v", res, err)
	}

	// Lists are per tenant.
	if list, err := s.List(ctx, t1, "", 10); err != nil || len(list) != 1 || list[0].ID != d.ID {
		t.Fatalf("list t1 = %+v, %v", list, err)
	}
	if list, err := s.List(ctx, t2, "", 10); err != nil || len(list) != 0 {
		t.Fatalf("list t2 = %+v, %v", list, err)
	}
	if live, err := s.Live(ctx); err != nil || len(live) != 1 {
		t.Fatalf("live = %+v, %v", live, err)
	}

	// Delete wipes the secret and hides the destination.
	if _, err := s.Delete(ctx, commands.DeleteSIEMDestination{Tenant: t1, ID: d.ID, By: admin}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, t1, d.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	var left int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM siem_destinations WHERE sealed_secret IS NOT NULL`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("sealed secrets left: %d, %v", left, err)
	}
	if _, err := s.Delete(ctx, commands.DeleteSIEMDestination{Tenant: t1, ID: d.ID, By: admin}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSIEMDestinationRejectsBadInput(t *testing.T) {
	f, s := siemFixture(t)
	ctx := context.Background()
	t1 := f.tenant(t, "one")
	admin := users.Actor{User: f.user(t, t1, "alice", users.RoleAdmin), Tenant: t1, Role: users.RoleAdmin}
	bad := splunkSettings()
	bad.TLPCeiling = "purple"
	if _, _, err := s.Create(ctx, commands.CreateSIEMDestination{Tenant: t1, Settings: bad, Secret: "x", By: admin}); !errors.Is(err, siem.ErrTLPInvalid) {
		t.Fatalf("bad tlp: %v", err)
	}
	if _, _, err := s.Create(ctx, commands.CreateSIEMDestination{Tenant: t1, Settings: splunkSettings(), Secret: "a b", By: admin}); !errors.Is(err, siem.ErrSecretInvalid) {
		t.Fatalf("bad secret: %v", err)
	}
	var n int
	if err := f.db.Owner.QueryRow(ctx, `SELECT (SELECT count(*) FROM siem_destinations) + (SELECT count(*) FROM events WHERE stream_type = 'siem_destination')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows written: %d, %v", n, err)
	}
}
