// Package mail sends the transactional email of VelociCompanion (password
// reset, email verification) over SMTP, encrypted: STARTTLS by default,
// implicit TLS on request, and plain text only to a loopback test server
// without credentials. It composes MIME messages itself, so that no header
// can be injected, and renders the identity mails from templates that escape
// everything they are given.
//
// Package mail imports no package of ours. It must not import commands,
// projections, eventstore or other adapters. It never logs, and no error it
// returns contains the password or a message body.
package mail

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TLSMode is how a Sender protects its connection.
type TLSMode string

// The TLS modes.
const (
	// TLSStartTLS connects in plain text and upgrades with STARTTLS before
	// anything else; a server that does not offer it is refused, so that a
	// man in the middle cannot strip it. The default; port 587.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS); port 465.
	TLSImplicit TLSMode = "tls"
	// TLSNone sends in plain text. Only for a test server on a loopback
	// address, and never with credentials; port 25.
	TLSNone TLSMode = "none"
)

// Defaults and limits.
const (
	DefaultTimeout = 30 * time.Second
	// MaxRecipients bounds the recipients of one message.
	MaxRecipients = 50
	// MaxSubjectLen bounds a subject, in bytes before encoding.
	MaxSubjectLen = 250
	// MaxBodyLen bounds each of the text and HTML bodies, in bytes.
	MaxBodyLen = 1 << 20
)

// Errors. Every error of NewSender and Send about the configuration or the
// message wraps one of them; a failure to deliver wraps neither.
var (
	// ErrInvalidConfig is wrapped by NewSender's errors.
	ErrInvalidConfig = errors.New("invalid smtp configuration")
	// ErrInvalidMessage is wrapped by Send when the message cannot be sent
	// as given: a bad address, a control character in the subject, no text.
	ErrInvalidMessage = errors.New("invalid email message")
	// ErrNoTLS is wrapped by Send when the server does not offer STARTTLS in
	// TLSStartTLS mode.
	ErrNoTLS = errors.New("smtp server does not offer STARTTLS")
)

// Config configures a Sender.
type Config struct {
	// Host is the SMTP server's name (or IP address). TLS verifies its
	// certificate against it.
	Host string
	// Port is the SMTP server's port; zero means the mode's usual port.
	Port int
	// Username and Password authenticate with AUTH PLAIN (or LOGIN if the
	// server offers only that), always inside TLS. Empty Username sends
	// without authenticating.
	Username string
	Password string
	// From is the sender, as "Name <address>" or a bare address. Its domain
	// also names the Message-IDs.
	From string
	// TLSMode is TLSStartTLS (the default when empty), TLSImplicit or TLSNone.
	TLSMode TLSMode
	// CAFile is a PEM file of the certificate authorities that verify the
	// server, instead of the system's; for a relay with a private CA, and
	// for tests.
	CAFile string
	// InsecureSkipVerify turns certificate verification off. For tests
	// against a loopback server only; NewSender refuses it for other hosts.
	InsecureSkipVerify bool
	// LocalName is the name the client gives in EHLO; empty means
	// "localhost", which reveals nothing about the machine.
	LocalName string
	// Timeout bounds one Send, connection to QUIT; zero means DefaultTimeout.
	Timeout time.Duration
}

// Message is one email. Its fields are checked by Send.
type Message struct {
	// To are the recipients, each "Name <address>" or a bare address. All
	// appear in the To header.
	To []string
	// Subject is plain text; non-ASCII is fine, control characters are not.
	Subject string
	// Text is the plain-text body; it is required.
	Text string
	// HTML is an optional HTML body, sent with Text as multipart/alternative.
	// It is sent as given: build it with html/template (see Templates).
	HTML string
}

// Sender sends messages over SMTP, one connection per message. It is safe
// for concurrent use.
type Sender struct {
	cfg  Config
	addr string
	from *mail.Address
	tls  *tls.Config
	now  func() time.Time
}

