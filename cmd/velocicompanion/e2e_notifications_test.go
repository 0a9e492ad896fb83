package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// notifBody is a NotificationRead.
type notifBody struct {
	Title            string    `json:"title"`
	Message          string    `json:"message"`
	NotificationType string    `json:"notification_type"`
	Link             *string   `json:"link"`
	ID               string    `json:"id"`
	UserID           string    `json:"user_id"`
	TenantID         string    `json:"tenant_id"`
	IsRead           bool      `json:"is_read"`
	CreatedAt        time.Time `json:"created_at"`
	Kind             string    `json:"kind"`
}

// notifMessage is a message of the notification socket.
type notifMessage struct {
	Type   string    `json:"type"`
	UserID string    `json:"user_id"`
	Data   notifBody `json:"data"`
}

// notifSocket is a real WebSocket client of the server's notification route.
type notifSocket struct {
	t    *testing.T
	conn *websocket.Conn
	resp *http.Response
}

// dialNotifications opens a socket with the given subprotocols and Origin.
func dialNotifications(t *testing.T, s *server, protocols []string, origin string) (*notifSocket, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: protocols}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(s.base, "http")+"/api/notifications/ws", h)
	if err != nil {
		return &notifSocket{t: t, resp: resp}, err
	}
	t.Cleanup(func() { conn.Close() })
	return &notifSocket{t: t, conn: conn, resp: resp}, nil
}

// connectNotifications opens a socket, authenticates with token in the first
// message and reads the connected message.
func connectNotifications(t *testing.T, s *server, token, user string) *notifSocket {
	t.Helper()
	ws, err := dialNotifications(t, s, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]string{"token": token})
	if m := ws.next(10 * time.Second); m.Type != "connected" || m.UserID != user {
		t.Fatalf("first message %+v, want connected as %s", m, user)
	}
	return ws
}

func (ws *notifSocket) send(v any) {
	ws.t.Helper()
	if err := ws.conn.WriteJSON(v); err != nil {
		ws.t.Fatal(err)
	}
}

func (ws *notifSocket) read(d time.Duration) (notifMessage, error) {
	_ = ws.conn.SetReadDeadline(time.Now().Add(d))
	_, data, err := ws.conn.ReadMessage()
	if err != nil {
		return notifMessage{}, err
	}
	var m notifMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return notifMessage{}, fmt.Errorf("decode %s: %w", data, err)
	}
	return m, nil
}

func (ws *notifSocket) next(d time.Duration) notifMessage {
	ws.t.Helper()
	m, err := ws.read(max(d, time.Millisecond))
	if err != nil {
		ws.t.Fatalf("read: %v", err)
	}
	return m
}

// closeCode waits for the server to close the socket and returns the code.
func (ws *notifSocket) closeCode(d time.Duration) int {
	ws.t.Helper()
	m, err := ws.read(d)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		ws.t.Fatalf("want the socket closed, got %+v, %v", m, err)
	}
	return ce.Code
}

func TestNotificationsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the server binary")
	}
	const uiOrigin = "https://ui.example"
	s := startServer(t, "VC_CORS_ORIGINS="+uiOrigin)
	admin := s.login(t, "admin", s.bootstrapPassword(t))

	var acme, globex struct {
		ID string `json:"id"`
	}
	r := s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Acme"})
	expectStatus(t, r, http.StatusCreated, "create tenant")
	r.json(t, &acme)
	r = s.do(t, http.MethodPost, "/api/tenants", admin, map[string]string{"name": "Globex"})
	expectStatus(t, r, http.StatusCreated, "create tenant")
	r.json(t, &globex)
	user := func(name, tenant string) (userBody, string) {
		t.Helper()
		password := "correct horse battery " + name
		r := s.do(t, http.MethodPost, "/api/users", admin, map[string]string{
			"username": name, "password": password, "role": "analyst", "tenant_id": tenant})
		expectStatus(t, r, http.StatusCreated, "create "+name)
		var u userBody
		r.json(t, &u)
		return u, s.login(t, name, password)
	}
	_, aliceToken := user("alice", acme.ID)
	bob, bobToken := user("bob", acme.ID)
	mallory, malloryToken := user("mallory", globex.ID)

	// An empty inbox; nobody's notification is found.
	r = s.do(t, http.MethodGet, "/api/notifications", bobToken, nil)
	expectStatus(t, r, http.StatusOK, "empty inbox")
	if strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("empty inbox is %s", r.body)
	}
	r = s.do(t, http.MethodPut, "/api/notifications/01900000-0000-7000-8000-000000000000", bobToken, map[string]bool{"is_read": true})
	expectStatus(t, r, http.StatusNotFound, "mark a missing notification")
	r = s.do(t, http.MethodPost, "/api/notifications/mark-all-read", bobToken, nil)
	expectStatus(t, r, http.StatusOK, "mark all read")
	var all struct {
		Message string `json:"message"`
		Updated int    `json:"updated"`
	}
	r.json(t, &all)
	if all.Updated != 0 || all.Message != "All notifications marked as read" {
		t.Fatalf("mark all read answered %s", r.body)
	}
	r = s.do(t, http.MethodGet, "/api/notifications", "", nil)
	expectStatus(t, r, http.StatusUnauthorized, "inbox without a token")

	// The socket against the real binary: a bad token closes it with 1008,
	// a foreign Origin is refused, a good token connects, either way.
	ws, err := dialNotifications(t, s, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]string{"token": bobToken + "x"})
	if code := ws.closeCode(10 * time.Second); code != websocket.ClosePolicyViolation {
		t.Fatalf("bad token: close code %d, want 1008", code)
	}
	if ws, err := dialNotifications(t, s, nil, "https://evil.example"); err == nil || ws.resp == nil || ws.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v", err)
	}
	bobWS := connectNotifications(t, s, bobToken, bob.ID)
	bobProto, err := dialNotifications(t, s, []string{"access_token", bobToken}, uiOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if got := bobProto.resp.Header.Get("Sec-WebSocket-Protocol"); got != "access_token" {
		t.Fatalf("subprotocol %q, want access_token", got)
	}
	if m := bobProto.next(10 * time.Second); m.Type != "connected" || m.UserID != bob.ID {
		t.Fatalf("first message %+v", m)
	}
	malloryWS := connectNotifications(t, s, malloryToken, mallory.ID)

	// Create a case, assign it, receive the notification on the socket.
	r = s.do(t, http.MethodPost, "/api/cases", aliceToken, map[string]string{"title": "Beacon on ws-042", "severity": "high"})
	if r.status == http.StatusNotFound && r.errorCode(t) == "route_not_found" {
		t.Skip("the case routes are not wired yet: the case → socket part of this test waits for them")
	}
	expectStatus(t, r, http.StatusCreated, "open a case")
	var opened struct {
		ID string `json:"id"`
	}
	r.json(t, &opened)
	start := time.Now()
	r = s.do(t, http.MethodPatch, "/api/cases/"+opened.ID, aliceToken, map[string]string{"assignee": bob.ID})
	expectStatus(t, r, http.StatusOK, "assign the case")
	var pushed notifBody
	for _, c := range []*notifSocket{bobWS, bobProto} {
		m := c.next(time.Second - time.Since(start))
		if m.Type != "notification" {
			t.Fatalf("message %+v, want a notification", m)
		}
		pushed = m.Data
	}
	t.Logf("assignment reached both sockets %v after the request started", time.Since(start))
	if pushed.Kind != "case_assigned" || pushed.UserID != bob.ID || pushed.TenantID != acme.ID || pushed.IsRead ||
		pushed.Link == nil || *pushed.Link != "/cases/"+opened.ID || pushed.Title == "" || pushed.NotificationType != "info" {
		t.Fatalf("pushed %+v", pushed)
	}
	// Mallory, in another tenant, heard nothing: her first message is the pong.
	malloryWS.send(map[string]string{"type": "ping"})
	if m := malloryWS.next(10 * time.Second); m.Type != "pong" {
		t.Fatalf("mallory's first message %+v", m)
	}

	// REST sees it; only Bob may mark it; marking it read empties the unread list.
	var inbox []notifBody
	r = s.do(t, http.MethodGet, "/api/notifications?unread_only=true", bobToken, nil)
	expectStatus(t, r, http.StatusOK, "bob's inbox")
	r.json(t, &inbox)
	if len(inbox) != 1 || inbox[0].ID != pushed.ID {
		t.Fatalf("bob's unread: %s", r.body)
	}
	for who, token := range map[string]string{"alice": aliceToken, "mallory": malloryToken} {
		r = s.do(t, http.MethodPut, "/api/notifications/"+pushed.ID, token, map[string]bool{"is_read": true})
		expectStatus(t, r, http.StatusNotFound, who+" marks bob's notification")
		r = s.do(t, http.MethodGet, "/api/notifications", token, nil)
		expectStatus(t, r, http.StatusOK, who+"'s inbox")
		r.json(t, &inbox)
		if len(inbox) != 0 {
			t.Fatalf("%s sees %s", who, r.body)
		}
	}
	r = s.do(t, http.MethodPut, "/api/notifications/"+pushed.ID, bobToken, map[string]string{"is_read": "yes"})
	expectStatus(t, r, http.StatusBadRequest, "bad is_read")
	r = s.do(t, http.MethodPut, "/api/notifications/"+pushed.ID, bobToken, map[string]bool{"is_read": true})
	expectStatus(t, r, http.StatusOK, "mark read")
	var marked notifBody
	r.json(t, &marked)
	if !marked.IsRead || marked.ID != pushed.ID {
		t.Fatalf("marked %s", r.body)
	}
	r = s.do(t, http.MethodGet, "/api/notifications?unread_only=true", bobToken, nil)
	expectStatus(t, r, http.StatusOK, "bob's unread")
	r.json(t, &inbox)
	if len(inbox) != 0 {
		t.Fatalf("bob's unread after marking: %s", r.body)
	}

	// Alice moves the case along: Bob hears of it, and mark-all-read counts it.
	r = s.do(t, http.MethodPatch, "/api/cases/"+opened.ID, aliceToken, map[string]string{"status": "investigating"})
	expectStatus(t, r, http.StatusOK, "change status")
	if m := bobWS.next(10 * time.Second); m.Data.Kind != "case_status_changed" {
		t.Fatalf("after the status change: %+v", m)
	}
	r = s.do(t, http.MethodPost, "/api/notifications/mark-all-read", bobToken, nil)
	expectStatus(t, r, http.StatusOK, "mark all read")
	r.json(t, &all)
	if all.Updated != 1 {
		t.Fatalf("mark all read answered %s", r.body)
	}
}
