// Package secrets seals reversible secrets at rest: TOTP seeds, Velociraptor
// client keys, SIEM tokens. A sealed secret is AES-256-GCM ciphertext under a
// master key from the environment, bound by its associated data to one tenant
// and one purpose, so that a row copied to another tenant or another column
// does not open.
//
// Package secrets imports only domain. It must not import commands,
// projections, eventstore or other adapters. It never logs, and no error it
// returns contains a key or a plaintext.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"velocicompanion/domain"
)

// Sizes of keys and of the parts of a sealed secret, in bytes.
const (
	// KeyLen is the length of a master key: AES-256.
	KeyLen = 32
	// KeyIDLen is the length of the key id in a sealed secret.
	KeyIDLen = 4
	// NonceLen is the length of the random GCM nonce: 96 bits.
	NonceLen = 12
	// Overhead is how much longer a sealed secret is than its plaintext:
	// format, key id, nonce and the 16-byte GCM tag.
	Overhead = 1 + KeyIDLen + NonceLen + 16
	// MaxPlaintextLen bounds what Seal accepts; secrets are small.
	MaxPlaintextLen = 64 << 10
)

// formatV1 is the first byte of every sealed secret: AES-256-GCM with a
// random 96-bit nonce, laid out as
//
//	0x01 | key id (4) | nonce (12) | ciphertext | tag (16)
//
// WARNING: stored in credential tables; a new layout takes a new value, and
// Open keeps reading this one.
const formatV1 = 0x01

// ErrCannotOpen is wrapped by every error of Open about the sealed bytes:
// truncated, of an unknown format, sealed under a key the keyring does not
// hold, or failing authentication (tampered, or sealed for another tenant or
// purpose). It is an internal error; nothing about it is shown to clients.
var ErrCannotOpen = errors.New("cannot open sealed secret")

// keyIDContext domain-separates the key fingerprint from any other use of a
// master key.
const keyIDContext = "velocicompanion secrets key id v1"

// key is one master key with its id and cipher.
type key struct {
	id   [KeyIDLen]byte
	aead cipher.AEAD
}

// Keyring holds the current master key, which seals, and the retired keys,
// which only open what was sealed before a rotation. Each key is named in a
// sealed secret by its id, a 32-bit fingerprint of the key, so that rotating
// needs no numbering: put the new key in place of the current one and move the
// old one to the retired keys until every secret sealed under it has been
// resealed (see NeedsReseal).
//
// A Keyring is safe for concurrent use.
type Keyring struct {
	current key
	byID    map[[KeyIDLen]byte]key
}

// NewKeyring returns a Keyring that seals with current and opens with current
// and any of old. Every key must be KeyLen bytes, and no two may be equal (or,
// improbably, share an id). The keys are copied.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, fmt.Errorf("current master key: %w", err)
	}
	kr := &Keyring{current: cur, byID: map[[KeyIDLen]byte]key{cur.id: cur}}
	for i, raw := range old {
		k, err := newKey(raw)
		if err != nil {
			return nil, fmt.Errorf("old master key %d: %w", i+1, err)
		}
		if _, dup := kr.byID[k.id]; dup {
			return nil, fmt.Errorf("old master key %d: repeats key id %x", i+1, k.id)
		}
		kr.byID[k.id] = k
	}
	return kr, nil
}

func newKey(raw []byte) (key, error) {
	if len(raw) != KeyLen {
		return key{}, fmt.Errorf("has %d bytes, want %d", len(raw), KeyLen)
	}
	block, err := aes.NewCipher(raw) // copies raw into its schedule
	if err != nil {
		return key{}, err
	}
	aead, err := cipher.NewGCM(block) // 12-byte nonce, 16-byte tag
	if err != nil {
		return key{}, err
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(keyIDContext))
	k := key{aead: aead}
	copy(k.id[:], mac.Sum(nil))
	return k, nil
}

// CurrentKeyID returns the id of the sealing key in hex, for the startup log:
// it tells operators which key is in use without revealing it.
func (kr *Keyring) CurrentKeyID() string { return hex.EncodeToString(kr.current.id[:]) }

