package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/domain"
	"velocicompanion/projections/notifications"
)

// notificationRead is a notification as the original API's NotificationRead
// shows it, with string ids and RFC 3339 times.
type notificationRead struct {
	Title            string             `json:"title"`
	Message          string             `json:"message"`
	NotificationType notifications.Type `json:"notification_type" doc:"info, warning, error or success"`
	Link             *string            `json:"link" doc:"the route of the subject: the client route /cases/{id}, or the API route /api/velociraptor/collections/{id}, /api/velociraptor/hunts/{id} or /api/hosts/{id}"`
	ID               string             `json:"id"`
	UserID           domain.UserID      `json:"user_id"`
	TenantID         domain.TenantID    `json:"tenant_id"`
	IsRead           bool               `json:"is_read"`
	CreatedAt        time.Time          `json:"created_at" doc:"when the event the notification reports was recorded"`
	Kind             notifications.Kind `json:"kind" doc:"what the notification is about, such as case_assigned"`
}

func notificationFromRow(n notifications.Notification) notificationRead {
	out := notificationRead{Title: n.Title, Message: n.Message, NotificationType: n.Type, ID: n.ID, UserID: n.User,
		TenantID: n.Tenant, IsRead: n.Read, CreatedAt: n.CreatedAt.UTC(), Kind: n.Kind}
	if n.Link != "" {
		link := n.Link
		out.Link = &link
	}
	return out
}

// markNotificationRequest is the body of PUT /api/notifications/{id}.
type markNotificationRequest struct {
	IsRead *bool `json:"is_read" doc:"required"`
}

// markAllReadResponse answers POST /api/notifications/mark-all-read.
type markAllReadResponse struct {
	Message string `json:"message"`
	Updated int64  `json:"updated" doc:"how many unread notifications were marked read"`
}

// notificationRoutes are the notification routes: the caller's own inbox
// only, whatever their role.
func (s *Server) notificationRoutes() []op {
	list := append([]param{
		{Name: "unread_only", In: "query", Type: "boolean", Desc: "true: unread notifications only"},
		{Name: "is_read", In: "query", Type: "boolean", Desc: "only read (true) or only unread (false) notifications"},
	}, pageParams...)
	return []op{
		{method: http.MethodGet, path: "/api/notifications", summary: "List your notifications, newest first", tag: "notifications", access: anyUser, query: list, resp: []notificationRead{}, handler: s.listNotifications},
		{method: http.MethodPost, path: "/api/notifications/mark-all-read", summary: "Mark all your notifications read", tag: "notifications", access: anyUser, resp: markAllReadResponse{}, handler: s.markAllNotificationsRead},
		{method: http.MethodPut, path: "/api/notifications/:id", summary: "Mark one of your notifications read or unread", tag: "notifications", access: anyUser, req: markNotificationRequest{}, resp: notificationRead{}, handler: s.markNotification},
		{method: http.MethodGet, path: "/api/notifications/ws", summary: "Live notifications over WebSocket (RFC 6455). Public route: authenticate in-band, either with the first text message {\"token\": \"<access token>\"} within a few seconds, or at the handshake with Sec-WebSocket-Protocol: access_token, <access token> (the server echoes access_token). Nothing is sent before authentication; then {\"type\":\"connected\",\"user_id\"}, and {\"type\":\"notification\",\"data\":NotificationRead} for each new notification; {\"type\":\"ping\"} is answered {\"type\":\"pong\"}. Closes with 1008 on a bad or missing token, a refused connection (too many for the user) or an ended session (expiry, sign-out, disabled account, role change). Browsers' Origin must be in the CORS allow-list or the API's own origin.", tag: "notifications", access: public, status: http.StatusSwitchingProtocols, resp: wsMessage{}, handler: s.notificationSocket},
	}
}

var errBadReadFilter = domain.Invalid("invalid_read_filter", "unread_only and is_read must be true or false, and must not contradict each other")

// readFilter parses unread_only and is_read.
func readFilter(c *gin.Context) (notifications.Filter, bool) {
	var f notifications.Filter
	for _, name := range []string{"unread_only", "is_read"} {
		raw, ok := c.GetQuery(name)
		if !ok {
			continue
		}
		v, err := strconv.ParseBool(raw)
		if err != nil {
			fail(c, errBadReadFilter)
			return f, false
		}
		if name == "unread_only" {
			if !v {
				continue // unread_only=false means every notification
			}
			v = false // unread only: is_read = false
		}
		if f.Read != nil && *f.Read != v {
			fail(c, errBadReadFilter)
			return f, false
		}
		f.Read = &v
	}
	return f, true
}

func (s *Server) listNotifications(c *gin.Context) {
	p := mustPrincipal(c)
	filter, ok := readFilter(c)
	if !ok {
		return
	}
	page, ok := s.pageParams(c, notifications.Name)
	if !ok {
		return
	}
	rows, err := notifications.List(c.Request.Context(), s.deps.Reads, p.Tenant, p.User, filter, page)
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]notificationRead, 0, len(rows))
	for _, r := range rows {
		out = append(out, notificationFromRow(r))
	}
	if len(rows) == page.Limit {
		setNextCursor(c, notifications.Cursor(rows[len(rows)-1]))
	}
	c.JSON(http.StatusOK, out)
}

var errIsReadRequired = domain.Invalid("is_read_required", "is_read (true or false) is required")

func (s *Server) markNotification(c *gin.Context) {
	var req markNotificationRequest
	if !bindJSON(c, &req) {
		return
	}
	if req.IsRead == nil {
		fail(c, errIsReadRequired)
		return
	}
	p := mustPrincipal(c)
	n, err := notifications.MarkRead(c.Request.Context(), s.deps.Reads, p.Tenant, p.User, c.Param("id"), *req.IsRead, time.Now())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, notificationFromRow(n))
}

func (s *Server) markAllNotificationsRead(c *gin.Context) {
	p := mustPrincipal(c)
	n, err := notifications.MarkAllRead(c.Request.Context(), s.deps.Reads, p.Tenant, p.User, time.Now())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, markAllReadResponse{Message: "All notifications marked as read", Updated: n})
}
