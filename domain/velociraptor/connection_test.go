package velociraptor_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"velocicompanion/domain"
	"velocicompanion/domain/domaintest"
	"velocicompanion/domain/users"
	vr "velocicompanion/domain/velociraptor"
)

const (
	tenant domain.TenantID = "0190c7a4-6a38-7f1e-9a49-0000000t0001"
	other  domain.TenantID = "0190c7a4-6a38-7f1e-9a49-0000000t0002"
)

var (
	now     = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	admin   = users.Actor{User: "u-admin", Tenant: tenant, Role: users.RoleAdmin}
	analyst = users.Actor{User: "u-analyst", Tenant: tenant, Role: users.RoleAnalyst}
	viewer  = users.Actor{User: "u-viewer", Tenant: tenant, Role: users.RoleViewer}
	foreign = users.Actor{User: "u-other", Tenant: other, Role: users.RoleAdmin}

	summary = vr.Summary{Name: "api", Address: "vr.example:8001", ServerName: "VelociraptorServer", CommonName: "api",
		Fingerprint: strings.Repeat("ab", 32), NotAfter: now.AddDate(1, 0, 0)}
	configured = vr.Configured{OrgID: "O123ABC", Summary: summary, By: admin.User}
)

func events(es ...domain.Event) []domain.Event { return es }

type connScenario struct {
	name    string
	given   []domain.Event
	when    func(vr.Connection) ([]domain.Event, error)
	want    []domain.Event
	wantErr error
}

func runConn(t *testing.T, cases []connScenario) {
	t.Helper()
	for _, tc := range cases {
		domaintest.Check(t, tc.name, vr.EvolveConnection, tc.given, tc.when, tc.want, tc.wantErr)
	}
}

func TestConfigure(t *testing.T) {
	configure := func(by users.Actor, org string, edit func(*vr.Summary)) func(vr.Connection) ([]domain.Event, error) {
		return func(s vr.Connection) ([]domain.Event, error) {
			sum := summary
			if edit != nil {
				edit(&sum)
			}
			return vr.Configure(s, by, tenant, org, sum, now)
		}
	}
	renewed := summary
	renewed.Fingerprint = strings.Repeat("cd", 32)
	runConn(t, []connScenario{
		{name: "records_configured", when: configure(admin, "O123ABC", nil), want: events(configured)},
		{name: "root_org", when: configure(admin, "", nil), want: events(vr.Configured{Summary: summary, By: admin.User})},
		{name: "root_by_name", when: configure(admin, " root ", nil), want: events(vr.Configured{Summary: summary, By: admin.User})},
		{name: "same_again_records_nothing", given: events(configured), when: configure(admin, "O123ABC", nil)},
		{name: "new_certificate", given: events(configured), when: configure(admin, "O123ABC", func(s *vr.Summary) { *s = renewed }),
			want: events(vr.Configured{OrgID: "O123ABC", Summary: renewed, By: admin.User})},
		{name: "after_removal", given: events(configured, vr.Removed{By: admin.User}), when: configure(admin, "O123ABC", nil), want: events(configured)},
		{name: "analyst_is_forbidden", when: configure(analyst, "", nil), wantErr: vr.ErrAdminOnly},
		{name: "other_tenant_is_not_found", when: configure(foreign, "", nil), wantErr: domain.ErrNotFound},
		{name: "bad_org_id", when: configure(admin, "O12 3", nil), wantErr: vr.ErrOrgIDInvalid},
		{name: "org_id_without_O", when: configure(admin, "X123", nil), wantErr: vr.ErrOrgIDInvalid},
		{name: "bare_O", when: configure(admin, "O", nil), wantErr: vr.ErrOrgIDInvalid},
		{name: "missing_name", when: configure(admin, "", func(s *vr.Summary) { s.Name = "" }), wantErr: vr.ErrSummaryInvalid},
		{name: "missing_address", when: configure(admin, "", func(s *vr.Summary) { s.Address = " " }), wantErr: vr.ErrSummaryInvalid},
		{name: "missing_server_name", when: configure(admin, "", func(s *vr.Summary) { s.ServerName = "" }), wantErr: vr.ErrSummaryInvalid},
		{name: "missing_common_name", when: configure(admin, "", func(s *vr.Summary) { s.CommonName = "" }), wantErr: vr.ErrSummaryInvalid},
		{name: "bad_fingerprint", when: configure(admin, "", func(s *vr.Summary) { s.Fingerprint = strings.Repeat("AB", 32) }), wantErr: vr.ErrSummaryInvalid},
		{name: "missing_expiry", when: configure(admin, "", func(s *vr.Summary) { s.NotAfter = time.Time{} }), wantErr: vr.ErrSummaryInvalid},
		{name: "expired", when: configure(admin, "", func(s *vr.Summary) { s.NotAfter = now }), wantErr: vr.ErrCertExpired},
	})
}

