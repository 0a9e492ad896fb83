package totp_test

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"image/png"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/boombuler/barcode/qr"

	"velocicompanion/adapters/totp"
)

// rfcSecret is the SHA-1 key of RFC 6238, appendix B: "12345678901234567890".
var rfcSecret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

// oathtool returns the TOTP code of secret at t computed by Debian's oathtool,
// an implementation independent of the one under test. The secret goes in on
// standard input, not on the command line.
func oathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatalf("oathtool is needed to check codes independently (apt-get install -y oathtool): %v", err)
	}
	cmd := exec.Command(path, "--totp", "--base32", "--digits=6", "--time-step-size=30s", fmt.Sprintf("--now=@%d", at.Unix()), "-")
	cmd.Stdin = strings.NewReader(secret + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool: %v: %s", err, out)
	}
	code := strings.TrimSpace(string(out))
	if len(code) != totp.Digits {
		t.Fatalf("oathtool printed %q", out)
	}
	return code
}

func generate(t *testing.T) totp.Secret {
	t.Helper()
	s, err := totp.Generate("VelociCompanion", "alice@acme.example")
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

func TestGenerate(t *testing.T) {
	s := generate(t)
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s.Base32)
	if err != nil || len(raw) != totp.SecretLen || len(raw) < 20 {
		t.Fatalf("Base32 %d chars decodes to %d bytes, %v; want %d", len(s.Base32), len(raw), err, totp.SecretLen)
	}
	u, err := url.Parse(s.URI)
	if err != nil {
		t.Fatalf("URI: %v", err)
	}
	q := u.Query()
	for name, want := range map[string]string{
		"scheme": "otpauth", "type": "totp", "label": "/VelociCompanion:alice@acme.example",
		"secret": s.Base32, "issuer": "VelociCompanion", "algorithm": "SHA1", "digits": "6", "period": "30",
	} {
		got := map[string]string{"scheme": u.Scheme, "type": u.Host, "label": u.Path}[name]
		if got == "" {
			got = q.Get(name)
		}
		if got != want {
			t.Errorf("URI %s = %q, want %q", name, got, want)
		}
	}
	if other := generate(t); other.Base32 == s.Base32 {
		t.Error("two secrets are equal")
	}
}

// TestGenerateQR decodes the PNG and reads every module back: it must be the
// QR code of the URI, in whole pixels, inside a quiet zone of 4 modules.
func TestGenerateQR(t *testing.T) {
	s := generate(t)
	img, err := png.Decode(bytes.NewReader(s.QRPNG))
	if err != nil {
		t.Fatalf("QRPNG is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != totp.QRSize || b.Dy() != totp.QRSize {
		t.Fatalf("QR image is %dx%d, want %dx%d", b.Dx(), b.Dy(), totp.QRSize, totp.QRSize)
	}
	want, err := qr.Encode(s.URI, qr.M, qr.Auto)
	if err != nil {
		t.Fatal(err)
	}
	n := want.Bounds().Dx()
	scale := totp.QRSize / (n + 8)
	offset := (totp.QRSize - n*scale) / 2
	if scale < 2 || offset < 4*scale {
		t.Fatalf("%d modules at scale %d, offset %d: too small or no quiet zone", n, scale, offset)
	}
	dark := func(x, y int) bool { r, _, _, _ := img.At(x, y).RGBA(); return r < 0x8000 }
	for y := -4; y < n+4; y++ {
		for x := -4; x < n+4; x++ {
			wantDark := false
			if x >= 0 && y >= 0 && x < n && y < n {
				r, _, _, _ := want.At(x, y).RGBA()
				wantDark = r < 0x8000
			}
			// Both corners of the module must agree: modules are whole pixels.
			px, py := offset+x*scale, offset+y*scale
			if dark(px, py) != wantDark || dark(px+scale-1, py+scale-1) != wantDark {
				t.Fatalf("module (%d,%d) dark=%v, want %v", x, y, dark(px, py), wantDark)
			}
		}
	}
	if len(s.QRPNG) > 4096 {
		t.Errorf("QR PNG is %d bytes; want a compact two-colour image", len(s.QRPNG))
	}
}

func TestGenerateRefusesLabels(t *testing.T) {
	for _, tt := range []struct{ issuer, account string }{
		{"", "alice"},
		{"VelociCompanion", ""},
		{"Velo:ci", "alice"},
		{"VelociCompanion", "acme:alice"},
		{"VelociCompanion", "alice\n"},
		{"Velo\x00ci", "alice"},
		{strings.Repeat("v", 129), "alice"},
	} {
		if _, err := totp.Generate(tt.issuer, tt.account); err == nil {
			t.Errorf("Generate(%q, %q) succeeded", tt.issuer, tt.account)
		}
	}
}

func TestStep(t *testing.T) {
	for _, tt := range []struct {
		unix int64
		want int64
	}{{0, 0}, {29, 0}, {30, 1}, {59, 1}, {60, 2}, {1111111109, 37037036}, {-1, -1}, {-30, -1}, {-31, -2}} {
		if got := totp.Step(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("Step(%d) = %d, want %d", tt.unix, got, tt.want)
		}
	}
}

// TestVerifyRFC6238 checks the SHA-1 test vectors of RFC 6238, appendix B,
// cut to 6 digits (the code is the value modulo 10^digits).
func TestVerifyRFC6238(t *testing.T) {
	for _, tt := range []struct {
		unix int64
		code string
	}{{59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"}, {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"}} {
		now := time.Unix(tt.unix, 0)
		step, ok := totp.Verify(rfcSecret, tt.code, now, 0)
		if !ok || step != totp.Step(now) {
			t.Errorf("Verify(%s at %d) = %d, %v; want %d, true", tt.code, tt.unix, step, ok, totp.Step(now))
		}
	}
}

// TestVerifyAgainstOathtool checks codes made by oathtool for the current
// step and the two steps on either side: ±1 is accepted, ±2 refused.
func TestVerifyAgainstOathtool(t *testing.T) {
	secrets := []string{rfcSecret, generate(t).Base32, generate(t).Base32}
	times := []time.Time{
		time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC),  // first second of a step
		time.Date(2026, 11, 26, 20, 0, 29, 0, time.UTC), // last second of a step
		time.Date(2030, 2, 28, 23, 59, 45, 0, time.UTC), // mid-step
		time.Now().Truncate(time.Second),
	}
	for i, secret := range secrets {
		for _, now := range times {
			codes := map[int]string{}
			for off := -2; off <= 2; off++ {
				codes[off] = oathtool(t, secret, now.Add(time.Duration(off)*totp.Period))
			}
			for off := -2; off <= 2; off++ {
				t.Run(fmt.Sprintf("secret%d/%s/%+d", i, now.Format(time.RFC3339), off), func(t *testing.T) {
					step, ok := totp.Verify(secret, codes[off], now, 0)
					if off >= -1 && off <= 1 {
						if !ok || step != totp.Step(now)+int64(off) {
							t.Errorf("Verify = %d, %v; want %d, true", step, ok, totp.Step(now)+int64(off))
						}
						return
					}
					for near := -1; near <= 1; near++ {
						if codes[near] == codes[off] {
							t.Skipf("the code of step %+d equals that of step %+d (chance 1 in 10^6)", off, near)
						}
					}
					if ok {
						t.Errorf("Verify accepted the code of step %+d (matched %d)", off, step)
					}
				})
			}
		}
	}
}

