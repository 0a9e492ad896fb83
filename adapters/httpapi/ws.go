package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"

	"velocicompanion/adapters/realtime"
	"velocicompanion/domain"
)

// The notification WebSocket (GET /api/notifications/ws).
//
// The route is public in the route table because authentication happens
// in-band, as the original clients do it: the first text message is
// {"token": "<access token>"}, within the hub's AuthTimeout. Browsers, which
// cannot set an Authorization header on a WebSocket, may instead offer the
// subprotocols "access_token" and the token itself
// (new WebSocket(url, ["access_token", token])); the server then answers
// with the subprotocol access_token, never the token. Nothing is sent before
// the socket is authenticated. The token is checked like a bearer token
// (authenticateBearer; API keys are refused), and checked again every
// Recheck; the socket closes with 1008 at the token's expiry or as soon as a
// check fails (sign-out or revoked session, disabled account, role or
// password change). A user has at most MaxConnsPerUser sockets per replica.

// wsSubprotocol is the subprotocol that announces a token in
// Sec-WebSocket-Protocol.
const wsSubprotocol = "access_token"

// wsMessage is every message the server sends on the notification socket.
type wsMessage struct {
	Type   string            `json:"type" doc:"connected, notification or pong"`
	UserID domain.UserID     `json:"user_id,omitempty" doc:"connected: the authenticated user"`
	Data   *notificationRead `json:"data,omitempty" doc:"notification: the new notification"`
}

// wsAuth is the first message of a client that did not authenticate at the
// handshake.
type wsAuth struct {
	Token string `json:"token"`
}

// wsClose is why the server closes a socket: a close code and its reason.
type wsClose struct {
	code   int
	reason string
}

var (
	wsAuthTimeout   = wsClose{websocket.ClosePolicyViolation, "authentication timeout"}
	wsAuthRequired  = wsClose{websocket.ClosePolicyViolation, `authentication required: send {"token": "<access token>"} first`}
	wsAuthFailed    = wsClose{websocket.ClosePolicyViolation, "authentication failed"}
	wsTooMany       = wsClose{websocket.ClosePolicyViolation, "too many connections for this user"}
	wsSessionEnded  = wsClose{websocket.ClosePolicyViolation, "session ended"}
	wsTokenExpired  = wsClose{websocket.ClosePolicyViolation, "token expired"}
	wsFlooding      = wsClose{websocket.ClosePolicyViolation, "too many messages"}
	wsBinary        = wsClose{websocket.CloseUnsupportedData, "text messages only"}
	wsFellBehind    = wsClose{websocket.CloseTryAgainLater, "connection fell behind; reconnect and list missed notifications"}
	wsGoingAway     = wsClose{websocket.CloseGoingAway, "server shutting down"}
	wsInternalError = wsClose{websocket.CloseInternalServerErr, "internal error"}
	// wsGone ends a socket that needs no close frame (the client is gone,
	// or one was sent already).
	wsGone = wsClose{}
)

var (
	errLiveUnavailable  = domain.Unavailable("live_unavailable", "live notifications are not available on this server")
	errNotWebSocket     = domain.Invalid("websocket_required", "this route needs a WebSocket upgrade")
	errOriginNotAllowed = domain.Forbidden("origin_not_allowed", "this Origin may not open notification sockets")
)

// originAllowed reports whether r's Origin may open a socket: no Origin (a
// client that is not a browser), an origin of the CORS allow-list, or the
// API's own origin.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || slices.Contains(s.cfg.CORSOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// protocolToken returns the token announced in Sec-WebSocket-Protocol (the
// protocol after access_token), and whether access_token was offered.
func protocolToken(r *http.Request) (token string, offered bool) {
	protocols := websocket.Subprotocols(r)
	i := slices.Index(protocols, wsSubprotocol)
	if i < 0 {
		return "", false
	}
	if i+1 < len(protocols) {
		return protocols[i+1], true
	}
	return "", true
}

// socketSession is what the server knows of an authenticated socket.
type socketSession struct {
	principal Principal
	token     string
	expires   time.Time // zero: unknown
}

// errSocketAPIKey refuses API keys on the socket: notifications are a
// person's.
var errSocketAPIKey = domain.Unauthenticated("api_key_not_allowed", "notification sockets need a signed-in user")

