package siem_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"velocicompanion/adapters/siem"
)

// hecServer is a Splunk HTTP Event Collector as the Splunk documentation
// describes it ("Format events for HTTP Event Collector", "HTTP Event
// Collector indexer acknowledgment", "Troubleshoot HTTP Event Collector"):
//
//   - POST /services/collector/event (and /services/collector): a body of one
//     or more concatenated JSON event objects, each with a non-empty "event";
//     the token in "Authorization: Splunk <token>" (401 code 2 when missing,
//     403 code 4 when wrong); 400 code 6 for invalid data, code 12 for an
//     event field missing, code 13 for an empty event; 200 {"text":"Success",
//     "code":0}, with an "ackId" when acknowledgement is on.
//   - With acknowledgement on, a channel (X-Splunk-Request-Channel header or
//     channel query parameter, a GUID) is required: 400 code 10 without one.
//   - POST /services/collector/ack?channel=…: {"acks":[ids]} answers
//     {"acks":{"id":bool}}, true once indexed.
//   - When busy it answers 503 code 9 "Server is busy" (and, behind a load
//     balancer, 429).
type hecServer struct {
	token string
	ack   bool

	mu        sync.Mutex
	busy      []int // statuses to answer before accepting (503, 429)
	events    []map[string]any
	nextAck   map[string]int64
	pending   map[string]map[int64]int // channel → ack id → polls left until indexed
	ackPolls  int
	requests  int
	authSeen  []string
	indexWait int
}

