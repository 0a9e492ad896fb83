// Package httpapi is the HTTP edge: gin routes, request and response DTOs, the
// authentication middleware, the OpenAPI document and the one mapper from domain
// errors to status codes.
//
// Package httpapi may import commands, projections, eventstore and domain; no
// package of ours may import it except cmd.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config holds the edge's settings.
type Config struct {
	TrustedProxies []string // CIDRs or addresses whose X-Forwarded-For is believed
	CORSOrigins    []string
	MaxBodyBytes   int64
	ReadWait       time.Duration // longest wait for a read model to reach min_position
	Version        string
	// MetricsToken, when set, is the bearer token GET /metrics asks for;
	// without it the metrics are public.
	MetricsToken string
}

// Checker reports whether a dependency is ready; it is used by /ready.
type Checker func(ctx context.Context) error

// Server is the HTTP API.
type Server struct {
	cfg    Config
	deps   Deps
	engine *gin.Engine
	ops    []op
	spec   []byte
	log    *slog.Logger

	recoveryLimit *ipLimiter
}

// New builds the HTTP API. It panics if the wiring is inconsistent (a programmer error).
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer) *Server {
	gin.SetMode(gin.ReleaseMode)
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.ReadWait <= 0 {
		cfg.ReadWait = 2 * time.Second
	}
	e := gin.New()
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.RemoteIPHeaders = []string{"X-Forwarded-For", "X-Real-IP"}
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		panic("httpapi: trusted proxies: " + err.Error())
	}
	s := &Server{cfg: cfg, deps: deps, engine: e, log: log,
		recoveryLimit: newIPLimiter(30, 20*time.Second)}
	m := newMetrics(reg)
	e.Use(requestIDs(log), recovery(), accessLog(m), securityHeaders(), cors(cfg.CORSOrigins), limitBody(cfg.MaxBodyBytes))
	e.NoRoute(func(c *gin.Context) {
		// The original API's clients call collections with a trailing slash
		// (/api/hosts/); serve those in place instead of redirecting.
		if p := c.Request.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") && !c.GetBool("vc.retried") {
			c.Set("vc.retried", true)
			c.Request.URL.Path = strings.TrimRight(p, "/")
			e.HandleContext(c)
			return
		}
		abortJSON(c, http.StatusNotFound, "route_not_found", "no such route")
	})
	e.NoMethod(func(c *gin.Context) {
		abortJSON(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
	})

	s.ops = s.routes(gatherer)
	for _, o := range s.ops {
		s.addRoute(o)
	}
	spec, err := json.Marshal(buildOpenAPI(s.ops, cfg.Version))
	if err != nil {
		panic("httpapi: openapi: " + err.Error())
	}
	s.spec = spec
	return s
}

// Handler returns the http.Handler that serves the API.
func (s *Server) Handler() http.Handler { return s.engine }

// Engine exposes the gin engine for route introspection in tests.
func (s *Server) Engine() *gin.Engine { return s.engine }

// OpenAPI returns the OpenAPI document as JSON.
func (s *Server) OpenAPI() []byte { return s.spec }

// addRoute adds o to the engine behind its access rule.
func (s *Server) addRoute(o op) {
	h := s.guard(o)
	s.engine.Handle(o.method, o.path, h...)
}

// guard returns the middleware chain that enforces o's access rule.
func (s *Server) guard(o op) []gin.HandlerFunc {
	if o.access == public {
		return []gin.HandlerFunc{o.handler}
	}
	return []gin.HandlerFunc{s.authenticate(o), o.handler}
}

func (s *Server) health(c *gin.Context) {
	c.JSON(http.StatusOK, healthResponse{Status: "healthy"})
}

func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	for name, check := range s.deps.Ready {
		if err := check(ctx); err != nil {
			checks[name] = "unavailable"
			ok = false
			logger(c).Warn("readiness check failed", slog.String("check", name), slog.String("error", err.Error()))
			continue
		}
		checks[name] = "ok"
	}
	if !ok {
		c.JSON(http.StatusServiceUnavailable, readyResponse{Status: "unavailable", Checks: checks})
		return
	}
	c.JSON(http.StatusOK, readyResponse{Status: "ready", Checks: checks})
}

type healthResponse struct {
	Status string `json:"status"`
}

type readyResponse struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

type rootResponse struct {
	Message string `json:"message"`
	Version string `json:"version"`
	Docs    string `json:"docs"`
}

func (s *Server) root(c *gin.Context) {
	c.JSON(http.StatusOK, rootResponse{Message: "Welcome to VelociCompanion", Version: s.cfg.Version, Docs: "/docs"})
}

func (s *Server) openapi(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", s.spec)
}

// metricsHandler serves g's metrics, to callers that present token as a
// bearer token when token is set.
func metricsHandler(g prometheus.Gatherer, token string) gin.HandlerFunc {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	want := sha256.Sum256([]byte("Bearer " + token))
	return func(c *gin.Context) {
		if token != "" {
			got := sha256.Sum256([]byte(c.GetHeader("Authorization")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				c.Header("WWW-Authenticate", `Bearer realm="metrics"`)
				abortJSON(c, http.StatusUnauthorized, "metrics_token_required", "the metrics need the scrape token: Authorization: Bearer <token>")
				return
			}
		}
		h.ServeHTTP(c.Writer, c.Request)
	}
}
