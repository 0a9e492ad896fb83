package siem_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/siem"
	"velocicompanion/eventstore"
	"velocicompanion/projections/auditlog"
)

var when = time.Date(2026, 11, 26, 21, 4, 5, 123456789, time.UTC)

func entry(action, resource string, details string) auditlog.Entry {
	return auditlog.Entry{
		ID: "0193-ev", Tenant: "t1", Time: when, Actor: "u1", ActorType: "user", Role: "admin", Action: action,
		ResourceType: resource, ResourceID: "r1", Result: auditlog.ResultOf(action), SourceIP: "192.0.2.7",
		UserAgent: "curl/8", RequestID: "req-1", CorrelationID: "cor-1", Position: 42,
		Details: json.RawMessage(details),
	}
}

func TestFromEntry(t *testing.T) {
	tests := []struct {
		name                 string
		action, resource     string
		details              string
		wantThreat           siem.ThreatClass
		wantCategory, wantTy string
		wantTLP              string
		wantOCSF             int
	}{
		{"login failed", "user.login_failed", "user", `{}`, siem.ThreatMedium, "authentication", "denied", "", siem.OCSFAuthentication},
		{"token reuse", "user.refresh_token_reused", "user", `{}`, siem.ThreatHigh, "authentication", "denied", "", siem.OCSFAuthentication},
		{"role change", "user.role_changed", "user", `{"role":"admin"}`, siem.ThreatLow, "iam", "change", "", siem.OCSFUserAccess},
		{"registered", "user.registered", "user", `{}`, siem.ThreatInfo, "iam", "creation", "", siem.OCSFAccountChange},
		{"case severity and tlp", "case.opened", "case", `{"severity":"high","tlp":"amber"}`, siem.ThreatHigh, "threat", "creation", "amber", siem.OCSFIncidentFinding},
		{"tlp with prefix", "case.updated", "case", `{"tlp":"TLP:RED"}`, siem.ThreatInfo, "threat", "change", "red", siem.OCSFIncidentFinding},
		{"bad severity ignored", "case.updated", "case", `{"severity":7}`, siem.ThreatInfo, "threat", "change", "", siem.OCSFIncidentFinding},
		{"not json", "host.registered", "host", `nope`, siem.ThreatInfo, "host", "creation", "", siem.OCSFEntityManagement},
		{"vr configured", "velociraptor.configured", "velociraptor", `{"fingerprint":"ab"}`, siem.ThreatLow, "configuration", "change", "", siem.OCSFEntityManagement},
		{"vr removed", "velociraptor.removed", "velociraptor", `{}`, siem.ThreatLow, "configuration", "deletion", "", siem.OCSFEntityManagement},
		{"vr checked", "velociraptor.checked", "velociraptor", `{"ok":true}`, siem.ThreatInfo, "configuration", "info", "", siem.OCSFEntityManagement},
		{"collection requested", "collection.requested", "collection", `{}`, siem.ThreatInfo, "host", "creation", "", siem.OCSFAPIActivity},
		{"collection completed", "collection.completed", "collection", `{"rows":3}`, siem.ThreatInfo, "host", "end", "", siem.OCSFAPIActivity},
		{"collection failed", "collection.failed", "collection", `{"error":"x"}`, siem.ThreatMedium, "host", "error", "", siem.OCSFAPIActivity},
		{"hunt stop requested", "hunt.stop_requested", "hunt", `{}`, siem.ThreatInfo, "host", "change", "", siem.OCSFAPIActivity},
		{"hunt failed", "hunt.failed", "hunt", `{}`, siem.ThreatMedium, "host", "error", "", siem.OCSFAPIActivity},
		{"quarantine requested", "host.quarantine_requested", "host", `{}`, siem.ThreatLow, "host", "change", "", siem.OCSFRemediation},
		{"quarantined", "host.quarantined", "host", `{}`, siem.ThreatLow, "host", "change", "", siem.OCSFRemediation},
		{"quarantine failed", "host.quarantine_failed", "host", `{}`, siem.ThreatMedium, "host", "error", "", siem.OCSFRemediation},
		{"released", "host.released", "host", `{}`, siem.ThreatLow, "host", "change", "", siem.OCSFRemediation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := siem.FromEntry(entry(tt.action, tt.resource, tt.details))
			if ev.Threat != tt.wantThreat || ev.Category != tt.wantCategory || ev.Kind != tt.wantTy ||
				ev.TLP != tt.wantTLP || ev.OCSFClass != tt.wantOCSF {
				t.Errorf("got threat=%q category=%q type=%q tlp=%q ocsf=%d, want %q %q %q %q %d",
					ev.Threat, ev.Category, ev.Kind, ev.TLP, ev.OCSFClass,
					tt.wantThreat, tt.wantCategory, tt.wantTy, tt.wantTLP, tt.wantOCSF)
			}
		})
	}
}

