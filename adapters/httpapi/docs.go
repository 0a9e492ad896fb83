package httpapi

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// docsPage renders /openapi.json in the browser and lets a reader try the
// routes; it loads nothing from outside this server.
//
//go:embed docs/index.html
var docsPage []byte

func (s *Server) docs(c *gin.Context) {
	c.Header("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "text/html; charset=utf-8", docsPage)
}
