package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"velocicompanion/adapters/auth"
	"velocicompanion/adapters/httpapi"
	"velocicompanion/adapters/kafka"
	"velocicompanion/adapters/realtime"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/domain/cases"
	"velocicompanion/domain/users"
	"velocicompanion/eventstore"
	"velocicompanion/eventstore/pgtest"
	"velocicompanion/projections"
	"velocicompanion/projections/notifications"
)

// live is the whole notification path of one process in a test: a fresh
// schema, the identity commands, an embedded Kafka cluster, the relay, the
// notifications projector, the live feed and hub, and the HTTP API on a
// loopback port. Events are appended to the store directly, as the case
// commands will.
type live struct {
	t      testing.TB
	db     *pgtest.DB
	store  *eventstore.Store
	h      *commands.Handler
	issuer *auth.Issuer
	kafka  kafka.Config
	log    *slog.Logger
	// The API process the test talks to (see replica).
	hub *realtime.Hub
	srv *httptest.Server
	ws  string // the socket's URL

	names  map[domain.UserID]string // user names, by id
	tokens map[domain.UserID]string // signed-in users' access tokens
}

var platformActor = users.Actor{User: "root", Tenant: domain.PlatformTenant, Role: users.RolePlatformAdmin}

// testCodec is the server's codec, with the case events if the case
// commands do not register them (yet).
func testCodec() *eventstore.Codec {
	c := commands.NewCodec()
	if !c.Known(cases.EventOpened) {
		eventstore.Register[cases.Opened](c, 1)
		eventstore.Register[cases.Assigned](c, 1)
		eventstore.Register[cases.StatusChanged](c, 1)
		eventstore.Register[cases.Closed](c, 1)
	}
	return c
}

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("VC_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// tokens adapts auth.Issuer as the server does.
type tokens struct{ issuer *auth.Issuer }

func (t tokens) IssueAccess(c httpapi.Claims) (string, time.Time, error) {
	tok, claims, err := t.issuer.IssueAccess(auth.Subject{User: c.User, Tenant: c.Tenant, Role: users.Role(c.Role),
		Session: c.Session, Epoch: c.Epoch})
	return tok, claims.ExpiresAt, err
}

func (t tokens) VerifyAccess(token string) (httpapi.Claims, error) {
	c, err := t.issuer.Parse(token, auth.TokenAccess)
	if err != nil {
		return httpapi.Claims{}, err
	}
	return httpapi.Claims{User: c.User, Tenant: c.Tenant, Role: string(c.Role), Session: c.Session, Epoch: c.Epoch}, nil
}

// allowedOrigin is the CORS allow-list of the test server.
const allowedOrigin = "https://ui.example"

func newLive(t testing.TB, opts realtime.Options) *live {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := testLogger()
	db := pgtest.New(t)
	if err := commands.Migrate(ctx, db.Owner); err != nil {
		t.Fatal(err)
	}
	if err := projections.Migrate(ctx, db.Owner, notifications.Projector{}); err != nil {
		t.Fatal(err)
	}
	hasher, err := auth.NewHasher(auth.HasherOptions{Params: auth.MinimumParams})
	if err != nil {
		t.Fatal(err)
	}
	l := &live{t: t, db: db, store: eventstore.NewStore(db.App, testCodec()),
		names: map[domain.UserID]string{}, tokens: map[domain.UserID]string{}}
	l.h = commands.New(l.store, hasher)
	if err := l.h.EnsurePlatformTenant(ctx); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	l.issuer = &auth.Issuer{Key: key, Issuer: "test", Audience: "test", TTL: time.Hour}

	kc, err := kafka.Embedded(ctx, "", 0, "events", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	kcfg := kc.Config("live-test")
	l.kafka, l.log = kcfg, log
	background := l.background

	pub, err := kafka.NewPublisher(kcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	relay := eventstore.NewRelay(l.store, pub, eventstore.RelayOptions{Idle: 2 * time.Millisecond, Logger: log})
	background("relay", relay.Run)

	runner, err := projections.NewRunner(projections.RunnerConfig{
		Pool: db.App, Codec: l.store.Codec(), Topic: kcfg.Topic, Logger: log,
		Subscribe: func(group string) (message.Subscriber, error) { return kafka.NewSubscriber(kcfg, group, log) },
		Permanent: kafka.Permanent,
	}, notifications.Projector{})
	if err != nil {
		t.Fatal(err)
	}
	background("projections", runner.Run)
	select {
	case <-runner.Running():
	case <-time.After(30 * time.Second):
		t.Fatal("the projector did not start")
	}

	// Warm up: the producer's first publish and the projector's group join
	// take a while once; the tests measure the steady state.
	res := l.appendCase("warm-up", "case-0", cases.Opened{ID: "case-0", Title: "warm-up", Severity: cases.SeverityLow,
		TLP: cases.TLPAmber, PAP: cases.PAPAmber, By: "nobody"})
	if err := projections.WaitFor(ctx, db.App, notifications.Name, "warm-up", res.Position, 30*time.Second); err != nil {
		t.Fatalf("warm-up: %v", err)
	}

	l.startAPI(opts)
	return l
}

// background runs run until the test ends.
func (l *live) background(name string, run func(context.Context) error) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	l.t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			l.t.Errorf("%s: %v", name, err)
		}
	})
}

