package domain

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NormalizeWords returns the words of raw (tags, labels) trimmed, in lower
// case, sorted and without duplicates, or nil for none. Each must be 1 to
// maxLen printable characters; otherwise the error is Invalid with code and a
// message that names the offending word as a what.
func NormalizeWords(raw []string, maxLen int, code, what string) ([]string, error) {
	var out []string
	for _, r := range raw {
		w := strings.ToLower(strings.TrimSpace(r))
		if n := utf8.RuneCountInString(w); n == 0 || n > maxLen || !utf8.ValidString(r) ||
			strings.IndexFunc(w, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
			return nil, Invalid(code, "%s %q must be 1 to %d printable characters", what, r, maxLen)
		}
		out = append(out, w)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