func TestRemove(t *testing.T) {
	remove := func(by users.Actor) func(vr.Connection) ([]domain.Event, error) {
		return func(s vr.Connection) ([]domain.Event, error) { return vr.Remove(s, by, tenant) }
	}
	runConn(t, []connScenario{
		{name: "records_removed", given: events(configured), when: remove(admin), want: events(vr.Removed{By: admin.User})},
		{name: "none_is_not_found", when: remove(admin), wantErr: domain.ErrNotFound},
		{name: "twice_is_not_found", given: events(configured, vr.Removed{By: admin.User}), when: remove(admin), wantErr: domain.ErrNotFound},
		{name: "analyst_is_forbidden", given: events(configured), when: remove(analyst), wantErr: vr.ErrAdminOnly},
		{name: "other_tenant_is_not_found", given: events(configured), when: remove(foreign), wantErr: domain.ErrNotFound},
	})
}

func TestRecordCheck(t *testing.T) {
	check := func(ok bool, text string) func(vr.Connection) ([]domain.Event, error) {
		return func(s vr.Connection) ([]domain.Event, error) { return vr.RecordCheck(s, ok, text, now) }
	}
	okEvent := vr.Checked{OK: true, At: now}
	failing := vr.Checked{Error: "connection refused", At: now}
	runConn(t, []connScenario{
		{name: "first_outcome", given: events(configured), when: check(true, "ignored"), want: events(okEvent)},
		{name: "same_outcome_records_nothing", given: events(configured, okEvent), when: check(true, "")},
		{name: "ok_to_failing", given: events(configured, okEvent), when: check(false, " connection refused "), want: events(failing)},
		{name: "same_failure_records_nothing", given: events(configured, failing), when: check(false, "connection refused")},
		{name: "other_failure", given: events(configured, failing), when: check(false, "tls: bad certificate"),
			want: events(vr.Checked{Error: "tls: bad certificate", At: now})},
		{name: "failing_without_text", given: events(configured), when: check(false, ""),
			want: events(vr.Checked{Error: "the server could not be reached", At: now})},
		{name: "reconfigured_checks_again", given: events(configured, okEvent, configured), when: check(true, ""), want: events(okEvent)},
		{name: "not_configured", when: check(true, ""), wantErr: domain.ErrNotFound},
		{name: "removed", given: events(configured, vr.Removed{}), when: check(true, ""), wantErr: domain.ErrNotFound},
	})
	// Long or hostile error texts are cut and cleaned.
	got, _ := vr.RecordCheck(vr.EvolveConnection(vr.Connection{}, configured), false, strings.Repeat("x", 5000)+"\x00", now)
	if e := got[0].(vr.Checked); len(e.Error) != vr.MaxErrorLen {
		t.Fatalf("error of %d bytes, want %d", len(e.Error), vr.MaxErrorLen)
	}
	got, _ = vr.RecordCheck(vr.EvolveConnection(vr.Connection{}, configured), false, "a\nb\x00c", now)
	if e := got[0].(vr.Checked); e.Error != "a b c" {
		t.Fatalf("cleaned error = %q", e.Error)
	}
}

func TestWarnExpiry(t *testing.T) {
	const month = 30 * 24 * time.Hour
	expiring := configured
	expiring.Summary.NotAfter = now.Add(10 * 24 * time.Hour)
	renewed := configured
	renewed.Summary.Fingerprint = strings.Repeat("cd", 32)
	renewed.Summary.NotAfter = now.Add(5 * 24 * time.Hour)
	warn := func(at time.Time) func(vr.Connection) ([]domain.Event, error) {
		return func(s vr.Connection) ([]domain.Event, error) { return vr.WarnExpiry(s, at, month) }
	}
	warning := vr.CertificateExpiring{Fingerprint: expiring.Summary.Fingerprint, NotAfter: expiring.Summary.NotAfter}
	runConn(t, []connScenario{
		{name: "far_from_expiry", given: events(configured), when: warn(now)},
		{name: "within_the_window", given: events(expiring), when: warn(now), want: events(warning)},
		{name: "expired_already", given: events(expiring), when: warn(now.Add(20 * 24 * time.Hour)), want: events(warning)},
		{name: "once_per_certificate", given: events(expiring, warning), when: warn(now.Add(time.Hour))},
		{name: "a_new_certificate_is_warned_of_again", given: events(expiring, warning, renewed), when: warn(now),
			want: events(vr.CertificateExpiring{Fingerprint: renewed.Summary.Fingerprint, NotAfter: renewed.Summary.NotAfter})},
		{name: "not_configured", when: warn(now), wantErr: domain.ErrNotFound},
		{name: "removed", given: events(expiring, vr.Removed{}), when: warn(now), wantErr: domain.ErrNotFound},
	})
}