// authenticateToken checks an access token exactly as a bearer token is
// checked (authenticateBearer: signature, expiry, account and tenant active,
// session open, auth epoch) and learns when it expires.
func (s *Server) authenticateToken(ctx context.Context, token string) (socketSession, error) {
	p, err := s.authenticateBearer(ctx, token)
	if err != nil {
		return socketSession{}, err
	}
	if p.IsAPIKey() {
		return socketSession{}, errSocketAPIKey
	}
	sess := socketSession{principal: p, token: token}
	if s.deps.TokenExpiry != nil {
		if exp, err := s.deps.TokenExpiry(token); err == nil {
			sess.expires = exp
		}
	}
	return sess, nil
}

// isAuthError reports whether err says the credentials are not (or no
// longer) acceptable, as opposed to a failure to check them.
func isAuthError(err error) bool {
	return domain.KindOf(err) == domain.KindUnauthenticated
}

func (s *Server) notificationSocket(c *gin.Context) {
	hub := s.deps.Live
	switch {
	case hub == nil:
		fail(c, errLiveUnavailable)
		return
	case !websocket.IsWebSocketUpgrade(c.Request):
		fail(c, errNotWebSocket)
		return
	case !s.originAllowed(c.Request):
		fail(c, errOriginNotAllowed)
		return
	}
	opts := hub.Options()
	token, offered := protocolToken(c.Request)
	var header http.Header
	if offered {
		header = http.Header{"Sec-Websocket-Protocol": {wsSubprotocol}}
	}
	up := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked above, with our rules
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			// The handshake is malformed (no key, wrong version): answer
			// like every other error.
			abortJSON(c, status, "websocket_handshake", reason.Error())
		},
	}
	conn, err := up.Upgrade(c.Writer, c.Request, header)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetReadLimit(opts.MaxMessageBytes)
	ws := &socket{conn: conn, opts: opts, log: logger(c)}

	// The request's context ends with the handler; the socket's lives as
	// long as the connection.
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Request.Context()))
	defer cancel()
	sess, why := s.authenticateSocket(ctx, ws, token)
	if why != nil {
		ws.refuse(*why)
		return
	}
	sub, err := hub.Subscribe(sess.principal.Tenant, sess.principal.User)
	if errors.Is(err, realtime.ErrTooManyConnections) {
		ws.refuse(wsTooMany)
		return
	}
	if err != nil {
		ws.refuse(wsGoingAway)
		return
	}
	defer sub.Close()
	c.Set(ctxPrincipal, sess.principal) // for the access log
	ws.serve(ctx, sub, sess, s)
}

// authenticateSocket authenticates ws with the handshake's token or, without
// one, with the first message; it returns why to close the socket otherwise.
func (s *Server) authenticateSocket(ctx context.Context, ws *socket, token string) (socketSession, *wsClose) {
	if token == "" {
		if err := ws.conn.SetReadDeadline(time.Now().Add(ws.opts.AuthTimeout)); err != nil {
			return socketSession{}, &wsAuthTimeout
		}
		typ, data, err := ws.conn.ReadMessage()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return socketSession{}, &wsAuthTimeout
		case errors.Is(err, websocket.ErrReadLimit):
			return socketSession{}, &wsGone // gorilla sent 1009 already
		case err != nil:
			return socketSession{}, &wsGone // the client went away
		case typ != websocket.TextMessage:
			return socketSession{}, &wsAuthRequired
		}
		var auth wsAuth
		if json.Unmarshal(data, &auth) != nil || auth.Token == "" {
			return socketSession{}, &wsAuthRequired
		}
		token = auth.Token
	}
	sess, err := s.authenticateToken(ctx, token)
	switch {
	case isAuthError(err):
		return socketSession{}, &wsAuthFailed
	case err != nil:
		ws.log.Error("authenticate notification socket", slog.String("error", err.Error()))
		return socketSession{}, &wsInternalError
	case !sess.expires.IsZero() && !time.Now().Before(sess.expires):
		return socketSession{}, &wsTokenExpired
	}
	return sess, nil
}

// socket is one accepted WebSocket. Only serve's goroutine writes, except
// close frames (WriteControl may be called concurrently).
type socket struct {
	conn *websocket.Conn
	opts realtime.Options
	log  *slog.Logger
}

// closeWait is how long close waits for the client to answer a close frame.
const closeWait = time.Second

// close sends a close frame; the caller then closes the connection.
func (ws *socket) close(why wsClose) {
	_ = ws.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(why.code, why.reason),
		time.Now().Add(closeWait))
}