func newHECServer(t *testing.T, token string, ack bool) (*hecServer, *httptest.Server) {
	h := &hecServer{token: token, ack: ack, nextAck: map[string]int64{}, pending: map[string]map[int64]int{}, indexWait: 2}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func hecReply(w http.ResponseWriter, status int, text string, code int, extra map[string]any) {
	body := map[string]any{"text": text, "code": code}
	for k, v := range extra {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (h *hecServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if r.Method != http.MethodPost {
		hecReply(w, http.StatusMethodNotAllowed, "Method not allowed", 0, nil)
		return
	}
	auth := r.Header.Get("Authorization")
	h.authSeen = append(h.authSeen, auth)
	switch {
	case auth == "":
		hecReply(w, http.StatusUnauthorized, "Token is required", 2, nil)
		return
	case !strings.HasPrefix(auth, "Splunk ") || strings.TrimPrefix(auth, "Splunk ") != h.token:
		hecReply(w, http.StatusForbidden, "Invalid token", 4, nil)
		return
	}
	channel := r.Header.Get("X-Splunk-Request-Channel")
	if channel == "" {
		channel = r.URL.Query().Get("channel")
	}
	if h.ack && channel == "" {
		hecReply(w, http.StatusBadRequest, "Data channel is missing", 10, nil)
		return
	}
	if channel != "" && !guid.MatchString(channel) {
		hecReply(w, http.StatusBadRequest, "Invalid data channel", 11, nil)
		return
	}
	switch r.URL.Path {
	case "/services/collector/ack":
		h.serveAck(w, r, channel)
	case "/services/collector/event", "/services/collector":
		h.serveEvent(w, r, channel)
	default:
		hecReply(w, http.StatusNotFound, "The requested URL was not found on this server.", 404, nil)
	}
}

func (h *hecServer) serveEvent(w http.ResponseWriter, r *http.Request, channel string) {
	if len(h.busy) > 0 {
		status := h.busy[0]
		h.busy = h.busy[1:]
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		hecReply(w, status, "Server is busy", 9, nil)
		return
	}
	dec := json.NewDecoder(r.Body)
	var batch []map[string]any
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			hecReply(w, http.StatusBadRequest, "Invalid data format", 6, map[string]any{"invalid-event-number": len(batch)})
			return
		}
		ev, ok := obj["event"]
		if !ok {
			hecReply(w, http.StatusBadRequest, "Event field is required", 12, map[string]any{"invalid-event-number": len(batch)})
			return
		}
		if ev == nil || ev == "" {
			hecReply(w, http.StatusBadRequest, "Event field cannot be blank", 13, map[string]any{"invalid-event-number": len(batch)})
			return
		}
		if tm, ok := obj["time"]; ok {
			if _, isNum := tm.(float64); !isNum {
				if s, isStr := tm.(string); !isStr || func() bool { _, err := strconv.ParseFloat(s, 64); return err != nil }() {
					hecReply(w, http.StatusBadRequest, "Invalid data format", 6, nil)
					return
				}
			}
		}
		batch = append(batch, obj)
	}
	if len(batch) == 0 {
		hecReply(w, http.StatusBadRequest, "No data", 5, nil)
		return
	}
	if !h.ack {
		h.events = append(h.events, batch...)
		hecReply(w, http.StatusOK, "Success", 0, nil)
		return
	}
	id := h.nextAck[channel]
	h.nextAck[channel] = id + 1
	if h.pending[channel] == nil {
		h.pending[channel] = map[int64]int{}
	}
	h.pending[channel][id] = h.indexWait
	h.events = append(h.events, batch...) // indexed eventually; the test reads after the ack
	hecReply(w, http.StatusOK, "Success", 0, map[string]any{"ackId": id})
}

func (h *hecServer) serveAck(w http.ResponseWriter, r *http.Request, channel string) {
	if !h.ack {
		hecReply(w, http.StatusBadRequest, "ACK is disabled", 14, nil)
		return
	}
	var req struct {
		Acks []int64 `json:"acks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		hecReply(w, http.StatusBadRequest, "Invalid data format", 6, nil)
		return
	}
	h.ackPolls++
	out := map[string]bool{}
	for _, id := range req.Acks {
		left, ok := h.pending[channel][id]
		switch {
		case !ok:
			out[strconv.FormatInt(id, 10)] = false
		case left <= 0:
			out[strconv.FormatInt(id, 10)] = true
		default:
			h.pending[channel][id] = left - 1
			out[strconv.FormatInt(id, 10)] = false
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"acks": out})
}

func hecEvents(t *testing.T, n int) [][]byte {
	t.Helper()
	render := siem.HECRender(siem.HECMeta{Host: "vc-1", Index: "main"})
	var out [][]byte
	for i := range n {
		ev := siem.FromEntry(entry("user.login_failed", "user", `{}`))
		ev.ID = "ev-" + strconv.Itoa(i)
		b, err := render(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestHECBatchWithToken(t *testing.T) {
	h, srv := newHECServer(t, "tok-1", false)
	s, err := siem.NewHECSender(siem.HECConfig{URL: srv.URL + "/", Token: "tok-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(context.Background(), hecEvents(t, 25)...); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.requests != 1 || len(h.events) != 25 || h.authSeen[0] != "Splunk tok-1" {
		t.Fatalf("requests=%d events=%d auth=%v", h.requests, len(h.events), h.authSeen)
	}
	e := h.events[0]
	ev := e["event"].(map[string]any)
	if e["index"] != "main" || e["host"] != "vc-1" || e["sourcetype"] != "velocicompanion:event" || ev["id"] != "ev-0" ||
		ev["action"] != "user.login_failed" || e["time"] != 1795727045.123 {
		t.Errorf("event = %v", e)
	}
}

func TestHECWrongTokenFailsWithoutLeakingIt(t *testing.T) {
	_, srv := newHECServer(t, "right", false)
	s, err := siem.NewHECSender(siem.HECConfig{URL: srv.URL, Token: "wrong-secret"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), hecEvents(t, 1)...)
	if err == nil || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("err = %v", err)
	}
}

func TestHECRetriesWhenBusy(t *testing.T) {
	h, srv := newHECServer(t, "tok", false)
	h.busy = []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable}
	s, err := siem.NewHECSender(siem.HECConfig{URL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), hecEvents(t, 3)...); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	if h.requests != 3 || len(h.events) != 3 {
		t.Errorf("requests=%d events=%d", h.requests, len(h.events))
	}
	// 429 with Retry-After: 1, then more busy answers than retries allowed.
	h.busy = []int{http.StatusTooManyRequests, 503, 503, 503, 503}
	h.mu.Unlock()
	start := time.Now()
	err = s.Send(context.Background(), hecEvents(t, 1)...)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) < time.Second {
		t.Errorf("Retry-After not honoured: %v", time.Since(start))
	}
}

func TestHECIndexerAcknowledgement(t *testing.T) {
	h, srv := newHECServer(t, "tok", true)
	s, err := siem.NewHECSender(siem.HECConfig{URL: srv.URL, Token: "tok", Ack: true, AckPoll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Send(context.Background(), hecEvents(t, 4)...); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	if len(h.events) != 8 || h.ackPolls < 6 { // each batch acked on the third poll
		t.Errorf("events=%d ackPolls=%d", len(h.events), h.ackPolls)
	}
	// An index that never confirms fails the send (so it is retried).
	h.indexWait = 1 << 30
	h.mu.Unlock()
	s2, _ := siem.NewHECSender(siem.HECConfig{URL: srv.URL, Token: "tok", Ack: true, AckPoll: time.Millisecond, AckTimeout: 50 * time.Millisecond})
	if err := s2.Send(context.Background(), hecEvents(t, 1)...); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("unconfirmed ack: %v", err)
	}
}

func TestHECServerRejectsMalformed(t *testing.T) {
	// The test server itself is faithful: a batch without "event" is refused.
	_, srv := newHECServer(t, "tok", false)
	s, _ := siem.NewHECSender(siem.HECConfig{URL: srv.URL, Token: "tok", BusyRetries: -1})
	err := s.Send(context.Background(), []byte(`{"time":1,"host":"x"}`))
	if err == nil || !strings.Contains(err.Error(), "code 12") {
		t.Fatalf("err = %v", err)
	}
}