// startAPI starts what each replica of the server runs for notifications:
// a hub, a live feed and the HTTP API.
func (l *live) startAPI(opts realtime.Options) {
	t, db := l.t, l.db
	l.hub = realtime.NewHub(opts, nil)
	feed, err := realtime.NewFeed(realtime.FeedConfig{Pool: db.App, Kafka: l.kafka, Hub: l.hub, Logger: l.log})
	if err != nil {
		t.Fatal(err)
	}
	hub := l.hub
	l.background("feed", func(ctx context.Context) error { defer hub.Close(); return feed.Run(ctx) })
	select {
	case <-feed.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the live feed did not start")
	}
	api := httpapi.New(httpapi.Config{Version: "test", CORSOrigins: []string{allowedOrigin}}, httpapi.Deps{
		Commands: l.h, Reads: db.App, Tokens: tokens{l.issuer}, Live: l.hub,
		WaitFor: func(ctx context.Context, projector string, tenant domain.TenantID, position int64, max time.Duration) error {
			return projections.WaitFor(ctx, db.App, projector, tenant, position, max)
		},
		TokenExpiry: func(token string) (time.Time, error) {
			c, err := l.issuer.Parse(token, auth.TokenAccess)
			return c.ExpiresAt, err
		},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), prometheus.NewRegistry())
	l.srv = httptest.NewServer(api.Handler())
	t.Cleanup(l.srv.Close)
	l.ws = "ws" + strings.TrimPrefix(l.srv.URL, "http") + "/api/notifications/ws"
}

// replica starts another replica's hub, live feed and HTTP API on the same
// database and Kafka cluster, and returns l talking to it.
func (l *live) replica(opts realtime.Options) *live {
	c := *l
	c.startAPI(opts)
	return &c
}

// with returns l reporting to t (a subtest).
func (l *live) with(t testing.TB) *live {
	c := *l
	c.t = t
	return &c
}

func (l *live) tenant(name string) domain.TenantID {
	l.t.Helper()
	res, err := l.h.CreateTenant(context.Background(), commands.CreateTenant{Name: name, By: platformActor.User})
	if err != nil {
		l.t.Fatal(err)
	}
	return domain.TenantID(res.ID)
}

func (l *live) user(tenant domain.TenantID, name string) domain.UserID {
	l.t.Helper()
	res, err := l.h.RegisterUser(context.Background(), commands.RegisterUser{
		Tenant: tenant, Username: name, Password: "password of " + name, Role: users.RoleAnalyst, By: platformActor})
	if err != nil {
		l.t.Fatal(err)
	}
	l.names[domain.UserID(res.ID)] = name
	return domain.UserID(res.ID)
}

