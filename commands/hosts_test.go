package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
)

// hostEvents returns the names of the events stored for host id of tenant.
func (f *fixture) hostEvents(t *testing.T, tenant domain.TenantID, id string) []string {
	t.Helper()
	envs, err := f.st.Load(context.Background(), eventstore.Key{Tenant: tenant, Type: commands.HostStreamType, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range envs {
		out = append(out, e.Name)
	}
	return out
}

// countHostEvents counts every host event of the installation.
func (f *fixture) countHostEvents(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE stream_type = 'host'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRegisterHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.tenant(t, "Acme"), f.tenant(t, "Globex")
	seen := f.clock().Add(-time.Hour)
	res, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", SeenAt: seen, Profile: hosts.Profile{
		Hostname: " WS-0001. ", IPs: []string{"2001:db8::1", "10.0.0.5", "10.0.0.5"}, OS: "Windows",
		Labels: []string{"Finance", "finance"}, ClientID: "C.1234567890ABCDEF", Metadata: json.RawMessage(`{"b":1, "a":2}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Position == 0 || res.ID == "" {
		t.Fatalf("result %+v, want version 2 (registered and seen)", res)
	}
	v, err := f.h.HostView(ctx, a, hosts.ID(res.ID))
	if err != nil {
		t.Fatal(err)
	}
	st := v.State
	if st.Hostname != "WS-0001" || fmt.Sprint(st.IPs) != "[10.0.0.5 2001:db8::1]" || fmt.Sprint(st.Labels) != "[finance]" ||
		st.ClientID != "C.1234567890abcdef" || !hosts.SameMetadata(st.Metadata, json.RawMessage(`{"a":2,"b":1}`)) || st.Origin != hosts.SourceAnalyst ||
		!st.LastSeen.Equal(seen) || !st.FirstSeen.Equal(seen) {
		t.Fatalf("state %+v", st)
	}
	if got := fmt.Sprint(f.hostEvents(t, a, res.ID)); got != "[host.registered host.seen]" {
		t.Fatalf("events %s", got)
	}

	// The client id is unique within the tenant only; a refused command
	// leaves no event behind.
	before := f.countHostEvents(t)
	_, err = f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Profile: hosts.Profile{Hostname: "other", ClientID: "C.1234567890ABCDEF"}})
	if !errors.Is(err, commands.ErrClientIDTaken) {
		t.Fatalf("duplicate client id: %v", err)
	}
	for _, bad := range []hosts.Profile{{Hostname: ""}, {Hostname: "ws 1"}, {Hostname: "h", IPs: []string{"10.0.0.256"}},
		{Hostname: "h", ClientID: "C.123"}, {Hostname: "h", Metadata: json.RawMessage(`[1]`)}} {
		if _, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Profile: bad}); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("register %+v: %v, want invalid", bad, err)
		}
	}
	if _, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", SeenAt: f.clock().Add(time.Hour), Profile: hosts.Profile{Hostname: "future"}}); !errors.Is(err, hosts.ErrSeenInFuture) {
		t.Errorf("seen in the future: %v", err)
	}
	if n := f.countHostEvents(t); n != before {
		t.Fatalf("refused commands appended %d events", n-before)
	}
	if _, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: b, By: "u2", Profile: hosts.Profile{Hostname: "WS-0001", ClientID: "C.1234567890abcdef"}}); err != nil {
		t.Fatalf("same client id in another tenant: %v", err)
	}
}

func TestUpdateHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.tenant(t, "Acme"), f.tenant(t, "Globex")
	reg := func(name, client string) string {
		res, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Profile: hosts.Profile{Hostname: name, ClientID: client, Labels: []string{"dmz"}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	h1, _ := reg("ws-1", "C.0000000000000001"), reg("ws-2", "C.0000000000000002")
	str := func(s string) *string { return &s }

	// Several changes are one atomic append.
	labels := []string{"Finance", "VIP"}
	res, err := f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: hosts.ID(h1), IfMatch: 1, By: "u1",
		Changes: hosts.Changes{OS: str("Linux"), IPs: &[]string{"10.1.1.1"}}, Labels: &labels, SeenAt: f.clock()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 4 {
		t.Fatalf("version %d, want 4", res.Version)
	}
	if got := fmt.Sprint(f.hostEvents(t, a, h1)); got != "[host.registered host.updated host.labels_changed host.seen]" {
		t.Fatalf("events %s", got)
	}
	// A stale If-Match is 412 and changes nothing.
	_, err = f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: hosts.ID(h1), IfMatch: 1, By: "u1", Changes: hosts.Changes{OS: str("BSD")}})
	if !errors.Is(err, commands.ErrStale) {
		t.Fatalf("stale If-Match: %v", err)
	}
	// Nothing new is no event.
	res, err = f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: hosts.ID(h1), By: "u1", Changes: hosts.Changes{OS: str(" Linux ")},
		AddLabels: []string{"vip"}, RemoveLabels: []string{"absent"}, SeenAt: f.clock()})
	if err != nil || res.Version != 4 {
		t.Fatalf("no-op update: %+v, %v", res, err)
	}
	// One bad field refuses the whole request.
	before := f.countHostEvents(t)
	_, err = f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: hosts.ID(h1), By: "u1",
		Changes: hosts.Changes{OS: str("BSD"), IPs: &[]string{"nope"}}, AddLabels: []string{"new"}})
	if !errors.Is(err, hosts.ErrIPInvalid) {
		t.Fatalf("bad ip: %v", err)
	}
	// Taking another host's client id is a conflict, and nothing is appended.
	_, err = f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: hosts.ID(h1), By: "u1",
		Changes: hosts.Changes{OS: str("BSD"), ClientID: str("C.0000000000000002")}})
	if !errors.Is(err, commands.ErrClientIDTaken) {
		t.Fatalf("taken client id: %v", err)
	}
	if n := f.countHostEvents(t); n != before {
		t.Fatalf("refused updates appended %d events", n-before)
	}
	// Another tenant cannot see or change the host.
	for _, err := range []error{
		func() error {
			_, err := f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: b, Host: hosts.ID(h1), By: "u2", Changes: hosts.Changes{OS: str("BSD")}})
			return err
		}(),
		func() error {
			_, err := f.h.DeleteHost(ctx, commands.DeleteHost{Tenant: b, Host: hosts.ID(h1), By: "u2"})
			return err
		}(),
		func() error { _, err := f.h.HostView(ctx, b, hosts.ID(h1)); return err }(),
		func() error { _, err := f.h.HostHistory(ctx, b, hosts.ID(h1), 0, 10); return err }(),
	} {
		if !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("cross-tenant access: %v, want not found", err)
		}
	}
	if n := f.countHostEvents(t); n != before {
		t.Fatalf("cross-tenant attempts appended %d events", n-before)
	}

	// Labels and sightings through their own commands.
	if _, err := f.h.ChangeHostLabels(ctx, commands.ChangeHostLabels{Tenant: a, Host: hosts.ID(h1), Add: []string{"PCI"}, Remove: []string{"vip"}, By: "u1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.SetHostLabels(ctx, commands.SetHostLabels{Tenant: a, Host: hosts.ID(h1), Labels: []string{"pci", "server"}, By: "u1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.RecordHostSeen(ctx, commands.RecordHostSeen{Tenant: a, Host: hosts.ID(h1), At: f.clock().Add(10 * time.Minute), Source: hosts.SourceVelociraptor}); !errors.Is(err, hosts.ErrSeenInFuture) {
		t.Fatalf("seen in the future: %v", err)
	}
	if _, err := f.h.RecordHostSeen(ctx, commands.RecordHostSeen{Tenant: a, Host: hosts.ID(h1), At: f.clock().Add(-48 * time.Hour), Source: hosts.SourceVelociraptor}); err != nil {
		t.Fatal(err)
	}
	v, err := f.h.HostView(ctx, a, hosts.ID(h1))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(v.State.Labels) != "[pci server]" || !v.State.FirstSeen.Equal(f.clock().Add(-48*time.Hour)) || !v.State.LastSeen.Equal(f.clock()) {
		t.Fatalf("state %+v", v.State)
	}
}

func TestDeleteHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	res, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Profile: hosts.Profile{Hostname: "ws-1", ClientID: "C.00000000000000aa"}})
	if err != nil {
		t.Fatal(err)
	}
	id := hosts.ID(res.ID)
	if _, err := f.h.DeleteHost(ctx, commands.DeleteHost{Tenant: a, Host: id, IfMatch: 7, By: "admin"}); !errors.Is(err, commands.ErrStale) {
		t.Fatalf("stale delete: %v", err)
	}
	if res, err = f.h.DeleteHost(ctx, commands.DeleteHost{Tenant: a, Host: id, IfMatch: 1, By: "admin"}); err != nil || res.Version != 2 {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	// A deleted host is not found by every command and view; its history stays.
	str := "Linux"
	if _, err := f.h.DeleteHost(ctx, commands.DeleteHost{Tenant: a, Host: id, By: "admin"}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: id, By: "u1", Changes: hosts.Changes{OS: &str}}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("update deleted: %v", err)
	}
	if _, err := f.h.HostView(ctx, a, id); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("view deleted: %v", err)
	}
	hist, err := f.h.HostHistory(ctx, a, id, 0, 10)
	if err != nil || len(hist) != 2 || hist[0].Name != hosts.EventDeleted || hist[0].Version != 2 {
		t.Fatalf("history of a deleted host: %+v, %v", hist, err)
	}
	// Its client id is free again.
	if _, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Profile: hosts.Profile{Hostname: "ws-1", ClientID: "C.00000000000000AA"}}); err != nil {
		t.Fatalf("re-register the client id: %v", err)
	}
}

func TestHostHistory(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	meta := eventstore.Metadata{Actor: "u1", ActorType: "user", Role: "analyst"}
	res, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Meta: meta, Profile: hosts.Profile{Hostname: "ws-1"}})
	if err != nil {
		t.Fatal(err)
	}
	id := hosts.ID(res.ID)
	for i := range 4 {
		os := fmt.Sprintf("os-%d", i)
		if _, err := f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: id, By: "u1", Meta: meta, Changes: hosts.Changes{OS: &os}}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := f.h.HostHistory(ctx, a, id, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Version != 5 || page[1].Version != 4 || page[0].Name != hosts.EventUpdated || page[0].Meta.Actor != "u1" {
		t.Fatalf("first page %+v", page)
	}
	var upd hosts.Updated
	if err := json.Unmarshal(page[0].Payload, &upd); err != nil || upd.OS == nil || *upd.OS != "os-3" || upd.Source != hosts.SourceAnalyst {
		t.Fatalf("payload %s (%v)", page[0].Payload, err)
	}
	rest, err := f.h.HostHistory(ctx, a, id, page[1].Version, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 3 || rest[0].Version != 3 || rest[2].Version != 1 || rest[2].Name != hosts.EventRegistered {
		t.Fatalf("rest %+v", rest)
	}
	if none, err := f.h.HostHistory(ctx, a, id, 1, 10); err != nil || len(none) != 0 {
		t.Fatalf("before 1: %+v, %v", none, err)
	}
	if _, err := f.h.HostHistory(ctx, a, "no-such-host", 0, 10); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown host: %v", err)
	}
}

func TestSyncHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.tenant(t, "Acme"), f.tenant(t, "Globex")
	sys := eventstore.Metadata{Actor: "system", ActorType: "system"}
	now := f.clock()
	report := commands.SyncHost{Tenant: a, By: "system", Meta: sys, LastSeen: now.Add(-time.Minute), FirstSeen: now.Add(-time.Hour),
		Profile: hosts.Profile{Hostname: "WS-9", ClientID: "C.ABCDEF0123456789", IPs: []string{"10.0.0.9"}, OS: "Windows",
			Labels: []string{"velociraptor"}}}

	first, err := f.h.SyncHost(ctx, report)
	if err != nil || !first.Created || first.Version != 1 {
		t.Fatalf("first report: %+v, %v", first, err)
	}
	v, err := f.h.HostView(ctx, a, hosts.ID(first.ID))
	if err != nil {
		t.Fatal(err)
	}
	if v.State.Origin != hosts.SourceVelociraptor || v.State.ClientID != "C.abcdef0123456789" || !v.State.FirstSeen.Equal(now.Add(-time.Hour)) {
		t.Fatalf("discovered %+v", v.State)
	}
	// The same report again is no news.
	again, err := f.h.SyncHost(ctx, report)
	if err != nil || again.Created || again.ID != first.ID || again.Version != 1 {
		t.Fatalf("repeated report: %+v, %v", again, err)
	}
	// A newer report changes what changed; fields it does not report stay.
	report.Profile = hosts.Profile{Hostname: "WS-9", ClientID: " C.abcdef0123456789 ", IPs: []string{"10.0.0.10"}}
	report.LastSeen, report.FirstSeen = now, time.Time{}
	upd, err := f.h.SyncHost(ctx, report)
	if err != nil || upd.Created || upd.ID != first.ID || upd.Version != 3 {
		t.Fatalf("newer report: %+v, %v", upd, err)
	}
	hist, _ := f.h.HostHistory(ctx, a, hosts.ID(first.ID), 0, 10)
	if hist[0].Name != hosts.EventSeen || hist[1].Name != hosts.EventUpdated || hist[0].Meta.ActorType != "system" {
		t.Fatalf("history %+v", hist)
	}
	v, _ = f.h.HostView(ctx, a, hosts.ID(first.ID))
	if v.State.OS != "Windows" || fmt.Sprint(v.State.IPs) != "[10.0.0.10]" || fmt.Sprint(v.State.Labels) != "[velociraptor]" || !v.State.LastSeen.Equal(now) {
		t.Fatalf("after the newer report %+v", v.State)
	}

	// With a resolution, a check-in only a little later than the recorded
	// one is no news; one much later is.
	profile := report.Profile
	report.Profile = hosts.Profile{ClientID: "C.abcdef0123456789"}
	report.SeenResolution = time.Hour
	report.LastSeen = now.Add(30 * time.Minute)
	f.advance(2 * time.Hour)
	if res, err := f.h.SyncHost(ctx, report); err != nil || res.Version != upd.Version {
		t.Fatalf("check-in within the resolution: %+v, %v", res, err)
	}
	report.LastSeen = now.Add(90 * time.Minute)
	if res, err := f.h.SyncHost(ctx, report); err != nil || res.Version != upd.Version+1 {
		t.Fatalf("check-in beyond the resolution: %+v, %v", res, err)
	}
	report.SeenResolution, report.Profile = 0, profile

	// A host an analyst registered with the client id is the one the sync updates.
	reg, err := f.h.RegisterHost(ctx, commands.RegisterHost{Tenant: a, By: "u1", Profile: hosts.Profile{Hostname: "manual", ClientID: "C.1111111111111111"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.h.SyncHost(ctx, commands.SyncHost{Tenant: a, By: "system", Profile: hosts.Profile{Hostname: "manual-renamed", ClientID: "C.1111111111111111"}})
	if err != nil || res.Created || res.ID != reg.ID {
		t.Fatalf("sync of a registered host: %+v, %v", res, err)
	}
	if v, _ := f.h.HostView(ctx, a, hosts.ID(reg.ID)); v.State.Hostname != "manual-renamed" || v.State.Origin != hosts.SourceAnalyst {
		t.Fatalf("registered host after sync: %+v", v.State)
	}

	// The sync's metadata keys go beside the analyst's, which stay.
	if _, err := f.h.UpdateHost(ctx, commands.UpdateHost{Tenant: a, Host: hosts.ID(reg.ID), By: "u1",
		Changes: hosts.Changes{Metadata: json.RawMessage(`{"owner":"finance","velociraptor":{"agent_version":"0.1"}}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.SyncHost(ctx, commands.SyncHost{Tenant: a, By: "system", Profile: hosts.Profile{ClientID: "C.1111111111111111",
		Metadata: json.RawMessage(`{"velociraptor":{"agent_version":"0.77"}}`)}}); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.h.HostView(ctx, a, hosts.ID(reg.ID)); !hosts.SameMetadata(v.State.Metadata,
		json.RawMessage(`{"owner":"finance","velociraptor":{"agent_version":"0.77"}}`)) {
		t.Fatalf("metadata after a sync: %s", v.State.Metadata)
	}

	// Another tenant's client of the same id is another host.
	other, err := f.h.SyncHost(ctx, commands.SyncHost{Tenant: b, By: "system", Profile: hosts.Profile{Hostname: "WS-9", ClientID: "C.abcdef0123456789"}})
	if err != nil || !other.Created || other.ID == first.ID {
		t.Fatalf("other tenant: %+v, %v", other, err)
	}

	// Once deleted, the client is discovered anew.
	if _, err := f.h.DeleteHost(ctx, commands.DeleteHost{Tenant: a, Host: hosts.ID(first.ID), By: "admin"}); err != nil {
		t.Fatal(err)
	}
	anew, err := f.h.SyncHost(ctx, report)
	if err != nil || !anew.Created || anew.ID == first.ID {
		t.Fatalf("after deletion: %+v, %v", anew, err)
	}

	// Bad reports are refused.
	for _, bad := range []commands.SyncHost{
		{Tenant: a, Profile: hosts.Profile{Hostname: "no-client"}},
		{Tenant: a, Profile: hosts.Profile{Hostname: "bad-client", ClientID: "C.xyz"}},
		{Tenant: a, Source: hosts.SourceAnalyst, Profile: hosts.Profile{Hostname: "h", ClientID: "C.2222222222222222"}},
		{Tenant: a, Profile: hosts.Profile{Hostname: "", ClientID: "C.2222222222222222"}},
	} {
		if _, err := f.h.SyncHost(ctx, bad); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("report %+v: %v, want invalid", bad, err)
		}
	}
}

// TestSyncHostConcurrently reports one new client from many goroutines at once:
// the tenant ends up with exactly one host for it.
func TestSyncHostConcurrently(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	const n = 8
	var wg sync.WaitGroup
	results := make([]commands.SyncResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.h.SyncHost(ctx, commands.SyncHost{Tenant: a, By: "system", LastSeen: f.clock().Add(-time.Duration(i) * time.Minute),
				Profile: hosts.Profile{Hostname: "racy", ClientID: "C.3333333333333333"}})
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("report %d: %v", i, errs[i])
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("reports landed on hosts %s and %s", results[0].ID, results[i].ID)
		}
		if results[i].Created {
			created++
		}
	}
	var streams int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(DISTINCT stream_id) FROM events WHERE stream_type = 'host'`).Scan(&streams); err != nil {
		t.Fatal(err)
	}
	if created != 1 || streams != 1 {
		t.Fatalf("%d reports created a host, %d host streams; want 1 and 1", created, streams)
	}
}
