package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsToken serves the metrics to anyone without a token, and only
// to its bearer with one.
func TestMetricsToken(t *testing.T) {
	for _, tt := range []struct {
		token, auth string
		want        int
	}{
		{"", "", http.StatusOK},
		{"scrape-secret", "", http.StatusUnauthorized},
		{"scrape-secret", "Bearer wrong", http.StatusUnauthorized},
		{"scrape-secret", "Bearer scrape-secret-and-more", http.StatusUnauthorized},
		{"scrape-secret", "Basic scrape-secret", http.StatusUnauthorized},
		{"scrape-secret", "Bearer scrape-secret", http.StatusOK},
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "vc_test_total", Help: "a test counter"}))
		s := New(Config{Version: "test", MetricsToken: tt.token}, Deps{}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, reg)
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("token %q, Authorization %q: status %d, want %d", tt.token, tt.auth, rec.Code, tt.want)
			continue
		}
		if hasMetric := strings.Contains(rec.Body.String(), "vc_test_total"); hasMetric != (tt.want == http.StatusOK) {
			t.Errorf("token %q, Authorization %q: body %.200s", tt.token, tt.auth, rec.Body.String())
		}
	}
}
