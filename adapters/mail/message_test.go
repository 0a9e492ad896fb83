package mail

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/smtp"
	"slices"
	"strings"
	"testing"
	"time"
)

func testSender(t *testing.T) *Sender {
	t.Helper()
	s, err := NewSender(Config{Host: "smtp.example.com", From: "VelociCompanion <no-reply@example.com>"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkWire checks what RFC 5321 and 5322 demand of the bytes: CRLF line
// ends only, 7-bit, lines of at most 78 characters, no blank folded lines.
func checkWire(t *testing.T, raw []byte) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) ||
		bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\r")) {
		t.Error("bare CR or LF in the message")
	}
	for i, c := range raw {
		if c >= 0x80 || c == 0 {
			t.Fatalf("byte 0x%02x at %d is not 7-bit text", c, i)
		}
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
	for _, line := range strings.Split(string(head), "\r\n") {
		if strings.TrimSpace(line) == "" {
			t.Errorf("blank line inside the header: %q", head)
		}
	}
}

func TestComposeMultipart(t *testing.T) {
	s := testSender(t)
	now := time.Date(2026, 11, 26, 20, 0, 0, 0, time.FixedZone("CET", 3600))
	text := "Hello,\n\n" + strings.Repeat("a long line of text ", 10) + "\nÅ ünïcödé 🛡\n.\n"
	html := "<p>Hello,</p>\n<p>" + strings.Repeat("a long line of html ", 10) + "</p><p>Å ünïcödé 🛡</p>"
	rcpts, raw, err := s.compose(Message{
		To:      []string{"Åsa Ödman <asa@acme.example>", "bob@acme.example", "Bob <BOB@acme.example>", "carol@acme.example"},
		Subject: "Subject",
		Text:    text,
		HTML:    html,
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, raw)
	if want := []string{"asa@acme.example", "bob@acme.example", "carol@acme.example"}; !slices.Equal(rcpts, want) {
		t.Errorf("envelope recipients = %v, want %v (each once)", rcpts, want)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date = %v, %v; want %v", d, err, now)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != 4 || to[0].Name != "Åsa Ödman" || to[3].Address != "carol@acme.example" {
		t.Errorf("To = %v, %v", to, err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q, %v", m.Header.Get("Content-Type"), err)
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	for i, want := range []struct{ typ, body string }{{"text/plain; charset=utf-8", text}, {"text/html; charset=utf-8", html}} {
		p, err := r.NextRawPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got := p.Header.Get("Content-Type"); got != want.typ {
			t.Errorf("part %d Content-Type = %q, want %q", i, got, want.typ)
		}
		if got := p.Header.Get("Content-Transfer-Encoding"); got != "quoted-printable" {
			t.Errorf("part %d encoding = %q", i, got)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ReplaceAll(string(body), "\r\n", "\n"); got != want.body {
			t.Errorf("part %d body = %q, want %q", i, got, want.body)
		}
	}
	if _, err := r.NextRawPart(); err != io.EOF {
		t.Errorf("a third part: %v", err)
	}
}

func TestSubjectEncoding(t *testing.T) {
	s := testSender(t)
	var dec mime.WordDecoder
	for _, subject := range []string{
		"Reset your VelociCompanion password",
		strings.Repeat("word ", 49) + "end",
		strings.Repeat("x", MaxSubjectLen),
		"Grüße – " + strings.Repeat("Überprüfung ", 14) + "Ende",
		strings.Repeat("🛡", MaxSubjectLen/4),
		"literal =?utf-8?q?=0D=0ABcc:_x?= is not decoded",
		"x=? and ?= _underscores_ stay",
		"two  spaces, then one",
	} {
		_, raw, err := s.compose(Message{To: []string{"a@acme.example"}, Subject: subject, Text: "x"}, time.Now())
		if err != nil {
			t.Fatalf("compose(%q): %v", subject, err)
		}
		checkWire(t, raw)
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		got, err := dec.DecodeHeader(m.Header.Get("Subject"))
		if err != nil || got != subject {
			t.Errorf("Subject %q came back as %q, %v", subject, got, err)
		}
	}
}

func TestComposeTextOnly(t *testing.T) {
	_, raw, err := testSender(t).compose(Message{To: []string{"a@acme.example"}, Subject: "s", Text: "only text"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	checkWire(t, raw)
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if ct := m.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if body, _ := io.ReadAll(quotedprintable.NewReader(m.Body)); string(body) != "only text" {
		t.Errorf("body = %q", body)
	}
	for _, h := range []string{"Message-Id", "Mime-Version", "Date", "From", "To", "Subject", "Auto-Submitted"} {
		if len(m.Header[h]) != 1 {
			t.Errorf("header %s appears %d times", h, len(m.Header[h]))
		}
	}
}

func TestMessageIDsUnique(t *testing.T) {
	s := testSender(t)
	seen := map[string]bool{}
	for range 1000 {
		id := s.messageID()
		if seen[id] || !strings.HasSuffix(id, "@example.com>") {
			t.Fatalf("Message-ID %s repeated or not in the sender's domain", id)
		}
		seen[id] = true
	}
}

func TestAuthNeedsTLS(t *testing.T) {
	plain := []smtp.Auth{&plainAuth{user: "u", pass: "p"}, &loginAuth{user: "u", pass: "p"}}
	for _, a := range plain {
		// Loopback or not: net/smtp's PlainAuth would allow localhost.
		for _, host := range []string{"localhost", "127.0.0.1", "smtp.example.com"} {
			if _, resp, err := a.Start(&smtp.ServerInfo{Name: host, TLS: false, Auth: []string{"PLAIN", "LOGIN"}}); err == nil || resp != nil {
				t.Errorf("%T.Start without TLS to %s = %q, %v", a, host, resp, err)
			}
		}
	}
	mech, resp, err := plain[0].Start(&smtp.ServerInfo{Name: "smtp.example.com", TLS: true})
	if err != nil || mech != "PLAIN" || string(resp) != "\x00u\x00p" {
		t.Errorf("PLAIN Start = %q, %q, %v", mech, resp, err)
	}
	if _, err := plain[0].Next([]byte("more?"), true); err == nil {
		t.Error("PLAIN answered a challenge")
	}
	login := plain[1]
	mech, resp, err = login.Start(&smtp.ServerInfo{Name: "smtp.example.com", TLS: true})
	if err != nil || mech != "LOGIN" || resp != nil {
		t.Fatalf("LOGIN Start = %q, %q, %v", mech, resp, err)
	}
	for i, want := range []string{"u", "p"} {
		if got, err := login.Next([]byte("challenge"), true); err != nil || string(got) != want {
			t.Errorf("LOGIN step %d = %q, %v; want %q", i+1, got, err, want)
		}
	}
	if _, err := login.Next([]byte("again"), true); err == nil {
		t.Error("LOGIN answered a third challenge")
	}
	if got, err := login.Next(nil, false); err != nil || got != nil {
		t.Errorf("LOGIN end = %q, %v", got, err)
	}
}
