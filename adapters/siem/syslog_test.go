package siem_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/siem"
)

// messages renders n events as RFC 5424 messages with body, each with its
// own event id ev-<i>; the first carries characters that need escaping.
func messages(t *testing.T, n int, body siem.Body) ([][]byte, []siem.Event) {
	t.Helper()
	h := siem.SyslogHeader{Facility: siem.FacilityAudit, Hostname: "vc-test", AppName: "velocicompanion", ProcID: "1"}
	var msgs [][]byte
	var evs []siem.Event
	for i := range n {
		ev := siem.FromEntry(entry("user.login_failed", "user", `{"email":"a@example.com"}`))
		ev.ID = fmt.Sprintf("ev-%d", i)
		ev.Position = int64(i + 1)
		if i == 0 {
			ev.UserAgent = `Mozilla "5"|x=y\z ] é`
			ev.ResourceID = `odd"]\id`
		}
		m, err := siem.RFC5424(h, body, siem.DefaultProduct, ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs, evs = append(msgs, m), append(evs, ev)
	}
	return msgs, evs
}

func TestSyslogToRsyslog(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			var tf *tlsFiles
			cfg := siem.SyslogConfig{Transport: siem.TransportTCP}
			if useTLS {
				tf = newTLSFiles(t)
				cfg = siem.SyslogConfig{Transport: siem.TransportTLS, TLS: tf.clientTLS()}
			}
			rs := startRsyslog(t, tf)
			cfg.Addr = rs.addr()
			s, err := siem.NewSyslogSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			const n = 300
			msgs, evs := messages(t, n, siem.BodyCEF)
			ctx := context.Background()
			// Several batches, one message per batch too.
			if err := s.Send(ctx, msgs[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.Send(ctx, msgs[1:n/2]...); err != nil {
				t.Fatal(err)
			}
			if err := s.Send(ctx, msgs[n/2:]...); err != nil {
				t.Fatal(err)
			}

			raw := rs.waitLines("raw.log", n)
			if len(raw) != n {
				t.Fatalf("rsyslog wrote %d messages, want %d", len(raw), n)
			}
			for i, line := range raw {
				if line != string(msgs[i]) {
					t.Fatalf("message %d:\n got %s\nwant %s", i, line, msgs[i])
				}
			}
			fields := rs.waitLines("fields.log", n)
			for i, line := range fields {
				f := strings.Split(line, "\t")
				if len(f) != 6 {
					t.Fatalf("fields %d: %q", i, line)
				}
				wantSD := fmt.Sprintf(`[vc@32473 tenant="t1" event_id="ev-%d" resource_type="user" resource_id="r1" position="%d"]`, i, i+1)
				if i == 0 {
					wantSD = `[vc@32473 tenant="t1" event_id="ev-0" resource_type="user" resource_id="odd\"\]\\id" position="1"]`
				}
				if f[0] != "vc-test" || f[1] != "velocicompanion" || f[2] != "1" || f[3] != "user.login_failed" || f[4] != wantSD {
					t.Errorf("header %d parsed by rsyslog as %q, want sd %s", i, f[:5], wantSD)
				}
				if got, want := strings.TrimSpace(f[5]), siem.CEF(siem.DefaultProduct, evs[i]); got != want {
					t.Errorf("msg %d parsed by rsyslog as\n %s\nwant %s", i, got, want)
				}
			}
		})
	}
}

func TestSyslogJSONBodyToRsyslog(t *testing.T) {
	rs := startRsyslog(t, nil)
	s, err := siem.NewSyslogSender(siem.SyslogConfig{Transport: siem.TransportTCP, Addr: rs.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs, evs := messages(t, 3, siem.BodyJSON)
	if err := s.Send(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	for i, line := range rs.waitLines("fields.log", 3) {
		f := strings.Split(line, "\t")
		var j siem.JSON
		if err := json.Unmarshal([]byte(strings.TrimSpace(f[len(f)-1])), &j); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
		if j.ID != evs[i].ID || j.UserAgent != evs[i].UserAgent || j.Tenant != "t1" {
			t.Errorf("line %d = %+v", i, j)
		}
	}
}

// TestSyslogReconnects stops the receiver mid-stream: a send fails (or is
// lost in flight, which syslog cannot tell), and after the receiver restarts
// the sender reconnects and every later batch arrives.
func TestSyslogReconnects(t *testing.T) {
	rs := startRsyslog(t, nil)
	s, err := siem.NewSyslogSender(siem.SyslogConfig{Transport: siem.TransportTCP, Addr: rs.addr(),
		DialTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	msgs, _ := messages(t, 4, siem.BodyCEF)
	if err := s.Send(ctx, msgs[0]); err != nil {
		t.Fatal(err)
	}
	rs.waitLines("raw.log", 1)

	rs.stop()
	// The sender notices the closed connection before writing, and cannot
	// connect while the receiver is down.
	if err := s.Send(ctx, msgs[1]); err == nil {
		t.Fatal("send to a stopped receiver succeeded")
	}

	rs.restart()
	if err := s.Send(ctx, msgs[2:]...); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	raw := rs.waitLines("raw.log", 3)
	if raw[0] != string(msgs[0]) || raw[1] != string(msgs[2]) || raw[2] != string(msgs[3]) {
		t.Errorf("rsyslog wrote %q", raw)
	}
}

func TestSyslogTLSRejectsUntrustedServer(t *testing.T) {
	rs := startRsyslog(t, newTLSFiles(t))
	other := newTLSFiles(t) // a CA the server's certificate is not from
	s, err := siem.NewSyslogSender(siem.SyslogConfig{Transport: siem.TransportTLS, Addr: rs.addr(), TLS: other.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs, _ := messages(t, 1, siem.BodyCEF)
	if err := s.Send(context.Background(), msgs...); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("send to an untrusted server: %v", err)
	}
}

func TestNewSyslogSenderRejectsBadConfig(t *testing.T) {
	for _, cfg := range []siem.SyslogConfig{
		{Transport: "udp", Addr: "127.0.0.1:514"},
		{Transport: siem.TransportTCP, Addr: "no-port"},
	} {
		if _, err := siem.NewSyslogSender(cfg); err == nil {
			t.Errorf("NewSyslogSender(%+v) succeeded", cfg)
		}
	}
}
