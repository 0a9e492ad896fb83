// Package velociraptor decides what may happen to a tenant's Velociraptor
// connection (the api_client identity and org the tenant reaches its server
// with), to the collections it runs on one client and to the hunts it runs
// over its fleet.
//
// Streams live in the tenant: the connection has stream type StreamType and
// the one id ConnectionID; a collection has CollectionStreamType and a hunt
// HuntStreamType, each with its own id. The api_client YAML, which holds the
// client's private key, never appears here: the command handler seals it into
// its credential table in the same transaction as Configured. Nothing here
// talks to Velociraptor either: a process manager performs what the events ask
// for and records what it saw with the decisions of this package.
//
// Package velociraptor is pure: no I/O, no clock (time comes in as an
// argument), and it imports nothing of ours but domain and its sub-packages.
package velociraptor

import (
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"velocicompanion/domain"
	"velocicompanion/domain/hosts"
	"velocicompanion/domain/users"
)

// Stream types and the connection's stream id.
//
// WARNING: stored with every event; never rename one.
const (
	StreamType           = "velociraptor"
	ConnectionID         = "connection"
	CollectionStreamType = "collection"
	HuntStreamType       = "hunt"
)

// Limits.
const (
	MaxArtifacts     = 20
	MaxArtifactLen   = 200
	MaxParams        = 100
	MaxParamNameLen  = 100
	MaxParamValueLen = 64 << 10 // bytes
	MaxLogLines      = 50
	MaxLogLineLen    = 1000 // code points
	MaxErrorLen      = 1000 // code points
	MaxIDLen         = 64
	maxTextField     = 255
)

// Errors shared by the collections and hunts, besides domain.ErrNotFound.
// Errors about one value name it in their message; they still match these
// sentinels with errors.Is.
var (
	ErrNotAllowed       = domain.Forbidden("not_allowed", "only an administrator or analyst of the tenant may run Velociraptor collections and hunts")
	ErrAdminOnly        = domain.Forbidden("not_allowed", "only an administrator of the tenant may configure its Velociraptor connection")
	ErrIDInvalid        = domain.Invalid("id_invalid", "id must be 1 to 64 letters, digits, '-' or '_'")
	ErrClientIDRequired = domain.Invalid("client_id_required", "a Velociraptor client id is required")
	ErrClientIDInvalid  = domain.Invalid("client_id_invalid", "Velociraptor client id must be C. followed by 16 hexadecimal digits, such as C.1a2b3c4d5e6f7a8b")
	ErrHostIDInvalid    = domain.Invalid("host_id_invalid", "host id must be at most 64 letters, digits, '-' or '_'")
	ErrFlowIDInvalid    = domain.Invalid("flow_id_invalid", "Velociraptor flow id must be F. followed by letters, digits, '.', '_' or '-', such as F.CP9V4SMR1VBK2")
	ErrHuntIDInvalid    = domain.Invalid("hunt_id_invalid", "Velociraptor hunt id must be H. followed by letters and digits, such as H.CP9V4SMR1VBK2")
	ErrArtifactsCount   = domain.Invalid("artifacts_invalid", "give 1 to 20 artifact names")
	ErrArtifactInvalid  = domain.Invalid("artifact_invalid", "an artifact name is at most 200 letters, digits, '.' and '_', optionally followed by /Source, such as Windows.System.Pslist")
	ErrTooManyParams    = domain.Invalid("parameters_invalid", "give at most 100 parameters")
	ErrParamInvalid     = domain.Invalid("parameter_invalid", "a parameter name is 1 to 100 letters, digits and '_' not starting with a digit; its value is at most 64 KiB of text")
	ErrPurposeInvalid   = domain.Invalid("purpose_invalid", "purpose must be collect, quarantine or release")
	ErrSourceInvalid    = domain.Invalid("source_invalid", "a result source is an artifact name, optionally followed by /Source")
	ErrRowsInvalid      = domain.Invalid("rows_invalid", "a row count must not be negative")
)