func TestVerifyReplay(t *testing.T) {
	secret := generate(t).Base32
	now := time.Date(2026, 11, 26, 20, 0, 10, 0, time.UTC)
	current := totp.Step(now)
	code := oathtool(t, secret, now)

	step, ok := totp.Verify(secret, code, now, 0)
	if !ok || step != current {
		t.Fatalf("first use: Verify = %d, %v; want %d, true", step, ok, current)
	}
	// The caller stored step; the same code is refused for the rest of its
	// step and while it is still inside the window.
	for _, later := range []time.Duration{0, 5 * time.Second, 19 * time.Second, 30 * time.Second, 59 * time.Second} {
		if _, ok := totp.Verify(secret, code, now.Add(later), step); ok {
			t.Errorf("replay %s later was accepted", later)
		}
	}
	// A code of an earlier step is refused once a later step was used.
	prev := oathtool(t, secret, now.Add(-totp.Period))
	if _, ok := totp.Verify(secret, prev, now, step); ok && prev != code {
		t.Error("the code of the previous step was accepted after the current step was used")
	}
	// The next code is accepted, and after it, the current one no longer is.
	next := oathtool(t, secret, now.Add(totp.Period))
	step2, ok := totp.Verify(secret, next, now, step)
	if !ok || step2 != current+1 {
		t.Fatalf("next step: Verify = %d, %v; want %d, true", step2, ok, current+1)
	}
	if _, ok := totp.Verify(secret, code, now, step2); ok {
		t.Error("the current code was accepted after the next step was used")
	}
}

func TestVerifyRefusesMalformed(t *testing.T) {
	now := time.Unix(59, 0) // code 287082
	for _, code := range []string{"", "28708", "2870820", "28708a", " 287082", "287082 ", "287 082", "+28708", "-28708",
		"２８７０８２", "287082\n", "0x1234"} {
		if _, ok := totp.Verify(rfcSecret, code, now, 0); ok {
			t.Errorf("Verify(%q) accepted", code)
		}
	}
	for _, secret := range []string{"", "not base32!", "1111"} {
		if _, ok := totp.Verify(secret, "287082", now, 0); ok {
			t.Errorf("Verify with secret %q accepted", secret)
		}
	}
	if _, ok := totp.Verify(rfcSecret, "287082", now, 0); !ok {
		t.Error("control: the RFC code was refused")
	}
}
