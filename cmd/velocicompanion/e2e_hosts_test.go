package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/eventstore"
	"velocicompanion/projections/hostsearch"
)

// hostBody is a host as the API answers it.
type hostBody struct {
	ID           string          `json:"id"`
	Hostname     string          `json:"hostname"`
	IPAddress    *string         `json:"ip_address"`
	OS           *string         `json:"os"`
	TenantID     string          `json:"tenant_id"`
	HostMetadata json.RawMessage `json:"host_metadata"`
	CreatedAt    time.Time       `json:"created_at"`
	LastSeen     *time.Time      `json:"last_seen"`
	IPAddresses  []string        `json:"ip_addresses"`
	FQDN         *string         `json:"fqdn"`
	OSVersion    *string         `json:"os_version"`
	Labels       []string        `json:"labels"`
	ClientID     *string         `json:"velociraptor_client_id"`
	FirstSeen    *time.Time      `json:"first_seen"`
	ThreatScore  *int            `json:"threat_score"`
	ThreatClass  *string         `json:"threat_class"`
	Source       string          `json:"source"`
	Version      int64           `json:"version"`
	Position     int64           `json:"position"`
	Quarantine   struct {
		Status       string     `json:"status"`
		CollectionID *string    `json:"collection_id"`
		UpdatedAt    *time.Time `json:"updated_at"`
	} `json:"quarantine"`
}

type hostEventBody struct {
	Version int64           `json:"version"`
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Payload json.RawMessage `json:"payload"`
}

// hostsWorld is a server with two tenants: A with an admin, an analyst and a
// viewer, B with an admin and an analyst.
type hostsWorld struct {
	s                            *server
	alice, carol, vic, bob, dave string // tokens
	carolID, tenantA, tenantB    string
	// lastPosition and lastPositionB are the positions of the last writes
	// in tenants A and B: a tenant may only wait for its own writes.
	lastPosition, lastPositionB int64
}

// position returns a pointer to the last write position of token's tenant.
func (w *hostsWorld) position(token string) *int64 {
	if token == w.bob || token == w.dave {
		return &w.lastPositionB
	}
	return &w.lastPosition
}

func newHostsWorld(t *testing.T) *hostsWorld {
	t.Helper()
	s := startServer(t)
	admin := s.login(t, "admin", s.bootstrapPassword(t))
	w := &hostsWorld{s: s}
	tenant := func(name string) string {
		r := s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+name)
		var out struct{ ID string }
		r.json(t, &out)
		return out.ID
	}
	w.tenantA, w.tenantB = tenant("Acme"), tenant("Globex")
	user := func(tenant, name, role string) (string, string) {
		pw := "password of " + name
		r := s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
			"username": name, "password": pw, "role": role, "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create user "+name)
		var u userBody
		r.json(t, &u)
		return u.ID, s.login(t, name, pw)
	}
	_, w.alice = user(w.tenantA, "alice", "admin")
	w.carolID, w.carol = user(w.tenantA, "carol", "analyst")
	_, w.vic = user(w.tenantA, "vic", "viewer")
	_, w.bob = user(w.tenantB, "bob", "admin")
	_, w.dave = user(w.tenantB, "dave", "analyst")
	return w
}

// create registers a host and returns it.
func (w *hostsWorld) create(t *testing.T, token string, body map[string]any) hostBody {
	t.Helper()
	r := w.s.do(t, http.MethodPost, "/api/hosts", token, body)
	expectStatus(t, r, http.StatusCreated, fmt.Sprintf("create host %v", body["hostname"]))
	var h hostBody
	r.json(t, &h)
	if r.header.Get("ETag") != fmt.Sprintf(`"%d"`, h.Version) || r.header.Get("Location") != "/api/hosts/"+h.ID {
		t.Fatalf("create host: ETag %q, Location %q for %+v", r.header.Get("ETag"), r.header.Get("Location"), h)
	}
	pos := w.position(token)
	*pos = max(*pos, h.Position)
	return h
}

