package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
)

// artifactBody is an artifact as the API answers it.
type artifactBody struct {
	ID           string         `json:"id"`
	ArtifactType string         `json:"artifact_type"`
	Value        string         `json:"value"`
	Description  string         `json:"description"`
	CaseID       *string        `json:"case_id"`
	HostID       *string        `json:"host_id"`
	Tags         []string       `json:"tags"`
	TLP          string         `json:"tlp"`
	IsIOC        bool           `json:"is_ioc"`
	Source       string         `json:"source"`
	Metadata     map[string]any `json:"artifact_metadata"`
	Sightings    int            `json:"sightings"`
	FirstSeen    string         `json:"first_seen"`
	LastSeen     string         `json:"last_seen"`
	CreatedAt    string         `json:"created_at"`
	Version      int64          `json:"version"`
	Position     int64          `json:"position"`
}

// artifactWorld is what the artifact end-to-end test sets up: two tenants
// with their users, and a way to seed cases and hosts.
type artifactWorld struct {
	s                  *server
	tenantA, tenantB   string
	adminA, analystA   string // tokens
	viewerA, adminB    string
	adminAID, adminBID string
	seedPool           *pgxpool.Pool
	seedStore          *eventstore.Store
	seeded, viaAPI     int
}

func newArtifactWorld(t *testing.T, s *server) *artifactWorld {
	t.Helper()
	w := &artifactWorld{s: s}
	root := s.login(t, "admin", s.bootstrapPassword(t))
	for _, tn := range []struct {
		name string
		id   *string
	}{{"Initech", &w.tenantA}, {"Umbrella", &w.tenantB}} {
		r := s.do(t, http.MethodPost, "/api/tenants", root, map[string]string{"name": tn.name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+tn.name)
		var body struct{ ID string }
		r.json(t, &body)
		*tn.id = body.ID
	}
	for _, u := range []struct {
		name, role, tenant string
		token, id          *string
	}{
		{"art-admin-a", "admin", w.tenantA, &w.adminA, &w.adminAID},
		{"art-analyst-a", "analyst", w.tenantA, &w.analystA, nil},
		{"art-viewer-a", "viewer", w.tenantA, &w.viewerA, nil},
		{"art-admin-b", "admin", w.tenantB, &w.adminB, &w.adminBID},
	} {
		pw := "correct horse battery " + u.name
		r := s.do(t, http.MethodPost, "/api/users", root, map[string]string{
			"username": u.name, "password": pw, "role": u.role, "tenant_id": u.tenant})
		expectStatus(t, r, http.StatusCreated, "create "+u.name)
		if u.id != nil {
			var body userBody
			r.json(t, &body)
			*u.id = body.ID
		}
		*u.token = s.login(t, u.name, pw)
	}
	return w
}

// seeder returns a store on the server's database, for the cases and hosts
// the test cannot create over HTTP while their routes do not exist yet.
func (w *artifactWorld) seeder(t *testing.T) *eventstore.Store {
	t.Helper()
	if w.seedStore != nil {
		return w.seedStore
	}
	cfg, err := eventstore.AppPoolConfig(testDatabaseURL(), w.s.schema())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	if w.seedPool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.seedPool.Close)
	codec := commands.NewCodec()
	if !codec.Known(cases.EventOpened) {
		eventstore.Register[cases.Opened](codec, 1)
	}
	if !codec.Known(hosts.EventRegistered) {
		eventstore.Register[hosts.Registered](codec, 1)
	}
	w.seedStore = eventstore.NewStore(w.seedPool, codec)
	return w.seedStore
}

// seed appends the first event of a new case or host stream directly.
func (w *artifactWorld) seed(t *testing.T, tenant, typ, id string, e domain.Event) {
	t.Helper()
	_, err := w.seeder(t).Append(context.Background(), eventstore.AppendRequest{
		Key: eventstore.Key{Tenant: domain.TenantID(tenant), Type: typ, ID: id}, Expected: eventstore.NoStream,
		Events: []domain.Event{e}, Metadata: eventstore.Metadata{Actor: "e2e", ActorType: "system"}})
	if err != nil {
		t.Fatal(err)
	}
}