// token returns an access token of user, signed in once through the API.
func (l *live) token(user domain.UserID) string {
	l.t.Helper()
	if tok, ok := l.tokens[user]; ok {
		return tok
	}
	r := l.do(l.t, http.MethodPost, "/api/auth/login", "", map[string]string{
		"username": l.names[user], "password": "password of " + l.names[user]})
	var body struct {
		AccessToken string `json:"access_token"`
	}
	r.expect(l.t, http.StatusOK, &body)
	l.tokens[user] = body.AccessToken
	return body.AccessToken
}

// tokenFrom returns user's token (of the same session) signed by issuer,
// for another lifetime.
func (l *live) tokenFrom(issuer *auth.Issuer, user domain.UserID) string {
	l.t.Helper()
	c, err := l.issuer.Parse(l.token(user), auth.TokenAccess)
	if err != nil {
		l.t.Fatal(err)
	}
	tok, _, err := issuer.IssueAccess(c.Subject)
	if err != nil {
		l.t.Fatal(err)
	}
	return tok
}

// appendCase appends events to case id of tenant, as the case commands do.
func (l *live) appendCase(tenant domain.TenantID, id string, events ...domain.Event) eventstore.AppendResult {
	l.t.Helper()
	res, err := l.store.Append(context.Background(), eventstore.AppendRequest{
		Key: eventstore.Key{Tenant: tenant, Type: "case", ID: id}, Expected: eventstore.Any, Events: events,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return res
}

// client is one WebSocket to the test server.
type client struct {
	t    testing.TB
	conn *websocket.Conn
	resp *http.Response
}

// dial opens a socket with the given subprotocols and Origin (none if empty).
func (l *live) dial(protocols []string, origin string) (*client, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: protocols}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := d.Dial(l.ws, h)
	if err != nil {
		return &client{t: l.t, resp: resp}, err
	}
	l.t.Cleanup(func() { conn.Close() })
	return &client{t: l.t, conn: conn, resp: resp}, nil
}

// connect opens a socket authenticated by its first message and reads the
// connected message.
func (l *live) connect(user domain.UserID) *client {
	l.t.Helper()
	token := l.token(user)
	c, err := l.dial(nil, "")
	if err != nil {
		l.t.Fatal(err)
	}
	c.send(map[string]string{"token": token})
	if m := c.next(5 * time.Second); m.Type != "connected" || m.UserID != string(user) {
		l.t.Fatalf("first message %+v, want connected as %s", m, user)
	}
	return c
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

// serverMessage is what the server sends.
type serverMessage struct {
	Type   string           `json:"type"`
	UserID string           `json:"user_id"`
	Data   notificationBody `json:"data"`
}

type notificationBody struct {
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

// next reads the next message, failing the test if none comes within d.
func (c *client) next(d time.Duration) serverMessage {
	c.t.Helper()
	m, err := c.read(d)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) read(d time.Duration) (serverMessage, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	typ, data, err := c.conn.ReadMessage()
	if err != nil {
		return serverMessage{}, err
	}
	if typ != websocket.TextMessage {
		return serverMessage{}, fmt.Errorf("message of type %d", typ)
	}
	var m serverMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return serverMessage{}, fmt.Errorf("decode %s: %w", data, err)
	}
	return m, nil
}

// closed reads until the server closes the socket within d and returns the
// close code and reason; any message before the close fails the test.
func (c *client) closed(d time.Duration) (int, string) {
	c.t.Helper()
	m, err := c.read(d)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		c.t.Fatalf("want the socket closed, got %+v, %v", m, err)
	}
	return ce.Code, ce.Text
}

func TestSocketDeliversNotifications(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kafka, the projector and the live feed")
	}
	t.Parallel()
	l := newLive(t, realtime.Options{})
	acme, globex := l.tenant("Acme"), l.tenant("Globex")
	alice, bob, mallory := l.user(acme, "alice"), l.user(acme, "bob"), l.user(globex, "mallory")

	bobMsg := l.connect(bob)
	// The other way in: the token in Sec-WebSocket-Protocol; the server
	// echoes access_token and never the token.
	bobProto, err := l.dial([]string{"access_token", l.token(bob)}, allowedOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if got := bobProto.resp.Header.Get("Sec-WebSocket-Protocol"); got != "access_token" {
		t.Fatalf("subprotocol %q, want access_token", got)
	}
	if m := bobProto.next(5 * time.Second); m.Type != "connected" || m.UserID != string(bob) {
		t.Fatalf("first message %+v", m)
	}
	aliceWS, malloryWS := l.connect(alice), l.connect(mallory)

	// Alice opens a case for Bob: both of Bob's sockets hear of it within a
	// second, Alice (who did it) and Mallory (another tenant) do not.
	start := time.Now()
	res := l.appendCase(acme, "case-1", cases.Opened{ID: "case-1", Title: "Beacon on ws-042", Severity: cases.SeverityHigh,
		TLP: cases.TLPAmber, PAP: cases.PAPAmber, Assignee: bob, By: alice})
	var pushed notificationBody
	for _, c := range []*client{bobMsg, bobProto} {
		m := c.next(time.Second - time.Since(start))
		if m.Type != "notification" {
			t.Fatalf("message %+v, want a notification", m)
		}
		pushed = m.Data
	}
	t.Logf("delivered to both sockets %v after the append", time.Since(start))
	if pushed.UserID != string(bob) || pushed.TenantID != string(acme) || pushed.Kind != "case_assigned" ||
		pushed.NotificationType != "info" || pushed.IsRead || pushed.Link == nil || *pushed.Link != "/cases/case-1" ||
		pushed.Message != `Case "Beacon on ws-042" was assigned to you.` {
		t.Fatalf("pushed %+v", pushed)
	}
	// Ping is answered with pong.
	bobMsg.send(map[string]string{"type": "ping"})
	if m := bobMsg.next(5 * time.Second); m.Type != "pong" {
		t.Fatalf("answer to ping: %+v", m)
	}
	// Bob hands the case to Alice: her first message is that, so she was
	// told nothing of the opening; Mallory's first is her own case.
	l.appendCase(acme, "case-1", cases.Assigned{From: bob, To: alice, By: bob})
	l.appendCase(globex, "case-9", cases.Opened{ID: "case-9", Title: "Other", Severity: cases.SeverityLow,
		TLP: cases.TLPAmber, PAP: cases.PAPAmber, Assignee: mallory, By: "someone"})
	if m := aliceWS.next(5 * time.Second); m.Data.Kind != "case_assigned" || m.Data.UserID != string(alice) {
		t.Fatalf("alice's first message %+v", m)
	}
	if m := malloryWS.next(5 * time.Second); m.Data.TenantID != string(globex) || m.Data.Message != `Case "Other" was assigned to you.` {
		t.Fatalf("mallory's first message %+v", m)
	}

	// REST: the inbox lists what was pushed, as of the write's position.
	var inbox []notificationBody
	r := l.do(t, http.MethodGet, fmt.Sprintf("/api/notifications?min_position=%d", res.Position), l.token(bob), nil)
	r.expect(t, http.StatusOK, &inbox)
	if len(inbox) != 1 || inbox[0].ID != pushed.ID || !inbox[0].CreatedAt.Equal(pushed.CreatedAt) {
		t.Fatalf("bob's inbox %+v, pushed %+v", inbox, pushed)
	}
	// Bob's notification is not found for Alice or Mallory, and stays unread.
	for _, who := range []domain.UserID{alice, mallory} {
		r := l.do(t, http.MethodPut, "/api/notifications/"+pushed.ID, l.token(who), map[string]bool{"is_read": true})
		r.expect(t, http.StatusNotFound, nil)
		if code := r.code(t); code != "notification_not_found" {
			t.Fatalf("code %s", code)
		}
	}
	for _, bad := range []any{map[string]any{}, map[string]any{"is_read": "yes"}, map[string]any{"is_read": true, "x": 1}} {
		l.do(t, http.MethodPut, "/api/notifications/"+pushed.ID, l.token(bob), bad).expect(t, http.StatusBadRequest, nil)
	}
	l.do(t, http.MethodGet, "/api/notifications?unread_only=true", l.token(bob), nil).expect(t, http.StatusOK, &inbox)
	if len(inbox) != 1 {
		t.Fatalf("bob has %d unread, want 1", len(inbox))
	}
	var marked notificationBody
	l.do(t, http.MethodPut, "/api/notifications/"+pushed.ID, l.token(bob), map[string]bool{"is_read": true}).expect(t, http.StatusOK, &marked)
	if !marked.IsRead || marked.ID != pushed.ID {
		t.Fatalf("marked %+v", marked)
	}
	l.do(t, http.MethodGet, "/api/notifications?unread_only=true", l.token(bob), nil).expect(t, http.StatusOK, &inbox)
	if len(inbox) != 0 {
		t.Fatalf("bob has %d unread after marking, want 0", len(inbox))
	}
	l.do(t, http.MethodGet, "/api/notifications?is_read=true", l.token(bob), nil).expect(t, http.StatusOK, &inbox)
	if len(inbox) != 1 {
		t.Fatalf("bob has %d read, want 1", len(inbox))
	}
	l.do(t, http.MethodGet, "/api/notifications?unread_only=true&is_read=true", l.token(bob), nil).expect(t, http.StatusBadRequest, nil)
	l.do(t, http.MethodGet, "/api/notifications?is_read=maybe", l.token(bob), nil).expect(t, http.StatusBadRequest, nil)
	l.do(t, http.MethodGet, "/api/notifications", "", nil).expect(t, http.StatusUnauthorized, nil)

	// Mark all read counts only the caller's unread ones.
	var all struct {
		Message string `json:"message"`
		Updated int    `json:"updated"`
	}
	l.do(t, http.MethodPost, "/api/notifications/mark-all-read", l.token(mallory), nil).expect(t, http.StatusOK, &all)
	if all.Updated != 1 || all.Message != "All notifications marked as read" {
		t.Fatalf("mark all read: %+v", all)
	}
	l.do(t, http.MethodPost, "/api/notifications/mark-all-read", l.token(mallory), nil).expect(t, http.StatusOK, &all)
	if all.Updated != 0 {
		t.Fatalf("mark all read again: %+v", all)
	}
	l.do(t, http.MethodGet, "/api/notifications?unread_only=true", l.token(alice), nil).expect(t, http.StatusOK, &inbox)
	if len(inbox) != 1 {
		t.Fatalf("alice has %d unread after mallory read hers, want 1", len(inbox))
	}
}

func TestSocketsOnSeveralReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kafka, the projector and the live feed")
	}
	t.Parallel()
	l := newLive(t, realtime.Options{})
	other := l.replica(realtime.Options{})
	acme := l.tenant("Acme")
	alice, bob := l.user(acme, "alice"), l.user(acme, "bob")
	here, there := l.connect(bob), other.connect(bob)
	if l.hub.Connections() != 1 || other.hub.Connections() != 1 {
		t.Fatalf("connections per replica: %d and %d", l.hub.Connections(), other.hub.Connections())
	}
	// Each replica reads the stream and delivers to its own socket.
	start := time.Now()
	l.appendCase(acme, "case-1", cases.Opened{ID: "case-1", Title: "Beacon", Severity: cases.SeverityLow,
		TLP: cases.TLPAmber, PAP: cases.PAPAmber, Assignee: bob, By: alice})
	var ids []string
	for _, c := range []*client{here, there} {
		m := c.next(time.Second - time.Since(start))
		if m.Type != "notification" || m.Data.Kind != "case_assigned" {
			t.Fatalf("message %+v", m)
		}
		ids = append(ids, m.Data.ID)
	}
	if ids[0] != ids[1] {
		t.Fatalf("the replicas pushed different notifications: %v", ids)
	}
	// A replica that stops closes its sockets with 1001; the other goes on.
	other.hub.Close()
	if code, _ := there.closed(5 * time.Second); code != websocket.CloseGoingAway {
		t.Fatalf("socket of a stopping replica: close code %d, want 1001", code)
	}
	l.appendCase(acme, "case-1", cases.StatusChanged{From: cases.StatusOpen, To: cases.StatusInvestigating, By: alice})
	if m := here.next(5 * time.Second); m.Data.Kind != "case_status_changed" {
		t.Fatalf("message %+v", m)
	}
}