func TestEvolveConnection(t *testing.T) {
	s := domain.Fold(vr.EvolveConnection, events(configured, vr.Checked{OK: true, At: now}))
	want := vr.Connection{Configured: true, OrgID: "O123ABC", Summary: summary, By: admin.User,
		Check: vr.Check{Known: true, OK: true, At: now}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("state = %+v\nwant    %+v", s, want)
	}
	if s := vr.EvolveConnection(s, vr.Removed{}); s.Configured || s.Check.Known {
		t.Fatalf("after Removed: %+v", s)
	}
}

// TestWireNames checks the durable names and JSON fields of every event.
func TestWireNames(t *testing.T) {
	for _, tc := range []struct {
		event  domain.Event
		name   string
		fields string
	}{
		{configured, "velociraptor.configured", "address,by,common_name,fingerprint,name,not_after,org_id,server_name"},
		{vr.Checked{}, "velociraptor.checked", "at,error,ok"},
		{vr.Removed{}, "velociraptor.removed", "by"},
		{vr.CertificateExpiring{}, "velociraptor.certificate_expiring", "fingerprint,not_after"},
		{vr.CollectionRequested{HostID: "h"}, "collection.requested", "artifacts,by,client_id,host_id,id,parameters,purpose"},
		{vr.CollectionScheduled{}, "collection.scheduled", "flow_id"},
		{vr.CollectionCompleted{}, "collection.completed", "logs,rows,sources"},
		{vr.CollectionFailed{}, "collection.failed", "error,logs"},
		{vr.CollectionCancelRequested{}, "collection.cancel_requested", "by"},
		{vr.CollectionCancelled{}, "collection.cancelled", "by"},
		{vr.HuntRequested{}, "hunt.requested", "artifacts,by,description,exclude_labels,expires,id,include_labels,os,parameters"},
		{vr.HuntScheduled{}, "hunt.scheduled", "hunt_id"},
		{vr.HuntProgressed{}, "hunt.progressed", "state,stats"},
		{vr.HuntResultsReceived{}, "hunt.results_received", "client_id,flow_id,rows,source"},
		{vr.HuntStopRequested{}, "hunt.stop_requested", "by"},
		{vr.HuntStopped{}, "hunt.stopped", ""},
		{vr.HuntFailed{}, "hunt.failed", "error"},
	} {
		if got := tc.event.EventName(); got != tc.name {
			t.Errorf("%T.EventName() = %q, want %q", tc.event, got, tc.name)
		}
		wire, err := json.Marshal(tc.event)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(wire, &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		if got := strings.Join(slices.Sorted(slices.Values(keys)), ","); got != tc.fields {
			t.Errorf("%s fields = %s, want %s", tc.name, got, tc.fields)
		}
	}
	wire, _ := json.Marshal(vr.HuntProgressed{})
	if !strings.Contains(string(wire), `"stats":{"scheduled":0,"completed":0,"with_results":0,"errors":0}`) {
		t.Errorf("hunt stats on the wire: %s", wire)
	}
}

func TestErrorKinds(t *testing.T) {
	for err, want := range map[error]domain.Kind{
		vr.ErrOrgIDInvalid:       domain.KindInvalid,
		vr.ErrCertExpired:        domain.KindInvalid,
		vr.ErrAdminOnly:          domain.KindForbidden,
		vr.ErrNotAllowed:         domain.KindForbidden,
		vr.ErrCollectionExists:   domain.KindConflict,
		vr.ErrFlowConflict:       domain.KindConflict,
		vr.ErrCollectionFinished: domain.KindConflict,
		vr.ErrCollectionEnded:    domain.KindConflict,
		vr.ErrIsolationCancel:    domain.KindConflict,
		vr.ErrCancelNotRequested: domain.KindConflict,
		vr.ErrHuntNotRunning:     domain.KindConflict,
		vr.ErrExpiresTooFar:      domain.KindInvalid,
		vr.ErrQuarantineOS:       domain.KindUnprocessable,
	} {
		if got := domain.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
		var de *domain.Error
		if !errors.As(err, &de) || de.Code == "" || de.Message == "" {
			t.Errorf("%v is not a complete *domain.Error", err)
		}
	}
}
