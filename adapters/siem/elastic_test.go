package siem_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"velocicompanion/adapters/siem"
)

// esServer is Elasticsearch's _bulk API as its reference describes it, for
// data streams: every response carries X-Elastic-Product: Elasticsearch (the
// official client refuses a server without it); requests need
// "Authorization: ApiKey <key>" (401 security_exception otherwise); the body
// is NDJSON (action line, source line, final newline); a data stream accepts
// only op type "create" (400 illegal_argument_exception per item otherwise),
// needs @timestamp in every document, and refuses an _id it already holds
// (409 version_conflict_engine_exception); the answer lists one item per
// action with "errors" true when any failed. busy answers 429 to whole
// requests first.
type esServer struct {
	apiKey string

	mu       sync.Mutex
	busy     int
	requests int
	docs     map[string]map[string]map[string]any // data stream → _id → source
}

func newESServer(t *testing.T, apiKey string) (*esServer, *httptest.Server) {
	es := &esServer{apiKey: apiKey, docs: map[string]map[string]map[string]any{}}
	srv := httptest.NewServer(es)
	t.Cleanup(srv.Close)
	return es, srv
}

func esError(w http.ResponseWriter, status int, typ, reason string) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "reason": reason}, "status": status})
}

func (es *esServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	es.mu.Lock()
	defer es.mu.Unlock()
	es.requests++
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	// The scheme is case-insensitive (RFC 9110); the client writes "APIKey".
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "ApiKey") || key != es.apiKey {
		esError(w, http.StatusUnauthorized, "security_exception", "unable to authenticate with provided credentials")
		return
	}
	if es.busy > 0 {
		es.busy--
		esError(w, http.StatusTooManyRequests, "es_rejected_execution_exception", "rejected execution")
		return
	}
	path := strings.Trim(r.URL.Path, "/")
	defaultIndex, ok := strings.CutSuffix(path, "/_bulk")
	if !ok && path != "_bulk" || r.Method != http.MethodPost && r.Method != http.MethodPut {
		esError(w, http.StatusBadRequest, "illegal_argument_exception", "no handler for "+r.Method+" "+r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "x-ndjson") && !strings.Contains(ct, "json") {
		esError(w, http.StatusNotAcceptable, "media_type_header_exception", "invalid Content-Type "+ct)
		return
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 10<<20)
	var items []map[string]any
	failed := false
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			esError(w, http.StatusBadRequest, "illegal_argument_exception", "Malformed action/metadata line")
			return
		}
		if !sc.Scan() {
			esError(w, http.StatusBadRequest, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
			return
		}
		var src map[string]any
		srcErr := json.Unmarshal(sc.Bytes(), &src)
		for op, meta := range action {
			index := meta.Index
			if index == "" {
				index = defaultIndex
			}
			item := map[string]any{"_index": ".ds-" + index + "-000001", "_id": meta.ID}
			status := http.StatusCreated
			switch {
			case op != "create":
				status = http.StatusBadRequest
				item["error"] = map[string]any{"type": "illegal_argument_exception",
					"reason": "only write ops with an op_type of create are allowed in data streams"}
			case srcErr != nil:
				status = http.StatusBadRequest
				item["error"] = map[string]any{"type": "document_parsing_exception", "reason": "failed to parse"}
			case src["@timestamp"] == nil:
				status = http.StatusBadRequest
				item["error"] = map[string]any{"type": "illegal_argument_exception", "reason": "data stream timestamp field [@timestamp] is missing"}
			case es.docs[index][meta.ID] != nil:
				status = http.StatusConflict
				item["error"] = map[string]any{"type": "version_conflict_engine_exception", "reason": "document already exists"}
			default:
				if es.docs[index] == nil {
					es.docs[index] = map[string]map[string]any{}
				}
				es.docs[index][meta.ID] = src
				item["result"] = "created"
			}
			item["status"] = status
			failed = failed || status >= 300
			items = append(items, map[string]any{op: item})
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": failed, "items": items})
}

func ecsDocs(t *testing.T, ids ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, id := range ids {
		ev := siem.FromEntry(entry("case.opened", "case", `{"severity":"high","tlp":"amber"}`))
		ev.ID = id
		b, err := siem.ECSRender()(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestElasticBulkIntoDataStream(t *testing.T) {
	es, srv := newESServer(t, "a2V5OnNlY3JldA==")
	s, err := siem.NewElasticSender(siem.ElasticConfig{URL: srv.URL, APIKey: "a2V5OnNlY3JldA=="})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	es.busy = 1 // one 429 first: the client retries
	if err := s.Send(ctx, ecsDocs(t, "e1", "e2", "e3")...); err != nil {
		t.Fatal(err)
	}
	// Sending again (a redelivery) conflicts, which counts as delivered.
	if err := s.Send(ctx, ecsDocs(t, "e2", "e4")...); err != nil {
		t.Fatal(err)
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	docs := es.docs[siem.DefaultDataStream]
	if len(docs) != 4 {
		t.Fatalf("indexed %d documents in %v", len(docs), es.docs)
	}
	d := docs["e1"]
	event := d["event"].(map[string]any)
	if d["@timestamp"] != "2026-11-26T21:04:05.123456789Z" || event["category"].([]any)[0] != "threat" ||
		event["type"].([]any)[0] != "creation" || event["outcome"] != "success" || event["risk_score"] != 75.0 ||
		d["source"].(map[string]any)["ip"] != "192.0.2.7" || d["user_agent"].(map[string]any)["original"] != "curl/8" ||
		d["user"].(map[string]any)["id"] != "u1" || d["organization"].(map[string]any)["id"] != "t1" ||
		d["threat"].(map[string]any)["indicator"].(map[string]any)["marking"].(map[string]any)["tlp"] != "AMBER" {
		t.Errorf("document = %v", d)
	}
}

func TestElasticFailures(t *testing.T) {
	_, srv := newESServer(t, "right")
	s, err := siem.NewElasticSender(siem.ElasticConfig{URL: srv.URL, APIKey: "wrong-key"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), ecsDocs(t, "e1")...)
	if err == nil || strings.Contains(err.Error(), "wrong-key") {
		t.Fatalf("wrong key: %v", err)
	}
	s, _ = siem.NewElasticSender(siem.ElasticConfig{URL: srv.URL, APIKey: "right"})
	if err := s.Send(context.Background(), []byte(`{"event":{"id":"x"}}`)); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("document without @timestamp: %v", err)
	}
}