// Seal encrypts plaintext for tenant and purpose under the current key with a
// fresh random nonce. Tenant and purpose (such as "totp") are authenticated,
// not stored: Open must be given the same ones. Neither may be empty.
//
// With random nonces, one key should seal at most 2^32 secrets (NIST SP
// 800-38D); rotate well before that.
func (kr *Keyring) Seal(tenant domain.TenantID, purpose string, plaintext []byte) ([]byte, error) {
	if err := checkContext(tenant, purpose); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if len(plaintext) > MaxPlaintextLen {
		return nil, fmt.Errorf("seal: plaintext of %d bytes exceeds %d", len(plaintext), MaxPlaintextLen)
	}
	out := make([]byte, 1+KeyIDLen+NonceLen, Overhead+len(plaintext))
	out[0] = formatV1
	copy(out[1:], kr.current.id[:])
	nonce := out[1+KeyIDLen:]
	rand.Read(nonce) // crypto/rand never fails
	header := out[:1+KeyIDLen]
	return kr.current.aead.Seal(out, nonce, plaintext, additionalData(header, tenant, purpose)), nil
}

// Open decrypts sealed, which Seal made for the same tenant and purpose under
// any key of kr. Any failure wraps ErrCannotOpen.
func (kr *Keyring) Open(tenant domain.TenantID, purpose string, sealed []byte) ([]byte, error) {
	if err := checkContext(tenant, purpose); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	k, err := kr.keyOf(sealed)
	if err != nil {
		return nil, err
	}
	header := sealed[:1+KeyIDLen]
	nonce := sealed[1+KeyIDLen : 1+KeyIDLen+NonceLen]
	plain, err := k.aead.Open(nil, nonce, sealed[1+KeyIDLen+NonceLen:], additionalData(header, tenant, purpose))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCannotOpen)
	}
	return plain, nil
}

// NeedsReseal reports whether sealed was made under another key than the
// current one (or cannot be read), so that the caller should open it and seal
// it again. A background job or the next use of each secret does that after a
// rotation, before the old key is dropped.
func (kr *Keyring) NeedsReseal(sealed []byte) bool {
	k, err := kr.keyOf(sealed)
	return err != nil || k.id != kr.current.id
}

// keyOf checks the framing of sealed and finds the key it names.
func (kr *Keyring) keyOf(sealed []byte) (key, error) {
	switch {
	case len(sealed) < Overhead:
		return key{}, fmt.Errorf("%w: %d bytes is too short", ErrCannotOpen, len(sealed))
	case sealed[0] != formatV1:
		return key{}, fmt.Errorf("%w: unknown format 0x%02x", ErrCannotOpen, sealed[0])
	}
	var id [KeyIDLen]byte
	copy(id[:], sealed[1:])
	k, ok := kr.byID[id]
	if !ok {
		return key{}, fmt.Errorf("%w: sealed under unknown key id %x", ErrCannotOpen, id)
	}
	return k, nil
}

func checkContext(tenant domain.TenantID, purpose string) error {
	switch {
	case tenant == "":
		return errors.New("empty tenant")
	case purpose == "":
		return errors.New("empty purpose")
	}
	return nil
}

// additionalData is what GCM authenticates besides the ciphertext: the header
// (format and key id), then tenant and purpose, each behind its length, so
// that no two different (tenant, purpose) pairs give the same bytes.
func additionalData(header []byte, tenant domain.TenantID, purpose string) []byte {
	ad := make([]byte, 0, len(header)+8+len(tenant)+len(purpose))
	ad = append(ad, header...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(tenant)))
	ad = append(ad, tenant...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(purpose)))
	ad = append(ad, purpose...)
	return ad
}

// ParseKey decodes a master key from base64 as in VC_MASTER_KEY: standard or
// URL alphabet, padded or not, surrounding white space ignored (as left by
// `openssl rand -base64 32`). It must decode to exactly KeyLen bytes. The
// error never quotes the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("master key is empty")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.Strict().DecodeString(s)
		if err != nil {
			continue
		}
		if len(k) != KeyLen {
			return nil, fmt.Errorf("master key decodes to %d bytes, want %d", len(k), KeyLen)
		}
		return k, nil
	}
	return nil, errors.New("master key is not base64")
}

// ParseKeyring builds a Keyring from the settings VC_MASTER_KEY (current, one
// base64 key) and VC_MASTER_KEY_OLD (old, base64 keys separated by commas or
// white space; may be empty).
func ParseKeyring(current, old string) (*Keyring, error) {
	cur, err := ParseKey(current)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	var olds [][]byte
	for i, s := range strings.FieldsFunc(old, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("old key %d: %w", i+1, err)
		}
		olds = append(olds, k)
	}
	return NewKeyring(cur, olds...)
}
