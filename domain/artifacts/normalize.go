package artifacts

import (
	"net/mail"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"velocicompanion/domain"
)

// Kind is the type of an artifact's value. It decides how the value is
// validated and normalised (see Normalize).
//
// WARNING: kind values are stored in events and used in lookups; never rename
// one. The set only grows.
type Kind string

// The kinds.
const (
	KindMD5         Kind = "md5"
	KindSHA1        Kind = "sha1"
	KindSHA256      Kind = "sha256"
	KindIPv4        Kind = "ipv4"
	KindIPv6        Kind = "ipv6"
	KindCIDR        Kind = "cidr"
	KindDomain      Kind = "domain"
	KindURL         Kind = "url"
	KindEmail       Kind = "email"
	KindFilename    Kind = "filename"
	KindFilePath    Kind = "file_path"
	KindRegistryKey Kind = "registry_key"
	KindUserAgent   Kind = "user_agent"
	KindOther       Kind = "other"
)

var kinds = []Kind{
	KindMD5, KindSHA1, KindSHA256, KindIPv4, KindIPv6, KindCIDR, KindDomain, KindURL,
	KindEmail, KindFilename, KindFilePath, KindRegistryKey, KindUserAgent, KindOther,
}

// Kinds returns every kind, in a stable order, for documentation and clients.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool {
	for _, x := range kinds {
		if k == x {
			return true
		}
	}
	return false
}

// ParseKind returns the kind s names, ignoring case and surrounding space.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(strings.TrimSpace(s)))
	if !k.Valid() {
		return "", ErrKindInvalid
	}
	return k, nil
}

// Limits on values, in bytes unless said otherwise.
const (
	MaxDomainLen      = 253
	MaxURLLen         = 8192
	MaxEmailLen       = 254
	MaxEmailLocalLen  = 64
	MaxFilenameLen    = 255
	MaxFilePathLen    = 4096
	MaxRegistryKeyLen = 4096
	MaxTextValueLen   = 2048 // user_agent and other, in Unicode code points
)

// Errors for values that do not fit their kind. Their codes are
// "invalid_<kind>"; the messages returned by Normalize say more about the
// particular value, and still match these with errors.Is.
var (
	ErrKindInvalid        = domain.Invalid("invalid_kind", "kind must be one of md5, sha1, sha256, ipv4, ipv6, cidr, domain, url, email, filename, file_path, registry_key, user_agent, other")
	ErrInvalidMD5         = domain.Invalid("invalid_md5", "md5 must be 32 hexadecimal digits")
	ErrInvalidSHA1        = domain.Invalid("invalid_sha1", "sha1 must be 40 hexadecimal digits")
	ErrInvalidSHA256      = domain.Invalid("invalid_sha256", "sha256 must be 64 hexadecimal digits")
	ErrInvalidIPv4        = domain.Invalid("invalid_ipv4", "ipv4 must be a dotted-decimal IPv4 address such as 192.0.2.1")
	ErrInvalidIPv6        = domain.Invalid("invalid_ipv6", "ipv6 must be an IPv6 address without a zone, such as 2001:db8::1")
	ErrInvalidCIDR        = domain.Invalid("invalid_cidr", "cidr must be an IPv4 or IPv6 network such as 192.0.2.0/24 or 2001:db8::/32")
	ErrInvalidDomain      = domain.Invalid("invalid_domain", "domain must be a domain name such as example.com: two or more dot-separated labels of letters, digits, hyphens or underscores, at most 253 characters once internationalised labels are in punycode")
	ErrInvalidURL         = domain.Invalid("invalid_url", "url must be an absolute URL with a host and a scheme of http, https, ftp, ftps, sftp, tftp, ws, wss, smb, ldap or ldaps, such as https://example.com/path, at most 8192 characters")
	ErrInvalidEmail       = domain.Invalid("invalid_email", "email must be a plain address such as name@example.com, at most 254 characters")
	ErrInvalidFilename    = domain.Invalid("invalid_filename", "filename must be a file name without / or \\ or control characters, at most 255 bytes")
	ErrInvalidFilePath    = domain.Invalid("invalid_file_path", `file_path must be an absolute Windows path (C:\..., \\server\share\..., %VAR%\...) or POSIX path (/...) without control characters, at most 4096 bytes`)
	ErrInvalidRegistryKey = domain.Invalid("invalid_registry_key", `registry_key must start with a hive (HKEY_LOCAL_MACHINE or HKLM, HKEY_CURRENT_USER or HKCU, HKEY_CLASSES_ROOT or HKCR, HKEY_USERS or HKU, HKEY_CURRENT_CONFIG or HKCC, HKEY_PERFORMANCE_DATA) followed by \-separated key names, at most 4096 bytes`)
	ErrInvalidUserAgent   = domain.Invalid("invalid_user_agent", "user_agent must be 1 to 2048 printable characters")
	ErrInvalidOther       = domain.Invalid("invalid_other", "other must be 1 to 2048 printable characters")
)