// list lists hosts with the query q (after the last write) and returns the
// hostnames in order.
func (w *hostsWorld) list(t *testing.T, token, q string) ([]string, response) {
	t.Helper()
	sep := "?"
	if q != "" {
		q += "&"
	}
	r := w.s.do(t, http.MethodGet, fmt.Sprintf("/api/hosts%s%smin_position=%d", sep, q, *w.position(token)), token, nil)
	expectStatus(t, r, http.StatusOK, "list hosts "+q)
	if r.header.Get("X-Read-Stale") != "" {
		t.Fatalf("list hosts %s: read model stale", q)
	}
	var hs []hostBody
	r.json(t, &hs)
	names := []string{}
	for _, h := range hs {
		names = append(names, h.Hostname)
	}
	return names, r
}

// hostEventCount counts the host events stored (all tenants).
func (w *hostsWorld) hostEventCount(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{w.s.schema(), "events"}.Sanitize()+` WHERE stream_type = 'host'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEndToEndHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	w := newHostsWorld(t)
	s := w.s

	// An analyst registers a host; values are normalised and the original
	// HostRead fields are all there.
	r := s.do(t, http.MethodPost, "/api/hosts", w.carol, map[string]any{
		"hostname": "WS-0001", "ip_address": "10.0.0.5", "ip_addresses": []string{"2001:DB8::5"}, "os": "Windows",
		"os_version": "11 23H2", "fqdn": "ws-0001.corp.example", "labels": []string{"Finance"},
		"velociraptor_client_id": "C.1234567890ABCDEF", "host_metadata": map[string]any{"owner": "alice"},
		"last_seen": "2026-01-02T03:04:05Z"})
	expectStatus(t, r, http.StatusCreated, "create WS-0001")
	var raw map[string]any
	r.json(t, &raw)
	for _, k := range []string{"id", "hostname", "ip_address", "os", "tenant_id", "host_metadata", "created_at", "last_seen",
		"ip_addresses", "fqdn", "os_version", "labels", "velociraptor_client_id", "first_seen", "threat_score", "threat_class",
		"source", "version", "quarantine"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("host lacks %q: %s", k, r.body)
		}
	}
	var h1 hostBody
	r.json(t, &h1)
	w.lastPosition = h1.Position
	if h1.TenantID != w.tenantA || h1.IPAddress == nil || *h1.IPAddress != "10.0.0.5" ||
		fmt.Sprint(h1.IPAddresses) != "[10.0.0.5 2001:db8::5]" || fmt.Sprint(h1.Labels) != "[finance]" ||
		h1.ClientID == nil || *h1.ClientID != "C.1234567890abcdef" || h1.Source != "analyst" || h1.Version != 2 ||
		h1.LastSeen == nil || !h1.LastSeen.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || h1.ThreatScore != nil ||
		string(h1.HostMetadata) == "" || r.header.Get("ETag") != `"2"` ||
		h1.Quarantine.Status != "none" || h1.Quarantine.CollectionID != nil || h1.Quarantine.UpdatedAt != nil {
		t.Fatalf("created host %+v (ETag %s)", h1, r.header.Get("ETag"))
	}
	w.create(t, w.carol, map[string]any{"hostname": "ws_0002", "ip_address": "10.0.1.7", "os": "windows"})
	w.create(t, w.alice, map[string]any{"hostname": "wsx0002", "ip_addresses": []string{"192.168.1.1"}, "os": "Linux", "labels": []string{"dmz"}})
	h4 := w.create(t, w.carol, map[string]any{"hostname": "db-01", "ip_addresses": []string{"2001:db8::44"}})
	if h4.IPAddress == nil || *h4.IPAddress != "2001:db8::44" || h4.OS != nil || len(h4.Labels) != 0 || h4.LastSeen != nil {
		t.Fatalf("db-01 is %+v", h4)
	}
	// Tenant B has a host that matches every filter below, with the same client id.
	hb := w.create(t, w.bob, map[string]any{"hostname": "WS-0001", "ip_address": "10.0.0.5", "os": "Windows",
		"labels": []string{"finance", "dmz"}, "velociraptor_client_id": "C.1234567890abcdef"})

	// Refused writes are clear 4xx errors and change nothing.
	events := w.hostEventCount(t)
	for _, tc := range []struct {
		token  string
		body   any
		status int
		code   string
	}{
		{w.vic, map[string]any{"hostname": "viewer-host"}, http.StatusForbidden, "forbidden"},
		{w.carol, map[string]any{"os": "Linux"}, http.StatusBadRequest, "hostname_required"},
		{w.carol, map[string]any{"hostname": "bad host"}, http.StatusBadRequest, "hostname_invalid"},
		{w.carol, map[string]any{"hostname": "h", "ip_address": "10.0.0.256"}, http.StatusBadRequest, "ip_invalid"},
		{w.carol, map[string]any{"hostname": "h", "velociraptor_client_id": "C.1"}, http.StatusBadRequest, "client_id_invalid"},
		{w.carol, map[string]any{"hostname": "h", "host_metadata": []int{1}}, http.StatusBadRequest, "metadata_invalid"},
		{w.carol, map[string]any{"hostname": "h", "last_seen": "yesterday"}, http.StatusBadRequest, "invalid_time"},
		{w.carol, map[string]any{"hostname": "h", "tenant_id": w.tenantB}, http.StatusBadRequest, "invalid_json"},
		{w.carol, `{"hostname": "h"`, http.StatusBadRequest, "invalid_json"},
		{w.carol, map[string]any{"hostname": "dup", "velociraptor_client_id": "C.1234567890abcdef"}, http.StatusConflict, "client_id_taken"},
	} {
		r := s.do(t, http.MethodPost, "/api/hosts", tc.token, tc.body)
		expectStatus(t, r, tc.status, fmt.Sprintf("create %v", tc.body))
		if code := r.errorCode(t); code != tc.code {
			t.Errorf("create %v: code %q, want %q", tc.body, code, tc.code)
		}
	}
	r = s.do(t, http.MethodPost, "/api/hosts", w.carol, "hostname=h", "Content-Type", "text/plain")
	expectStatus(t, r, http.StatusUnsupportedMediaType, "create as text/plain")
	if n := w.hostEventCount(t); n != events {
		t.Fatalf("refused creates appended %d events", n-events)
	}

	// Listing and filtering, as any user of the tenant.
	all := []string{"db-01", "WS-0001", "ws_0002", "wsx0002"}
	for q, want := range map[string][]string{
		"":                                       all,
		"hostname=WS":                            {"WS-0001", "ws_0002", "wsx0002"},
		"hostname=s_0":                           {"ws_0002"},
		"hostname=%25":                           {},
		"hostname_prefix=ws-":                    {"WS-0001"},
		"hostname_prefix=WS&hostname=x":          {"wsx0002"},
		"ip=10.0.0.0/16":                         {"WS-0001", "ws_0002"},
		"ip=10.0.0.5":                            {"WS-0001"},
		"ip=" + url.QueryEscape("2001:db8::/32"): {"db-01", "WS-0001"},
		"ip=" + url.QueryEscape("2001:db8::44"):  {"db-01"},
		"os=WINDOWS":                             {"WS-0001", "ws_0002"},
		"label=dmz":                              {"wsx0002"},
		"label=FINANCE":                          {"WS-0001"},
		"last_seen_after=2026-01-01T00:00:00Z":   {"WS-0001"},
		"last_seen_before=2026-01-01T00:00:00Z":  {},
		"score_min=0":                            all,
		"score_min=1":                            {},
		"sort=hostname&order=desc":               {"wsx0002", "ws_0002", "WS-0001", "db-01"},
		"sort=created_at&order=desc":             {"db-01", "wsx0002", "ws_0002", "WS-0001"},
		"sort=last_seen&order=desc&limit=1":      {"WS-0001"},
		"quarantined=false":                      all,
		"quarantined=TRUE":                       {},
	} {
		got, _ := w.list(t, w.vic, q)
		if !slices.Equal(got, want) {
			t.Errorf("list ?%s = %v, want %v", q, got, want)
		}
	}
	// Pages of one join up; the total is on request.
	var paged []string
	next := ""
	for i := 0; ; i++ {
		q := "sort=os&limit=1&include_total=true"
		if next != "" {
			q += "&cursor=" + url.QueryEscape(next)
		}
		got, r := w.list(t, w.vic, q)
		if r.header.Get("X-Total-Count") != "4" {
			t.Fatalf("X-Total-Count = %q", r.header.Get("X-Total-Count"))
		}
		paged = append(paged, got...)
		next = r.header.Get("X-Next-Cursor")
		if next == "" {
			break
		}
		if !strings.Contains(r.header.Get("Link"), `rel="next"`) || i > 4 {
			t.Fatalf("page %d: Link %q", i, r.header.Get("Link"))
		}
	}
	slices.Sort(paged)
	if want := slices.Sorted(slices.Values(all)); !slices.Equal(paged, want) {
		t.Fatalf("pages hold %v, want %v", paged, want)
	}
	_, r = w.list(t, w.vic, "limit=1")
	hostnameCursor := r.header.Get("X-Next-Cursor")
	// Bad query values are 400 with a clear code.
	for q, code := range map[string]string{
		"ip=10.0.0.0/33":                           "invalid_ip_filter",
		"ip=example.com":                           "invalid_ip_filter",
		"last_seen_before=yesterday":               "invalid_time",
		"last_seen_after=2026-13-01":               "invalid_time",
		"sort=password":                            "invalid_sort",
		"sort=" + url.QueryEscape("hostname;drop"): "invalid_sort",
		"order=up":                                 "invalid_order",
		"score_min=high":                           "invalid_score_min",
		"score_min=101":                            "invalid_score_min",
		"include_total=maybe":                      "invalid_include_total",
		"quarantined=maybe":                        "invalid_quarantined",
		"limit=0":                                  "invalid_limit",
		"limit=501":                                "invalid_limit",
		"cursor=garbage":                           "invalid_cursor",
		"sort=os&cursor=" + url.QueryEscape(hostnameCursor): "cursor_sort_mismatch",
		"hostname=" + strings.Repeat("a", 254):              "invalid_hostname_filter",
	} {
		r := s.do(t, http.MethodGet, "/api/hosts?"+q, w.vic, nil)
		expectStatus(t, r, http.StatusBadRequest, "list ?"+q)
		if got := r.errorCode(t); got != code {
			t.Errorf("list ?%s: code %q, want %q", q, got, code)
		}
	}

	// Reading one host; changing it with If-Match.
	path := "/api/hosts/" + h1.ID
	r = s.do(t, http.MethodGet, fmt.Sprintf("%s?min_position=%d", path, w.lastPosition), w.vic, nil)
	expectStatus(t, r, http.StatusOK, "get host")
	etag := r.header.Get("ETag")
	if etag != `"2"` {
		t.Fatalf("ETag %q", etag)
	}
	r = s.do(t, http.MethodPatch, path, w.carol, map[string]any{"os": "Linux", "add_labels": []string{"VIP"}}, "If-Match", etag)
	expectStatus(t, r, http.StatusOK, "patch host")
	var patched hostBody
	r.json(t, &patched)
	if patched.Version != 4 || *patched.OS != "Linux" || fmt.Sprint(patched.Labels) != "[finance vip]" || r.header.Get("ETag") != `"4"` {
		t.Fatalf("patched host %+v", patched)
	}
	w.lastPosition = patched.Position
	events = w.hostEventCount(t)
	for _, tc := range []struct {
		token   string
		body    any
		headers []string
		status  int
		code    string
	}{
		{w.carol, map[string]any{"os": "BSD"}, []string{"If-Match", etag}, http.StatusPreconditionFailed, "stale_version"},
		{w.carol, map[string]any{"os": "BSD"}, []string{"If-Match", "three"}, http.StatusBadRequest, "invalid_if_match"},
		{w.vic, map[string]any{"os": "BSD"}, nil, http.StatusForbidden, "forbidden"},
		{w.carol, map[string]any{}, nil, http.StatusBadRequest, "empty_update"},
		{w.carol, map[string]any{"os": "BSD", "ip_addresses": []string{"nope"}}, nil, http.StatusBadRequest, "ip_invalid"},
		{w.carol, map[string]any{"ip_address": "10.0.0.1", "ip_addresses": []string{"10.0.0.2"}}, nil, http.StatusBadRequest, "ip_conflict"},
		{w.carol, map[string]any{"labels": []string{"a"}, "add_labels": []string{"b"}}, nil, http.StatusBadRequest, "labels_conflict"},
		{w.carol, map[string]any{"last_seen": "2999-01-01T00:00:00Z"}, nil, http.StatusBadRequest, "seen_in_future"},
		{w.carol, map[string]any{"velociraptor_client_id": "C.0000000000000000"}, nil, http.StatusOK, ""},
	} {
		r := s.do(t, http.MethodPatch, path, tc.token, tc.body, tc.headers...)
		expectStatus(t, r, tc.status, fmt.Sprintf("patch %v %v", tc.body, tc.headers))
		if tc.code != "" {
			if code := r.errorCode(t); code != tc.code {
				t.Errorf("patch %v: code %q, want %q", tc.body, code, tc.code)
			}
			continue
		}
		r.json(t, &patched)
		w.lastPosition = patched.Position
	}
	if n := w.hostEventCount(t); n != events+1 {
		t.Fatalf("patches appended %d events, want 1 (the one accepted)", n-events)
	}
	// Another host may not take that client id.
	r = s.do(t, http.MethodPatch, "/api/hosts/"+h4.ID, w.carol, map[string]any{"velociraptor_client_id": "C.0000000000000000"})
	expectStatus(t, r, http.StatusConflict, "patch to a taken client id")

	// The history, newest first, in pages.
	r = s.do(t, http.MethodGet, path+"/history?limit=2", w.vic, nil)
	expectStatus(t, r, http.StatusOK, "history")
	var hist, more []hostEventBody
	r.json(t, &hist)
	cursor := r.header.Get("X-Next-Cursor")
	if len(hist) != 2 || hist[0].Type != "host.updated" || hist[1].Type != "host.labels_changed" || cursor != "4" ||
		hist[0].Actor != w.carolID || hist[0].Version != 5 || !strings.Contains(string(hist[0].Payload), `"client_id":"C.0000000000000000"`) {
		t.Fatalf("history page 1 (cursor %q): %+v", cursor, hist)
	}
	r = s.do(t, http.MethodGet, path+"/history?limit=2&before="+cursor, w.vic, nil)
	expectStatus(t, r, http.StatusOK, "history page 2")
	r.json(t, &more)
	hist = append(hist, more...)
	r = s.do(t, http.MethodGet, path+"/history?limit=2&cursor="+r.header.Get("X-Next-Cursor"), w.vic, nil)
	expectStatus(t, r, http.StatusOK, "history page 3")
	r.json(t, &more)
	hist = append(hist, more...)
	var types []string
	for _, e := range hist {
		types = append(types, e.Type)
	}
	if fmt.Sprint(types) != "[host.updated host.labels_changed host.updated host.seen host.registered]" || r.header.Get("X-Next-Cursor") != "" {
		t.Fatalf("history %v (next %q)", types, r.header.Get("X-Next-Cursor"))
	}
	for q, code := range map[string]string{"limit=0": "invalid_limit", "before=x": "invalid_before", "before=0": "invalid_before"} {
		r := s.do(t, http.MethodGet, path+"/history?"+q, w.vic, nil)
		expectStatus(t, r, http.StatusBadRequest, "history ?"+q)
		if got := r.errorCode(t); got != code {
			t.Errorf("history ?%s: code %q, want %q", q, got, code)
		}
	}

	// Another tenant: every host route answers 404, as for a host that does
	// not exist, and nothing changes.
	events = w.hostEventCount(t)
	missing := "/api/hosts/01900000-0000-7000-8000-000000000000"
	for _, tc := range []struct {
		method, token string
		body          any
	}{
		{http.MethodGet, w.bob, nil},
		{http.MethodPatch, w.bob, map[string]any{"os": "pwned"}},
		{http.MethodPatch, w.dave, map[string]any{"labels": []string{"pwned"}}},
		{http.MethodDelete, w.bob, nil},
	} {
		for _, p := range []string{path, missing} {
			r := s.do(t, tc.method, p, tc.token, tc.body)
			expectStatus(t, r, http.StatusNotFound, tc.method+" "+p+" from tenant B")
			if code := r.errorCode(t); code != "not_found" {
				t.Errorf("%s %s from tenant B: code %q", tc.method, p, code)
			}
		}
	}
	for _, p := range []string{path + "/history", missing + "/history"} {
		r := s.do(t, http.MethodGet, p, w.bob, nil)
		expectStatus(t, r, http.StatusNotFound, "history from tenant B")
	}
	if got, _ := w.list(t, w.bob, "hostname=ws"); fmt.Sprint(got) != "[WS-0001]" {
		t.Fatalf("tenant B lists %v", got)
	}
	r = s.do(t, http.MethodGet, "/api/hosts/"+hb.ID, w.alice, nil)
	expectStatus(t, r, http.StatusNotFound, "tenant B's host from tenant A")
	if n := w.hostEventCount(t); n != events {
		t.Fatalf("cross-tenant attempts appended %d events", n-events)
	}
	r = s.do(t, http.MethodGet, path, w.alice, nil)
	expectStatus(t, r, http.StatusOK, "host after cross-tenant attempts")
	var after hostBody
	r.json(t, &after)
	if after.Version != patched.Version || *after.OS != "Linux" {
		t.Fatalf("host after cross-tenant attempts: %+v", after)
	}

	// Deletion: administrators only, If-Match honoured, soft.
	r = s.do(t, http.MethodDelete, path, w.carol, nil)
	expectStatus(t, r, http.StatusForbidden, "analyst deletes")
	r = s.do(t, http.MethodDelete, path, w.alice, nil, "If-Match", `"1"`)
	expectStatus(t, r, http.StatusPreconditionFailed, "stale delete")
	r = s.do(t, http.MethodDelete, path, w.alice, nil, "If-Match", fmt.Sprintf(`"%d"`, after.Version))
	expectStatus(t, r, http.StatusNoContent, "delete")
	r = s.do(t, http.MethodDelete, path, w.alice, nil)
	expectStatus(t, r, http.StatusNotFound, "delete again")
	r = s.do(t, http.MethodPatch, path, w.carol, map[string]any{"os": "BSD"})
	expectStatus(t, r, http.StatusNotFound, "patch a deleted host")
	waitCaughtUp(t, s, "hostsearch.v1")
	r = s.do(t, http.MethodGet, path, w.vic, nil)
	expectStatus(t, r, http.StatusNotFound, "get a deleted host")
	if got, _ := w.list(t, w.vic, ""); !slices.Equal(got, []string{"db-01", "ws_0002", "wsx0002"}) {
		t.Fatalf("after deletion the list is %v", got)
	}
	r = s.do(t, http.MethodGet, path+"/history?limit=1", w.vic, nil)
	expectStatus(t, r, http.StatusOK, "history of a deleted host")
	r.json(t, &hist)
	if len(hist) != 1 || hist[0].Type != "host.deleted" {
		t.Fatalf("history of a deleted host: %+v", hist)
	}
	// Its client id is free again.
	w.create(t, w.carol, map[string]any{"hostname": "WS-0001", "velociraptor_client_id": "C.0000000000000000"})
}

// benchRequest sends a JSON request for a benchmark and decodes the answer
// into out (when not nil), failing b unless the status is want.
func benchRequest(b *testing.B, s *server, method, path, token string, body any, want int, out any) http.Header {
	b.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			b.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != want {
		b.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.Fatal(err)
		}
	}
	return resp.Header
}

// loadHostsDirect writes n hosts of tenant into the server's read model
// through the projector's Apply (as the application role), bypassing the
// event store: the benchmark measures reads.
func loadHostsDirect(b *testing.B, s *server, tenant domain.TenantID, n int) {
	b.Helper()
	ctx := context.Background()
	cfg, err := eventstore.AppPoolConfig(testDatabaseURL(), s.schema())
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	depts := []string{"fin", "hr", "eng", "ops", "sales", "mkt", "lab", "dev", "qa", "sec",
		"it", "legal", "supp", "rnd", "log", "pay", "crm", "erp", "web", "db"}
	now := time.Now().UTC()
	const perTx, workers = 2000, 6
	starts := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range starts {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, string(tenant)); err != nil {
						return err
					}
					for i := start; i < min(start+perTx, n); i++ {
						id := fmt.Sprintf("0190f000-%04x-7000-8000-%012x", i>>16, i)
						p := hosts.Profile{Hostname: fmt.Sprintf("%s-ws-%05d", depts[i%len(depts)], i), OS: "Windows",
							IPs: []string{fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)}}
						env := eventstore.Envelope{Tenant: tenant, StreamType: "host", StreamID: id, Version: 1,
							RecordedAt: now.Add(-time.Duration(i) * time.Second),
							Event: hosts.Discovered{ID: hosts.ID(id), Profile: p, Source: hosts.SourceVelociraptor,
								LastSeen: now.Add(-time.Duration(i%43200) * time.Minute)}}
						if err := (hostsearch.Projector{}).Apply(ctx, tx, env); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for start := 0; start < n; start += perTx {
		select {
		case starts <- start:
		case err := <-errs:
			close(starts)
			wg.Wait()
			b.Fatal(err)
		}
	}
	close(starts)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range (hostsearch.Projector{}).Tables() {
		if _, err := conn.Exec(ctx, `VACUUM ANALYZE `+pgx.Identifier{s.schema(), table}.Sanitize()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostsHTTP runs the server binary (built without -race) with
// 100,000 hosts in one tenant (VC_BENCH_HOSTS overrides), and 50 clients that
// send GET /api/hosts with a hostname substring filter, sorted by hostname,
// over loopback HTTP, alternating the first page and the 50th. It reports
// requests per second and the client-side p50 and p99 latency; each request
// is authenticated (token check and identity lookup) like any other.
//
//	go test ./cmd/velocicompanion -run '^$' -bench HostsHTTP -benchtime 5000x
func BenchmarkHostsHTTP(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("VC_BENCH_HOSTS")); err == nil && v > 0 {
		n = v
	}
	const clients = 50
	s := startBinary(b, false)
	out, _ := s.output()
	m := adminPassword.FindStringSubmatch(out)
	if m == nil {
		b.Fatal("no administrator password printed")
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	benchRequest(b, s, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "admin", "password": m[1]}, http.StatusOK, &tok)
	var tenant struct{ ID string }
	benchRequest(b, s, http.MethodPost, "/api/tenants", tok.AccessToken, map[string]string{"name": "Bench"}, http.StatusCreated, &tenant)
	benchRequest(b, s, http.MethodPost, "/api/users", tok.AccessToken, map[string]string{
		"username": "reader", "password": "password of reader", "role": "viewer", "tenant_id": tenant.ID}, http.StatusCreated, nil)
	benchRequest(b, s, http.MethodPost, "/api/auth/login", "", map[string]string{"username": "reader", "password": "password of reader"}, http.StatusOK, &tok)
	start := time.Now()
	loadHostsDirect(b, s, domain.TenantID(tenant.ID), n)
	b.Logf("loaded %d hosts in %s", n, time.Since(start).Round(time.Millisecond))

	first := "/api/hosts?hostname=fin-&sort=hostname&limit=50"
	page := first
	for range 49 {
		h := benchRequest(b, s, http.MethodGet, page, tok.AccessToken, nil, http.StatusOK, nil)
		next := h.Get("X-Next-Cursor")
		if next == "" {
			break
		}
		page = first + "&cursor=" + url.QueryEscape(next)
	}
	paths := []string{first, page}
	b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchHostsHTTP(b, s, tok.AccessToken, paths, clients) })
}

// benchHostsHTTP sends b.N requests to paths, alternately, from clients goroutines.
func benchHostsHTTP(b *testing.B, s *server, token string, paths []string, clients int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var mu sync.Mutex
	samples := make([]time.Duration, 0, b.N)
	var next atomic.Int64
	var failed atomic.Value
	b.ResetTimer()
	began := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					break
				}
				req, _ := http.NewRequest(http.MethodGet, s.base+paths[i%2], nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Store(err)
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	slices.Sort(samples)
	at := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(p*float64(len(samples))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(samples))/elapsed.Seconds(), "req/s")
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