// Summary describes a validated api_client identity without its secrets. It
// has the JSON fields of the adapter's Summary, which converts to it.
type Summary struct {
	Name        string    `json:"name"`        // the api_client name
	Address     string    `json:"address"`     // host:port
	ServerName  string    `json:"server_name"` // the pinned TLS server name
	CommonName  string    `json:"common_name"` // the client certificate's CN
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the certificate DER, lower-case hex
	NotAfter    time.Time `json:"not_after"`
}

// mayRun reports whether by may run collections and hunts in tenant: an
// administrator or analyst of it. Another tenant answers domain.ErrNotFound.
func mayRun(by users.Actor, tenant domain.TenantID) error {
	switch {
	case by.Tenant != tenant:
		return domain.ErrNotFound
	case !by.Role.AtLeast(users.RoleAnalyst):
		return ErrNotAllowed
	}
	return nil
}

// mayAdmin reports whether by administers tenant's connection.
func mayAdmin(by users.Actor, tenant domain.TenantID) error {
	switch {
	case by.Tenant != tenant:
		return domain.ErrNotFound
	case !by.Role.AtLeast(users.RoleAdmin):
		return ErrAdminOnly
	}
	return nil
}

// CheckID validates a caller-chosen stream id of a collection or hunt: 1 to
// MaxIDLen letters, digits, '-' and '_' (a UUID qualifies).
func CheckID(id string) error {
	if id == "" || len(id) > MaxIDLen || !allBytes(id, func(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }) {
		return ErrIDInvalid
	}
	return nil
}

// CheckClientID returns id with its hex digits in lower case if it is a
// Velociraptor client id: "C." and 16 hexadecimal digits.
func CheckClientID(id string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", ErrClientIDRequired
	}
	v, err := hosts.CheckClientID(id)
	if err != nil {
		return "", domain.Invalid(ErrClientIDInvalid.Code, "%q is not a Velociraptor client id; it is C. followed by 16 hexadecimal digits, such as C.1a2b3c4d5e6f7a8b", clip(id, 40))
	}
	return v, nil
}

// CheckFlowID validates a Velociraptor flow id: "F." and up to 62 letters,
// digits, '.', '_' or '-' (flows of a hunt end in ".H").
func CheckFlowID(id string) error {
	return checkPrefixed(id, "F.", ErrFlowIDInvalid, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' })
}

// CheckHuntID validates a Velociraptor hunt id: "H." and up to 62 letters
// and digits.
func CheckHuntID(id string) error {
	return checkPrefixed(id, "H.", ErrHuntIDInvalid, isAlnum)
}

func checkPrefixed(id, prefix string, bad error, ok func(byte) bool) error {
	rest, found := strings.CutPrefix(id, prefix)
	if !found || rest == "" || len(id) > MaxIDLen || !allBytes(rest, ok) {
		return bad
	}
	return nil
}

// CheckArtifactName validates an artifact name, optionally with a source:
// letters, digits, '.' and '_', then optionally '/' and a source name of the
// same characters, MaxArtifactLen bytes in all.
func CheckArtifactName(name string) error {
	if !validArtifact(name) {
		return domain.Invalid(ErrArtifactInvalid.Code, "%q is not an artifact name: it is at most 200 letters, digits, '.' and '_', optionally followed by /Source, such as Windows.System.Pslist", clip(name, 60))
	}
	return nil
}

func validArtifact(name string) bool {
	if len(name) > MaxArtifactLen {
		return false
	}
	art, src, hasSource := strings.Cut(name, "/")
	word := func(s string) bool {
		return s != "" && allBytes(s, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' })
	}
	return word(art) && (!hasSource || word(src))
}

// CheckArtifacts returns names without surrounding white space and without
// repeats (the first one counts) if there are 1 to MaxArtifacts valid names.
func CheckArtifacts(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		n = strings.TrimSpace(n)
		if err := CheckArtifactName(n); err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 || len(out) > MaxArtifacts {
		return nil, ErrArtifactsCount
	}
	return out, nil
}

// CheckParameters validates artifact parameters: at most MaxParams, names
// like identifiers of at most MaxParamNameLen bytes, values of at most
// MaxParamValueLen bytes of UTF-8 text without NUL. It returns nil for none.
func CheckParameters(params map[string]string) (map[string]string, error) {
	if len(params) > MaxParams {
		return nil, ErrTooManyParams
	}
	if len(params) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		if !isIdentifier(k) {
			return nil, domain.Invalid(ErrParamInvalid.Code, "parameter name %q must be 1 to 100 letters, digits and '_', not starting with a digit", clip(k, 40))
		}
		if len(v) > MaxParamValueLen || !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return nil, domain.Invalid(ErrParamInvalid.Code, "parameter %s must be at most 64 KiB of UTF-8 text without NUL characters", k)
		}
		out[k] = v
	}
	return out, nil
}

