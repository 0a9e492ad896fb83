package totp_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"velocicompanion/adapters/totp"
)

var codeFormat = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$`)

func newCodes(t *testing.T, n int) (plain, hashes []string) {
	t.Helper()
	plain, hashes, err := totp.NewRecoveryCodes(n)
	if err != nil {
		t.Fatalf("NewRecoveryCodes: %v", err)
	}
	if len(plain) != n || len(hashes) != n {
		t.Fatalf("NewRecoveryCodes(%d) gave %d codes, %d hashes", n, len(plain), len(hashes))
	}
	return plain, hashes
}

func TestRecoveryCodes(t *testing.T) {
	plain, hashes := newCodes(t, totp.RecoveryCodeCount)
	seen := map[string]bool{}
	for i, code := range plain {
		if !codeFormat.MatchString(code) {
			t.Errorf("code %q is not xxxx-xxxx-xxxx-xxxx in the alphabet", code)
		}
		if seen[code] || seen[hashes[i]] {
			t.Errorf("code or hash %d repeated", i)
		}
		seen[code], seen[hashes[i]] = true, true
		bare := strings.ReplaceAll(code, "-", "")
		for _, h := range hashes {
			if strings.Contains(h, code) || strings.Contains(h, bare) {
				t.Errorf("hash %q contains a code", h)
			}
		}
	}

	// Each code matches its own hash, once: the caller removes it.
	remaining := slices.Clone(hashes)
	for _, code := range plain {
		i, ok := totp.MatchRecoveryCode(code, remaining)
		if !ok || remaining[i] != hashes[slices.Index(plain, code)] {
			t.Fatalf("MatchRecoveryCode(%s) = %d, %v", code, i, ok)
		}
		remaining = slices.Delete(remaining, i, i+1)
		if _, ok := totp.MatchRecoveryCode(code, remaining); ok {
			t.Fatalf("code %s matched again after its hash was removed", code)
		}
	}
	if len(remaining) != 0 {
		t.Errorf("%d hashes left", len(remaining))
	}

	// Another set's codes do not match.
	other, _ := newCodes(t, totp.RecoveryCodeCount)
	for _, code := range other {
		if _, ok := totp.MatchRecoveryCode(code, hashes); ok {
			t.Errorf("a code of another set matched")
		}
	}
}

func TestRecoveryCodeTyping(t *testing.T) {
	plain, hashes := newCodes(t, totp.RecoveryCodeCount)
	code := plain[3]
	bare := strings.ReplaceAll(code, "-", "")
	misread := strings.NewReplacer("0", "O", "1", "l").Replace(strings.ToUpper(code))
	for _, typed := range []string{code, strings.ToUpper(code), bare, " " + strings.ReplaceAll(code, "-", " ") + " ", misread} {
		if i, ok := totp.MatchRecoveryCode(typed, hashes); !ok || i != 3 {
			t.Errorf("MatchRecoveryCode(%q) = %d, %v; want 3, true", typed, i, ok)
		}
	}
	wrong := []byte(bare)
	wrong[7] = map[bool]byte{true: 'a', false: 'b'}[wrong[7] != 'a']
	for _, typed := range []string{"", bare[:15], bare + "a", string(wrong), "u" + bare[1:], bare[:15] + "é", strings.Repeat("-", 1000)} {
		if i, ok := totp.MatchRecoveryCode(typed, hashes); ok || i != -1 {
			t.Errorf("MatchRecoveryCode(%q) = %d, %v; want -1, false", typed, i, ok)
		}
	}
}

func TestRecoveryCodeMalformedHashes(t *testing.T) {
	plain, hashes := newCodes(t, 2)
	list := []string{"", "garbage", "rc1$", "rc1$AAAA$AAAA", hashes[1][:len(hashes[1])-1], hashes[1], strings.Replace(hashes[0], "rc1$", "rc2$", 1)}
	if i, ok := totp.MatchRecoveryCode(plain[1], list); !ok || i != 5 {
		t.Errorf("MatchRecoveryCode among malformed hashes = %d, %v; want 5, true", i, ok)
	}
	if _, ok := totp.MatchRecoveryCode(plain[0], list); ok {
		t.Error("a code matched a hash with an unknown prefix")
	}
	if _, ok := totp.MatchRecoveryCode(plain[0], nil); ok {
		t.Error("a code matched an empty list")
	}
}

func TestRecoveryCodeAlphabet(t *testing.T) {
	counts := map[rune]int{}
	for range 100 {
		plain, _ := newCodes(t, totp.RecoveryCodeCount)
		for _, c := range plain {
			for _, r := range strings.ReplaceAll(c, "-", "") {
				counts[r]++
			}
		}
	}
	if len(counts) != 32 {
		t.Errorf("%d distinct symbols over 16000, want all 32", len(counts))
	}
	for _, r := range "ilou" {
		if counts[r] > 0 {
			t.Errorf("ambiguous symbol %q used", r)
		}
	}
	// 16000 uniform draws from 32 symbols: 500 each, σ ≈ 22.
	for r, n := range counts {
		if n < 350 || n > 650 {
			t.Errorf("symbol %q drawn %d times of 16000; want about 500", r, n)
		}
	}
}

func TestNewRecoveryCodesRange(t *testing.T) {
	for _, n := range []int{-1, 0, totp.MaxRecoveryCodes + 1} {
		if _, _, err := totp.NewRecoveryCodes(n); err == nil {
			t.Errorf("NewRecoveryCodes(%d) succeeded", n)
		}
	}
}
