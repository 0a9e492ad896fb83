package totp

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// Recovery codes.
//
// A recovery code is RecoveryCodeLen symbols drawn uniformly by crypto/rand
// from a 32-symbol alphabet without i, l, o and u (Crockford's base32, lower
// case), so each carries 5 bits per symbol, 80 bits in all. It is shown as
// four groups of four, "7k2m-x9qa-…". Typing is forgiving: case, hyphens and
// spaces are ignored, and i, l and o are read as 1, 1 and 0.
//
// Each code is stored as SHA-256 over a random 16-byte salt and the code. A
// slow password hash (argon2id) exists to make guessing low-entropy,
// human-chosen passwords expensive; these codes are random and 80 bits long, so
// even an attacker with the table who computes 10^10 hashes a second needs
// about 2^79 / 10^10 s, two million years, to expect one, and the per-code salt
// stops one computation from being tried against every stored code at once.
// Online guessing is bounded by the caller's attempt limit. A fast hash also
// lets a sign-in check all ten codes without a slot in the password hasher.
const (
	// RecoveryCodeCount is how many codes a user gets at a time.
	RecoveryCodeCount = 10
	// RecoveryCodeLen is the number of symbols in a code, hyphens aside.
	RecoveryCodeLen = 16
	// MaxRecoveryCodes bounds NewRecoveryCodes.
	MaxRecoveryCodes = 100

	recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	recoveryGroup    = 4
	// hashPrefix names the format of a stored code hash.
	// WARNING: stored; a new format takes a new prefix.
	hashPrefix = "rc1$"
	saltLen    = 16
)

var b64 = base64.RawStdEncoding.Strict()

// NewRecoveryCodes returns n fresh recovery codes to show the user once, and
// their hashes, in the same order, to store. Regenerating replaces all stored
// hashes. Use RecoveryCodeCount unless there is a reason not to.
func NewRecoveryCodes(n int) (plain, hashes []string, err error) {
	if n < 1 || n > MaxRecoveryCodes {
		return nil, nil, fmt.Errorf("recovery code count %d out of range 1..%d", n, MaxRecoveryCodes)
	}
	seen := make(map[string]bool, n)
	for len(plain) < n {
		code := newRecoveryCode()
		if seen[code] { // 2^-80: only a broken generator gets here
			continue
		}
		seen[code] = true
		plain = append(plain, format(code))
		hashes = append(hashes, hashRecoveryCode(code))
	}
	return plain, hashes, nil
}

// MatchRecoveryCode reports whether code, as typed by the user, is one of the
// codes whose hashes are given, and returns its index. The caller then
// removes hashes[index] so that the code works once, atomically (delete it by
// value and check that a row went). Every hash is computed and compared, in
// constant time, whether or not one matched earlier; empty entries (used
// codes, if the caller keeps their places) and malformed ones match nothing.
func MatchRecoveryCode(code string, hashes []string) (index int, ok bool) {
	norm, valid := normalize(code)
	if !valid {
		return -1, false
	}
	index = -1
	found := 0
	for i, h := range hashes {
		salt, sum, wellFormed := parseHash(h)
		got := saltedSum(salt, norm)
		hit := subtle.ConstantTimeCompare(got, sum) & boolToInt(wellFormed)
		index = subtle.ConstantTimeSelect(hit, i, index)
		found |= hit
	}
	return index, found == 1
}

// newRecoveryCode returns RecoveryCodeLen uniform symbols of the alphabet.
func newRecoveryCode() string {
	b := make([]byte, RecoveryCodeLen)
	rand.Read(b) // crypto/rand never fails
	for i := range b {
		b[i] = recoveryAlphabet[b[i]&31] // 256 is a multiple of 32: no bias
	}
	return string(b)
}

// format splits code into hyphen-separated groups.
func format(code string) string {
	var sb strings.Builder
	for i := 0; i < len(code); i += recoveryGroup {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(code[i : i+recoveryGroup])
	}
	return sb.String()
}

// normalize returns the canonical symbols of a typed code, or false if it
// cannot be one.
func normalize(typed string) (string, bool) {
	if len(typed) > 4*RecoveryCodeLen {
		return "", false
	}
	var sb strings.Builder
	for _, r := range strings.ToLower(typed) {
		switch r {
		case '-', ' ', '\t':
			continue
		case 'o':
			r = '0'
		case 'i', 'l':
			r = '1'
		}
		if r > 0x7f || !strings.ContainsRune(recoveryAlphabet, r) {
			return "", false
		}
		sb.WriteRune(r)
	}
	if sb.Len() != RecoveryCodeLen {
		return "", false
	}
	return sb.String(), true
}

func hashRecoveryCode(code string) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	sum := saltedSum(salt, code)
	return hashPrefix + b64.EncodeToString(salt) + "$" + b64.EncodeToString(sum)
}

// saltedSum is SHA-256(salt || code).
func saltedSum(salt []byte, code string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(code))
	return h.Sum(nil)
}

// parseHash splits a stored hash. For a malformed one it returns a zero salt
// and a sum that matches nothing, so that the caller does the same work.
func parseHash(h string) (salt, sum []byte, ok bool) {
	rest, ok := strings.CutPrefix(h, hashPrefix)
	s, d, ok2 := strings.Cut(rest, "$")
	if ok && ok2 {
		var err1, err2 error
		salt, err1 = b64.DecodeString(s)
		sum, err2 = b64.DecodeString(d)
		if err1 == nil && err2 == nil && len(salt) == saltLen && len(sum) == sha256.Size {
			return salt, sum, true
		}
	}
	return make([]byte, saltLen), make([]byte, sha256.Size), false
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
