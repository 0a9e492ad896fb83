package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"velocicompanion/domain"
)

var (
	errUnsupportedMedia = domain.Invalid("unsupported_media_type", "request body must be application/json")
	errBodyTooLarge     = domain.Invalid("body_too_large", "request body is too large")
)

// isJSON reports whether the request declares a JSON body.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// bindJSON decodes the request body into dst strictly: JSON media type, one
// value, no unknown fields, within the body size limit. It writes the error
// response itself and returns false when the body is not acceptable.
func bindJSON(c *gin.Context, dst any) bool {
	if !isJSON(c.Request) {
		abortJSON(c, http.StatusUnsupportedMediaType, errUnsupportedMedia.Code, errUnsupportedMedia.Message)
		return false
	}
	if err := decodeStrict(c.Request.Body, dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			abortJSON(c, http.StatusRequestEntityTooLarge, errBodyTooLarge.Code, errBodyTooLarge.Message)
			return false
		}
		fail(c, domain.Invalid("invalid_json", "%s", describeJSONError(err)))
		return false
	}
	return true
}

func decodeStrict(r io.Reader, dst any) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("request body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("request body must hold exactly one JSON value")
	}
	var rest json.RawMessage
	if err := dec.Decode(&rest); err != io.EOF {
		return errors.New("request body must hold exactly one JSON value")
	}
	return nil
}

// describeJSONError turns a decoding error into a message that names the field
// but echoes none of the client's values.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type.Kind())
		}
		return fmt.Sprintf("body must be %s", typ.Type.Kind())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return "request body is too large"
	}
	return err.Error()
}