// sentinel returns the error of kind k.
func sentinel(k Kind) *domain.Error {
	switch k {
	case KindMD5:
		return ErrInvalidMD5
	case KindSHA1:
		return ErrInvalidSHA1
	case KindSHA256:
		return ErrInvalidSHA256
	case KindIPv4:
		return ErrInvalidIPv4
	case KindIPv6:
		return ErrInvalidIPv6
	case KindCIDR:
		return ErrInvalidCIDR
	case KindDomain:
		return ErrInvalidDomain
	case KindURL:
		return ErrInvalidURL
	case KindEmail:
		return ErrInvalidEmail
	case KindFilename:
		return ErrInvalidFilename
	case KindFilePath:
		return ErrInvalidFilePath
	case KindRegistryKey:
		return ErrInvalidRegistryKey
	case KindUserAgent:
		return ErrInvalidUserAgent
	case KindOther:
		return ErrInvalidOther
	}
	return ErrKindInvalid
}

// invalid returns the error of kind k with a message about this value, which
// still matches the kind's sentinel.
func invalid(k Kind, format string, args ...any) error {
	return domain.Invalid(sentinel(k).Code, format, args...)
}

// Normalize returns value in the canonical form of kind, under which equal
// indicators compare equal, or an error whose code is "invalid_<kind>". Every
// value is first trimmed of surrounding white space and must be valid UTF-8.
//
//   - md5, sha1, sha256: exactly 32, 40 or 64 hexadecimal digits, lowered.
//   - ipv4: a dotted-decimal address (no leading zeros); an IPv6 form, even an
//     IPv4-mapped one, is refused.
//   - ipv6: an address in RFC 5952 form (lower case, zeros compressed); an IPv4
//     or IPv4-mapped address is refused (it is an ipv4), and so is a zone,
//     which means nothing outside the host that saw it.
//   - cidr: address/length, IPv4 or IPv6, masked to its network:
//     10.1.2.3/8 becomes 10.0.0.0/8. An IPv4-mapped prefix is refused.
//   - domain: mapped and checked by IDNA (UTS #46 lookup rules, BiDi and joiner
//     checks) with internationalised labels turned into punycode, lowered, one
//     trailing dot removed; two or more labels of letters, digits, hyphens and
//     underscores (found in real subdomains), none starting or ending with a
//     hyphen, at most 63 bytes each and 253 in all; the last label not all
//     digits, so an IP address is never a domain.
//   - url: an absolute URL with a host and one of the schemes in the error
//     message; scheme and host lowered, the host normalised like a domain (one
//     label suffices) or an IP address ([v6] in brackets, IPv4-mapped unmapped,
//     zones refused), the scheme's default port dropped, an empty path made /,
//     user info, path and query kept, an empty query and the fragment dropped.
//   - email: a plain address (no display name, comment or quoting); the domain
//     normalised like a domain, the local part kept as written (it may be case
//     sensitive).
//   - filename: no / or \, no control character (U+0000–U+001F, U+007F–U+009F),
//     not . or .., at most 255 bytes, case kept. Format characters such as
//     U+202E (the right-to-left override of "invoice‮fdp.exe") are kept: they
//     are the indicator.
//   - file_path: an absolute Windows path (drive letter, UNC \\server\share,
//     \\?\ and \\.\ forms, or one starting with an environment variable such
//     as %APPDATA%\) or an absolute POSIX path; no control characters, at most
//     4096 bytes. Windows paths get an upper-case drive letter and variable
//     name and \ separators; POSIX paths are kept as written.
//   - registry_key: a hive, full or abbreviated and in any case, followed by
//     \-separated key names. The hive is written out in full (HKLM becomes
//     HKEY_LOCAL_MACHINE), regedit's "Computer\" prefix and the kernel forms
//     \REGISTRY\MACHINE and \REGISTRY\USER are accepted, and a trailing \ is
//     dropped; key names keep their case.
//   - user_agent, other: 1 to 2048 printable characters.
func Normalize(kind Kind, value string) (string, error) {
	k, err := ParseKind(string(kind))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(value)
	if !utf8.ValidString(v) {
		return "", invalid(k, "%s must be valid UTF-8 text", k)
	}
	if v == "" {
		return "", invalid(k, "%s must not be empty", k)
	}
	switch k {
	case KindMD5:
		return normalizeHash(k, v, 32)
	case KindSHA1:
		return normalizeHash(k, v, 40)
	case KindSHA256:
		return normalizeHash(k, v, 64)
	case KindIPv4:
		return normalizeIPv4(v)
	case KindIPv6:
		return normalizeIPv6(v)
	case KindCIDR:
		return normalizeCIDR(v)
	case KindDomain:
		d, ok := normalizeDomain(v, 2)
		if !ok {
			return "", ErrInvalidDomain
		}
		return d, nil
	case KindURL:
		return normalizeURL(v)
	case KindEmail:
		return normalizeEmail(v)
	case KindFilename:
		return normalizeFilename(v)
	case KindFilePath:
		return normalizeFilePath(v)
	case KindRegistryKey:
		return normalizeRegistryKey(v)
	default: // KindUserAgent, KindOther
		if utf8.RuneCountInString(v) > MaxTextValueLen || strings.IndexFunc(v, notPrintable) >= 0 {
			return "", sentinel(k)
		}
		return v, nil
	}
}

