package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"velocicompanion/domain"
)

// errorBody is the one shape every error response has.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// statusOf maps a domain error kind to its HTTP status.
func statusOf(k domain.Kind) int {
	switch k {
	case domain.KindInvalid:
		return http.StatusBadRequest
	case domain.KindUnprocessable:
		return http.StatusUnprocessableEntity
	case domain.KindUnauthenticated:
		return http.StatusUnauthorized
	case domain.KindForbidden:
		return http.StatusForbidden
	case domain.KindNotFound:
		return http.StatusNotFound
	case domain.KindConflict:
		return http.StatusConflict
	case domain.KindPrecondition:
		return http.StatusPreconditionFailed
	case domain.KindTooMany:
		return http.StatusTooManyRequests
	case domain.KindUnavailable:
		return http.StatusServiceUnavailable
	case domain.KindUpstream:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// fail writes err as a JSON error and aborts the request. Errors that are not a
// *domain.Error are logged with the request id and answered with a generic 500:
// their text never reaches the client.
func fail(c *gin.Context, err error) {
	var de *domain.Error
	if !errors.As(err, &de) || de.Kind == domain.KindInternal {
		logger(c).ErrorContext(c.Request.Context(), "request failed",
			slog.String("request_id", requestID(c)), slog.String("error", err.Error()))
		abortJSON(c, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	status := statusOf(de.Kind)
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="velocicompanion"`)
	}
	abortJSON(c, status, de.Code, de.Message)
}

func abortJSON(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}
