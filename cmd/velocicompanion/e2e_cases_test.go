package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// tenantFixture is a platform with two tenants: A with an admin, an analyst
// and a viewer, and B with an admin.
type tenantFixture struct {
	s                       *server
	tenantA, tenantB        string
	alice, carol, vic, bob  string // tokens
	aliceID, carolID, bobID string
	platformAdmin           string
}

func newTenantFixture(t *testing.T) *tenantFixture {
	t.Helper()
	s := startServer(t)
	f := &tenantFixture{s: s, platformAdmin: s.login(t, "admin", s.bootstrapPassword(t))}
	mkTenant := func(name string) string {
		r := s.do(t, http.MethodPost, "/api/tenants", f.platformAdmin, map[string]string{"name": name})
		expectStatus(t, r, http.StatusCreated, "create tenant "+name)
		var out struct{ ID string }
		r.json(t, &out)
		return out.ID
	}
	f.tenantA, f.tenantB = mkTenant("Acme"), mkTenant("Globex")
	mkUser := func(tenant, name, role string) (string, string) {
		pw := "password of " + name
		r := s.do(t, http.MethodPost, "/api/users", f.platformAdmin, map[string]string{
			"username": name, "password": pw, "role": role, "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create user "+name)
		var u userBody
		r.json(t, &u)
		return u.ID, s.login(t, name, pw)
	}
	f.aliceID, f.alice = mkUser(f.tenantA, "alice", "admin")
	f.carolID, f.carol = mkUser(f.tenantA, "carol", "analyst")
	_, f.vic = mkUser(f.tenantA, "vic", "viewer")
	f.bobID, f.bob = mkUser(f.tenantB, "bob", "admin")
	return f
}

type caseBody struct {
	ID                 string   `json:"id"`
	Title              string   `json:"title"`
	Status             string   `json:"status"`
	Severity           string   `json:"severity"`
	TLP                string   `json:"tlp"`
	Assignee           string   `json:"assignee"`
	Tags               []string `json:"tags"`
	Techniques         []string `json:"techniques"`
	AllowedTransitions []string `json:"allowed_transitions"`
	OpenTasks          int      `json:"open_tasks"`
	Resolution         string   `json:"resolution"`
	Version            int64    `json:"version"`
	Position           int64    `json:"position"`
}

func TestEndToEndCases(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	f := newTenantFixture(t)
	s := f.s

	// Alice opens a case; values are normalised.
	r := s.do(t, http.MethodPost, "/api/cases", f.alice, map[string]any{
		"title": "Ransomware on FIN-01", "description": "Encrypted shares seen at 09:12",
		"severity": "high", "tlp": "red", "techniques": []string{"t1059.001", "T1486"}, "tags": []string{"Ransomware"}})
	expectStatus(t, r, http.StatusCreated, "open case")
	var kase caseBody
	r.json(t, &kase)
	if kase.Status != "open" || kase.Severity != "high" || kase.TLP != "TLP:RED" || kase.Version != 1 ||
		fmt.Sprint(kase.Techniques) != "[T1059.001 T1486]" || fmt.Sprint(kase.Tags) != "[ransomware]" {
		t.Fatalf("opened case %+v", kase)
	}
	if r.header.Get("ETag") != `"1"` || r.header.Get("Location") != "/api/cases/"+kase.ID {
		t.Fatalf("headers %v", r.header)
	}

	// Refused writes change nothing.
	for _, bad := range []struct {
		body map[string]any
		code string
	}{
		{map[string]any{"title": "x", "techniques": []string{"T99"}}, "technique_invalid"},
		{map[string]any{"title": ""}, "title_required"},
		{map[string]any{"title": "x", "severity": "apocalyptic"}, "severity_invalid"},
		{map[string]any{"title": "x", "assignee": f.bobID}, "assignee_unknown"},
		{map[string]any{"title": "x", "host_ids": []string{"no-such-host"}}, "host_unknown"},
	} {
		r = s.do(t, http.MethodPost, "/api/cases", f.alice, bad.body)
		if r.status < 400 || r.status >= 500 {
			t.Fatalf("bad case %v answered %d %s", bad.body, r.status, r.body)
		}
		if code := r.errorCode(t); code != bad.code {
			t.Fatalf("bad case %v answered code %q, want %q", bad.body, code, bad.code)
		}
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/cases", f.vic, map[string]any{"title": "viewer case"}), http.StatusForbidden, "viewer opens a case")

	r = s.do(t, http.MethodGet, fmt.Sprintf("/api/cases?min_position=%d", kase.Position), f.carol, nil)
	expectStatus(t, r, http.StatusOK, "list cases")
	var listed []caseBody
	r.json(t, &listed)
	if len(listed) != 1 || listed[0].ID != kase.ID {
		t.Fatalf("tenant A lists %+v, want only the one case", listed)
	}

	// Assign with If-Match: a stale version is refused.
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID, f.alice, map[string]any{"assignee": f.carolID}, "If-Match", `"7"`)
	expectStatus(t, r, http.StatusPreconditionFailed, "stale If-Match")
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID, f.alice, map[string]any{"assignee": f.carolID, "status": "investigating"}, "If-Match", `"1"`)
	expectStatus(t, r, http.StatusOK, "assign and investigate")
	r.json(t, &kase)
	if kase.Assignee != f.carolID || kase.Status != "investigating" || kase.Version != 3 {
		t.Fatalf("after assign: %+v", kase)
	}
	// Closing needs a resolution; an illegal transition is refused.
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID, f.carol, map[string]any{"status": "closed"})
	if r.status != http.StatusBadRequest && r.status != http.StatusUnprocessableEntity {
		t.Fatalf("close without resolution: %d %s", r.status, r.body)
	}
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID, f.carol, map[string]any{
		"status": "closed", "resolution": "Reimaged; credentials rotated", "resolution_type": "true_positive"})
	expectStatus(t, r, http.StatusOK, "close")
	r.json(t, &kase)
	if kase.Status != "closed" || kase.Resolution == "" {
		t.Fatalf("closed case %+v", kase)
	}
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID, f.carol, map[string]any{"status": "investigating", "reopen_reason": "new beacon"})
	expectStatus(t, r, http.StatusOK, "reopen")
	r.json(t, &kase)
	if kase.Status != "investigating" {
		t.Fatalf("reopened case %+v", kase)
	}

	// Tasks and comments.
	r = s.do(t, http.MethodPost, "/api/cases/"+kase.ID+"/tasks", f.carol, map[string]any{"title": "Pull memory image", "assignee": f.carolID})
	expectStatus(t, r, http.StatusCreated, "add task")
	var task struct{ ID, Status string }
	r.json(t, &task)
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID+"/tasks/"+task.ID, f.carol, map[string]any{"status": "done"})
	expectStatus(t, r, http.StatusOK, "finish task")
	r = s.do(t, http.MethodPost, "/api/cases/"+kase.ID+"/comments", f.alice, map[string]any{"body": "Legal informed."})
	expectStatus(t, r, http.StatusCreated, "comment")
	var comment struct{ ID string }
	r.json(t, &comment)
	r = s.do(t, http.MethodPatch, "/api/cases/"+kase.ID+"/comments/"+comment.ID, f.carol, map[string]any{"body": "rewritten"})
	expectStatus(t, r, http.StatusForbidden, "edit someone else's comment")
	r = s.do(t, http.MethodGet, "/api/cases/"+kase.ID+"/timeline", f.vic, nil)
	expectStatus(t, r, http.StatusOK, "timeline")
	var timeline []struct{ Type, Actor, Summary string }
	r.json(t, &timeline)
	if len(timeline) < 8 || timeline[0].Type != "case.opened" || timeline[0].Actor != f.aliceID {
		t.Fatalf("timeline %+v", timeline)
	}

	// Another tenant sees none of it, on any route, and changes nothing.
	before := s.do(t, http.MethodGet, "/api/cases/"+kase.ID, f.alice, nil)
	for _, probe := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/api/cases/" + kase.ID, nil},
		{http.MethodPatch, "/api/cases/" + kase.ID, map[string]any{"title": "pwned", "status": "open"}},
		{http.MethodGet, "/api/cases/" + kase.ID + "/timeline", nil},
		{http.MethodGet, "/api/cases/" + kase.ID + "/tasks", nil},
		{http.MethodPost, "/api/cases/" + kase.ID + "/tasks", map[string]any{"title": "pwned"}},
		{http.MethodPatch, "/api/cases/" + kase.ID + "/tasks/" + task.ID, map[string]any{"status": "cancelled"}},
		{http.MethodDelete, "/api/cases/" + kase.ID + "/tasks/" + task.ID, nil},
		{http.MethodGet, "/api/cases/" + kase.ID + "/comments", nil},
		{http.MethodPost, "/api/cases/" + kase.ID + "/comments", map[string]any{"body": "pwned"}},
		{http.MethodPatch, "/api/cases/" + kase.ID + "/comments/" + comment.ID, map[string]any{"body": "pwned"}},
		{http.MethodDelete, "/api/cases/" + kase.ID + "/comments/" + comment.ID, nil},
		{http.MethodPost, "/api/cases/" + kase.ID + "/hosts", map[string]any{"host_id": "x"}},
		{http.MethodDelete, "/api/cases/" + kase.ID + "/hosts/x", nil},
	} {
		r = s.do(t, probe.method, probe.path, f.bob, probe.body)
		expectStatus(t, r, http.StatusNotFound, "tenant B: "+probe.method+" "+probe.path)
	}
	after := s.do(t, http.MethodGet, "/api/cases/"+kase.ID, f.alice, nil)
	if string(before.body) != string(after.body) {
		t.Fatalf("tenant B's attempts changed the case:\nbefore %s\nafter  %s", before.body, after.body)
	}
	r = s.do(t, http.MethodGet, "/api/cases", f.bob, nil)
	var none []caseBody
	r.json(t, &none)
	if len(none) != 0 {
		t.Fatalf("tenant B lists %d cases", len(none))
	}

	// Filters and keyset pagination over several cases.
	var last int64
	for i := 0; i < 4; i++ {
		r = s.do(t, http.MethodPost, "/api/cases", f.carol, map[string]any{"title": fmt.Sprintf("Phishing wave %d", i), "severity": "low"})
		expectStatus(t, r, http.StatusCreated, "open more cases")
		var c caseBody
		r.json(t, &c)
		last = c.Position
	}
	filter := func(q string) []caseBody {
		t.Helper()
		r := s.do(t, http.MethodGet, "/api/cases?"+q+fmt.Sprintf("&min_position=%d", last), f.alice, nil)
		expectStatus(t, r, http.StatusOK, "filter "+q)
		var out []caseBody
		r.json(t, &out)
		return out
	}
	if got := filter("severity=low"); len(got) != 4 {
		t.Fatalf("severity=low gives %d cases", len(got))
	}
	if got := filter("technique=T1486&tag=ransomware&status=investigating"); len(got) != 1 || got[0].ID != kase.ID {
		t.Fatalf("technique filter gives %+v", got)
	}
	if got := filter("assignee=" + f.carolID); len(got) != 1 {
		t.Fatalf("assignee filter gives %d cases", len(got))
	}
	seen := map[string]bool{}
	path := fmt.Sprintf("/api/cases?limit=2&sort=title&order=asc&min_position=%d", last)
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r = s.do(t, http.MethodGet, path, f.alice, nil)
		expectStatus(t, r, http.StatusOK, "page")
		var page []caseBody
		r.json(t, &page)
		for _, c := range page {
			if seen[c.ID] {
				t.Fatalf("case %s on two pages", c.ID)
			}
			seen[c.ID] = true
		}
		path = ""
		if next := r.header.Get("X-Next-Cursor"); next != "" {
			path = "/api/cases?limit=2&sort=title&order=asc&cursor=" + url.QueryEscape(next)
			bad := s.do(t, http.MethodGet, "/api/cases?limit=2&sort=created_at&cursor="+url.QueryEscape(next), f.alice, nil)
			expectStatus(t, bad, http.StatusBadRequest, "cursor of another sort")
		}
	}
	if len(seen) != 5 {
		t.Fatalf("paging saw %d cases, want 5", len(seen))
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/cases?sort=password", f.alice, nil), http.StatusBadRequest, "unknown sort")
}
