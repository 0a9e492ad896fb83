package commands_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
)

// artifactCase opens a case in tenant by appending its event with the store,
// independently of the case commands.
func artifactCase(t *testing.T, f *fixture, tenant domain.TenantID, tlp cases.TLP) cases.ID {
	t.Helper()
	c := f.st.Codec()
	if !c.Known(cases.EventOpened) {
		eventstore.Register[cases.Opened](c, 1)
	}
	id := cases.ID(uuid.Must(uuid.NewV7()).String())
	events, err := cases.Open(cases.State{}, cases.NewCase{ID: id, Title: "Case " + string(id), TLP: tlp}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	artifactAppend(t, f, eventstore.Key{Tenant: tenant, Type: "case", ID: string(id)}, events...)
	return id
}

// artifactHost registers a host in tenant by appending its event with the
// store, independently of the host commands.
func artifactHost(t *testing.T, f *fixture, tenant domain.TenantID, name string) hosts.ID {
	t.Helper()
	c := f.st.Codec()
	for name, register := range map[string]func(){
		hosts.EventRegistered: func() { eventstore.Register[hosts.Registered](c, 1) },
		hosts.EventDeleted:    func() { eventstore.Register[hosts.Deleted](c, 1) },
	} {
		if !c.Known(name) {
			register()
		}
	}
	id := hosts.ID(uuid.Must(uuid.NewV7()).String())
	events, err := hosts.Register(hosts.State{}, id, hosts.Profile{Hostname: name}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	artifactAppend(t, f, eventstore.Key{Tenant: tenant, Type: "host", ID: string(id)}, events...)
	return id
}

func artifactAppend(t *testing.T, f *fixture, key eventstore.Key, events ...domain.Event) {
	t.Helper()
	if _, err := f.st.Append(context.Background(), eventstore.AppendRequest{Key: key, Expected: eventstore.Any, Events: events}); err != nil {
		t.Fatal(err)
	}
}

// artifactCounts returns how many artifact events of each name tenant has
// and how many live keys it holds.
func artifactCounts(t *testing.T, f *fixture, tenant domain.TenantID) (map[string]int, int) {
	t.Helper()
	ctx := context.Background()
	rows, err := f.db.Owner.Query(ctx, `SELECT name, count(*) FROM events
		WHERE tenant_id = $1 AND stream_type = 'artifact' GROUP BY name`, string(tenant))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		counts[name] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var keys int
	if err := f.db.Owner.QueryRow(ctx, `SELECT count(*) FROM artifact_keys WHERE tenant_id = $1 AND NOT released`,
		string(tenant)).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	return counts, keys
}

func artifactView(t *testing.T, f *fixture, tenant domain.TenantID, id string) commands.ArtifactView {
	t.Helper()
	v, err := f.h.ArtifactView(context.Background(), tenant, artifacts.ID(id))
	if err != nil {
		t.Fatalf("view artifact %s: %v", id, err)
	}
	return v
}

const (
	testSHA256Upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
	testSHA256      = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

func TestAddArtifactDedupesIntoSightings(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	analyst := f.user(t, a, "ann", users.RoleAnalyst)
	c1, c2 := artifactCase(t, f, a, cases.TLPRed), artifactCase(t, f, a, "")
	h1 := artifactHost(t, f, a, "ws-01")
	add := func(n artifacts.NewArtifact) commands.ArtifactAdded {
		t.Helper()
		res, err := f.h.AddArtifact(ctx, commands.AddArtifact{Tenant: a, Artifact: n, By: analyst})
		if err != nil {
			t.Fatalf("add %+v: %v", n, err)
		}
		return res
	}

	first := add(artifacts.NewArtifact{Kind: "SHA256", Value: " " + testSHA256Upper + " ", Case: c1, IOC: true, Tags: []string{"Malware"}})
	if first.Sighted || first.ID == "" || first.Version != 1 || first.Position == 0 {
		t.Fatalf("first add: %+v", first)
	}
	v := artifactView(t, f, a, first.ID)
	if v.State.Value != testSHA256 || v.State.Kind != artifacts.KindSHA256 || v.State.TLP != cases.TLPRed ||
		v.State.Sightings != 1 || !v.State.IOC || v.State.Tags[0] != "malware" {
		t.Fatalf("first artifact: %+v (TLP should come from the case)", v.State)
	}

	// The same value, written differently, in the same case is a sighting of
	// the same artifact; its other fields are not applied.
	again := add(artifacts.NewArtifact{Kind: "sha256", Value: testSHA256, Case: c1, Description: "ignored"})
	if !again.Sighted || again.ID != first.ID || again.Version != 2 {
		t.Fatalf("repeated add: %+v, want a sighting of %s", again, first.ID)
	}
	// With a host it is a sighting on that host.
	onHost := add(artifacts.NewArtifact{Kind: "sha256", Value: testSHA256, Case: c1, Host: h1, Source: "velociraptor"})
	if !onHost.Sighted || onHost.ID != first.ID {
		t.Fatalf("repeated add on a host: %+v", onHost)
	}
	v = artifactView(t, f, a, first.ID)
	if v.State.Sightings != 3 || v.State.Description != "" || v.State.Host != "" {
		t.Fatalf("after two repeated adds: %+v", v.State)
	}
	envs, err := f.st.Load(ctx, eventstore.Key{Tenant: a, Type: "artifact", ID: first.ID})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := envs[2].Event.(artifacts.Sighted); !ok || s.Host != h1 || s.Source != "velociraptor" || s.By != analyst {
		t.Fatalf("third event: %#v", envs[2].Event)
	}

	// The same value in another case is another artifact, with the default TLP.
	other := add(artifacts.NewArtifact{Kind: "sha256", Value: testSHA256, Case: c2})
	if other.Sighted || other.ID == first.ID {
		t.Fatalf("add to another case: %+v", other)
	}
	if v := artifactView(t, f, a, other.ID); v.State.TLP != cases.TLPAmber {
		t.Fatalf("TLP of an artifact on a case without a marking given: %s", v.State.TLP)
	}
	// The same value as another kind is another artifact.
	asOther := add(artifacts.NewArtifact{Kind: "other", Value: testSHA256, Case: c1})
	if asOther.Sighted {
		t.Fatalf("the same text as another kind was deduplicated: %+v", asOther)
	}
	// On a host alone, the value is unique per host.
	hostOnly := add(artifacts.NewArtifact{Kind: "ipv4", Value: "192.0.2.1", Host: h1})
	hostAgain := add(artifacts.NewArtifact{Kind: "ipv4", Value: "192.0.2.1", Host: h1})
	if hostOnly.Sighted || !hostAgain.Sighted || hostAgain.ID != hostOnly.ID {
		t.Fatalf("host-only adds: %+v then %+v", hostOnly, hostAgain)
	}

	counts, keys := artifactCounts(t, f, a)
	if counts[artifacts.EventAdded] != 4 || counts[artifacts.EventSighted] != 3 || keys != 4 {
		t.Fatalf("events %v, live keys %d; want 4 added, 3 sighted, 4 keys", counts, keys)
	}
}

func TestAddArtifactConcurrentSameValue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.tenant(t, "Acme")
	analyst := f.user(t, a, "ann", users.RoleAnalyst)
	c := artifactCase(t, f, a, "")

	const n = 8
	results := make([]commands.ArtifactAdded, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = f.h.AddArtifact(ctx, commands.AddArtifact{Tenant: a, By: analyst,
				Artifact: artifacts.NewArtifact{Kind: "domain", Value: "Evil.Example.COM.", Case: c}})
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("add %d: %v", i, errs[i])
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("concurrent adds made two artifacts: %s and %s", results[0].ID, results[i].ID)
		}
		if !results[i].Sighted {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d adds reported a new artifact, want 1", created)
	}
	counts, keys := artifactCounts(t, f, a)
	if counts[artifacts.EventAdded] != 1 || counts[artifacts.EventSighted] != n-1 || keys != 1 {
		t.Fatalf("events %v, live keys %d; want 1 added, %d sighted, 1 key", counts, keys, n-1)
	}
	if v := artifactView(t, f, a, results[0].ID); v.State.Sightings != n || v.State.Value != "evil.example.com" {
		t.Fatalf("artifact after concurrent adds: %+v", v.State)
	}
}

func TestAddArtifactRefusalsWriteNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.tenant(t, "Acme"), f.tenant(t, "Globex")
	analyst := f.user(t, a, "ann", users.RoleAnalyst)
	caseA, caseB := artifactCase(t, f, a, ""), artifactCase(t, f, b, "")
	hostA, hostB := artifactHost(t, f, a, "ws-a"), artifactHost(t, f, b, "ws-b")
	gone := artifactHost(t, f, a, "ws-gone")
	artifactAppend(t, f, eventstore.Key{Tenant: a, Type: "host", ID: string(gone)}, hosts.Deleted{By: "tester"})

	for _, tc := range []struct {
		name string
		art  artifacts.NewArtifact
		want error
	}{
		{"other_tenants_case", artifacts.NewArtifact{Kind: "md5", Value: "d41d8cd98f00b204e9800998ecf8427e", Case: caseB}, commands.ErrArtifactCaseNotFound},
		{"missing_case", artifacts.NewArtifact{Kind: "md5", Value: "d41d8cd98f00b204e9800998ecf8427e", Case: "no-such-case"}, commands.ErrArtifactCaseNotFound},
		{"other_tenants_host", artifacts.NewArtifact{Kind: "md5", Value: "d41d8cd98f00b204e9800998ecf8427e", Host: hostB}, commands.ErrArtifactHostNotFound},
		{"other_tenants_host_on_own_case", artifacts.NewArtifact{Kind: "md5", Value: "d41d8cd98f00b204e9800998ecf8427e", Case: caseA, Host: hostB}, commands.ErrArtifactHostNotFound},
		{"deleted_host", artifacts.NewArtifact{Kind: "md5", Value: "d41d8cd98f00b204e9800998ecf8427e", Host: gone}, commands.ErrArtifactHostNotFound},
		{"bad_value", artifacts.NewArtifact{Kind: "sha256", Value: "abc", Case: caseA}, artifacts.ErrInvalidSHA256},
		{"bad_kind", artifacts.NewArtifact{Kind: "hash", Value: "abc", Case: caseA}, artifacts.ErrKindInvalid},
		{"unattached", artifacts.NewArtifact{Kind: "ipv4", Value: "192.0.2.1"}, artifacts.ErrUnattached},
		{"bad_tlp", artifacts.NewArtifact{Kind: "ipv4", Value: "192.0.2.1", Host: hostA, TLP: "purple"}, cases.ErrTLPInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.h.AddArtifact(ctx, commands.AddArtifact{Tenant: a, Artifact: tc.art, By: analyst})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if domain.KindOf(err) != domain.KindOf(tc.want) {
				t.Fatalf("kind of %v is %v", err, domain.KindOf(err))
			}
		})
	}
	for _, tenant := range []domain.TenantID{a, b} {
		if counts, keys := artifactCounts(t, f, tenant); len(counts) != 0 || keys != 0 {
			t.Fatalf("refused adds wrote events %v and %d keys in %s", counts, keys, tenant)
		}
	}
}

