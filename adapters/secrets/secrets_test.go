package secrets_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"velocicompanion/adapters/secrets"
	"velocicompanion/domain"
)

const (
	acme   domain.TenantID = "0190c7a4-6a38-7f1e-9a49-00000000acme"
	globex domain.TenantID = "0190c7a4-6a38-7f1e-9a49-0000000910b5"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, secrets.KeyLen)
	rand.Read(k)
	return k
}

func newKeyring(t *testing.T, current []byte, old ...[]byte) *secrets.Keyring {
	t.Helper()
	kr, err := secrets.NewKeyring(current, old...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func seal(t *testing.T, kr *secrets.Keyring, tenant domain.TenantID, purpose string, plain []byte) []byte {
	t.Helper()
	sealed, err := kr.Seal(tenant, purpose, plain)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return sealed
}

func TestRoundTrip(t *testing.T) {
	kr := newKeyring(t, newKey(t))
	for _, plain := range [][]byte{nil, []byte("x"), []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), bytes.Repeat([]byte{0}, 4096)} {
		sealed := seal(t, kr, acme, "totp", plain)
		if len(sealed) != len(plain)+secrets.Overhead {
			t.Errorf("sealed %d bytes into %d, want %d", len(plain), len(sealed), len(plain)+secrets.Overhead)
		}
		if len(plain) > 4 && bytes.Contains(sealed, plain) {
			t.Errorf("sealed bytes contain the plaintext")
		}
		got, err := kr.Open(acme, "totp", sealed)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("Open = %q, want %q", got, plain)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	kr := newKeyring(t, newKey(t))
	plain := []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	sealed := seal(t, kr, acme, "totp", plain)

	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name    string
		tenant  domain.TenantID
		purpose string
		sealed  []byte
		kr      *secrets.Keyring
	}{
		{name: "other_tenant", tenant: globex, purpose: "totp", sealed: sealed},
		{name: "tenant_prefix", tenant: acme[:len(acme)-1], purpose: "totp", sealed: sealed},
		{name: "other_purpose", tenant: acme, purpose: "siem", sealed: sealed},
		{name: "tenant_purpose_boundary_shifted", tenant: acme + "t", purpose: "otp", sealed: sealed},
		{name: "tampered_format", tenant: acme, purpose: "totp", sealed: flip(0)},
		{name: "tampered_key_id", tenant: acme, purpose: "totp", sealed: flip(1)},
		{name: "tampered_nonce", tenant: acme, purpose: "totp", sealed: flip(1 + secrets.KeyIDLen)},
		{name: "tampered_ciphertext", tenant: acme, purpose: "totp", sealed: flip(secrets.Overhead - 16)},
		{name: "tampered_tag", tenant: acme, purpose: "totp", sealed: flip(len(sealed) - 1)},
		{name: "truncated_tag", tenant: acme, purpose: "totp", sealed: sealed[:len(sealed)-1]},
		{name: "truncated_to_overhead", tenant: acme, purpose: "totp", sealed: sealed[:secrets.Overhead]},
		{name: "truncated_below_overhead", tenant: acme, purpose: "totp", sealed: sealed[:secrets.Overhead-1]},
		{name: "extended", tenant: acme, purpose: "totp", sealed: append(bytes.Clone(sealed), 0)},
		{name: "empty", tenant: acme, purpose: "totp", sealed: nil},
		{name: "other_master_key", tenant: acme, purpose: "totp", sealed: sealed, kr: newKeyring(t, newKey(t))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kr
			if tt.kr != nil {
				k = tt.kr
			}
			got, err := k.Open(tt.tenant, tt.purpose, tt.sealed)
			if !errors.Is(err, secrets.ErrCannotOpen) {
				t.Fatalf("Open = %q, %v; want ErrCannotOpen", got, err)
			}
			if got != nil {
				t.Errorf("Open returned %q with its error", got)
			}
			if strings.Contains(err.Error(), string(plain)) {
				t.Errorf("error %q contains the plaintext", err)
			}
		})
	}
}