func normalizeHash(k Kind, v string, n int) (string, error) {
	if len(v) != n {
		return "", invalid(k, "%s must be exactly %d hexadecimal digits, not %d characters", k, n, utf8.RuneCountInString(v))
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return "", invalid(k, "%s must be %d hexadecimal digits (0-9, a-f)", k, n)
		}
	}
	return strings.ToLower(v), nil
}

func normalizeIPv4(v string) (string, error) {
	a, err := netip.ParseAddr(v)
	switch {
	case err != nil:
		return "", ErrInvalidIPv4
	case a.Is4In6():
		return "", invalid(KindIPv4, "ipv4 must be written as an IPv4 address: %s, not %s", a.Unmap(), v)
	case !a.Is4():
		return "", invalid(KindIPv4, "%s is an IPv6 address; give it as kind ipv6", v)
	}
	return a.String(), nil
}

func normalizeIPv6(v string) (string, error) {
	a, err := netip.ParseAddr(v)
	switch {
	case err != nil:
		return "", ErrInvalidIPv6
	case a.Is4():
		return "", invalid(KindIPv6, "%s is an IPv4 address; give it as kind ipv4", v)
	case a.Is4In6():
		return "", invalid(KindIPv6, "%s is an IPv4-mapped address; give it as kind ipv4: %s", v, a.Unmap())
	case a.Zone() != "":
		return "", invalid(KindIPv6, "ipv6 must not carry a zone (%%%s): it means nothing outside the host that saw it", a.Zone())
	}
	return a.String(), nil
}

func normalizeCIDR(v string) (string, error) {
	p, err := netip.ParsePrefix(v)
	switch {
	case err != nil:
		return "", ErrInvalidCIDR
	case p.Addr().Is4In6():
		return "", invalid(KindCIDR, "cidr %s is IPv4-mapped; give the IPv4 network instead", v)
	}
	return p.Masked().String(), nil
}

// idnaProfile is IDNA's Lookup profile (UTS #46 non-transitional mapping,
// label validation, BiDi and joiner rules) without the STD3 restriction to
// letters, digits and hyphens, so that underscores, common in real-world
// subdomains, survive; normalizeDomain checks the ASCII result itself.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.StrictDomainName(false))

