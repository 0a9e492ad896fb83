package mail_test

import (
	"errors"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/mail"
	"velocicompanion/adapters/mail/mailtest"
)

func newTemplates(t *testing.T, base string) *mail.Templates {
	t.Helper()
	tpl, err := mail.NewTemplates(base, "")
	if err != nil {
		t.Fatalf("NewTemplates(%q): %v", base, err)
	}
	return tpl
}

func TestNewTemplates(t *testing.T) {
	for base, link := range map[string]string{
		"https://vc.example.com":        "https://vc.example.com/reset-password#token=tok",
		"https://vc.example.com/":       "https://vc.example.com/reset-password#token=tok",
		"https://vc.example.com/app/":   "https://vc.example.com/app/reset-password#token=tok",
		"https://vc.example.com:8443/a": "https://vc.example.com:8443/a/reset-password#token=tok",
		"http://127.0.0.1:8000":         "http://127.0.0.1:8000/reset-password#token=tok",
		"http://localhost:8000":         "http://localhost:8000/reset-password#token=tok",
		"http://[::1]:8000/":            "http://[::1]:8000/reset-password#token=tok",
		"https://vc.example.com/a%20b/": "https://vc.example.com/a%20b/reset-password#token=tok",
	} {
		got, err := newTemplates(t, base).Link(mail.PasswordResetPath, "tok")
		if err != nil || got != link {
			t.Errorf("Link under %q = %q, %v; want %q", base, got, err, link)
		}
	}
	for _, base := range []string{
		"", "vc.example.com", "/reset", "http://vc.example.com", "ftp://vc.example.com", "https://",
		"https://vc.example.com/?next=evil", "https://vc.example.com/?", "https://vc.example.com/#x", "https://vc.example.com#",
		"https://user:pass@vc.example.com", "javascript:alert(1)", "https:vc.example.com",
	} {
		if _, err := mail.NewTemplates(base, ""); err == nil {
			t.Errorf("NewTemplates(%q) succeeded", base)
		}
	}
	if _, err := mail.NewTemplates("https://vc.example.com", "Velo\nci"); err == nil {
		t.Error("NewTemplates with a control character in the product name succeeded")
	}
}

func TestLinkRefusesTokens(t *testing.T) {
	tpl := newTemplates(t, "https://vc.example.com")
	for _, token := range []string{"", "a b", "a#b", "a&b=c", "a/b", "<x>", "a\"b", "%41", strings.Repeat("a", 513), "é"} {
		if link, err := tpl.Link(mail.PasswordResetPath, token); err == nil {
			t.Errorf("Link(%q) = %q", token, link)
		}
	}
	if _, err := tpl.Link(mail.EmailVerificationPath, "AZaz09-._~"); err != nil {
		t.Errorf("Link with every URL-safe character: %v", err)
	}
}

// hostileName is a display name a user could set: markup, a header attempt,
// and control characters.
const hostileName = "Mallory <script>alert(1)</script> \"&'\r\nBcc: evil@attacker.example\x00"

func TestTemplatesEscape(t *testing.T) {
	tpl := newTemplates(t, "https://vc.example.com")
	to := mail.Recipient{Address: "mallory@acme.example", Name: hostileName}
	for name, render := range map[string]func() (mail.Message, error){
		"password_reset":     func() (mail.Message, error) { return tpl.PasswordReset(to, "tok", time.Hour) },
		"email_verification": func() (mail.Message, error) { return tpl.EmailVerification(to, "tok", 24*time.Hour) },
	} {
		t.Run(name, func(t *testing.T) {
			m, err := render()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Errorf("HTML does not escape the name:\n%s", m.HTML)
			}
			if strings.Contains(m.HTML, `"&'`) {
				t.Error("HTML holds unescaped quotes or ampersand from the name")
			}
			for _, part := range []string{m.Text, m.HTML, strings.Join(m.To, "")} {
				if strings.ContainsAny(part, "\x00\r") || strings.Contains(part, "\nBcc") {
					t.Errorf("control characters of the name survived in %q", part)
				}
			}
			if len(m.To) != 1 || !strings.HasSuffix(m.To[0], "<mallory@acme.example>") {
				t.Errorf("To = %q", m.To)
			}
		})
	}
}

