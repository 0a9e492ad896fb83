package httpapi

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"velocicompanion/domain"
)

// recoveryRoutes are the password-reset and e-mail verification routes.
// Tokens travel only in request bodies, never in URLs.
func (s *Server) recoveryRoutes() []op {
	return []op{
		{method: http.MethodPost, path: "/api/auth/password-reset/request", summary: "Mail a password reset link (same answer whether or not the address is known)", tag: "auth", access: public, req: resetRequest{}, resp: messageResponse{}, handler: s.requestReset},
		{method: http.MethodPost, path: "/api/auth/password-reset/confirm", summary: "Set a new password with the token from the reset mail", tag: "auth", access: public, req: resetConfirm{}, resp: messageResponse{}, handler: s.confirmReset},
		{method: http.MethodPost, path: "/api/auth/verify-email/request", summary: "Mail a verification link to your address", tag: "auth", access: anyUser, resp: messageResponse{}, status: http.StatusAccepted, handler: s.requestVerification},
		{method: http.MethodPost, path: "/api/auth/verify-email/confirm", summary: "Verify an address with the token from the verification mail", tag: "auth", access: public, req: verifyConfirm{}, resp: messageResponse{}, handler: s.confirmVerification},
	}
}

type resetRequest struct {
	Email string `json:"email"`
}

type resetConfirm struct {
	Token       string `json:"token"`
	NewPassword string `json:"new_password"`
}

type verifyConfirm struct {
	Token string `json:"token"`
}

type messageResponse struct {
	Message string `json:"message"`
}

const resetAnswer = "If the email exists, a password reset link has been sent"

var errEmailRequired = domain.Invalid("email_required", "email must be an e-mail address")

func (s *Server) requestReset(c *gin.Context) {
	var req resetRequest
	if !bindJSON(c, &req) {
		return
	}
	if e := strings.TrimSpace(req.Email); e == "" || len(e) > 254 || !strings.Contains(e, "@") {
		fail(c, errEmailRequired)
		return
	}
	if !s.recoveryLimit.allow(c.ClientIP(), time.Now()) {
		fail(c, domain.TooMany("too_many_requests", "too many requests from your address; try again later"))
		return
	}
	if err := s.deps.Commands.RequestPasswordReset(c.Request.Context(), req.Email, meta(c)); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, messageResponse{Message: resetAnswer})
}

func (s *Server) confirmReset(c *gin.Context) {
	var req resetConfirm
	if !bindJSON(c, &req) {
		return
	}
	if !s.recoveryLimit.allow(c.ClientIP(), time.Now()) {
		fail(c, domain.TooMany("too_many_requests", "too many requests from your address; try again later"))
		return
	}
	if err := s.deps.Commands.ConfirmPasswordReset(c.Request.Context(), req.Token, req.NewPassword, meta(c)); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, messageResponse{Message: "Password reset successful"})
}

func (s *Server) requestVerification(c *gin.Context) {
	p := mustPrincipal(c)
	if _, err := s.deps.Commands.RequestEmailVerification(c.Request.Context(), p.Tenant, p.User, meta(c)); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, messageResponse{Message: "A verification link has been sent to your address"})
}

func (s *Server) confirmVerification(c *gin.Context) {
	var req verifyConfirm
	if !bindJSON(c, &req) {
		return
	}
	if !s.recoveryLimit.allow(c.ClientIP(), time.Now()) {
		fail(c, domain.TooMany("too_many_requests", "too many requests from your address; try again later"))
		return
	}
	if _, err := s.deps.Commands.ConfirmEmailVerification(c.Request.Context(), req.Token, meta(c)); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, messageResponse{Message: "E-mail address verified"})
}

// ipLimiter allows each client address a burst of requests that refills at a
// steady rate. It is per process: behind several replicas each allows its share.
type ipLimiter struct {
	mu      sync.Mutex
	burst   float64
	perSec  float64
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newIPLimiter(burst int, every time.Duration) *ipLimiter {
	return &ipLimiter{burst: float64(burst), perSec: 1 / every.Seconds(), buckets: map[string]*bucket{}}
}

func (l *ipLimiter) allow(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.at).Seconds()*l.perSec >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[ip]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.perSec)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