func isIdentifier(s string) bool {
	if s == "" || len(s) > MaxParamNameLen || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	return allBytes(s, func(c byte) bool { return isAlnum(c) || c == '_' })
}

// CleanLogs returns at most the last MaxLogLines lines of logs, each cut to
// MaxLogLineLen code points of printable text (tabs kept); it returns nil for
// none.
func CleanLogs(logs []string) []string {
	if len(logs) > MaxLogLines {
		logs = logs[len(logs)-MaxLogLines:]
	}
	var out []string
	for _, l := range logs {
		out = append(out, cleanText(l, MaxLogLineLen))
	}
	return out
}

// CleanError returns an error text cut to MaxErrorLen code points of
// printable text, or fallback when it is empty.
func CleanError(text, fallback string) string {
	if t := cleanText(strings.TrimSpace(text), MaxErrorLen); t != "" {
		return t
	}
	return fallback
}

// cleanText turns invalid UTF-8 and control characters (but tabs) into
// spaces and cuts s to max code points.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			break
		}
		if r != '\t' && !unicode.IsPrint(r) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimRight(b.String(), " ")
}

// checkText validates free text of at most max code points: valid UTF-8,
// printable, line breaks and tabs allowed when multiline.
func checkText(s string, max int, multiline bool) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			return false
		}
		return !unicode.IsPrint(r)
	}) < 0
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// MayRun reports whether by may run collections, hunts and quarantines in
// tenant: an administrator or analyst of it. Another tenant answers
// domain.ErrNotFound.
func MayRun(by users.Actor, tenant domain.TenantID) error { return mayRun(by, tenant) }

// The artifacts that quarantine and release a host.
const (
	ArtifactQuarantineWindows = "Windows.Remediation.Quarantine"
	ArtifactQuarantineLinux   = "Linux.Remediation.Quarantine"
)

// ErrQuarantineOS answers a quarantine of a host whose operating system has
// no quarantine artifact.
var ErrQuarantineOS = domain.Unprocessable("quarantine_os_unsupported", "only Windows and Linux hosts can be quarantined")

// QuarantineArtifact returns the artifact that quarantines (and releases) a
// host whose operating system is os: Windows.Remediation.Quarantine when os
// names Windows, Linux.Remediation.Quarantine when it names Linux.
func QuarantineArtifact(os string) (string, error) {
	l := strings.ToLower(os)
	switch {
	case strings.Contains(l, "windows"):
		return ArtifactQuarantineWindows, nil
	case strings.Contains(l, "linux"):
		return ArtifactQuarantineLinux, nil
	case strings.TrimSpace(os) == "":
		return "", domain.Unprocessable(ErrQuarantineOS.Code, "only Windows and Linux hosts can be quarantined; this host's operating system is not known")
	}
	return "", domain.Unprocessable(ErrQuarantineOS.Code, "only Windows and Linux hosts can be quarantined; this host runs %q", clip(os, 60))
}