// TestFromEnvelopeVelociraptor maps stored Velociraptor events: a failing
// connection check is a failure, and artifact parameter values never leave.
func TestFromEnvelopeVelociraptor(t *testing.T) {
	ev := siem.FromEnvelope(eventstore.Envelope{EventID: "e1", Tenant: "t1", StreamType: "velociraptor", StreamID: "connection",
		Name: "velociraptor.checked", Payload: json.RawMessage(`{"ok":false,"error":"connection refused"}`)})
	if ev.Result != auditlog.ResultFailure || ev.Kind != "error" || ev.Threat != siem.ThreatMedium || ev.ResourceID != "connection" {
		t.Fatalf("failing check: result %s kind %s threat %s resource %s", ev.Result, ev.Kind, ev.Threat, ev.ResourceID)
	}
	ev = siem.FromEnvelope(eventstore.Envelope{EventID: "e2", Tenant: "t1", StreamType: "hunt", StreamID: "hunt-1",
		Name: "hunt.requested", Payload: json.RawMessage(`{"artifacts":["A"],"parameters":{"URL":"https://u:p4ss@x.example"},"by":"u1"}`)})
	if ev.Kind != "creation" || ev.ResourceType != "hunt" || ev.ResourceID != "hunt-1" || strings.Contains(string(ev.Details), "p4ss") ||
		!strings.Contains(string(ev.Details), `"URL":"[redacted]"`) {
		t.Fatalf("hunt request: kind %s resource %s/%s details %s", ev.Kind, ev.ResourceType, ev.ResourceID, ev.Details)
	}
}

