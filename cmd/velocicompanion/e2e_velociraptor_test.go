package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"velocicompanion/adapters/velociraptor/vrfake"
)

const (
	e2eWinClient   = "C.00000000000000c1"
	e2eLinClient   = "C.00000000000000c2"
	e2eOtherClient = "C.00000000000000d1" // org O2: tenant B's
)

// vrFleet is a fake Velociraptor server with two clients in its root org
// (tenant A's) and one in org O2 (tenant B's).
func vrFleet(t *testing.T) *vrfake.Server {
	fake := vrfake.Start(t)
	seen := time.Now().Add(-time.Minute).UTC()
	fake.AddClient("", vrfake.Client{ClientID: e2eWinClient, Hostname: "vr-ws-01", FQDN: "vr-ws-01.corp.example", OS: "windows",
		Release: "Windows 11", Labels: []string{"Finance"}, FirstSeen: seen.Add(-time.Hour), LastSeen: seen, LastIP: "10.1.0.5:50000"})
	fake.AddClient("", vrfake.Client{ClientID: e2eLinClient, Hostname: "vr-srv-db", OS: "linux", LastSeen: seen})
	fake.AddClient("O2", vrfake.Client{ClientID: e2eOtherClient, Hostname: "vr-globex", OS: "windows", LastSeen: seen})
	fake.SetArtifactRows("Generic.Client.Info/BasicInformation", []map[string]any{{"Hostname": "vr-ws-01"}})
	fake.SetArtifactRows("Generic.Client.Info/Users", []map[string]any{{"Name": "alice"}, {"Name": "bob"}, {"Name": "carol"}})
	fake.FinishAfterPolls(2)
	return fake
}

type vrCollection struct {
	ID              string   `json:"id"`
	ClientID        string   `json:"client_id"`
	Status          string   `json:"status"`
	FlowID          string   `json:"flow_id"`
	Rows            int64    `json:"rows"`
	Error           string   `json:"error"`
	Logs            []string `json:"logs"`
	Purpose         string   `json:"purpose"`
	CancelRequested bool     `json:"cancel_requested"`
}

// e2eHeldArtifact is an artifact whose flows the fake keeps running until
// they are cancelled.
const e2eHeldArtifact = "Custom.VelociCompanion.Held"

type vrHunt struct {
	ID     string `json:"id"`
	HuntID string `json:"hunt_id"`
	Status string `json:"status"`
	Rows   int64  `json:"rows"`
}

type vrResults struct {
	Results []struct {
		ClientID string         `json:"client_id"`
		Source   string         `json:"source"`
		Row      map[string]any `json:"row"`
	} `json:"results"`
	NextCursor string `json:"next_cursor"`
}

func (s *server) vrCollection(t *testing.T, token, id string) vrCollection {
	t.Helper()
	r := s.do(t, http.MethodGet, "/api/velociraptor/collections/"+id, token, nil)
	expectStatus(t, r, http.StatusOK, "get collection")
	var c vrCollection
	r.json(t, &c)
	return c
}

func (s *server) vrCollectionEnds(t *testing.T, token, id string) vrCollection {
	t.Helper()
	var c vrCollection
	eventually(t, 60*time.Second, "collection "+id+" to end", func() bool {
		c = s.vrCollection(t, token, id)
		return c.Status == "completed" || c.Status == "failed"
	})
	return c
}

func TestVelociraptorEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	fake := vrFleet(t)
	s := startServer(t, "VC_VELOCIRAPTOR_POLL=100ms", "VC_VELOCIRAPTOR_SYNC_INTERVAL=1s", "VC_VELOCIRAPTOR_ALLOWED_NETWORKS=127.0.0.0/8")
	t.Cleanup(func() {
		if t.Failed() {
			_, errOut := s.output()
			for _, line := range strings.Split(errOut, "\n") {
				if strings.Contains(line, `"component":"velociraptor"`) || strings.Contains(line, "leader") {
					t.Log(line)
				}
			}
		}
	})
	w := newSecWorld(t, s, func(name string) string { return "velociraptor password of " + name })
	admin, analyst, viewer, adminB := w.admin.token, w.analyst.token, w.viewer.token, w.adminB.token

	// Before any configuration.
	r := s.do(t, http.MethodGet, "/api/velociraptor/clients", analyst, nil)
	expectStatus(t, r, http.StatusConflict, "clients without a configuration")
	if code := r.errorCode(t); code != "velociraptor_not_configured" {
		t.Fatalf("error code %s", code)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/config", admin, nil), http.StatusNotFound, "config before any")

	// Configurations that do not work are refused and change nothing.
	good := string(fake.APIClientYAML(t, vrfake.Name("acme"), vrfake.OrgAccess("")))
	for _, bad := range []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"not YAML", map[string]any{"config": "{{{ not yaml"}, http.StatusBadRequest, ""},
		{"empty", map[string]any{"config": ""}, http.StatusBadRequest, "velociraptor_config_missing"},
		{"unknown field", map[string]any{"config": good, "base_url": "http://x"}, http.StatusBadRequest, ""},
		{"bad org id", map[string]any{"config": good, "org_id": "O2'; DROP"}, http.StatusBadRequest, ""},
		{"another deployment's file", map[string]any{"config": string(fake.APIClientYAML(t, vrfake.ForeignCA()))}, http.StatusServiceUnavailable, "velociraptor_unreachable"},
		{"wrong server name", map[string]any{"config": string(fake.APIClientYAML(t, vrfake.ServerName("evil.example")))}, http.StatusServiceUnavailable, "velociraptor_unreachable"},
		{"expired certificate", map[string]any{"config": string(fake.APIClientYAML(t, vrfake.Expired()))}, http.StatusBadRequest, "velociraptor_cert_expired"},
		{"org without a role", map[string]any{"config": good, "org_id": "O2"}, http.StatusBadGateway, "velociraptor_permission_denied"},
	} {
		r := s.do(t, http.MethodPost, "/api/velociraptor/config", admin, bad.body)
		expectStatus(t, r, bad.status, "config: "+bad.name)
		if code := r.errorCode(t); bad.code != "" && code != bad.code {
			t.Errorf("config %s: code %s, want %s", bad.name, code, bad.code)
		}
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/config", admin, nil), http.StatusNotFound, "config after refusals")
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/config", analyst, map[string]any{"config": good}), http.StatusForbidden, "analyst configures")

	// The working configuration: its key is never shown.
	r = s.do(t, http.MethodPost, "/api/velociraptor/config", admin, map[string]any{"config": good})
	expectStatus(t, r, http.StatusOK, "configure A")
	var conn struct {
		Fingerprint string            `json:"fingerprint"`
		CommonName  string            `json:"common_name"`
		ServerName  string            `json:"server_name"`
		Warnings    []string          `json:"warnings"`
		LastCheck   struct{ OK bool } `json:"last_check"`
	}
	r.json(t, &conn)
	if len(conn.Fingerprint) != 64 || conn.ServerName != vrfake.ServerCertName || !conn.LastCheck.OK || len(conn.Warnings) != 0 {
		t.Fatalf("configured: %s", r.body)
	}
	if strings.Contains(string(r.body), "PRIVATE KEY") || strings.Contains(string(r.body), "BEGIN CERTIFICATE") {
		t.Fatalf("the configuration answer shows key material: %s", r.body)
	}
	r = s.do(t, http.MethodGet, "/api/velociraptor/config", admin, nil)
	expectStatus(t, r, http.StatusOK, "get config")
	if !strings.Contains(string(r.body), conn.Fingerprint) || strings.Contains(string(r.body), "PRIVATE KEY") {
		t.Fatalf("config: %s", r.body)
	}
	goodB := string(fake.APIClientYAML(t, vrfake.Name("globex"), vrfake.OrgAccess("O2")))
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/config", adminB, map[string]any{"config": goodB, "org_id": "O2"}), http.StatusOK, "configure B")

	// Live clients, each tenant its own org's.
	r = s.do(t, http.MethodGet, "/api/velociraptor/clients", viewer, nil)
	expectStatus(t, r, http.StatusOK, "clients")
	var list struct {
		Clients []struct {
			ClientID string `json:"client_id"`
			Hostname string `json:"hostname"`
		} `json:"clients"`
	}
	r.json(t, &list)
	if len(list.Clients) != 2 {
		t.Fatalf("tenant A sees clients %s", r.body)
	}
	r = s.do(t, http.MethodGet, "/api/velociraptor/clients/"+e2eWinClient, viewer, nil)
	expectStatus(t, r, http.StatusOK, "one client")
	if !strings.Contains(string(r.body), "vr-ws-01") {
		t.Fatalf("client: %s", r.body)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/clients/"+e2eOtherClient, viewer, nil), http.StatusNotFound, "B's client seen by A")
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/clients/"+e2eWinClient, adminB, nil), http.StatusNotFound, "A's client seen by B")
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/clients/C.1234'%20OR%201=1", viewer, nil), http.StatusBadRequest, "hostile client id")

	// The sync turns the clients into hosts, once each, however often it runs.
	var hostID string
	eventually(t, 60*time.Second, "the synced hosts", func() bool {
		r := s.do(t, http.MethodGet, "/api/hosts?hostname=vr-&include_total=true", viewer, nil)
		var hosts []struct {
			ID       string `json:"id"`
			Hostname string `json:"hostname"`
			ClientID string `json:"velociraptor_client_id"`
		}
		if r.status != http.StatusOK {
			return false
		}
		r.json(t, &hosts)
		for _, h := range hosts {
			if h.ClientID == e2eWinClient {
				hostID = h.ID
			}
		}
		return len(hosts) == 2 && hostID != ""
	})
	time.Sleep(2500 * time.Millisecond) // two more syncs
	r = s.do(t, http.MethodGet, "/api/hosts?hostname=vr-&include_total=true", viewer, nil)
	expectStatus(t, r, http.StatusOK, "hosts after more syncs")
	if total := r.header.Get("X-Total-Count"); total != "2" {
		t.Fatalf("after more syncs tenant A has %s hosts: %s", total, r.body)
	}

	// A collection, asked twice with one idempotency key, runs once.
	key := uuid.NewString()
	body := map[string]any{"client_id": e2eWinClient, "artifacts": []string{"Generic.Client.Info"}}
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/collect", viewer, body), http.StatusForbidden, "viewer collects")
	r = s.do(t, http.MethodPost, "/api/velociraptor/collect", analyst, body, "Idempotency-Key", key)
	expectStatus(t, r, http.StatusAccepted, "collect")
	var col vrCollection
	r.json(t, &col)
	r = s.do(t, http.MethodPost, "/api/velociraptor/collect", analyst, body, "Idempotency-Key", key)
	expectStatus(t, r, http.StatusAccepted, "collect again")
	var again vrCollection
	r.json(t, &again)
	if again.ID != col.ID {
		t.Fatalf("the same idempotency key made collections %s and %s", col.ID, again.ID)
	}
	done := s.vrCollectionEnds(t, viewer, col.ID)
	if done.Status != "completed" || done.Rows != 4 || done.FlowID == "" {
		t.Fatalf("collection: %+v", done)
	}
	if flows := fake.Flows("", e2eWinClient); len(flows) != 1 {
		t.Fatalf("Velociraptor ran %d flows: %v", len(flows), flows)
	}
	r = s.do(t, http.MethodGet, "/api/velociraptor/collections/"+col.ID+"/results?limit=3", viewer, nil)
	expectStatus(t, r, http.StatusOK, "results page 1")
	var page vrResults
	r.json(t, &page)
	if len(page.Results) != 3 || page.NextCursor == "" {
		t.Fatalf("results page 1: %s", r.body)
	}
	r = s.do(t, http.MethodGet, "/api/velociraptor/collections/"+col.ID+"/results?limit=3&cursor="+page.NextCursor, viewer, nil)
	expectStatus(t, r, http.StatusOK, "results page 2")
	var page2 vrResults
	r.json(t, &page2)
	if len(page2.Results) != 1 || page2.NextCursor != "" {
		t.Fatalf("results page 2: %s", r.body)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/collections/"+col.ID, adminB, nil), http.StatusNotFound, "B reads A's collection")
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/collections/"+col.ID+"/results", adminB, nil), http.StatusNotFound, "B reads A's results")

	// A collection whose flow keeps running is cancelled: the flow is
	// cancelled in Velociraptor. A completed one is not.
	fake.HoldArtifact(e2eHeldArtifact)
	r = s.do(t, http.MethodPost, "/api/velociraptor/collect", analyst, map[string]any{"client_id": e2eLinClient, "artifacts": []string{e2eHeldArtifact}})
	expectStatus(t, r, http.StatusAccepted, "collect a held artifact")
	var held vrCollection
	r.json(t, &held)
	eventually(t, 60*time.Second, "the held collection to start", func() bool {
		held = s.vrCollection(t, viewer, held.ID)
		return held.Status == "scheduled"
	})
	cancelPath := "/api/velociraptor/collections/" + held.ID + "/cancel"
	expectStatus(t, s.do(t, http.MethodPost, cancelPath, viewer, nil), http.StatusForbidden, "viewer cancels")
	expectStatus(t, s.do(t, http.MethodPost, cancelPath, adminB, nil), http.StatusNotFound, "B cancels A's collection")
	for _, who := range []string{analyst, admin} { // asking twice is one request
		r = s.do(t, http.MethodPost, cancelPath, who, nil)
		expectStatus(t, r, http.StatusAccepted, "cancel")
		var asked vrCollection
		r.json(t, &asked)
		if !asked.CancelRequested {
			t.Fatalf("cancel answered %s", r.body)
		}
	}
	eventually(t, 60*time.Second, "the collection to be cancelled", func() bool {
		return s.vrCollection(t, viewer, held.ID).Status == "cancelled"
	})
	if state, status, _ := fake.FlowState("", held.FlowID); state != "ERROR" || !strings.HasPrefix(status, "Cancelled") {
		t.Fatalf("Velociraptor's flow after the cancel: %s %q", state, status)
	}
	r = s.do(t, http.MethodPost, "/api/velociraptor/collections/"+col.ID+"/cancel", analyst, nil)
	expectStatus(t, r, http.StatusConflict, "cancel a completed collection")
	if code := r.errorCode(t); code != "collection_ended" {
		t.Fatalf("cancel a completed collection: %s", r.body)
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/collections/no-such-collection/cancel", analyst, nil), http.StatusNotFound, "cancel a missing collection")

	// The collection list: newest first, filtered, in pages, the tenant's own.
	listIDs := func(who, query string) ([]string, response) {
		t.Helper()
		r := s.do(t, http.MethodGet, "/api/velociraptor/collections"+query, who, nil)
		expectStatus(t, r, http.StatusOK, "list collections"+query)
		var list []vrCollection
		r.json(t, &list)
		ids := []string{}
		for _, c := range list {
			ids = append(ids, c.ID)
		}
		return ids, r
	}
	for query, want := range map[string][]string{
		"":                               {held.ID, col.ID},
		"?status=cancelled":              {held.ID},
		"?status=completed":              {col.ID},
		"?client_id=" + e2eWinClient:     {col.ID},
		"?client_id=" + e2eLinClient:     {held.ID},
		"?purpose=collect&status=failed": {},
		"?host_id=" + hostID:             {},
		"?purpose=quarantine":            {},
	} {
		if got, _ := listIDs(viewer, query); !slices.Equal(got, want) {
			t.Errorf("collections%s = %v, want %v", query, got, want)
		}
	}
	first, r := listIDs(viewer, "?limit=1")
	next := r.header.Get("X-Next-Cursor")
	if !slices.Equal(first, []string{held.ID}) || next == "" {
		t.Fatalf("first page of one: %v, cursor %q", first, next)
	}
	second, r := listIDs(viewer, "?limit=1&cursor="+next)
	if !slices.Equal(second, []string{col.ID}) || r.header.Get("X-Next-Cursor") != "" {
		t.Fatalf("second page of one: %v, cursor %q", second, r.header.Get("X-Next-Cursor"))
	}
	if got, _ := listIDs(adminB, ""); len(got) != 0 {
		t.Fatalf("B lists A's collections: %v", got)
	}
	for _, query := range []string{"?status=running", "?purpose=delete", "?limit=501", "?limit=0", "?cursor=nonsense", "?client_id=C.1'"} {
		r := s.do(t, http.MethodGet, "/api/velociraptor/collections"+query, viewer, nil)
		expectStatus(t, r, http.StatusBadRequest, "list collections"+query)
		r.errorCode(t)
	}

	// Hostile and wrong requests are refused before anything is recorded.
	for name, b := range map[string]map[string]any{
		"hostile client id":     {"client_id": "C.0000000000000001') OR 1=1 --", "artifacts": []string{"Generic.Client.Info"}},
		"hostile artifact":      {"client_id": e2eWinClient, "artifacts": []string{"Generic.Client.Info'); SELECT * FROM clients() --"}},
		"no artifact":           {"client_id": e2eWinClient},
		"client and host":       {"client_id": e2eWinClient, "host_id": hostID, "artifacts": []string{"Generic.Client.Info"}},
		"object parameter":      {"client_id": e2eWinClient, "artifacts": []string{"Generic.Client.Info"}, "parameters": map[string]any{"x": map[string]any{}}},
		"hostile parameter key": {"client_id": e2eWinClient, "artifacts": []string{"Generic.Client.Info"}, "parameters": map[string]any{"a') --": "1"}},
	} {
		r := s.do(t, http.MethodPost, "/api/velociraptor/collect", analyst, b)
		expectStatus(t, r, http.StatusBadRequest, "collect: "+name)
		r.errorCode(t)
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/collect", analyst, body, "Idempotency-Key", "not-a-uuid"), http.StatusBadRequest, "bad idempotency key")

	// What Velociraptor refuses ends the collection with its reason; the
	// host id works as the target too; tenant B cannot reach A's client.
	r = s.do(t, http.MethodPost, "/api/velociraptor/collect", analyst, map[string]any{"host_id": hostID, "artifact_name": "Custom.Not.Installed"})
	expectStatus(t, r, http.StatusAccepted, "collect an unknown artifact")
	r.json(t, &col)
	if col.ClientID != e2eWinClient {
		t.Fatalf("collection by host id targets %s", col.ClientID)
	}
	if c := s.vrCollectionEnds(t, viewer, col.ID); c.Status != "failed" || !strings.Contains(c.Error, "Custom.Not.Installed") {
		t.Fatalf("unknown artifact: %+v", c)
	}
	r = s.do(t, http.MethodPost, "/api/velociraptor/collect", adminB, body)
	expectStatus(t, r, http.StatusNotFound, "B collects from A's client")
	if code := r.errorCode(t); code != "velociraptor_not_found" {
		t.Fatalf("B collects from A's client: %s", r.body)
	}
	if flows := fake.Flows("O2", e2eWinClient); len(flows) != 0 {
		t.Fatalf("tenant B started flows on A's client: %v", flows)
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/collect", adminB, map[string]any{"host_id": hostID, "artifacts": []string{"Generic.Client.Info"}}),
		http.StatusNotFound, "B collects from A's host")

	// A hunt: started, results stored as clients report, stopped.
	hb := map[string]any{"description": "who is logged on", "artifacts": []string{"Generic.Client.Info"}}
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/hunts", viewer, hb), http.StatusForbidden, "viewer hunts")
	r = s.do(t, http.MethodPost, "/api/velociraptor/hunts", analyst, hb)
	expectStatus(t, r, http.StatusAccepted, "hunt")
	var hunt vrHunt
	r.json(t, &hunt)
	eventually(t, 60*time.Second, "the hunt to start", func() bool {
		r := s.do(t, http.MethodGet, "/api/velociraptor/hunts/"+hunt.ID, viewer, nil)
		r.json(t, &hunt)
		return hunt.HuntID != ""
	})
	fake.HuntClients(hunt.HuntID, e2eWinClient, e2eLinClient)
	var rows vrResults
	eventually(t, 60*time.Second, "the hunt's results", func() bool {
		r := s.do(t, http.MethodGet, "/api/velociraptor/hunts/"+hunt.ID+"/results?limit=500", viewer, nil)
		rows = vrResults{}
		r.json(t, &rows)
		clients := map[string]bool{}
		for _, row := range rows.Results {
			clients[row.ClientID] = true
		}
		return len(clients) == 2
	})
	r = s.do(t, http.MethodGet, "/api/velociraptor/hunts", viewer, nil)
	expectStatus(t, r, http.StatusOK, "list hunts")
	if !strings.Contains(string(r.body), hunt.ID) {
		t.Fatalf("hunt list: %s", r.body)
	}
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/hunts/"+hunt.ID, adminB, nil), http.StatusNotFound, "B reads A's hunt")
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/hunts/"+hunt.ID+"/stop", adminB, nil), http.StatusNotFound, "B stops A's hunt")
	expectStatus(t, s.do(t, http.MethodPost, "/api/velociraptor/hunts/"+hunt.ID+"/stop", analyst, nil), http.StatusAccepted, "stop the hunt")
	eventually(t, 60*time.Second, "the hunt to stop", func() bool {
		r := s.do(t, http.MethodGet, "/api/velociraptor/hunts/"+hunt.ID, viewer, nil)
		r.json(t, &hunt)
		return hunt.Status == "stopped"
	})

	// Quarantine and release of the host.
	expectStatus(t, s.do(t, http.MethodPost, "/api/hosts/"+hostID+"/quarantine", adminB, map[string]any{}), http.StatusNotFound, "B quarantines A's host")
	r = s.do(t, http.MethodPost, "/api/hosts/"+hostID+"/quarantine", analyst, map[string]any{"message": "Isolated by the SOC"})
	expectStatus(t, r, http.StatusAccepted, "quarantine")
	r.json(t, &col)
	if c := s.vrCollectionEnds(t, viewer, col.ID); c.Status != "completed" || c.Purpose != "quarantine" {
		t.Fatalf("quarantine: %+v", c)
	}
	if !slices.Contains(fake.Labels("", e2eWinClient), "Quarantine") {
		t.Fatalf("client labels after quarantine: %v", fake.Labels("", e2eWinClient))
	}
	expectStatus(t, s.do(t, http.MethodPost, "/api/hosts/"+hostID+"/quarantine", analyst, map[string]any{}), http.StatusConflict, "quarantine twice")
	// The hosts read model shows the quarantine, and the filter finds the host.
	hostQuarantine := func(status, collection string) {
		t.Helper()
		eventually(t, 60*time.Second, "the host to be "+status, func() bool {
			var h hostBody
			s.do(t, http.MethodGet, "/api/hosts/"+hostID, viewer, nil).json(t, &h)
			return h.Quarantine.Status == status && h.Quarantine.CollectionID != nil && *h.Quarantine.CollectionID == collection &&
				h.Quarantine.UpdatedAt != nil
		})
	}
	hostQuarantine("quarantined", col.ID)
	r = s.do(t, http.MethodGet, "/api/hosts?quarantined=true", viewer, nil)
	expectStatus(t, r, http.StatusOK, "list quarantined hosts")
	var quarantined []hostBody
	r.json(t, &quarantined)
	if len(quarantined) != 1 || quarantined[0].ID != hostID {
		t.Fatalf("quarantined hosts: %s", r.body)
	}
	r = s.do(t, http.MethodPost, "/api/hosts/"+hostID+"/release", analyst, nil)
	expectStatus(t, r, http.StatusAccepted, "release")
	r.json(t, &col)
	if c := s.vrCollectionEnds(t, viewer, col.ID); c.Status != "completed" || c.Purpose != "release" {
		t.Fatalf("release: %+v", c)
	}
	r = s.do(t, http.MethodPost, "/api/velociraptor/collections/"+col.ID+"/cancel", analyst, nil)
	expectStatus(t, r, http.StatusConflict, "cancel a release")
	if code := r.errorCode(t); code != "collection_not_cancellable" {
		t.Fatalf("cancel a release: %s", r.body)
	}
	if slices.Contains(fake.Labels("", e2eWinClient), "Quarantine") {
		t.Fatalf("client labels after release: %v", fake.Labels("", e2eWinClient))
	}
	hostQuarantine("released", col.ID)
	// The analyst who asked hears how the quarantine, the release, the
	// collections and the hunt ended.
	eventually(t, 60*time.Second, "the analyst's notifications", func() bool {
		var inbox []struct {
			Kind string  `json:"kind"`
			Link *string `json:"link"`
		}
		s.do(t, http.MethodGet, "/api/notifications?limit=100", analyst, nil).json(t, &inbox)
		kinds := map[string]bool{}
		for _, n := range inbox {
			if n.Kind == "host_quarantined" && (n.Link == nil || *n.Link != "/api/hosts/"+hostID) {
				t.Fatalf("quarantine notification links to %v", n.Link)
			}
			kinds[n.Kind] = true
		}
		return kinds["host_quarantined"] && kinds["host_released"] && kinds["collection_completed"] && kinds["hunt_stopped"]
	})

	// Every step is in the event stream, and no key is.
	keyLines := []string{}
	for _, line := range strings.Split(good, "\n") {
		if l := strings.TrimSpace(line); len(l) > 40 && !strings.Contains(l, ":") {
			keyLines = append(keyLines, l)
		}
	}
	if len(keyLines) == 0 {
		t.Fatal("no PEM lines found in the api_client YAML")
	}
	assertEventsClean(t, s, append(keyLines, "PRIVATE KEY"),
		"velociraptor.configured", "velociraptor.checked", "collection.requested", "collection.scheduled", "collection.completed",
		"collection.failed", "collection.cancel_requested", "collection.cancelled", "hunt.requested", "hunt.scheduled", "hunt.results_received", "hunt.stopped",
		"host.discovered", "host.quarantine_requested", "host.quarantined", "host.release_requested", "host.released")

	// Disconnecting erases the configuration.
	expectStatus(t, s.do(t, http.MethodDelete, "/api/velociraptor/config", admin, nil), http.StatusNoContent, "remove config")
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/clients", analyst, nil), http.StatusConflict, "clients after removal")
	expectStatus(t, s.do(t, http.MethodGet, "/api/velociraptor/config", admin, nil), http.StatusNotFound, "config after removal")
}