// refuse closes a socket that serve does not run: it sends the close frame
// and reads (discarding) until the client answers it or closeWait passes,
// so that the client sees the close frame rather than a reset connection.
func (ws *socket) refuse(why wsClose) {
	if why == wsGone {
		return
	}
	ws.close(why)
	_ = ws.conn.SetReadDeadline(time.Now().Add(closeWait))
	for {
		if _, _, err := ws.conn.ReadMessage(); err != nil {
			return
		}
	}
}

// write sends v as one text message within the write timeout.
func (ws *socket) write(v any) error {
	if err := ws.conn.SetWriteDeadline(time.Now().Add(ws.opts.WriteTimeout)); err != nil {
		return err
	}
	return ws.conn.WriteJSON(v)
}

// serve runs an authenticated socket until it closes: it writes the
// notifications of sub, answers the client's messages, pings it, and closes
// the socket when the session ends.
func (ws *socket) serve(ctx context.Context, sub *realtime.Subscription, sess socketSession, s *Server) {
	if err := ws.write(wsMessage{Type: "connected", UserID: sess.principal.User}); err != nil {
		return
	}
	pongs := make(chan struct{}, 1)
	closing := make(chan wsClose, 1)
	readerDone := make(chan struct{})
	go ws.read(pongs, closing, readerDone)

	ping := time.NewTicker(ws.opts.PingInterval)
	defer ping.Stop()
	recheck := time.NewTicker(ws.opts.Recheck)
	defer recheck.Stop()
	var expiry <-chan time.Time
	if !sess.expires.IsZero() {
		t := time.NewTimer(time.Until(sess.expires))
		defer t.Stop()
		expiry = t.C
	}
	finish := func(why wsClose) {
		ws.close(why)
		select {
		case <-readerDone: // the client answered the close frame
		case <-time.After(closeWait):
		}
	}
	for {
		var err error
		select {
		case <-readerDone:
			return
		case why := <-closing:
			finish(why)
			return
		case n := <-sub.C():
			data := notificationFromRow(n)
			err = ws.write(wsMessage{Type: "notification", Data: &data})
		case <-pongs:
			err = ws.write(wsMessage{Type: "pong"})
		case <-ping.C:
			err = ws.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(ws.opts.WriteTimeout))
		case <-expiry:
			finish(wsTokenExpired)
			return
		case <-recheck.C:
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, cerr := s.authenticateToken(rctx, sess.token)
			cancel()
			switch {
			case isAuthError(cerr):
				finish(wsSessionEnded)
				return
			case cerr != nil:
				// The check could not run (the database is away): keep
				// the socket and check again at the next tick.
				ws.log.Warn("recheck notification socket", slog.String("error", cerr.Error()))
			}
		case <-sub.Done():
			if errors.Is(sub.Err(), realtime.ErrFellBehind) {
				finish(wsFellBehind)
			} else {
				finish(wsGoingAway)
			}
			return
		}
		if err != nil {
			return // the connection is broken; the deferred Close ends the reader
		}
	}
}

// read reads the client's messages until the connection fails or closes:
// every text message (such as {"type":"ping"}) asks for a pong, and control
// frames are answered by gorilla. A client that sends faster than the limit,
// or binary messages, is asked to close.
func (ws *socket) read(pongs chan<- struct{}, closing chan<- wsClose, done chan<- struct{}) {
	defer close(done)
	idle := 2 * ws.opts.PingInterval
	extend := func() { _ = ws.conn.SetReadDeadline(time.Now().Add(idle)) }
	extend()
	ws.conn.SetPongHandler(func(string) error { extend(); return nil })
	rate := float64(ws.opts.MessagesPerSecond)
	tokens, last := rate, time.Now()
	for {
		typ, _, err := ws.conn.ReadMessage()
		if err != nil {
			return
		}
		extend()
		now := time.Now()
		tokens = min(rate, tokens+now.Sub(last).Seconds()*rate)
		last = now
		var why *wsClose
		switch {
		case typ != websocket.TextMessage:
			why = &wsBinary
		case tokens < 1:
			why = &wsFlooding
		}
		if why != nil {
			select {
			case closing <- *why:
			default:
			}
			// Keep reading until the close handshake ends the connection.
			continue
		}
		tokens--
		select {
		case pongs <- struct{}{}:
		default: // a pong is pending already
		}
	}
}