// newCase opens a case in the tenant of token (whose administrator is
// adminID) through POST /api/cases.
//
// DEPENDS on the case routes (another engineer's work): while POST /api/cases
// answers 404 route_not_found, the case stream is seeded with the event store
// instead, so that the artifact routes can still be tested against it.
func (w *artifactWorld) newCase(t *testing.T, token, tenant, adminID, title, tlp string) string {
	t.Helper()
	body := map[string]string{"title": title}
	if tlp != "" {
		body["tlp"] = tlp
	}
	r := w.s.do(t, http.MethodPost, "/api/cases", token, body)
	if r.status == http.StatusNotFound && r.errorCode(t) == "route_not_found" {
		id := uuid.Must(uuid.NewV7()).String()
		events, err := cases.Open(cases.State{}, cases.NewCase{ID: cases.ID(id), Title: title, TLP: cases.TLP(tlp)}, domain.UserID(adminID))
		if err != nil {
			t.Fatal(err)
		}
		w.seed(t, tenant, "case", id, events[0])
		w.seeded++
		return id
	}
	expectStatus(t, r, http.StatusCreated, "open case "+title)
	w.viaAPI++
	var c struct{ ID string }
	r.json(t, &c)
	return c.ID
}

// newHost registers a host through POST /api/hosts.
//
// DEPENDS on the host routes (another engineer's work): while POST
// /api/hosts answers 404 route_not_found, the host stream is seeded with the
// event store instead.
func (w *artifactWorld) newHost(t *testing.T, token, tenant, adminID, hostname string) string {
	t.Helper()
	r := w.s.do(t, http.MethodPost, "/api/hosts", token, map[string]string{"hostname": hostname})
	if r.status == http.StatusNotFound && r.errorCode(t) == "route_not_found" {
		id := uuid.Must(uuid.NewV7()).String()
		events, err := hosts.Register(hosts.State{}, hosts.ID(id), hosts.Profile{Hostname: hostname}, domain.UserID(adminID))
		if err != nil {
			t.Fatal(err)
		}
		w.seed(t, tenant, "host", id, events[0])
		w.seeded++
		return id
	}
	expectStatus(t, r, http.StatusCreated, "register host "+hostname)
	w.viaAPI++
	var h struct{ ID string }
	r.json(t, &h)
	return h.ID
}

// addArtifact posts an artifact and expects status want.
func (w *artifactWorld) addArtifact(t *testing.T, token string, body map[string]any, want int) artifactBody {
	t.Helper()
	r := w.s.do(t, http.MethodPost, "/api/artifacts", token, body)
	expectStatus(t, r, want, fmt.Sprintf("add artifact %v", body))
	var a artifactBody
	r.json(t, &a)
	if a.ID == "" || a.Version == 0 || a.Position == 0 || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, a.Version) {
		t.Fatalf("add artifact answered %s (ETag %s)", r.body, r.header.Get("ETag"))
	}
	return a
}

// listArtifacts GETs path (with min_position appended) and returns the ids.
func (w *artifactWorld) listArtifacts(t *testing.T, token, path string, minPos int64) ([]artifactBody, response) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	r := w.s.do(t, http.MethodGet, fmt.Sprintf("%s%smin_position=%d", path, sep, minPos), token, nil)
	expectStatus(t, r, http.StatusOK, "GET "+path)
	if r.header.Get("X-Read-Stale") != "" {
		t.Fatalf("GET %s: the read model did not catch up", path)
	}
	var out []artifactBody
	r.json(t, &out)
	return out, r
}

