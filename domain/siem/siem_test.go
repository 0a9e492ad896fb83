package siem_test

import (
	"errors"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/siem"
	"velocicompanion/domain/users"
)

var (
	now     = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	admin   = users.Actor{User: "u1", Tenant: "t1", Role: users.RoleAdmin}
	analyst = users.Actor{User: "u2", Tenant: "t1", Role: users.RoleAnalyst}
	other   = users.Actor{User: "u3", Tenant: "t2", Role: users.RoleAdmin}
)

func syslogSettings() siem.Settings {
	return siem.Settings{Name: " SOC ", Enabled: true, Config: siem.Config{Kind: siem.KindSyslog, Address: "127.0.0.1:6514"}}
}

func created(st siem.Settings, secret bool) siem.State {
	evs, err := siem.Create(siem.State{}, admin, "t1", "d1", st, secret, now)
	if err != nil {
		panic(err)
	}
	return domain.Fold(siem.Evolve, evs)
}

func TestCreate(t *testing.T) {
	tests := []struct {
		name    string
		by      users.Actor
		change  func(*siem.Settings)
		secret  bool
		wantErr error
	}{
		{name: "ok", by: admin, change: func(*siem.Settings) {}},
		{name: "analyst_forbidden", by: analyst, change: func(*siem.Settings) {}, wantErr: siem.ErrNotAllowed},
		{name: "other_tenant_not_found", by: other, change: func(*siem.Settings) {}, wantErr: domain.ErrNotFound},
		{name: "name_required", by: admin, change: func(s *siem.Settings) { s.Name = "  " }, wantErr: siem.ErrNameRequired},
		{name: "bad_kind", by: admin, change: func(s *siem.Settings) { s.Config.Kind = "ftp" }, wantErr: siem.ErrKindInvalid},
		{name: "bad_address", by: admin, change: func(s *siem.Settings) { s.Config.Address = "nohost" }, wantErr: siem.ErrAddressInvalid},
		{name: "bad_transport", by: admin, change: func(s *siem.Settings) { s.Config.Transport = "udp" }, wantErr: siem.ErrTransport},
		{name: "bad_body", by: admin, change: func(s *siem.Settings) { s.Config.Body = "xml" }, wantErr: siem.ErrBody},
		{name: "url_on_syslog", by: admin, change: func(s *siem.Settings) { s.Config.URL = "https://x" }, wantErr: siem.ErrNotApplicable},
		{name: "splunk_needs_secret", by: admin, change: func(s *siem.Settings) {
			s.Config = siem.Config{Kind: siem.KindSplunk, URL: "https://splunk:8088"}
		}, wantErr: siem.ErrSecretRequired},
		{name: "splunk_ok", by: admin, secret: true, change: func(s *siem.Settings) {
			s.Config = siem.Config{Kind: siem.KindSplunk, URL: "https://splunk:8088", Index: "main", Ack: true}
		}},
		{name: "url_with_credentials", by: admin, change: func(s *siem.Settings) {
			s.Config = siem.Config{Kind: siem.KindElastic, URL: "https://u:p@es:9200"}
		}, wantErr: siem.ErrURLInvalid},
		{name: "bad_index", by: admin, change: func(s *siem.Settings) {
			s.Config = siem.Config{Kind: siem.KindElastic, URL: "https://es:9200", Index: "a b"}
		}, wantErr: siem.ErrIndexInvalid},
		{name: "bad_type", by: admin, change: func(s *siem.Settings) { s.Filter.Types = []string{"Case Opened"} }, wantErr: siem.ErrTypesInvalid},
		{name: "bad_threat", by: admin, change: func(s *siem.Settings) { s.Filter.MinThreat = "severe" }, wantErr: siem.ErrThreatInvalid},
		{name: "bad_tlp", by: admin, change: func(s *siem.Settings) { s.TLPCeiling = "white" }, wantErr: siem.ErrTLPInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := syslogSettings()
			tt.change(&st)
			evs, err := siem.Create(siem.State{}, tt.by, "t1", "d1", st, tt.secret, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && len(evs) != 1 {
				t.Fatalf("events = %v", evs)
			}
		})
	}
}

func TestCreateNormalises(t *testing.T) {
	st := syslogSettings()
	st.Filter.Types = []string{"user.*", "case.opened", "user.*"}
	s := created(st, false)
	got := s.Settings
	if got.Name != "SOC" || got.Config.Transport != "tls" || got.Config.Body != "cef" || got.TLPCeiling != "clear" ||
		len(got.Filter.Types) != 2 || got.Filter.Types[0] != "case.opened" {
		t.Errorf("settings = %+v", got)
	}
}

func TestUpdate(t *testing.T) {
	s := created(syslogSettings(), false)
	same := s.Settings
	if evs, err := siem.Update(s, admin, same, siem.SecretKeep, now); err != nil || evs != nil {
		t.Errorf("no-op update = %v, %v", evs, err)
	}
	changed := same
	changed.TLPCeiling = "amber"
	evs, err := siem.Update(s, admin, changed, siem.SecretKeep, now)
	if err != nil || len(evs) != 1 {
		t.Fatalf("update = %v, %v", evs, err)
	}
	if got := siem.Evolve(s, evs[0]); got.Settings.TLPCeiling != "amber" {
		t.Errorf("state = %+v", got)
	}
	evs, err = siem.Update(s, admin, same, siem.SecretSet, now)
	if err != nil || len(evs) != 1 || !evs[0].(siem.Updated).SecretChanged || !evs[0].(siem.Updated).HasSecret {
		t.Errorf("secret set = %v, %v", evs, err)
	}
	if _, err := siem.Update(s, analyst, changed, siem.SecretKeep, now); !errors.Is(err, siem.ErrNotAllowed) {
		t.Errorf("analyst: %v", err)
	}
	if _, err := siem.Update(s, other, changed, siem.SecretKeep, now); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("other tenant: %v", err)
	}
}

func TestDelete(t *testing.T) {
	s := created(syslogSettings(), false)
	evs, err := siem.Delete(s, admin, now)
	if err != nil || len(evs) != 1 {
		t.Fatalf("delete = %v, %v", evs, err)
	}
	s = siem.Evolve(s, evs[0])
	if _, err := siem.Delete(s, admin, now); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := siem.Update(s, admin, s.Settings, siem.SecretKeep, now); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("update deleted: %v", err)
	}
	if _, err := siem.Delete(siem.State{}, admin, now); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
}

func TestCheckSecret(t *testing.T) {
	for secret, ok := range map[string]bool{"abc-123": true, "": false, "a b": false, "é": false} {
		if err := siem.CheckSecret(secret); (err == nil) != ok {
			t.Errorf("CheckSecret(%q) = %v", secret, err)
		}
	}
}
