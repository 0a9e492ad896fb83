package mail

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode/utf8"
)

// The pages that the links of the identity mails open, under the public base
// URL. The token travels in the fragment, which browsers never send to a
// server or in a Referer header; the page posts it in a request body to
// /api/auth/password-reset/confirm or the verification endpoint.
//
// WARNING: these paths are in mails already sent; the web client must keep
// serving them.
const (
	PasswordResetPath     = "/reset-password"
	EmailVerificationPath = "/verify-email"
)

// DefaultProduct is the product name the mails use when none is configured.
const DefaultProduct = "VelociCompanion"

// maxNameLen bounds a display name in a mail, in runes.
const maxNameLen = 100

// Recipient is who an identity mail goes to.
type Recipient struct {
	// Address is the email address.
	Address string
	// Name is an optional display name, as the user gave it; it is escaped
	// in every part of the mail.
	Name string
}

// Templates renders the identity mails with links under one public base URL.
// It is safe for concurrent use.
type Templates struct {
	base    *url.URL
	product string
}

// NewTemplates returns Templates for links under publicBaseURL, the
// configured public URL of the web client (never one taken from a request),
// and the product name the mails speak of; empty means DefaultProduct. The
// URL must be absolute https without query, fragment or user info; http is
// allowed only for a loopback host, for development and tests.
func NewTemplates(publicBaseURL, product string) (*Templates, error) {
	u, err := url.Parse(publicBaseURL)
	if err != nil {
		return nil, fmt.Errorf("public base url: %w", err)
	}
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return nil, errors.New("public base url must be https (http only for a loopback host)")
	case u.Host == "" || u.Opaque != "":
		return nil, errors.New("public base url has no host")
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(publicBaseURL, "#"):
		return nil, errors.New("public base url must not have user info, a query or a fragment")
	}
	if product == "" {
		product = DefaultProduct
	}
	if strings.ContainsFunc(product, isControl) || utf8.RuneCountInString(product) > maxNameLen {
		return nil, errors.New("product name contains a control character or is too long")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return &Templates{base: u, product: product}, nil
}

// PasswordReset returns the mail that lets to choose a new password through
// the link {base}/reset-password#token=<token>, valid for validFor.
func (t *Templates) PasswordReset(to Recipient, token string, validFor time.Duration) (Message, error) {
	return t.render(passwordReset, to, PasswordResetPath, token, validFor)
}

// EmailVerification returns the mail that confirms that to owns the address,
// through the link {base}/verify-email#token=<token>, valid for validFor.
func (t *Templates) EmailVerification(to Recipient, token string, validFor time.Duration) (Message, error) {
	return t.render(emailVerification, to, EmailVerificationPath, token, validFor)
}

// Link returns the link to path under the base URL with token in the
// fragment. Tokens are ours and URL-safe: letters, digits and -._~ only.
func (t *Templates) Link(path, token string) (string, error) {
	if token == "" || len(token) > 512 || strings.ContainsFunc(token, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~", r))
	}) {
		return "", errors.New("token is empty, too long or not URL-safe")
	}
	u := *t.base
	u.Path += path
	return u.String() + "#token=" + token, nil
}

// mailKind is one identity mail: its subject and its two bodies.
type mailKind struct {
	subject string // a fmt format with the product name
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// mailData is what the templates see.
type mailData struct {
	Product  string
	Name     string
	Address  string
	Link     string
	ValidFor string
}

func (t *Templates) render(k mailKind, to Recipient, path, token string, validFor time.Duration) (Message, error) {
	if validFor <= 0 {
		return Message{}, errors.New("link lifetime must be positive")
	}
	name := cleanName(to.Name)
	addr, err := parseAddress(to.Address)
	if err != nil || addr.Name != "" {
		return Message{}, fmt.Errorf("%w: recipient is not a bare address", ErrInvalidMessage)
	}
	link, err := t.Link(path, token)
	if err != nil {
		return Message{}, err
	}
	d := mailData{Product: t.product, Name: name, Address: addr.Address, Link: link, ValidFor: humanDuration(validFor)}
	var text, html bytes.Buffer
	if err := k.text.Execute(&text, d); err != nil {
		return Message{}, fmt.Errorf("render %s text: %w", k.text.Name(), err)
	}
	if err := k.html.Execute(&html, d); err != nil {
		return Message{}, fmt.Errorf("render %s html: %w", k.html.Name(), err)
	}
	return Message{
		To:      []string{(&mail.Address{Name: name, Address: addr.Address}).String()},
		Subject: fmt.Sprintf(k.subject, t.product),
		Text:    text.String(),
		HTML:    html.String(),
	}, nil
}

// cleanName makes a user's display name fit for a greeting and a header:
// control characters become spaces, runs of space collapse, and it is cut to
// maxNameLen runes.
func cleanName(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return isControl(r) || r == ' ' || r == '\u2028' || r == '\u2029' }), " ")
	if utf8.RuneCountInString(s) > maxNameLen {
		s = string([]rune(s)[:maxNameLen])
	}
	return strings.TrimSpace(s)
}

// humanDuration writes d as people read it: "1 hour", "30 minutes".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	}
	return d.String()
}

var (
	passwordReset = mailKind{
		subject: "Reset your %s password",
		text: texttemplate.Must(texttemplate.New("password reset").Parse(`Hello{{if .Name}} {{.Name}}{{end}},

Someone asked to reset the password of the {{.Product}} account for {{.Address}}.
To choose a new password, open this link within {{.ValidFor}}:

{{.Link}}

The link works once. If you did not ask for this, ignore this message: your
password stays as it is.
`)),
		html: htmltemplate.Must(htmltemplate.New("password reset").Parse(htmlHead + `
<p>Hello{{if .Name}} {{.Name}}{{end}},</p>
<p>Someone asked to reset the password of the {{.Product}} account for {{.Address}}.
To choose a new password, open this link within {{.ValidFor}}:</p>
<p><a href="{{.Link}}">Choose a new password</a></p>
<p style="font-size:small">Or copy this address into your browser: {{.Link}}</p>
<p>The link works once. If you did not ask for this, ignore this message: your password stays as it is.</p>
` + htmlFoot)),
	}
	emailVerification = mailKind{
		subject: "Verify your email address for %s",
		text: texttemplate.Must(texttemplate.New("email verification").Parse(`Hello{{if .Name}} {{.Name}}{{end}},

Please confirm that {{.Address}} is your email address for {{.Product}} by
opening this link within {{.ValidFor}}:

{{.Link}}

The link works once. If you do not know why you got this message, ignore it.
`)),
		html: htmltemplate.Must(htmltemplate.New("email verification").Parse(htmlHead + `
<p>Hello{{if .Name}} {{.Name}}{{end}},</p>
<p>Please confirm that {{.Address}} is your email address for {{.Product}} by opening this link within {{.ValidFor}}:</p>
<p><a href="{{.Link}}">Verify my email address</a></p>
<p style="font-size:small">Or copy this address into your browser: {{.Link}}</p>
<p>The link works once. If you do not know why you got this message, ignore it.</p>
` + htmlFoot)),
	}
)

const (
	htmlHead = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>{{.Product}}</title></head>
<body style="font-family:sans-serif;line-height:1.4">`
	htmlFoot = `</body></html>
`
)
