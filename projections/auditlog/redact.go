package auditlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"velocicompanion/domain/velociraptor"
)

// Bounds of a summary.
const (
	maxString = 256 // bytes kept of a string value
	maxKey    = 64  // bytes kept of a member name
	maxItems  = 50  // elements kept of an array, members of an object
	maxDepth  = 16  // nesting kept
)

// Redacted replaces a string value that looks like a credential whatever its
// field's name.
const Redacted = "[redacted]"

// secretWords are the parts of a field name that suggest a secret; a field
// whose name (lower-cased, without separators) contains one is left out of a
// summary with its whole value. The list errs on the side of leaving out.
var secretWords = []string{
	"password", "passwd", "passphrase", "pwd", "secret", "token", "hash", "key", "code", "otp", "seed",
	"credential", "cookie", "salt", "signature", "private", "authorization", "bearer", "nonce",
}

// SecretName reports whether a field called name may hold a secret.
func SecretName(name string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	n := b.String()
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

var (
	jwtLike        = regexp.MustCompile(`^eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*$`)
	secretPrefixes = []string{"$argon2", "$2a$", "$2b$", "$2y$", "$scrypt$", "$pbkdf2", "-----begin", "bearer ", "basic "}
)

// secretValue reports whether s looks like a credential: a password hash, a
// PEM block, an Authorization header value or a JWT.
func secretValue(s string) bool {
	head := strings.ToLower(s[:min(len(s), 16)])
	for _, p := range secretPrefixes {
		if strings.HasPrefix(head, p) {
			return true
		}
	}
	return jwtLike.MatchString(s)
}

// withheld lists, by event name, the payload fields that a summary shows
// only in outline (see outline), because their values are free-form input
// that may carry a credential whatever its name: artifact parameters (an
// upload URL with a token in it, say) and the log lines a Velociraptor
// client sent back. The collection or hunt itself keeps them.
var withheld = map[string][]string{
	velociraptor.EventCollectionRequested: {"parameters"},
	velociraptor.EventHuntRequested:       {"parameters"},
	velociraptor.EventCollectionCompleted: {"logs"},
	velociraptor.EventCollectionFailed:    {"logs"},
}

// outline returns what a summary shows of a withheld value: an object's
// member names with Redacted values, Redacted for anything else but null.
func outline(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k := range x {
			out[k] = Redacted
		}
		return out
	}
	return Redacted
}

// Summarize returns a redacted summary of an event's JSON payload: fields
// whose names suggest a secret are removed (SecretName), string values that
// look like credentials are replaced by Redacted, long strings are cut to 256
// bytes, and arrays, objects and nesting are bounded. It never fails: a
// payload that is not JSON yields an empty object.
func Summarize(payload []byte) json.RawMessage { return summarize("", payload) }

// summarize is Summarize for an event called name, whose withheld fields it
// shows only in outline.
func summarize(name string, payload []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage(`{}`)
	}
	if obj, ok := v.(map[string]any); ok {
		for _, f := range withheld[name] {
			if fv, ok := obj[f]; ok {
				obj[f] = outline(fv)
			}
		}
	}
	out, err := json.Marshal(redact(v, 0))
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return out
}

func redact(v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		if depth >= maxDepth {
			return "…"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			if !SecretName(k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		out := make(map[string]any, min(len(keys), maxItems+1))
		for i, k := range keys {
			if i == maxItems {
				out["…"] = fmt.Sprintf("%d more fields", len(keys)-i)
				break
			}
			out[clip(k, maxKey)] = redact(x[k], depth+1)
		}
		return out
	case []any:
		if depth >= maxDepth {
			return "…"
		}
		out := make([]any, 0, min(len(x), maxItems+1))
		for i, e := range x {
			if i == maxItems {
				out = append(out, fmt.Sprintf("… %d more", len(x)-i))
				break
			}
			out = append(out, redact(e, depth+1))
		}
		return out
	case string:
		if secretValue(x) {
			return Redacted
		}
		return clip(x, maxString)
	}
	return v // json.Number, bool or nil
}

// clip cuts s to at most n bytes on a rune boundary, marking the cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