// NewSender checks cfg and returns a Sender for it. It does not connect.
func NewSender(cfg Config) (*Sender, error) {
	if cfg.TLSMode == "" {
		cfg.TLSMode = TLSStartTLS
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.LocalName == "" {
		cfg.LocalName = "localhost"
	}
	if cfg.Port == 0 {
		cfg.Port = map[TLSMode]int{TLSStartTLS: 587, TLSImplicit: 465, TLSNone: 25}[cfg.TLSMode]
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Host == "" || (strings.ContainsAny(cfg.Host, "/: \r\n") && net.ParseIP(cfg.Host) == nil):
		return nil, invalid("host %.64q is not a host name or IP address", cfg.Host)
	case cfg.Port < 1 || cfg.Port > 65535:
		return nil, invalid("port %d out of range", cfg.Port)
	case cfg.TLSMode != TLSStartTLS && cfg.TLSMode != TLSImplicit && cfg.TLSMode != TLSNone:
		return nil, invalid("tls mode %.20q is not starttls, tls or none", cfg.TLSMode)
	case cfg.TLSMode == TLSNone && !isLoopback(cfg.Host):
		return nil, invalid("tls mode none is allowed only for a loopback host")
	case cfg.TLSMode == TLSNone && (cfg.Username != "" || cfg.Password != ""):
		return nil, invalid("credentials are never sent without TLS")
	case cfg.Username == "" && cfg.Password != "":
		return nil, invalid("password without a username")
	case cfg.InsecureSkipVerify && !isLoopback(cfg.Host):
		return nil, invalid("certificate verification may be skipped only for a loopback host")
	case cfg.Timeout < 0:
		return nil, invalid("negative timeout")
	case strings.ContainsFunc(cfg.LocalName, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return nil, invalid("local name %.64q contains spaces or control characters", cfg.LocalName)
	case strings.ContainsAny(cfg.Username+cfg.Password, "\x00\r\n"):
		return nil, invalid("credentials contain NUL, CR or LF")
	}
	from, err := parseAddress(cfg.From)
	if err != nil {
		return nil, invalid("from: %v", err)
	}
	tc := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, invalid("ca file: %v", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, invalid("ca file %s holds no PEM certificate", cfg.CAFile)
		}
	}
	return &Sender{
		cfg:  cfg,
		addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		from: from,
		tls:  tc,
		now:  time.Now,
	}, nil
}

// Send delivers m: it connects, secures the connection as configured,
// authenticates, and hands the message over. It returns once the server has
// accepted it, or with an error; ctx and the configured Timeout bound it.
func (s *Sender) Send(ctx context.Context, m Message) (err error) {
	to, raw, err := s.compose(m, s.now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
	}()

	conn, err := s.dial(ctx)
	if err != nil {
		return fmt.Errorf("smtp connect %s: %w", s.addr, err)
	}
	defer conn.Close()
	// Closing the connection when ctx ends unblocks whatever waits on it;
	// ctx.Err() is set by then, so the error names the cause.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return fmt.Errorf("smtp greeting from %s: %w", s.addr, err)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.LocalName); err != nil {
		return fmt.Errorf("smtp ehlo: %w", err)
	}
	if s.cfg.TLSMode == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("smtp %s: %w", s.addr, ErrNoTLS)
		}
		if err := c.StartTLS(s.tls); err != nil {
			return fmt.Errorf("smtp starttls: %w", err)
		}
	}
	if s.cfg.Username != "" {
		if err := s.auth(c); err != nil {
			return err
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("smtp mail from: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return fmt.Errorf("smtp rcpt to: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp data: %w", err)
	}
	// The server accepted the message at the end of DATA. A failed QUIT does
	// not undo that, and reporting it would make the caller send it twice.
	_ = c.Quit()
	return nil
}

func (s *Sender) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{}
	if s.cfg.TLSMode == TLSImplicit {
		td := &tls.Dialer{NetDialer: d, Config: s.tls}
		return td.DialContext(ctx, "tcp", s.addr)
	}
	return d.DialContext(ctx, "tcp", s.addr)
}

// auth authenticates with PLAIN, or LOGIN when the server offers only that.
func (s *Sender) auth(c *smtp.Client) error {
	ok, mechs := c.Extension("AUTH")
	if !ok {
		return errors.New("smtp auth: the server does not offer AUTH")
	}
	offered := strings.Fields(strings.ToUpper(mechs))
	var a smtp.Auth
	switch {
	case slices.Contains(offered, "PLAIN"):
		a = &plainAuth{user: s.cfg.Username, pass: s.cfg.Password}
	case slices.Contains(offered, "LOGIN"):
		a = &loginAuth{user: s.cfg.Username, pass: s.cfg.Password}
	default:
		return fmt.Errorf("smtp auth: the server offers neither PLAIN nor LOGIN but %.64q", mechs)
	}
	if err := c.Auth(a); err != nil {
		return fmt.Errorf("smtp auth: %w", err)
	}
	return nil
}

// plainAuth is AUTH PLAIN (RFC 4616) that refuses to run outside TLS,
// loopback or not: a stricter smtp.PlainAuth.
type plainAuth struct{ user, pass string }

func (a *plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing to send credentials without TLS")
	}
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a *plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge")
	}
	return nil, nil
}

// loginAuth is the obsolete but common AUTH LOGIN, also only inside TLS.
type loginAuth struct {
	user, pass string
	step       int
}

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing to send credentials without TLS")
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(_ []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.user), nil
	case 2:
		return []byte(a.pass), nil
	}
	return nil, errors.New("unexpected server challenge")
}

// parseAddress parses one address as a Message or Config gives it. The
// address itself must be plain ASCII in dot-atom form, which SMTP carries
// without quoting; the display name may be anything without control
// characters.
func parseAddress(s string) (*mail.Address, error) {
	if strings.ContainsFunc(s, isControl) {
		return nil, errors.New("address contains a control character")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("address %.100q: %w", s, err)
	}
	if strings.ContainsFunc(a.Address, func(r rune) bool { return r <= ' ' || r >= 0x7f }) ||
		(&mail.Address{Address: a.Address}).String() != "<"+a.Address+">" ||
		strings.Count(a.Address, "@") != 1 {
		return nil, fmt.Errorf("address %.100q is not a plain ASCII mailbox", a.Address)
	}
	if strings.ContainsFunc(a.Name, isControl) {
		return nil, fmt.Errorf("display name of %.100q contains a control character", a.Address)
	}
	return a, nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// messageID returns a new globally unique Message-ID in the sender's domain.
func (s *Sender) messageID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "<" + hex.EncodeToString(b) + "@" + s.from.Address[strings.LastIndexByte(s.from.Address, '@')+1:] + ">"
}