func artifactIDs(list []artifactBody) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.ID)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestEndToEndArtifacts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	s := startServer(t)
	w := newArtifactWorld(t, s)

	// DEPENDS on the case and host routes (or their seeded fallback).
	caseA1 := w.newCase(t, w.analystA, w.tenantA, w.adminAID, "Phishing wave", "TLP:RED")
	caseA2 := w.newCase(t, w.analystA, w.tenantA, w.adminAID, "Ransomware", "")
	caseB := w.newCase(t, w.adminB, w.tenantB, w.adminBID, "Umbrella incident", "")
	hostA := w.newHost(t, w.analystA, w.tenantA, w.adminAID, "ws-initech-01")
	hostB := w.newHost(t, w.adminB, w.tenantB, w.adminBID, "ws-umbrella-01")
	t.Logf("cases and hosts: %d created through their routes, %d seeded with the event store", w.viaAPI, w.seeded)

	// Bad values of every kind are refused with 400 and the kind's code, and
	// nothing is created.
	for _, tc := range []struct{ kind, value string }{
		{"md5", "d41d8cd98f00b204e9800998ecf8427"},
		{"sha1", "da39a3ee5e6b4b0d3255bfef95601890afd8070g"},
		{"sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"},
		{"ipv4", "192.0.2.256"},
		{"ipv6", "2001:db8::g"},
		{"cidr", "10.0.0.0/33"},
		{"domain", "localhost"},
		{"url", "javascript:alert(1)"},
		{"email", "Alice <alice@example.com>"},
		{"filename", "dir/evil.exe"},
		{"file_path", `relative\evil.exe`},
		{"registry_key", `HKEY_NOWHERE\Software\Evil`},
		{"user_agent", "Mozilla/5.0\u0007"},
		{"other", "\u0000"},
	} {
		r := s.do(t, http.MethodPost, "/api/artifacts", w.analystA, map[string]any{
			"artifact_type": tc.kind, "value": tc.value, "case_id": caseA1})
		expectStatus(t, r, http.StatusBadRequest, "bad "+tc.kind)
		if code := r.errorCode(t); code != "invalid_"+tc.kind {
			t.Fatalf("bad %s answered %s", tc.kind, r.body)
		}
	}
	for _, tc := range []struct {
		body map[string]any
		want int
		code string
	}{
		{map[string]any{"artifact_type": "hash", "value": "abc", "case_id": caseA1}, http.StatusBadRequest, "invalid_kind"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1"}, http.StatusBadRequest, "artifact_unattached"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": caseA1, "tlp": "purple"}, http.StatusBadRequest, "tlp_invalid"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": caseA1, "artifact_metadata": []int{1}}, http.StatusBadRequest, "metadata_invalid"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": caseA1, "kind": "ipv4"}, http.StatusBadRequest, "invalid_json"},
		// Another tenant's case or host is not found, like a missing one.
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": caseB}, http.StatusNotFound, "case_not_found"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": "01900000-0000-7000-8000-000000000000"}, http.StatusNotFound, "case_not_found"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "host_id": hostB}, http.StatusNotFound, "host_not_found"},
		{map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": caseA1, "host_id": hostB}, http.StatusNotFound, "host_not_found"},
	} {
		r := s.do(t, http.MethodPost, "/api/artifacts", w.analystA, tc.body)
		expectStatus(t, r, tc.want, fmt.Sprintf("refused add %v", tc.body))
		if code := r.errorCode(t); code != tc.code {
			t.Fatalf("refused add %v answered %s, want code %s", tc.body, r.body, tc.code)
		}
	}
	// A viewer may not add.
	r := s.do(t, http.MethodPost, "/api/artifacts", w.viewerA, map[string]any{"artifact_type": "ipv4", "value": "192.0.2.1", "case_id": caseA1})
	expectStatus(t, r, http.StatusForbidden, "viewer adds")

	// Values are normalised, and the normal form is what the API shows.
	sha := w.addArtifact(t, w.analystA, map[string]any{
		"artifact_type": "sha256", "value": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
		"case_id": caseA1, "is_ioc": true, "tags": []string{"Dropper"}, "source": "velociraptor",
		"artifact_metadata": map[string]any{"vt_score": 61}, "description": "payload hash"}, http.StatusCreated)
	if sha.Value != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" || sha.ArtifactType != "sha256" ||
		sha.CaseID == nil || *sha.CaseID != caseA1 || sha.HostID != nil || sha.TLP != "TLP:RED" || !sha.IsIOC ||
		!slices.Equal(sha.Tags, []string{"dropper"}) || sha.Metadata["vt_score"] != float64(61) || sha.Sightings != 1 {
		t.Fatalf("sha256 artifact: %+v", sha)
	}
	idn := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "domain", "value": "Bücher.Example.", "case_id": caseA1}, http.StatusCreated)
	cidr := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "cidr", "value": "192.168.1.77/24", "case_id": caseA1}, http.StatusCreated)
	v6 := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "ipv6", "value": "2001:DB8:0:0::1", "host_id": hostA}, http.StatusCreated)
	reg := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "registry_key", "value": `hklm\Software\Run\`, "case_id": caseA2}, http.StatusCreated)
	for _, tc := range []struct {
		a    artifactBody
		want string
	}{
		{idn, "xn--bcher-kva.example"}, {cidr, "192.168.1.0/24"}, {v6, "2001:db8::1"}, {reg, `HKEY_LOCAL_MACHINE\Software\Run`},
	} {
		if tc.a.Value != tc.want {
			t.Fatalf("%s stored as %q, want %q", tc.a.ArtifactType, tc.a.Value, tc.want)
		}
	}
	if cidr.TLP != "TLP:RED" || reg.TLP != "TLP:AMBER" || v6.TLP != "TLP:AMBER" {
		t.Fatalf("TLPs: %s (case red), %s, %s (default amber)", cidr.TLP, reg.TLP, v6.TLP)
	}

	// The same value twice in one case is one artifact: 200 with its
	// sightings counted. Another case makes another artifact, and so does
	// another tenant.
	again := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "SHA256",
		"value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "case_id": caseA1, "host_id": hostA}, http.StatusOK)
	if again.ID != sha.ID || again.Sightings != 2 || again.Description != "payload hash" {
		t.Fatalf("repeated add: %+v, want a sighting of %s", again, sha.ID)
	}
	shaA2 := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "sha256",
		"value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "case_id": caseA2}, http.StatusCreated)
	shaB := w.addArtifact(t, w.adminB, map[string]any{"artifact_type": "sha256",
		"value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "case_id": caseB}, http.StatusCreated)
	if shaA2.ID == sha.ID || shaB.ID == sha.ID || shaB.ID == shaA2.ID {
		t.Fatalf("artifacts of other cases share an id: %s %s %s", sha.ID, shaA2.ID, shaB.ID)
	}
	v6again := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "ipv6", "value": "2001:db8::0:1", "host_id": hostA}, http.StatusOK)
	if v6again.ID != v6.ID || v6again.Sightings != 2 {
		t.Fatalf("repeated host-only add: %+v", v6again)
	}
	last := max(shaA2.Position, v6again.Position)

	// Every artifact of tenant A, and only those; refused adds created none.
	all, _ := w.listArtifacts(t, w.viewerA, "/api/artifacts", last)
	if got, want := artifactIDs(all), sortedIDs(sha.ID, idn.ID, cidr.ID, v6.ID, reg.ID, shaA2.ID); !slices.Equal(got, want) {
		t.Fatalf("tenant A lists %v, want %v", got, want)
	}
	onlyB, _ := w.listArtifacts(t, w.adminB, "/api/artifacts", shaB.Position)
	if got := artifactIDs(onlyB); !slices.Equal(got, []string{shaB.ID}) {
		t.Fatalf("tenant B lists %v", got)
	}

	// Lookup finds the value across the tenant's cases, however it is
	// written, with or without a kind; never in another tenant.
	upper := url.QueryEscape("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")
	for _, path := range []string{
		"/api/artifacts/lookup?value=" + upper,
		"/api/artifacts/lookup?kind=sha256&value=" + upper,
		"/api/artifacts?value=" + upper,
	} {
		got, _ := w.listArtifacts(t, w.viewerA, path, last)
		if ids := artifactIDs(got); !slices.Equal(ids, sortedIDs(sha.ID, shaA2.ID)) {
			t.Fatalf("%s as tenant A: %v, want %s and %s", path, ids, sha.ID, shaA2.ID)
		}
	}
	gotB, _ := w.listArtifacts(t, w.adminB, "/api/artifacts/lookup?value="+upper, shaB.Position)
	if ids := artifactIDs(gotB); !slices.Equal(ids, []string{shaB.ID}) {
		t.Fatalf("lookup as tenant B: %v, want only %s", ids, shaB.ID)
	}
	gotIDN, _ := w.listArtifacts(t, w.viewerA, "/api/artifacts/lookup?value="+url.QueryEscape("BÜCHER.example"), last)
	if ids := artifactIDs(gotIDN); !slices.Equal(ids, []string{idn.ID}) {
		t.Fatalf("lookup of the IDN: %v", ids)
	}
	for _, tc := range []struct{ path, code string }{
		{"/api/artifacts/lookup?kind=md5&value=" + upper, "invalid_md5"},
		{"/api/artifacts/lookup?value=", "value_required"},
		{"/api/artifacts/lookup?kind=hash&value=x", "invalid_kind"},
		{"/api/artifacts?kind=ipv4&value=999.0.0.1", "invalid_ipv4"},
		{"/api/artifacts?is_ioc=maybe", "invalid_is_ioc"},
		{"/api/artifacts?sort=hostname", "invalid_sort"},
		{"/api/artifacts?cursor=garbage", "invalid_cursor"},
	} {
		r := s.do(t, http.MethodGet, tc.path, w.viewerA, nil)
		expectStatus(t, r, http.StatusBadRequest, tc.path)
		if code := r.errorCode(t); code != tc.code {
			t.Fatalf("%s answered %s, want %s", tc.path, r.body, tc.code)
		}
	}

	// Filters and pages.
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/api/artifacts?case_id=" + caseA1, sortedIDs(sha.ID, idn.ID, cidr.ID)},
		{"/api/artifacts?case_id=" + caseB, nil},
		{"/api/artifacts?host_id=" + hostA, sortedIDs(sha.ID, v6.ID)}, // sha256 was sighted on it
		{"/api/artifacts?kind=sha256&case_id=" + caseA2, []string{shaA2.ID}},
		{"/api/artifacts?is_ioc=true", []string{sha.ID}},
		{"/api/artifacts?tag=DROPPER", []string{sha.ID}},
	} {
		got, _ := w.listArtifacts(t, w.viewerA, tc.path, last)
		if ids := artifactIDs(got); !slices.Equal(ids, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.path, ids, tc.want)
		}
	}
	var paged []string
	next := "/api/artifacts?sort=value&limit=4"
	for next != "" {
		got, r := w.listArtifacts(t, w.viewerA, next, last)
		for _, a := range got {
			paged = append(paged, a.Value)
		}
		next = ""
		if cur := r.header.Get("X-Next-Cursor"); cur != "" {
			next = "/api/artifacts?sort=value&limit=4&cursor=" + url.QueryEscape(cur)
		}
	}
	if len(paged) != 6 || !slices.IsSorted(paged) {
		t.Fatalf("pages by value: %v", paged)
	}

	// GET, PATCH (If-Match), explicit sightings.
	r = s.do(t, http.MethodGet, fmt.Sprintf("/api/artifacts/%s?min_position=%d", sha.ID, last), w.viewerA, nil)
	expectStatus(t, r, http.StatusOK, "get artifact")
	if r.header.Get("ETag") != `"2"` {
		t.Fatalf("ETag %q after one sighting", r.header.Get("ETag"))
	}
	r = s.do(t, http.MethodPatch, "/api/artifacts/"+sha.ID, w.analystA, map[string]any{"is_ioc": false}, "If-Match", `"1"`)
	expectStatus(t, r, http.StatusPreconditionFailed, "stale If-Match")
	r = s.do(t, http.MethodPatch, "/api/artifacts/"+sha.ID, w.analystA, map[string]any{}, "If-Match", `"2"`)
	expectStatus(t, r, http.StatusBadRequest, "empty update")
	r = s.do(t, http.MethodPatch, "/api/artifacts/"+sha.ID, w.analystA, map[string]any{"value": "0000"})
	expectStatus(t, r, http.StatusBadRequest, "the value cannot change")
	r = s.do(t, http.MethodPatch, "/api/artifacts/"+sha.ID, w.viewerA, map[string]any{"is_ioc": false})
	expectStatus(t, r, http.StatusForbidden, "viewer patches")
	r = s.do(t, http.MethodPatch, "/api/artifacts/"+sha.ID, w.analystA, map[string]any{
		"is_ioc": false, "tags": []string{"dropper", "Stage-2"}, "tlp": "amber+strict", "artifact_metadata": nil}, "If-Match", `"2"`)
	expectStatus(t, r, http.StatusOK, "patch artifact")
	var patched artifactBody
	r.json(t, &patched)
	if patched.IsIOC || patched.TLP != "TLP:AMBER+STRICT" || !slices.Equal(patched.Tags, []string{"dropper", "stage-2"}) ||
		len(patched.Metadata) != 0 || patched.Version != 3 || patched.Value != sha.Value {
		t.Fatalf("patched: %s", r.body)
	}
	r = s.do(t, http.MethodPost, "/api/artifacts/"+sha.ID+"/sightings", w.analystA, map[string]any{
		"host_id": hostA, "source": "edr", "seen_at": "2024-01-02T03:04:05Z"})
	expectStatus(t, r, http.StatusOK, "sighting")
	var sighted artifactBody
	r.json(t, &sighted)
	if sighted.Sightings != 3 || sighted.FirstSeen != "2024-01-02T03:04:05Z" {
		t.Fatalf("after a past sighting: %s", r.body)
	}
	r = s.do(t, http.MethodPost, "/api/artifacts/"+sha.ID+"/sightings", w.analystA, map[string]any{"host_id": hostB})
	expectStatus(t, r, http.StatusNotFound, "sighting on another tenant's host")
	r = s.do(t, http.MethodGet, fmt.Sprintf("/api/artifacts/%s?min_position=%d", sha.ID, sighted.Position), w.viewerA, nil)
	expectStatus(t, r, http.StatusOK, "get after sighting")
	var fromRead artifactBody
	r.json(t, &fromRead)
	fromRead.Position = sighted.Position
	if !reflect.DeepEqual(fromRead, sighted) {
		t.Fatalf("the read model shows\n%+v\nthe write answered\n%+v", fromRead, sighted)
	}

	// Another tenant's artifact is not found on every route, and stays as it was.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/api/artifacts/" + sha.ID, nil},
		{http.MethodPatch, "/api/artifacts/" + sha.ID, map[string]any{"is_ioc": true}},
		{http.MethodDelete, "/api/artifacts/" + sha.ID, nil},
		{http.MethodPost, "/api/artifacts/" + sha.ID + "/sightings", map[string]any{}},
	} {
		r := s.do(t, tc.method, tc.path, w.adminB, tc.body)
		expectStatus(t, r, http.StatusNotFound, "tenant B: "+tc.method+" "+tc.path)
	}
	r = s.do(t, http.MethodGet, "/api/artifacts/"+sha.ID, w.viewerA, nil)
	expectStatus(t, r, http.StatusOK, "get after cross-tenant attempts")
	var unchanged artifactBody
	r.json(t, &unchanged)
	if unchanged.Version != sighted.Version || unchanged.IsIOC {
		t.Fatalf("cross-tenant attempts changed the artifact: %s", r.body)
	}

	// Delete: administrators only; soft; the value may then be added again
	// as a new artifact.
	r = s.do(t, http.MethodDelete, "/api/artifacts/"+sha.ID, w.analystA, nil)
	expectStatus(t, r, http.StatusForbidden, "analyst deletes")
	r = s.do(t, http.MethodDelete, "/api/artifacts/"+sha.ID, w.adminA, nil, "If-Match", `"3"`)
	expectStatus(t, r, http.StatusPreconditionFailed, "delete with a stale If-Match")
	r = s.do(t, http.MethodDelete, "/api/artifacts/"+sha.ID, w.adminA, nil)
	expectStatus(t, r, http.StatusNoContent, "delete")
	r = s.do(t, http.MethodDelete, "/api/artifacts/"+sha.ID, w.adminA, nil)
	expectStatus(t, r, http.StatusNotFound, "delete again")
	readded := w.addArtifact(t, w.analystA, map[string]any{"artifact_type": "sha256",
		"value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "case_id": caseA1}, http.StatusCreated)
	if readded.ID == sha.ID || readded.Sightings != 1 {
		t.Fatalf("re-added after delete: %+v", readded)
	}
	r = s.do(t, http.MethodGet, fmt.Sprintf("/api/artifacts/%s?min_position=%d", sha.ID, readded.Position), w.viewerA, nil)
	expectStatus(t, r, http.StatusNotFound, "get deleted")
	got, _ := w.listArtifacts(t, w.viewerA, "/api/artifacts/lookup?value="+upper, readded.Position)
	if ids := artifactIDs(got); !slices.Equal(ids, sortedIDs(readded.ID, shaA2.ID)) {
		t.Fatalf("lookup after delete and re-add: %v", ids)
	}

	// The read model rebuilds to exactly what the live projector built.
	waitCaughtUp(t, s, "artifactlist.v1")
	before := dumpArtifactList(t, s)
	if out := s.runTask(t, "replay", "--projection", "artifactlist.v1"); !strings.Contains(out, "artifactlist.v1 rebuilt") {
		t.Fatalf("replay printed %q", out)
	}
	if after := dumpArtifactList(t, s); after != before {
		t.Fatalf("rebuilt artifact_list differs:\nlive:\n%s\nrebuilt:\n%s", before, after)
	}
}

// dumpArtifactList returns the artifact read model's rows as text.
func dumpArtifactList(t *testing.T, s *server) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := eventstore.OwnerPoolConfig(testDatabaseURL(), s.schema())
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var dump string
	err = pool.QueryRow(ctx, `SELECT
		(SELECT coalesce(string_agg(row_to_json(a)::text, E'\n' ORDER BY tenant_id, artifact_id), '') FROM artifact_list a) || E'\n' ||
		(SELECT coalesce(string_agg(row_to_json(h)::text, E'\n' ORDER BY tenant_id, host_id, artifact_id), '') FROM artifact_list_hosts h)`).Scan(&dump)
	if err != nil {
		t.Fatal(err)
	}
	return dump
}
