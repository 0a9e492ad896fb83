package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	return New(Config{Version: "test"}, Deps{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), prometheus.NewRegistry())
}

// TestOpenAPICoversEveryRoute fails when a gin route is missing from the
// OpenAPI document, or the document names a route gin does not serve.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	s := newTestServer(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Summary   string         `json:"summary"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(s.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, r := range s.Engine().Routes() {
		key := strings.ToLower(r.Method) + " " + openAPIPath(r.Path)
		served[key] = true
		op, ok := doc.Paths[openAPIPath(r.Path)][strings.ToLower(r.Method)]
		if !ok {
			t.Errorf("route %s %s is not in the OpenAPI document", r.Method, r.Path)
			continue
		}
		if op.Summary == "" || len(op.Responses) == 0 {
			t.Errorf("route %s %s is documented without summary or responses", r.Method, r.Path)
		}
	}
	for path, item := range doc.Paths {
		for method := range item {
			if !served[method+" "+path] {
				t.Errorf("the OpenAPI document names %s %s, which is not served", method, path)
			}
		}
	}
	if len(served) < 10 {
		t.Fatalf("only %d routes served; the table did not register", len(served))
	}
}

// TestOpenAPISchemas checks that request and response bodies are described by
// their DTOs, so that clients see the real fields.
func TestOpenAPISchemas(t *testing.T) {
	s := newTestServer(t)
	var doc map[string]any
	if err := json.Unmarshal(s.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	user, ok := schemas["userRead"].(map[string]any)
	if !ok {
		t.Fatalf("no userRead schema; have %v", keys(schemas))
	}
	props := user["properties"].(map[string]any)
	for _, f := range []string{"id", "username", "email", "role", "tenant_id", "is_active", "email_verified", "totp_enabled", "created_at"} {
		if _, ok := props[f]; !ok {
			t.Errorf("userRead lacks %s", f)
		}
	}
	for _, secret := range []string{"password", "password_hash", "totp_secret"} {
		if _, ok := props[secret]; ok {
			t.Errorf("userRead exposes %s", secret)
		}
	}
	login := doc["paths"].(map[string]any)["/api/auth/login"].(map[string]any)["post"].(map[string]any)
	content := login["requestBody"].(map[string]any)["content"].(map[string]any)
	if _, ok := content["application/x-www-form-urlencoded"]; !ok {
		t.Error("login does not document the OAuth2 password form")
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