func TestSocketAuthentication(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kafka, the projector and the live feed")
	}
	t.Parallel()
	l := newLive(t, realtime.Options{AuthTimeout: 300 * time.Millisecond, Recheck: 100 * time.Millisecond, MaxConnsPerUser: 2})
	acme := l.tenant("Acme")
	alice, bob, carol, dave := l.user(acme, "alice"), l.user(acme, "bob"), l.user(acme, "carol"), l.user(acme, "dave")

	t.Run("bad_token", func(t *testing.T) {
		l := l.with(t)
		for _, first := range []any{
			map[string]string{"token": "not-a-token"},
			map[string]string{"token": l.token(bob) + "x"},
			map[string]string{"token": ""},
			"just text",
		} {
			c, err := l.dial(nil, "")
			if err != nil {
				t.Fatal(err)
			}
			c.send(first)
			if code, _ := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation {
				t.Fatalf("first message %v: close code %d, want 1008", first, code)
			}
		}
		c, err := l.dial([]string{"access_token", "not-a-token"}, "")
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation {
			t.Fatalf("bad token in the subprotocol: close code %d", code)
		}
	})
	t.Run("no_authentication", func(t *testing.T) {
		l := l.with(t)
		c, err := l.dial(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// Nothing is sent before authentication: the first frame is the close.
		code, reason := c.closed(5 * time.Second)
		if code != websocket.ClosePolicyViolation || reason != "authentication timeout" {
			t.Fatalf("close %d %q", code, reason)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Fatalf("closed after %v, want about the 300ms auth timeout", d)
		}
	})
	t.Run("oversized_message", func(t *testing.T) {
		l := l.with(t)
		c, err := l.dial(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		c.send(map[string]string{"token": strings.Repeat("x", 5000)})
		if code, _ := c.closed(5 * time.Second); code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
	t.Run("origin", func(t *testing.T) {
		l := l.with(t)
		c, err := l.dial(nil, "https://evil.example")
		if err == nil || c.resp == nil || c.resp.StatusCode != http.StatusForbidden {
			t.Fatalf("disallowed origin: %v %+v", err, c.resp)
		}
		for _, origin := range []string{allowedOrigin, l.srv.URL} {
			c, err := l.dial(nil, origin)
			if err != nil {
				t.Fatalf("origin %s: %v", origin, err)
			}
			c.conn.Close()
		}
	})
	t.Run("not_a_websocket", func(t *testing.T) {
		l := l.with(t)
		r := l.do(t, http.MethodGet, "/api/notifications/ws", l.token(bob), nil)
		r.expect(t, http.StatusBadRequest, nil)
	})
	t.Run("connection_limit", func(t *testing.T) {
		l := l.with(t)
		l.connect(carol)
		l.connect(carol)
		token := l.token(carol)
		c, err := l.dial(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		c.send(map[string]string{"token": token})
		if code, reason := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation || !strings.Contains(reason, "too many") {
			t.Fatalf("third socket: close %d %q", code, reason)
		}
	})
	t.Run("flooding_and_binary", func(t *testing.T) {
		l := l.with(t)
		for _, tc := range []struct {
			typ    int
			code   int
			reason string
		}{
			{websocket.TextMessage, websocket.ClosePolicyViolation, "too many messages"},
			{websocket.BinaryMessage, websocket.CloseUnsupportedData, "text messages only"},
		} {
			c := l.connect(dave)
			for range 30 {
				if err := c.conn.WriteMessage(tc.typ, []byte(`{"type":"ping"}`)); err != nil {
					break
				}
			}
			for {
				m, err := c.read(5 * time.Second)
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					if ce.Code != tc.code || ce.Text != tc.reason {
						t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, tc.code, tc.reason)
					}
					break
				}
				if err != nil || m.Type != "pong" {
					t.Fatalf("got %+v, %v before the close", m, err)
				}
			}
		}
	})
	t.Run("session_ends", func(t *testing.T) {
		l := l.with(t)
		c := l.connect(alice)
		off := false
		if _, err := l.h.UpdateUser(context.Background(), commands.UpdateUser{Tenant: acme, User: alice, Active: &off, By: platformActor}); err != nil {
			t.Fatal(err)
		}
		if code, reason := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation || reason != "session ended" {
			t.Fatalf("after disabling: close %d %q", code, reason)
		}
		// A role change ends the session too.
		token := l.tokenFrom(l.issuer, bob)
		c, err := l.dial(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		c.send(map[string]string{"token": token})
		c.next(5 * time.Second)
		role := users.RoleViewer
		if _, err := l.h.UpdateUser(context.Background(), commands.UpdateUser{Tenant: acme, User: bob, Role: &role, By: platformActor}); err != nil {
			t.Fatal(err)
		}
		if code, reason := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation || reason != "session ended" {
			t.Fatalf("after a role change: close %d %q", code, reason)
		}
		// Signing out ends the session and its sockets.
		c = l.connect(carol)
		l.do(t, http.MethodPost, "/api/auth/logout", l.token(carol), nil).expect(t, http.StatusNoContent, nil)
		delete(l.tokens, carol)
		if code, reason := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation || reason != "session ended" {
			t.Fatalf("after signing out: close %d %q", code, reason)
		}
	})
	t.Run("token_expiry", func(t *testing.T) {
		l := l.with(t)
		short := *l.issuer
		short.TTL = 2 * time.Second
		token := l.tokenFrom(&short, carol)
		c, err := l.dial(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		c.send(map[string]string{"token": token})
		if m := c.next(5 * time.Second); m.Type != "connected" {
			t.Fatalf("first message %+v", m)
		}
		if code, reason := c.closed(5 * time.Second); code != websocket.ClosePolicyViolation || reason != "token expired" {
			t.Fatalf("at expiry: close %d %q", code, reason)
		}
	})
}

// response is an HTTP answer of the test server.
type response struct {
	status int
	body   []byte
}

func (l *live) do(t testing.TB, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, l.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: raw}
}

// expect fails t unless r has status want, and decodes its body into v.
func (r response) expect(t testing.TB, want int, v any) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("decode %s: %v", r.body, err)
		}
	}
}