func TestTemplatesRefuse(t *testing.T) {
	tpl := newTemplates(t, "https://vc.example.com")
	for name, f := range map[string]func() (mail.Message, error){
		"address_with_name": func() (mail.Message, error) {
			return tpl.PasswordReset(mail.Recipient{Address: "Bob <bob@acme.example>"}, "tok", time.Hour)
		},
		"address_crlf": func() (mail.Message, error) {
			return tpl.PasswordReset(mail.Recipient{Address: "bob@acme.example\r\nBcc: x@y.example"}, "tok", time.Hour)
		},
		"bad_token": func() (mail.Message, error) {
			return tpl.EmailVerification(mail.Recipient{Address: "bob@acme.example"}, "a b", time.Hour)
		},
		"no_lifetime": func() (mail.Message, error) {
			return tpl.EmailVerification(mail.Recipient{Address: "bob@acme.example"}, "tok", 0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			if m, err := f(); err == nil {
				t.Errorf("rendered %+v", m)
			}
		})
	}
	_, err := tpl.PasswordReset(mail.Recipient{Address: "bob"}, "tok", time.Hour)
	if !errors.Is(err, mail.ErrInvalidMessage) {
		t.Errorf("PasswordReset to a bad address = %v, want ErrInvalidMessage", err)
	}
}

var hrefRE = regexp.MustCompile(`href="([^"]*)"`)

// TestIdentityMails renders both mails, sends them through mailpit over
// STARTTLS, and follows the links a user would click.
func TestIdentityMails(t *testing.T) {
	srv := mailtest.Start(t)
	s := newSender(t, srv.Config())
	tpl := newTemplates(t, "https://vc.example.com/app")
	const token = "Zm9vYmFyYmF6cXV4-_token.~42"
	tests := []struct {
		name     string
		render   func(mail.Recipient, string, time.Duration) (mail.Message, error)
		validFor time.Duration
		subject  string
		link     string
		lifetime string
	}{
		{"password_reset", tpl.PasswordReset, time.Hour, "Reset your VelociCompanion password",
			"https://vc.example.com/app/reset-password#token=" + token, "within 1 hour"},
		{"email_verification", tpl.EmailVerification, 72 * time.Hour, "Verify your email address for VelociCompanion",
			"https://vc.example.com/app/verify-email#token=" + token, "within 3 days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Clear(t)
			msg, err := tt.render(mail.Recipient{Address: "judy@acme.example", Name: "Judy <b>Jones</b>"}, token, tt.validFor)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(t.Context(), msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			m := only(t, srv)
			if r := m.Recipients(); len(r) != 1 || r[0] != "judy@acme.example" || m.To[0].Name != "Judy <b>Jones</b>" {
				t.Errorf("To = %+v", m.To)
			}
			if m.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.subject)
			}
			if m.Username != srv.Username {
				t.Errorf("not sent with the SMTP login")
			}
			text := strings.ReplaceAll(m.Text, "\r\n", "\n")
			if !strings.Contains(text, "\n"+tt.link+"\n") {
				t.Errorf("text has no line with the link %s:\n%s", tt.link, text)
			}
			for _, want := range []string{"Hello Judy <b>Jones</b>,", "judy@acme.example", tt.lifetime, "VelociCompanion"} {
				if !strings.Contains(text, want) {
					t.Errorf("text lacks %q:\n%s", want, text)
				}
			}
			hrefs := hrefRE.FindAllStringSubmatch(m.HTML, -1)
			if len(hrefs) != 1 || html.UnescapeString(hrefs[0][1]) != tt.link {
				t.Errorf("HTML links = %q, want exactly %s", hrefs, tt.link)
			}
			if !strings.Contains(m.HTML, "Hello Judy &lt;b&gt;Jones&lt;/b&gt;,") || strings.Contains(m.HTML, "<b>") {
				t.Errorf("HTML does not escape the name:\n%s", m.HTML)
			}
			if strings.Count(m.Raw, "?token=") != 0 {
				t.Error("the token travels in a query string")
			}
		})
	}
}