func TestFromEnvelopeRedacts(t *testing.T) {
	env := eventstore.Envelope{
		EventID: "e1", Tenant: "t1", StreamType: "user", StreamID: "u1", Name: "user.password_changed",
		Payload:    json.RawMessage(`{"password_hash":"$argon2id$v=19$abc","note":"Bearer abc.def","by":"u2"}`),
		RecordedAt: when, Metadata: eventstore.Metadata{Actor: "u2", SourceIP: "2001:db8::1"},
	}
	ev := siem.FromEnvelope(env)
	for _, out := range []string{siem.CEF(siem.DefaultProduct, ev), mustJSON(t, siem.ToJSON(ev))} {
		if strings.Contains(out, "argon2") || strings.Contains(out, "abc.def") || strings.Contains(out, "password_hash") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if ev.Actor != "u2" || ev.Tenant != "t1" {
		t.Errorf("entry = %+v", ev.Entry)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCEF(t *testing.T) {
	ev := siem.FromEntry(entry("user.login_failed", "user", `{}`))
	got := siem.CEF(siem.DefaultProduct, ev)
	want := "CEF:0|VelociCompanion|velocicompanion|1|user.login_failed|user login failed|5|" +
		"rt=1795727045123 externalId=0193-ev act=user.login_failed cat=authentication outcome=failure suser=u1 " +
		"spriv=admin src=192.0.2.7 requestClientApplication=curl/8 cs1=t1 cs1Label=tenant cs2=user " +
		"cs2Label=resourceType cs3=r1 cs3Label=resourceId cs4=req-1 cs4Label=requestId cs5=cor-1 " +
		"cs5Label=correlationId cn1=42 cn1Label=position"
	if got != want {
		t.Errorf("CEF:\n got %s\nwant %s", got, want)
	}
}

func TestCEFEscaping(t *testing.T) {
	tests := []struct {
		name    string
		product siem.Product
		mutate  func(*siem.Event)
		want    []string // substrings that must appear
		notWant []string
	}{
		{
			name:    "header pipe and backslash",
			product: siem.Product{Vendor: `Acme|Corp`, Name: `a\b`, Version: "1\n2"},
			mutate:  func(*siem.Event) {},
			want:    []string{`CEF:0|Acme\|Corp|a\\b|1 2|`},
		},
		{
			name:    "extension equals backslash newline",
			product: siem.DefaultProduct,
			mutate: func(e *siem.Event) {
				e.UserAgent = "a=b\\c\r\nd\ne|f"
			},
			want: []string{`requestClientApplication=a\=b\\c\nd\ne|f `},
		},
		{
			name:    "ipv6 source",
			product: siem.DefaultProduct,
			mutate:  func(e *siem.Event) { e.SourceIP = "2001:db8::1" },
			want:    []string{"c6a2=2001:db8::1 c6a2Label=Source IPv6 Address"},
			notWant: []string{"src="},
		},
		{
			name:    "ipv4-mapped source",
			product: siem.DefaultProduct,
			mutate:  func(e *siem.Event) { e.SourceIP = "::ffff:192.0.2.9" },
			want:    []string{"src=192.0.2.9"},
		},
		{
			name:    "details in msg, escaped",
			product: siem.DefaultProduct,
			mutate:  func(e *siem.Event) { e.Details = json.RawMessage(`{"a":"x=y"}`) },
			want:    []string{`msg={"a":"x\=y"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := siem.FromEntry(entry("user.logged_in", "user", `{}`))
			tt.mutate(&ev)
			got := siem.CEF(tt.product, ev)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("unexpected %q in\n%s", w, got)
				}
			}
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("line break in %q", got)
			}
			if n := strings.Count(unescapedPipes(got), "|"); n != 7 {
				t.Errorf("%d unescaped header pipes, want 7: %s", n, got)
			}
		})
	}
}

// unescapedPipes returns the header part of a CEF line with escaped
// characters removed, so that the remaining pipes are the separators.
func unescapedPipes(line string) string {
	var b strings.Builder
	pipes := 0
	for i := 0; i < len(line) && pipes < 7; i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			pipes++
			b.WriteByte('|')
		}
	}
	return b.String()
}

func TestRFC5424(t *testing.T) {
	h := siem.SyslogHeader{Facility: siem.FacilityAudit, Hostname: "vc-1", AppName: "velocicompanion", ProcID: "77"}
	ev := siem.FromEntry(entry("user.login_failed", "user", `{}`))
	ev.ResourceID = `we"ird]\id`
	got, err := siem.RFC5424(h, siem.BodyCEF, siem.DefaultProduct, ev)
	if err != nil {
		t.Fatal(err)
	}
	wantPrefix := `<108>1 2026-11-26T21:04:05.123456Z vc-1 velocicompanion 77 user.login_failed ` +
		`[vc@32473 tenant="t1" event_id="0193-ev" resource_type="user" resource_id="we\"ird\]\\id" position="42"] CEF:0|`
	if !strings.HasPrefix(string(got), wantPrefix) {
		t.Errorf("RFC5424:\n got %s\nwant prefix %s", got, wantPrefix)
	}

	tests := []struct {
		name   string
		h      siem.SyslogHeader
		ev     func(siem.Event) siem.Event
		prefix string
	}{
		{"nil values", siem.SyslogHeader{Facility: siem.FacilityUser}, func(e siem.Event) siem.Event { return e },
			"<12>1 2026-11-26T21:04:05.123456Z - - - user.login_failed "},
		{"bad facility falls back to audit", siem.SyslogHeader{Facility: 99, Hostname: "h"}, func(e siem.Event) siem.Event { return e },
			"<108>1 "},
		{"header fields keep printable ascii, bounded", siem.SyslogHeader{Hostname: "h o\ts€t", AppName: strings.Repeat("a", 60)},
			func(e siem.Event) siem.Event { e.Action = strings.Repeat("m", 40); return e },
			"<4>1 2026-11-26T21:04:05.123456Z host " + strings.Repeat("a", 48) + " - " + strings.Repeat("m", 32) + " "},
		{"info is informational", siem.SyslogHeader{Facility: siem.FacilityLocal0},
			func(e siem.Event) siem.Event { e.Threat = siem.ThreatInfo; return e }, "<134>1 "},
		{"critical", siem.SyslogHeader{Facility: siem.FacilityAuthPriv},
			func(e siem.Event) siem.Event { e.Threat = siem.ThreatCritical; return e }, "<82>1 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := siem.RFC5424(tt.h, siem.BodyCEF, siem.DefaultProduct, tt.ev(siem.FromEntry(entry("user.login_failed", "user", `{}`))))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(got), tt.prefix) {
				t.Errorf("got %s\nwant prefix %s", got, tt.prefix)
			}
		})
	}
}

func TestRFC5424JSONBody(t *testing.T) {
	ev := siem.FromEntry(entry("case.opened", "case", `{"severity":"critical","tlp":"green","title":"x"}`))
	got, err := siem.RFC5424(siem.SyslogHeader{}, siem.BodyJSON, siem.DefaultProduct, ev)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(got), "] ")
	if !ok {
		t.Fatalf("no structured data in %s", got)
	}
	var j siem.JSON
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if j.Threat != siem.ThreatCritical || j.TLP != "green" || j.Tenant != "t1" || j.ID != "0193-ev" ||
		!j.Time.Equal(when) || j.OCSFClass != siem.OCSFIncidentFinding || string(j.Details) == "" {
		t.Errorf("json = %+v", j)
	}
}

func TestOctetCount(t *testing.T) {
	got := siem.OctetCount([]byte("x"), []byte("héllo"))
	if string(got) != "x6 héllo" {
		t.Errorf("got %q", got)
	}
}

func TestFilter(t *testing.T) {
	login := siem.FromEntry(entry("user.login_failed", "user", `{}`))
	registered := siem.FromEntry(entry("user.registered", "user", `{}`))
	amberCase := siem.FromEntry(entry("case.opened", "case", `{"severity":"high","tlp":"amber"}`))
	unmarkedCase := siem.FromEntry(entry("case.note_added", "case", `{}`))
	tests := []struct {
		name string
		f    siem.Filter
		ev   siem.Event
		want bool
	}{
		{"empty filter forwards unmarked non-case", siem.Filter{}, registered, true},
		{"empty filter holds back amber", siem.Filter{}, amberCase, false},
		{"ceiling amber lets amber out", siem.Filter{TLPCeiling: "amber"}, amberCase, true},
		{"ceiling green holds amber", siem.Filter{TLPCeiling: "green"}, amberCase, false},
		{"unmarked case is red", siem.Filter{TLPCeiling: "amber+strict"}, unmarkedCase, false},
		{"red ceiling lets unmarked case out", siem.Filter{TLPCeiling: "red"}, unmarkedCase, true},
		{"types exact", siem.Filter{Types: []string{"user.login_failed"}}, login, true},
		{"types exact miss", siem.Filter{Types: []string{"user.login_failed"}}, registered, false},
		{"types wildcard", siem.Filter{Types: []string{"user.*"}}, registered, true},
		{"types wildcard no prefix trick", siem.Filter{Types: []string{"use.*"}}, registered, false},
		{"min threat passes", siem.Filter{MinThreat: siem.ThreatMedium}, login, true},
		{"min threat holds", siem.Filter{MinThreat: siem.ThreatMedium}, registered, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Allows(tt.ev); got != tt.want {
				t.Errorf("Allows = %v, want %v", got, tt.want)
			}
		})
	}
}
