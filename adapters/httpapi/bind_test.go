package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestBindJSON(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantCode    string
	}{
		{name: "valid", contentType: "application/json", body: `{"name":"x"}`, wantStatus: http.StatusOK},
		{name: "charset_param_ok", contentType: "application/json; charset=utf-8", body: `{"name":"x"}`, wantStatus: http.StatusOK},
		{name: "wrong_media_type", contentType: "text/plain", body: `{"name":"x"}`, wantStatus: http.StatusUnsupportedMediaType, wantCode: "unsupported_media_type"},
		{name: "no_media_type", contentType: "", body: `{"name":"x"}`, wantStatus: http.StatusUnsupportedMediaType, wantCode: "unsupported_media_type"},
		{name: "malformed", contentType: "application/json", body: `{"name":`, wantStatus: http.StatusBadRequest, wantCode: "invalid_json"},
		{name: "unknown_field", contentType: "application/json", body: `{"name":"x","role":"admin"}`, wantStatus: http.StatusBadRequest, wantCode: "invalid_json"},
		{name: "wrong_type", contentType: "application/json", body: `{"name":5}`, wantStatus: http.StatusBadRequest, wantCode: "invalid_json"},
		{name: "two_values", contentType: "application/json", body: `{"name":"x"} {"name":"y"}`, wantStatus: http.StatusBadRequest, wantCode: "invalid_json"},
		{name: "empty", contentType: "application/json", body: ``, wantStatus: http.StatusBadRequest, wantCode: "invalid_json"},
		{name: "too_large", contentType: "application/json", body: `{"name":"` + strings.Repeat("a", 200) + `"}`, wantStatus: http.StatusRequestEntityTooLarge, wantCode: "body_too_large"},
	}
	gin.SetMode(gin.TestMode)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := gin.New()
			e.Use(limitBody(100))
			e.POST("/", func(c *gin.Context) {
				var b body
				if bindJSON(c, &b) {
					c.Status(http.StatusOK)
				}
			})
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			req.ContentLength = -1 // make the limit apply while reading, as with chunked bodies
			w := httptest.NewRecorder()
			e.ServeHTTP(w, req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantCode != "" && !strings.Contains(w.Body.String(), `"code":"`+tt.wantCode+`"`) {
				t.Fatalf("body %s, want code %s", w.Body, tt.wantCode)
			}
		})
	}
}