func TestUpdateSightAndDeleteArtifact(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.tenant(t, "Acme"), f.tenant(t, "Globex")
	analyst := f.user(t, a, "ann", users.RoleAnalyst)
	c := artifactCase(t, f, a, "")
	hostA, hostB := artifactHost(t, f, a, "ws-a"), artifactHost(t, f, b, "ws-b")
	added, err := f.h.AddArtifact(ctx, commands.AddArtifact{Tenant: a, By: analyst,
		Artifact: artifacts.NewArtifact{Kind: "cidr", Value: "10.1.2.3/8", Case: c}})
	if err != nil {
		t.Fatal(err)
	}
	id := artifacts.ID(added.ID)
	if v := artifactView(t, f, a, added.ID); v.State.Value != "10.0.0.0/8" {
		t.Fatalf("cidr stored as %q", v.State.Value)
	}

	// Update honours If-Match, and another tenant's artifact is not found.
	desc, ioc := "C2 range", true
	ch := artifacts.Changes{Description: &desc, IOC: &ioc}
	_, err = f.h.UpdateArtifact(ctx, commands.UpdateArtifact{Tenant: a, Artifact: id, Changes: ch, IfMatch: 5, By: analyst})
	if !errors.Is(err, commands.ErrStale) {
		t.Fatalf("stale If-Match: %v", err)
	}
	_, err = f.h.UpdateArtifact(ctx, commands.UpdateArtifact{Tenant: b, Artifact: id, Changes: ch, By: analyst})
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("update from another tenant: %v", err)
	}
	res, err := f.h.UpdateArtifact(ctx, commands.UpdateArtifact{Tenant: a, Artifact: id, Changes: ch, IfMatch: 1, By: analyst})
	if err != nil || res.Version != 2 {
		t.Fatalf("update: %+v, %v", res, err)
	}
	// Repeating it changes nothing.
	if res, err := f.h.UpdateArtifact(ctx, commands.UpdateArtifact{Tenant: a, Artifact: id, Changes: ch, By: analyst}); err != nil || res.Version != 2 {
		t.Fatalf("repeated update: %+v, %v", res, err)
	}

	// An explicit sighting in the past moves first_seen back; one on another
	// tenant's host is refused.
	created := artifactView(t, f, a, added.ID).CreatedAt
	earlier := created.Add(-48 * time.Hour).UTC()
	_, err = f.h.SightArtifact(ctx, commands.SightArtifact{Tenant: a, Artifact: id, By: analyst,
		Sighting: artifacts.Sighting{Host: hostB}})
	if !errors.Is(err, commands.ErrArtifactHostNotFound) {
		t.Fatalf("sighting on another tenant's host: %v", err)
	}
	_, err = f.h.SightArtifact(ctx, commands.SightArtifact{Tenant: b, Artifact: id, By: analyst})
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("sighting from another tenant: %v", err)
	}
	if _, err := f.h.SightArtifact(ctx, commands.SightArtifact{Tenant: a, Artifact: id, By: analyst,
		Sighting: artifacts.Sighting{Host: hostA, At: earlier, Source: "edr"}}); err != nil {
		t.Fatal(err)
	}
	v := artifactView(t, f, a, added.ID)
	if v.State.Sightings != 2 || !v.FirstSeen.Equal(earlier) || !v.LastSeen.Equal(created) || v.State.Description != desc {
		t.Fatalf("after a past sighting: %+v first %v last %v", v.State, v.FirstSeen, v.LastSeen)
	}

	// Delete: another tenant cannot; a stale If-Match is refused; then the
	// artifact is gone, its key released, and the value may be added anew.
	if _, err := f.h.DeleteArtifact(ctx, commands.DeleteArtifact{Tenant: b, Artifact: id, By: analyst}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("delete from another tenant: %v", err)
	}
	if _, err := f.h.DeleteArtifact(ctx, commands.DeleteArtifact{Tenant: a, Artifact: id, IfMatch: 1, By: analyst}); !errors.Is(err, commands.ErrStale) {
		t.Fatalf("delete with a stale If-Match: %v", err)
	}
	if _, err := f.h.DeleteArtifact(ctx, commands.DeleteArtifact{Tenant: a, Artifact: id, By: analyst}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.ArtifactView(ctx, a, id); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("view after delete: %v", err)
	}
	if _, err := f.h.DeleteArtifact(ctx, commands.DeleteArtifact{Tenant: a, Artifact: id, By: analyst}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := f.h.UpdateArtifact(ctx, commands.UpdateArtifact{Tenant: a, Artifact: id, Changes: ch, By: analyst}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("update after delete: %v", err)
	}
	if _, err := f.h.SightArtifact(ctx, commands.SightArtifact{Tenant: a, Artifact: id, By: analyst}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("sighting after delete: %v", err)
	}
	again, err := f.h.AddArtifact(ctx, commands.AddArtifact{Tenant: a, By: analyst,
		Artifact: artifacts.NewArtifact{Kind: "cidr", Value: "10.0.0.0/8", Case: c}})
	if err != nil {
		t.Fatal(err)
	}
	if again.Sighted || again.ID == added.ID {
		t.Fatalf("add after delete: %+v, want a new artifact", again)
	}
	if v := artifactView(t, f, a, again.ID); v.State.Sightings != 1 || v.State.Description != "" {
		t.Fatalf("re-added artifact: %+v", v.State)
	}
	counts, keys := artifactCounts(t, f, a)
	if counts[artifacts.EventDeleted] != 1 || keys != 1 {
		t.Fatalf("events %v, live keys %d", counts, keys)
	}
}