func TestEmptyContextRefused(t *testing.T) {
	kr := newKeyring(t, newKey(t))
	if _, err := kr.Seal("", "totp", []byte("s")); err == nil {
		t.Error("Seal with empty tenant succeeded")
	}
	if _, err := kr.Seal(acme, "", []byte("s")); err == nil {
		t.Error("Seal with empty purpose succeeded")
	}
	sealed := seal(t, kr, acme, "totp", []byte("s"))
	if _, err := kr.Open("", "totp", sealed); err == nil {
		t.Error("Open with empty tenant succeeded")
	}
	if _, err := kr.Open(acme, "", sealed); err == nil {
		t.Error("Open with empty purpose succeeded")
	}
	if _, err := kr.Seal(acme, "totp", make([]byte, secrets.MaxPlaintextLen+1)); err == nil {
		t.Error("Seal of an oversized plaintext succeeded")
	}
}

func TestRotation(t *testing.T) {
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	before := newKeyring(t, k1)
	sealed1 := seal(t, before, acme, "totp", []byte("under k1"))

	after := newKeyring(t, k2, k1)
	if after.CurrentKeyID() == before.CurrentKeyID() {
		t.Fatalf("key ids of different keys are equal: %s", after.CurrentKeyID())
	}
	if len(after.CurrentKeyID()) != 2*secrets.KeyIDLen {
		t.Errorf("CurrentKeyID = %q, want %d hex digits", after.CurrentKeyID(), 2*secrets.KeyIDLen)
	}
	if got, err := after.Open(acme, "totp", sealed1); err != nil || string(got) != "under k1" {
		t.Fatalf("Open of a secret sealed under the old key = %q, %v", got, err)
	}
	if !after.NeedsReseal(sealed1) {
		t.Error("NeedsReseal of a secret under the old key = false")
	}
	sealed2 := seal(t, after, acme, "totp", []byte("under k2"))
	if after.NeedsReseal(sealed2) {
		t.Error("NeedsReseal of a secret under the current key = true")
	}
	if !after.NeedsReseal(sealed2[:3]) {
		t.Error("NeedsReseal of garbage = false")
	}
	if _, err := before.Open(acme, "totp", sealed2); !errors.Is(err, secrets.ErrCannotOpen) {
		t.Errorf("the old keyring opened a secret under the new key: %v", err)
	}

	// Once the old key is dropped, what it sealed no longer opens.
	dropped := newKeyring(t, k3, k2)
	if _, err := dropped.Open(acme, "totp", sealed1); !errors.Is(err, secrets.ErrCannotOpen) || !strings.Contains(err.Error(), "unknown key id") {
		t.Errorf("Open after dropping the key = %v, want unknown key id", err)
	}
	if got, err := dropped.Open(acme, "totp", sealed2); err != nil || string(got) != "under k2" {
		t.Errorf("Open under a retired key = %q, %v", got, err)
	}
}

func TestNewKeyringRefuses(t *testing.T) {
	k := newKey(t)
	for name, f := range map[string]func() (*secrets.Keyring, error){
		"short_current":       func() (*secrets.Keyring, error) { return secrets.NewKeyring(k[:31]) },
		"long_current":        func() (*secrets.Keyring, error) { return secrets.NewKeyring(append(bytes.Clone(k), 0)) },
		"nil_current":         func() (*secrets.Keyring, error) { return secrets.NewKeyring(nil) },
		"short_old":           func() (*secrets.Keyring, error) { return secrets.NewKeyring(k, newKey(t)[:16]) },
		"old_repeats_current": func() (*secrets.Keyring, error) { return secrets.NewKeyring(k, bytes.Clone(k)) },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := f(); err == nil {
				t.Error("NewKeyring succeeded")
			}
		})
	}
}

func TestKeyringCopiesKeys(t *testing.T) {
	k := newKey(t)
	kr := newKeyring(t, k)
	sealed := seal(t, kr, acme, "totp", []byte("s"))
	clear(k)
	if _, err := kr.Open(acme, "totp", sealed); err != nil {
		t.Errorf("Open after the caller cleared its key: %v", err)
	}
}

