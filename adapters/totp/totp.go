// Package totp is the second factor of sign-in: time-based one-time passwords
// (RFC 6238) as every authenticator app reads them, SHA-1, 6 digits, 30-second
// steps, enrolled with an otpauth:// URI and its QR code; and single-use
// recovery codes for when the phone is lost.
//
// Package totp keeps no state. The caller stores the secret (sealed with
// adapters/secrets), the last accepted time step and the recovery code
// hashes, and updates them atomically.
//
// Package totp imports no package of ours. It must not import commands,
// projections, eventstore or other adapters. It never logs, and no error it
// returns contains a secret or a code.
package totp

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"time"
	"unicode"

	"github.com/boombuler/barcode/qr"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// The parameters of every secret. Authenticator apps that ignore the URI's
// parameters assume exactly these.
const (
	// Digits is the length of a code.
	Digits = 6
	// Period is the length of a time step.
	Period = 30 * time.Second
	// SecretLen is the length of a secret in bytes: 160 bits, as RFC 4226
	// recommends for HMAC-SHA-1. Its base32 form has 32 characters.
	SecretLen = 20
	// Skew is how many steps before and after the current one Verify
	// accepts, for clocks that drift and users who type slowly.
	Skew = 1
	// QRSize is the width and height of the QR code image in pixels.
	QRSize = 256
	// maxLabelLen bounds issuer and account names.
	maxLabelLen = 128
)

// Secret is a new TOTP secret with what enrolment shows the user.
type Secret struct {
	// Base32 is the secret in unpadded base32, as typed into an app by hand
	// and as the caller stores it (sealed).
	Base32 string
	// URI is the otpauth:// key URI with issuer, account and parameters.
	URI string
	// QRPNG is URI as a QRSize×QRSize PNG QR code.
	QRPNG []byte
}

// Generate returns a random SecretLen-byte secret for account at issuer. The
// app shows them as "issuer (account)"; neither may be empty, contain a colon
// (the separator of the URI's label) or a control character, or be longer
// than 128 bytes.
func Generate(issuer, account string) (Secret, error) {
	if err := checkLabel("issuer", issuer); err != nil {
		return Secret{}, err
	}
	if err := checkLabel("account", account); err != nil {
		return Secret{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(Period / time.Second),
		SecretSize:  SecretLen,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		return Secret{}, fmt.Errorf("generate totp secret: %w", err)
	}
	png, err := qrPNG(key.URL())
	if err != nil {
		return Secret{}, fmt.Errorf("render totp qr code: %w", err)
	}
	return Secret{Base32: key.Secret(), URI: key.URL(), QRPNG: png}, nil
}

func checkLabel(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("totp %s is empty", what)
	case len(s) > maxLabelLen:
		return fmt.Errorf("totp %s is longer than %d bytes", what, maxLabelLen)
	case strings.Contains(s, ":"):
		return fmt.Errorf("totp %s contains a colon", what)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("totp %s contains a control character", what)
	}
	return nil
}

// qrPNG renders text as a QR code (error correction M) on a white QRSize
// square, with whole-pixel modules and at least the four-module quiet zone
// that scanners need, as a two-colour PNG.
func qrPNG(text string) ([]byte, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, err
	}
	n := code.Bounds().Dx() // modules per side, one pixel each
	scale := QRSize / (n + 8)
	if scale < 1 {
		return nil, errors.New("uri too long for the qr code size")
	}
	offset := (QRSize - n*scale) / 2
	img := image.NewPaletted(image.Rect(0, 0, QRSize, QRSize), color.Palette{color.White, color.Black})
	for y := range n {
		for x := range n {
			if r, _, _, _ := code.At(code.Bounds().Min.X+x, code.Bounds().Min.Y+y).RGBA(); r >= 0x8000 {
				continue // light module
			}
			for dy := range scale {
				row := (offset+y*scale+dy)*img.Stride + offset + x*scale
				for dx := range scale {
					img.Pix[row+dx] = 1
				}
			}
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Step returns the RFC 6238 time step of t: whole Periods since the Unix epoch.
func Step(t time.Time) int64 {
	s := t.Unix()
	p := int64(Period / time.Second)
	if s < 0 {
		return (s - p + 1) / p
	}
	return s / p
}

// Verify reports whether code is the code of secretBase32 for the time step
// of now, or of the step just before or after it (Skew), and returns the
// step it matched. Steps at or before lastUsedStep are refused, so that a code
// is accepted once: the caller stores the returned step as its new
// lastUsedStep, atomically and only if it is still greater than the stored one
// (UPDATE … SET last_step = $step WHERE … AND last_step < $step, then check
// that a row changed). A user who never used a code has lastUsedStep 0.
//
// Code must be exactly Digits ASCII digits; the caller may strip spaces first.
// All candidate codes are computed and compared in constant time. When two
// steps give the same code, the later one is returned, which refuses that
// code for the other step too. An undecodable secret matches nothing.
func Verify(secretBase32, code string, now time.Time, lastUsedStep int64) (step int64, ok bool) {
	if !isCode(code) {
		return 0, false
	}
	current := Step(now)
	for s := current - Skew; s <= current+Skew; s++ {
		if s < 0 {
			continue
		}
		want, err := hotp.GenerateCodeCustom(secretBase32, uint64(s), hotp.ValidateOpts{
			Digits:    otp.DigitsSix,
			Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return 0, false
		}
		// Every candidate is compared; only the outcome, which the caller
		// learns anyway, decides what is kept.
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && s > lastUsedStep {
			step, ok = s, true
		}
	}
	return step, ok
}

func isCode(s string) bool {
	if len(s) != Digits {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