func (r response) code(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatal(err)
	}
	return e.Error.Code
}

// BenchmarkEventToWebSocket measures the time from appending an event to
// its notification arriving on a connected WebSocket, with events appended at
// 200 per second (each makes one notification), and reports p50 and p99.
func BenchmarkEventToWebSocket(b *testing.B) {
	const rate = 200
	l := newLive(b, realtime.Options{SendBuffer: 1024})
	acme := l.tenant("Acme")
	alice, bob := l.user(acme, "alice"), l.user(acme, "bob")
	c := l.connect(bob)

	var mu sync.Mutex
	sent := map[string]time.Time{} // case id → when its append started
	latencies := make([]time.Duration, 0, b.N)
	received := make(chan error, 1)
	go func() {
		for range b.N {
			m, err := c.read(30 * time.Second)
			if err != nil {
				received <- err
				return
			}
			now := time.Now()
			id := strings.TrimPrefix(*m.Data.Link, "/cases/")
			mu.Lock()
			latencies = append(latencies, now.Sub(sent[id]))
			mu.Unlock()
		}
		received <- nil
	}()
	b.ResetTimer()
	// Appends run concurrently, so that a slow one does not lower the rate.
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	var appends sync.WaitGroup
	appendErr := make(chan error, b.N)
	for i := range b.N {
		<-tick.C
		id := fmt.Sprintf("case-%d", i)
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		appends.Go(func() {
			_, err := l.store.Append(context.Background(), eventstore.AppendRequest{
				Key: eventstore.Key{Tenant: acme, Type: "case", ID: id}, Expected: eventstore.NoStream,
				Events: []domain.Event{cases.Opened{ID: cases.ID(id), Title: id, Severity: cases.SeverityLow,
					TLP: cases.TLPAmber, PAP: cases.PAPAmber, Assignee: bob, By: alice}},
			})
			if err != nil {
				appendErr <- err
			}
		})
	}
	appends.Wait()
	close(appendErr)
	for err := range appendErr {
		b.Fatal(err)
	}
	if err := <-received; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	slices.Sort(latencies)
	q := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}