// normalizeDomain returns v as a lower-case ASCII domain name of at least
// minLabels labels, with internationalised labels in punycode and one trailing
// dot removed.
func normalizeDomain(v string, minLabels int) (string, bool) {
	a, err := idnaProfile.ToASCII(v)
	if err != nil {
		return "", false
	}
	a = strings.TrimSuffix(a, ".")
	if a == "" || len(a) > MaxDomainLen {
		return "", false
	}
	labels := strings.Split(a, ".")
	if len(labels) < minLabels {
		return "", false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return "", false
			}
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return "", false
	}
	return a, true
}

// schemes maps the URL schemes accepted for indicators to their default ports.
var schemes = map[string]string{
	"http": "80", "https": "443", "ftp": "21", "ftps": "990", "sftp": "22", "tftp": "69",
	"ws": "80", "wss": "443", "smb": "445", "ldap": "389", "ldaps": "636",
}

func normalizeURL(v string) (string, error) {
	if len(v) > MaxURLLen {
		return "", invalid(KindURL, "url must be at most %d characters", MaxURLLen)
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", ErrInvalidURL
	}
	defaultPort, ok := schemes[u.Scheme]
	switch {
	case u.Scheme == "":
		return "", invalid(KindURL, "url must start with a scheme, such as https://")
	case !ok:
		return "", invalid(KindURL, "url scheme %q is not one of http, https, ftp, ftps, sftp, tftp, ws, wss, smb, ldap, ldaps", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "", invalid(KindURL, "url must have a host, as in %s://example.com/", u.Scheme)
	}
	host, err := normalizeURLHost(u.Hostname())
	if err != nil {
		return "", err
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", invalid(KindURL, "url port must be from 1 to 65535")
		}
		if port = strconv.Itoa(n); port != defaultPort {
			host += ":" + port
		}
	}
	out := url.URL{Scheme: u.Scheme, User: u.User, Host: host, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	if out.Path == "" {
		out.Path, out.RawPath = "/", ""
	}
	return out.String(), nil
}

// normalizeURLHost returns the host of a URL in canonical form: an IP address
// (IPv6 in brackets) or a domain name of one or more labels.
func normalizeURLHost(h string) (string, error) {
	if a, err := netip.ParseAddr(h); err == nil {
		switch {
		case a.Zone() != "":
			return "", invalid(KindURL, "url host must not carry an IPv6 zone")
		case a.Is4In6():
			return a.Unmap().String(), nil
		case a.Is6():
			return "[" + a.String() + "]", nil
		}
		return a.String(), nil
	}
	if strings.Contains(h, ":") {
		return "", invalid(KindURL, "url host %q is not a valid IPv6 address", h)
	}
	d, ok := normalizeDomain(h, 1)
	if !ok {
		return "", invalid(KindURL, "url host %q is neither a domain name nor an IP address", h)
	}
	return d, nil
}

func normalizeEmail(v string) (string, error) {
	if len(v) > MaxEmailLen {
		return "", ErrInvalidEmail
	}
	addr, err := mail.ParseAddress(v)
	if err != nil || addr.Name != "" || addr.Address != v {
		return "", ErrInvalidEmail
	}
	at := strings.LastIndexByte(v, '@')
	local, dom := v[:at], v[at+1:]
	if local == "" || len(local) > MaxEmailLocalLen {
		return "", invalid(KindEmail, "email local part must be 1 to %d bytes", MaxEmailLocalLen)
	}
	d, ok := normalizeDomain(dom, 2)
	if !ok {
		return "", invalid(KindEmail, "email domain %q must be a domain name such as example.com", dom)
	}
	out := local + "@" + d
	if len(out) > MaxEmailLen {
		return "", ErrInvalidEmail
	}
	return out, nil
}

func normalizeFilename(v string) (string, error) {
	switch {
	case len(v) > MaxFilenameLen:
		return "", invalid(KindFilename, "filename must be at most %d bytes", MaxFilenameLen)
	case strings.ContainsAny(v, `/\`):
		return "", invalid(KindFilename, "filename must not contain / or \\; use kind file_path for a path")
	case strings.IndexFunc(v, isControl) >= 0:
		return "", invalid(KindFilename, "filename must not contain control characters")
	case v == "." || v == "..":
		return "", ErrInvalidFilename
	}
	return v, nil
}

func normalizeFilePath(v string) (string, error) {
	switch {
	case len(v) > MaxFilePathLen:
		return "", invalid(KindFilePath, "file_path must be at most %d bytes", MaxFilePathLen)
	case strings.IndexFunc(v, isControl) >= 0:
		return "", invalid(KindFilePath, "file_path must not contain control characters")
	case v[0] == '/' && !strings.HasPrefix(v, "//"):
		return v, nil // POSIX
	}
	w := strings.ReplaceAll(v, "/", `\`)
	switch {
	case len(w) >= 3 && isLetter(w[0]) && w[1] == ':' && w[2] == '\\':
		return strings.ToUpper(w[:1]) + w[1:], nil // C:\...
	case strings.HasPrefix(w, `\\`) && len(w) > 2 && w[2] != '\\':
		return w, nil // \\server\share\..., \\?\C:\..., \\.\PhysicalDrive0
	case w[0] == '%':
		end := strings.IndexByte(w[1:], '%') + 1
		if end > 1 && isEnvName(w[1:end]) && (end == len(w)-1 || w[end+1] == '\\') {
			return "%" + strings.ToUpper(w[1:end]) + w[end:], nil // %APPDATA%\...
		}
	}
	return "", ErrInvalidFilePath
}

// hives maps the accepted spellings of a registry hive, in upper case, to its
// full name.
var hives = map[string]string{
	"HKEY_LOCAL_MACHINE": "HKEY_LOCAL_MACHINE", "HKLM": "HKEY_LOCAL_MACHINE",
	"HKEY_CURRENT_USER": "HKEY_CURRENT_USER", "HKCU": "HKEY_CURRENT_USER",
	"HKEY_CLASSES_ROOT": "HKEY_CLASSES_ROOT", "HKCR": "HKEY_CLASSES_ROOT",
	"HKEY_USERS": "HKEY_USERS", "HKU": "HKEY_USERS",
	"HKEY_CURRENT_CONFIG": "HKEY_CURRENT_CONFIG", "HKCC": "HKEY_CURRENT_CONFIG",
	"HKEY_PERFORMANCE_DATA": "HKEY_PERFORMANCE_DATA",
	`\REGISTRY\MACHINE`:     "HKEY_LOCAL_MACHINE", `\REGISTRY\USER`: "HKEY_USERS",
}

func normalizeRegistryKey(v string) (string, error) {
	switch {
	case len(v) > MaxRegistryKeyLen:
		return "", invalid(KindRegistryKey, "registry_key must be at most %d bytes", MaxRegistryKeyLen)
	case strings.IndexFunc(v, isControl) >= 0:
		return "", invalid(KindRegistryKey, "registry_key must not contain control characters")
	}
	if len(v) > 9 && strings.EqualFold(v[:9], `Computer\`) {
		v = v[9:]
	}
	// The kernel forms have two components before the first key name.
	head, rest := v, ""
	n := 1
	if strings.HasPrefix(v, `\`) {
		n = 3
	}
	if parts := strings.SplitN(v, `\`, n+1); len(parts) > n {
		head, rest = strings.Join(parts[:n], `\`), parts[n]
	}
	hive, ok := hives[strings.ToUpper(head)]
	if !ok {
		return "", ErrInvalidRegistryKey
	}
	rest = strings.TrimRight(rest, `\`)
	if rest == "" {
		return hive, nil
	}
	for name := range strings.SplitSeq(rest, `\`) {
		if name == "" {
			return "", invalid(KindRegistryKey, "registry_key must not contain empty key names (\\\\)")
		}
	}
	return hive + `\` + rest, nil
}

// isEnvName reports whether s may name a Windows environment variable, such
// as APPDATA or ProgramFiles(x86).
func isEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isLetter(c), '0' <= c && c <= '9', c == '_', c == '(', c == ')':
		default:
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isControl reports whether r is a C0 or C1 control character or DEL.
func isControl(r rune) bool { return r < 0x20 || 0x7f <= r && r <= 0x9f }

// notPrintable reports whether r is not printable; of the spaces only U+0020
// counts as printable.
func notPrintable(r rune) bool { return !unicode.IsPrint(r) }
