package mail_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"velocicompanion/adapters/mail"
	"velocicompanion/adapters/mail/mailtest"
)

func newSender(t *testing.T, cfg mail.Config) *mail.Sender {
	t.Helper()
	s, err := mail.NewSender(cfg)
	if err != nil {
		t.Fatalf("NewSender: %v", err)
	}
	return s
}

func only(t *testing.T, srv *mailtest.Server) mailtest.Message {
	t.Helper()
	msgs := srv.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("mailpit holds %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

func none(t *testing.T, srv *mailtest.Server) {
	t.Helper()
	if msgs := srv.Messages(t); len(msgs) != 0 {
		t.Fatalf("mailpit holds %d messages, want none", len(msgs))
	}
}

// TestSendStartTLS sends over STARTTLS with a login to a mailpit that requires
// both, and reads the message back through mailpit's API.
func TestSendStartTLS(t *testing.T) {
	srv := mailtest.Start(t)
	s := newSender(t, srv.Config())
	before := time.Now().Add(-time.Second)
	err := s.Send(t.Context(), mail.Message{
		To:      []string{"Åsa Ödman <asa@acme.example>", "bob@acme.example"},
		Subject: "Grüße – your weekly report",
		Text:    "Hello Åsa,\n\nthe report is ready.\n.\n.hidden line\n",
		HTML:    "<p>Hello Åsa,</p><p>the report is <b>ready</b>.</p>",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := only(t, srv)
	if got, want := m.Recipients(), []string{"asa@acme.example", "bob@acme.example"}; !slices.Equal(got, want) {
		t.Errorf("To = %v, want %v", got, want)
	}
	if m.To[0].Name != "Åsa Ödman" {
		t.Errorf("To name = %q", m.To[0].Name)
	}
	if m.From.Address != "no-reply@velocicompanion.test" || m.From.Name != "VelociCompanion" {
		t.Errorf("From = %+v", m.From)
	}
	if m.Subject != "Grüße – your weekly report" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if m.Username != srv.Username {
		t.Errorf("sent as %q, want the login %q", m.Username, srv.Username)
	}
	if text := strings.ReplaceAll(m.Text, "\r\n", "\n"); text != "Hello Åsa,\n\nthe report is ready.\n.\n.hidden line\n" {
		t.Errorf("Text = %q; dot-stuffing lost a line?", m.Text)
	}
	if !strings.Contains(m.HTML, "<b>ready</b>") {
		t.Errorf("HTML = %q", m.HTML)
	}
	if m.Date.Before(before) || m.Date.After(time.Now().Add(time.Second)) {
		t.Errorf("Date = %s, want about now", m.Date)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}@velocicompanion\.test$`).MatchString(m.MessageID) {
		t.Errorf("Message-ID = %q", m.MessageID)
	}
	for name, want := range map[string]string{"Mime-Version": "1.0", "Auto-Submitted": "auto-generated"} {
		if got := m.Headers[name]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if ct := m.Headers["Content-Type"]; len(ct) != 1 || !strings.HasPrefix(ct[0], "multipart/alternative;") {
		t.Errorf("Content-Type = %q", ct)
	}
	if strings.Contains(m.Raw, "Grüße") || strings.Contains(m.Raw, "Åsa") {
		t.Error("the raw message holds 8-bit text; headers and bodies must be encoded")
	}
}

func TestSendImplicitTLS(t *testing.T) {
	srv := mailtest.StartWith(t, mailtest.Options{TLS: mail.TLSImplicit})
	s := newSender(t, srv.Config())
	if err := s.Send(t.Context(), mail.Message{To: []string{"carol@acme.example"}, Subject: "hi", Text: "over TLS"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := only(t, srv)
	if m.Username != srv.Username || strings.TrimSpace(m.Text) != "over TLS" || m.HTML != "" {
		t.Errorf("got %+v", m)
	}
	if ct := m.Headers["Content-Type"]; len(ct) != 1 || ct[0] != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type of a text-only message = %q", ct)
	}
}

// TestServerRequiresSTARTTLS shows that the test server refuses plain SMTP,
// so that a message it received proves that STARTTLS was used.
func TestServerRequiresSTARTTLS(t *testing.T) {
	srv := mailtest.Start(t)
	cfg := srv.Config()
	cfg.TLSMode, cfg.Username, cfg.Password = mail.TLSNone, "", ""
	err := newSender(t, cfg).Send(t.Context(), mail.Message{To: []string{"dave@acme.example"}, Subject: "hi", Text: "plain"})
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send in plain text to a STARTTLS-only server = %v, want a refusal naming STARTTLS", err)
	}
	none(t, srv)
}

// TestRefusesServerWithoutSTARTTLS: a server (or a man in the middle) that
// does not offer STARTTLS gets neither the login nor the message.
func TestRefusesServerWithoutSTARTTLS(t *testing.T) {
	plain := mailtest.StartWith(t, mailtest.Options{TLS: mail.TLSNone})
	cfg := plain.Config()
	cfg.TLSMode = mail.TLSStartTLS
	cfg.Username, cfg.Password = "user", "secret"
	err := newSender(t, cfg).Send(t.Context(), mail.Message{To: []string{"erin@acme.example"}, Subject: "hi", Text: "x"})
	if !errors.Is(err, mail.ErrNoTLS) {
		t.Fatalf("Send = %v, want ErrNoTLS", err)
	}
	none(t, plain)

	// The same server in mode none, without credentials, is a loopback test
	// setup and works.
	cfg = plain.Config()
	if err := newSender(t, cfg).Send(t.Context(), mail.Message{To: []string{"erin@acme.example"}, Subject: "hi", Text: "x"}); err != nil {
		t.Fatalf("Send in mode none: %v", err)
	}
	if m := only(t, plain); m.Username != "" {
		t.Errorf("plain message sent with login %q", m.Username)
	}
}

func TestCertificateIsVerified(t *testing.T) {
	srv := mailtest.Start(t)
	msg := mail.Message{To: []string{"frank@acme.example"}, Subject: "hi", Text: "x"}

	cfg := srv.Config()
	cfg.CAFile = ""
	err := newSender(t, cfg).Send(t.Context(), msg)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Send to a self-signed server without its CA = %v, want x509.UnknownAuthorityError", err)
	}

	cfg.Host = "localhost" // in the certificate too
	cfg.CAFile = srv.CAFile
	if err := newSender(t, cfg).Send(t.Context(), msg); err != nil {
		t.Fatalf("Send via localhost: %v", err)
	}

	cfg = srv.Config()
	cfg.CAFile, cfg.InsecureSkipVerify = "", true
	if err := newSender(t, cfg).Send(t.Context(), msg); err != nil {
		t.Fatalf("Send with InsecureSkipVerify: %v", err)
	}
	if n := len(srv.Messages(t)); n != 2 {
		t.Errorf("mailpit holds %d messages, want 2", n)
	}
}

func TestWrongLogin(t *testing.T) {
	srv := mailtest.Start(t)
	msg := mail.Message{To: []string{"grace@acme.example"}, Subject: "hi", Text: "x"}
	for name, change := range map[string]func(*mail.Config){
		"wrong_password": func(c *mail.Config) { c.Password += "x" },
		"no_login":       func(c *mail.Config) { c.Username, c.Password = "", "" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := srv.Config()
			change(&cfg)
			err := newSender(t, cfg).Send(t.Context(), msg)
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if srv.Password != "" && strings.Contains(err.Error(), srv.Password) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
	none(t, srv)
}

func TestNewSenderRefuses(t *testing.T) {
	good := mail.Config{Host: "smtp.example.com", Username: "u", Password: "p", From: "no-reply@example.com"}
	if _, err := mail.NewSender(good); err != nil {
		t.Fatalf("NewSender(good) = %v", err)
	}
	for name, change := range map[string]func(*mail.Config){
		"no_host":                   func(c *mail.Config) { c.Host = "" },
		"host_with_port":            func(c *mail.Config) { c.Host = "smtp.example.com:25" },
		"host_url":                  func(c *mail.Config) { c.Host = "smtp://smtp.example.com" },
		"port":                      func(c *mail.Config) { c.Port = 70000 },
		"mode":                      func(c *mail.Config) { c.TLSMode = "ssl" },
		"none_remote":               func(c *mail.Config) { c.TLSMode, c.Username, c.Password = mail.TLSNone, "", "" },
		"none_loopback_credentials": func(c *mail.Config) { c.TLSMode, c.Host = mail.TLSNone, "127.0.0.1" },
		"none_localhost_password":   func(c *mail.Config) { c.TLSMode, c.Host, c.Username = mail.TLSNone, "localhost", "" },
		"skip_verify_remote":        func(c *mail.Config) { c.InsecureSkipVerify = true },
		"no_from":                   func(c *mail.Config) { c.From = "" },
		"from_list":                 func(c *mail.Config) { c.From = "a@example.com, b@example.com" },
		"from_crlf":                 func(c *mail.Config) { c.From = "a@example.com\r\nBcc: x@example.com" },
		"from_quoted_local":         func(c *mail.Config) { c.From = `"a b"@example.com` },
		"from_unicode":              func(c *mail.Config) { c.From = "jösé@example.com" },
		"password_crlf":             func(c *mail.Config) { c.Password = "p\r\nQUIT" },
		"ca_file_missing":           func(c *mail.Config) { c.CAFile = "/nonexistent/ca.pem" },
		"local_name_space":          func(c *mail.Config) { c.LocalName = "a b" },
		"negative_timeout":          func(c *mail.Config) { c.Timeout = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			change(&cfg)
			_, err := mail.NewSender(cfg)
			if !errors.Is(err, mail.ErrInvalidConfig) {
				t.Fatalf("NewSender = %v, want ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), "p\r\nQUIT") {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

// TestHeaderInjection tries to add headers or recipients through every field.
// None reaches the server: Send refuses before connecting.
func TestHeaderInjection(t *testing.T) {
	srv := mailtest.Start(t)
	s := newSender(t, srv.Config())
	ok := mail.Message{To: []string{"henry@acme.example"}, Subject: "hi", Text: "x"}
	for name, change := range map[string]func(*mail.Message){
		"subject_crlf":        func(m *mail.Message) { m.Subject = "hi\r\nBcc: evil@attacker.example" },
		"subject_lf":          func(m *mail.Message) { m.Subject = "hi\nBcc: evil@attacker.example" },
		"subject_cr":          func(m *mail.Message) { m.Subject = "hi\rBcc: evil@attacker.example" },
		"subject_nul":         func(m *mail.Message) { m.Subject = "hi\x00" },
		"subject_nel":         func(m *mail.Message) { m.Subject = "hi\u0085Bcc: evil@attacker.example" },
		"to_crlf":             func(m *mail.Message) { m.To = []string{"henry@acme.example\r\nBcc: evil@attacker.example"} },
		"to_name_crlf":        func(m *mail.Message) { m.To = []string{"Henry\r\nBcc: evil@attacker.example <henry@acme.example>"} },
		"to_list_in_one":      func(m *mail.Message) { m.To = []string{"henry@acme.example, evil@attacker.example"} },
		"to_smtp_injection":   func(m *mail.Message) { m.To = []string{"<evil@attacker.example> NOTIFY=NEVER"} },
		"to_quoted_local":     func(m *mail.Message) { m.To = []string{`"evil>\r\nRCPT TO:<x"@attacker.example`} },
		"to_empty":            func(m *mail.Message) { m.To = nil },
		"to_too_many":         func(m *mail.Message) { m.To = slices.Repeat([]string{"henry@acme.example"}, mail.MaxRecipients+1) },
		"subject_empty":       func(m *mail.Message) { m.Subject = "" },
		"subject_too_long":    func(m *mail.Message) { m.Subject = strings.Repeat("x", mail.MaxSubjectLen+1) },
		"text_empty":          func(m *mail.Message) { m.Text = " \n" },
		"text_too_long":       func(m *mail.Message) { m.Text = strings.Repeat("x", mail.MaxBodyLen+1) },
		"to_not_an_address":   func(m *mail.Message) { m.To = []string{"henry"} },
		"to_two_at_signs":     func(m *mail.Message) { m.To = []string{"henry@x@acme.example"} },
		"to_unicode_mailbox":  func(m *mail.Message) { m.To = []string{"hénry@acme.example"} },
		"to_angle_unbalanced": func(m *mail.Message) { m.To = []string{"<henry@acme.example"} },
	} {
		t.Run(name, func(t *testing.T) {
			m := ok
			change(&m)
			if err := s.Send(t.Context(), m); !errors.Is(err, mail.ErrInvalidMessage) {
				t.Fatalf("Send = %v, want ErrInvalidMessage", err)
			}
		})
	}
	none(t, srv)

	// Hostile but printable display names and subjects are encoded, not
	// interpreted: exactly one recipient and no extra header arrive.
	m := mail.Message{
		To:      []string{`"Henry\" <evil@attacker.example>, x" <henry@acme.example>`},
		Subject: "Bcc: evil@attacker.example =?utf-8?q?=0D=0ABcc:_x?=",
		Text:    "Bcc: evil@attacker.example\r\n\r\nbody",
	}
	if err := s.Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := only(t, srv)
	if r := got.Recipients(); !slices.Equal(r, []string{"henry@acme.example"}) {
		t.Errorf("recipients = %v", r)
	}
	if _, ok := got.Headers["Bcc"]; ok {
		t.Error("a Bcc header arrived")
	}
	if got.Subject != m.Subject {
		t.Errorf("Subject = %q, want %q", got.Subject, m.Subject)
	}
}

func TestSendHonoursContext(t *testing.T) {
	// A server that accepts connections and never greets.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	msg := mail.Message{To: []string{"ivan@acme.example"}, Subject: "hi", Text: "x"}

	s := newSender(t, mail.Config{Host: "127.0.0.1", Port: port, TLSMode: mail.TLSNone, From: "a@example.com", Timeout: 200 * time.Millisecond})
	start := time.Now()
	if err := s.Send(t.Context(), msg); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send to a silent server = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %s with a 200ms timeout", d)
	}

	s = newSender(t, mail.Config{Host: "127.0.0.1", Port: port, TLSMode: mail.TLSNone, From: "a@example.com", Timeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := s.Send(ctx, msg); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v, want Canceled", err)
	}
}