// TestNonceUniqueness seals the same plaintext many times: every nonce and
// every ciphertext must differ.
func TestNonceUniqueness(t *testing.T) {
	kr := newKeyring(t, newKey(t))
	const n = 100_000
	nonces := make(map[[secrets.NonceLen]byte]struct{}, n)
	bodies := make(map[string]struct{}, n)
	for range n {
		sealed := seal(t, kr, acme, "totp", []byte("the same secret"))
		var nonce [secrets.NonceLen]byte
		copy(nonce[:], sealed[1+secrets.KeyIDLen:])
		if _, dup := nonces[nonce]; dup {
			t.Fatalf("nonce %x repeated", nonce)
		}
		nonces[nonce] = struct{}{}
		body := string(sealed[1+secrets.KeyIDLen+secrets.NonceLen:])
		if _, dup := bodies[body]; dup {
			t.Fatal("ciphertext repeated")
		}
		bodies[body] = struct{}{}
	}
}

func TestSealedLayout(t *testing.T) {
	kr := newKeyring(t, newKey(t))
	sealed := seal(t, kr, acme, "totp", []byte("s"))
	if sealed[0] != 0x01 {
		t.Errorf("format byte = 0x%02x, want 0x01", sealed[0])
	}
	if got := hex.EncodeToString(sealed[1 : 1+secrets.KeyIDLen]); got != kr.CurrentKeyID() {
		t.Errorf("key id in sealed secret = %s, want CurrentKeyID %s", got, kr.CurrentKeyID())
	}
}

func TestParseKey(t *testing.T) {
	raw := newKey(t)
	for name, s := range map[string]string{
		"std":              base64.StdEncoding.EncodeToString(raw),
		"std_unpadded":     base64.RawStdEncoding.EncodeToString(raw),
		"url":              base64.URLEncoding.EncodeToString(raw),
		"url_unpadded":     base64.RawURLEncoding.EncodeToString(raw),
		"trailing_newline": base64.StdEncoding.EncodeToString(raw) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := secrets.ParseKey(s)
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("ParseKey = %x, %v; want %x", got, err, raw)
			}
		})
	}
	for name, s := range map[string]string{
		"empty":     "",
		"blank":     " \n",
		"short":     base64.StdEncoding.EncodeToString(raw[:16]),
		"long":      base64.StdEncoding.EncodeToString(append(bytes.Clone(raw), 1)),
		"not_b64":   strings.Repeat("!", 44),
		"raw_bytes": string(raw),
	} {
		t.Run("refuses_"+name, func(t *testing.T) {
			_, err := secrets.ParseKey(s)
			if err == nil {
				t.Fatal("ParseKey succeeded")
			}
			if s != "" && strings.TrimSpace(s) != "" && strings.Contains(err.Error(), strings.TrimSpace(s)) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestParseKeyring(t *testing.T) {
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	enc := base64.StdEncoding.EncodeToString
	sealed1 := seal(t, newKeyring(t, k1), acme, "totp", []byte("one"))
	sealed2 := seal(t, newKeyring(t, k2), acme, "totp", []byte("two"))

	kr, err := secrets.ParseKeyring(enc(k3), enc(k1)+", "+enc(k2)+"\n")
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	for want, s := range map[string][]byte{"one": sealed1, "two": sealed2} {
		if got, err := kr.Open(acme, "totp", s); err != nil || string(got) != want {
			t.Errorf("Open = %q, %v; want %q", got, err, want)
		}
	}
	if kr.CurrentKeyID() != newKeyring(t, k3).CurrentKeyID() {
		t.Error("the current key is not the first argument")
	}
	if _, err := secrets.ParseKeyring(enc(k3), ""); err != nil {
		t.Errorf("ParseKeyring without old keys: %v", err)
	}
	if _, err := secrets.ParseKeyring("", enc(k1)); err == nil {
		t.Error("ParseKeyring without a current key succeeded")
	}
	if _, err := secrets.ParseKeyring(enc(k3), enc(k1)+",nope"); err == nil {
		t.Error("ParseKeyring with a bad old key succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	kr := newKeyring(t, newKey(t))
	done := make(chan error)
	for i := range 8 {
		go func() {
			var err error
			for range 200 {
				var sealed, got []byte
				tenant := domain.TenantID([]string{string(acme), string(globex)}[i%2])
				if sealed, err = kr.Seal(tenant, "totp", []byte("s")); err != nil {
					break
				}
				if got, err = kr.Open(tenant, "totp", sealed); err != nil {
					break
				}
				if string(got) != "s" {
					err = errors.New("wrong plaintext")
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
