// Package mailtest runs a real SMTP server for tests: mailpit, with a
// self-signed certificate, STARTTLS required and a random SMTP login, and
// reads what it received through mailpit's HTTP API. Start it with Start; pass
// Server.Config to mail.NewSender, or Server.Env to a server binary.
//
// The mailpit binary is taken from PATH, or from $(go env GOBIN) or
// $(go env GOPATH)/bin; when it is in none of them, the first Start runs
// `go install github.com/axllent/mailpit@v1.33.1`. A server that cannot be
// started fails the test: it is never skipped.
//
// Package mailtest is for tests only. It imports adapters/mail and nothing
// else of ours.
package mailtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"velocicompanion/adapters/mail"
)

// MailpitModule is what the helper installs when no mailpit binary is found.
const MailpitModule = "github.com/axllent/mailpit@v1.33.1"

// From is the sender address of Server.Config.
const From = "VelociCompanion <no-reply@velocicompanion.test>"

// startTimeout bounds how long a started mailpit may take to answer.
const startTimeout = 30 * time.Second

// Options choose how the server secures SMTP.
type Options struct {
	// TLS is mail.TLSStartTLS (the default: STARTTLS and a login required),
	// mail.TLSImplicit (TLS from the first byte, login required) or
	// mail.TLSNone (plain text, no login: only to check that a sender
	// refuses such a server).
	TLS mail.TLSMode
}

// Server is a running mailpit. Its fields say how to reach it.
type Server struct {
	// SMTPHost and SMTPPort are where it accepts SMTP.
	SMTPHost string
	SMTPPort int
	// APIURL is the base URL of its HTTP API, without a trailing slash.
	APIURL string
	// Username and Password are the only SMTP login it accepts; empty with
	// mail.TLSNone.
	Username, Password string
	// CAFile is the PEM file of its self-signed certificate, the only CA that
	// verifies it; empty with mail.TLSNone.
	CAFile string
	// TLS is how it secures SMTP.
	TLS mail.TLSMode

	log *lockedBuffer
}

// Start starts a mailpit that requires STARTTLS and a login, and stops it when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts a mailpit secured as o says, and stops it when the test
// ends.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	if o.TLS == "" {
		o.TLS = mail.TLSStartTLS
	}
	if o.TLS != mail.TLSStartTLS && o.TLS != mail.TLSImplicit && o.TLS != mail.TLSNone {
		t.Fatalf("mailtest: unknown TLS mode %q", o.TLS)
	}
	bin, err := mailpitBinary()
	if err != nil {
		t.Fatalf("mailtest: no mailpit binary: %v", err)
	}
	dir := t.TempDir()
	s := &Server{SMTPHost: "127.0.0.1", TLS: o.TLS}
	args := []string{"--disable-version-check", "--smtp-disable-rdns", "--smtp-strict-rfc-headers",
		"--database", filepath.Join(dir, "mailpit.db")}
	if o.TLS != mail.TLSNone {
		certFile, keyFile := filepath.Join(dir, "smtp.crt"), filepath.Join(dir, "smtp.key")
		if err := writeSelfSigned(certFile, keyFile); err != nil {
			t.Fatalf("mailtest: certificate: %v", err)
		}
		s.CAFile = certFile
		s.Username = "vc-smtp-" + randomHex(4)
		s.Password = randomHex(16)
		authFile := filepath.Join(dir, "smtp-auth")
		if err := os.WriteFile(authFile, []byte(s.Username+":"+s.Password+"\n"), 0o600); err != nil {
			t.Fatalf("mailtest: %v", err)
		}
		require := "--smtp-require-starttls"
		if o.TLS == mail.TLSImplicit {
			require = "--smtp-require-tls"
		}
		args = append(args, "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile, require, "--smtp-auth-file", authFile)
	}

	// A free port may be taken again between our probe and mailpit's bind;
	// try a few times.
	var lastErr error
	for range 3 {
		smtpPort, httpPort, err := freePorts()
		if err != nil {
			t.Fatalf("mailtest: %v", err)
		}
		s.SMTPPort = smtpPort
		s.APIURL = "http://127.0.0.1:" + strconv.Itoa(httpPort)
		s.log = &lockedBuffer{}
		all := append(slices.Clone(args), "--smtp", net.JoinHostPort(s.SMTPHost, strconv.Itoa(smtpPort)),
			"--listen", "127.0.0.1:"+strconv.Itoa(httpPort))
		if lastErr = s.run(t, bin, all); lastErr == nil {
			return s
		}
	}
	t.Fatalf("mailtest: start mailpit: %v", lastErr)
	return nil
}

// run starts mailpit and waits until both of its ports answer. On success it
// registers the cleanup that stops it.
func (s *Server) run(t testing.TB, bin string, args []string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.Env = append(os.Environ(), "MP_DISABLE_VERSION_CHECK=true")
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("mailpit exited: %v\n%s", err, s.log.String())
		default:
		}
		if s.ready(client) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("mailpit did not answer within %s\n%s", startTimeout, s.log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a child process for readiness
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("mailpit log:\n%s", s.log.String())
		}
	})
	return nil
}

func (s *Server) ready(client *http.Client) bool {
	resp, err := client.Get(s.APIURL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(s.SMTPHost, strconv.Itoa(s.SMTPPort)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Config returns a sender configuration for s: its address, login, TLS mode
// and certificate, and From.
func (s *Server) Config() mail.Config {
	return mail.Config{
		Host:     s.SMTPHost,
		Port:     s.SMTPPort,
		Username: s.Username,
		Password: s.Password,
		From:     From,
		TLSMode:  s.TLS,
		CAFile:   s.CAFile,
		Timeout:  10 * time.Second,
	}
}

// Env returns the environment settings that point a VelociCompanion server
// binary at s, as VAR=value strings for exec.Cmd.Env.
func (s *Server) Env() []string {
	c := s.Config()
	return []string{
		"VC_SMTP_HOST=" + c.Host,
		"VC_SMTP_PORT=" + strconv.Itoa(c.Port),
		"VC_SMTP_USERNAME=" + c.Username,
		"VC_SMTP_PASSWORD=" + c.Password,
		"VC_SMTP_FROM=" + c.From,
		"VC_SMTP_TLS=" + string(c.TLSMode),
		"VC_SMTP_CA_FILE=" + c.CAFile,
		"VC_SMTP_TIMEOUT=" + c.Timeout.String(),
	}
}

// Log returns what mailpit printed so far.
func (s *Server) Log() string { return s.log.String() }

// Address is a mailbox as mailpit reports it.
type Address struct {
	Name    string
	Address string
}

// Message is a message mailpit received, as its API reports it.
type Message struct {
	// ID is mailpit's id of the message.
	ID string
	// MessageID is the Message-ID header, without angle brackets.
	MessageID string
	From      Address
	To        []Address
	Subject   string
	// Date is the Date header.
	Date time.Time
	// Username is the SMTP login the message was sent with.
	Username string
	// Text and HTML are the decoded bodies.
	Text string
	HTML string
	// Headers are the message's headers, decoded, by canonical name.
	Headers map[string][]string
	// Raw is the message as received, headers and MIME parts encoded.
	Raw string
}

// Recipients returns the addresses of m's To header.
func (m Message) Recipients() []string {
	out := make([]string, len(m.To))
	for i, a := range m.To {
		out[i] = a.Address
	}
	return out
}

// Messages returns every message s holds, oldest first.
func (s *Server) Messages(t testing.TB) []Message {
	t.Helper()
	var list struct {
		Messages []struct{ ID string }
	}
	s.getJSON(t, "/api/v1/messages?limit=1000", &list)
	out := make([]Message, 0, len(list.Messages))
	for _, summary := range slices.Backward(list.Messages) {
		var m Message
		s.getJSON(t, "/api/v1/message/"+summary.ID, &m)
		s.getJSON(t, "/api/v1/message/"+summary.ID+"/headers", &m.Headers)
		m.Raw = string(s.get(t, "/api/v1/message/"+summary.ID+"/raw"))
		out = append(out, m)
	}
	return out
}

// WaitFor polls s until a message satisfies match and returns the first
// such message, oldest first; it fails the test after timeout.
func (s *Server) WaitFor(t testing.TB, timeout time.Duration, match func(Message) bool) Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range s.Messages(t) {
			if match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailtest: no matching message within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling mailpit's API
	}
}

// Clear deletes every message s holds.
func (s *Server) Clear(t testing.TB) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, s.APIURL+"/api/v1/messages", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mailtest: clear: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mailtest: clear: %s", resp.Status)
	}
}

func (s *Server) get(t testing.TB, path string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.APIURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mailtest: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("mailtest: GET %s: %s %v: %.200s", path, resp.Status, err, body)
	}
	return body
}

func (s *Server) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(s.get(t, path), v); err != nil {
		t.Fatalf("mailtest: GET %s: %v", path, err)
	}
}

var install struct {
	sync.Mutex
	tried bool
}

// mailpitBinary finds mailpit, installing it once per process if needed.
func mailpitBinary() (string, error) {
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("mailpit is not on PATH, and no go command to install it: %w", err)
	}
	find := func() (string, error) {
		out, err := exec.Command(goBin, "env", "GOBIN", "GOPATH").Output()
		if err != nil {
			return "", fmt.Errorf("go env: %w", err)
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		var dirs []string
		if len(lines) > 0 && lines[0] != "" {
			dirs = append(dirs, lines[0])
		}
		if len(lines) > 1 && lines[1] != "" {
			dirs = append(dirs, filepath.Join(filepath.SplitList(lines[1])[0], "bin"))
		}
		for _, d := range dirs {
			p := filepath.Join(d, "mailpit")
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", errors.New("mailpit is not in GOBIN or GOPATH/bin")
	}
	if p, err := find(); err == nil {
		return p, nil
	}
	install.Lock()
	defer install.Unlock()
	if !install.tried {
		install.tried = true
		cmd := exec.Command(goBin, "install", MailpitModule)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go install %s: %v\n%s", MailpitModule, err, out)
		}
	}
	return find()
}

// freePorts returns two distinct free TCP ports on 127.0.0.1.
func freePorts() (int, int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

// writeSelfSigned writes a fresh self-signed ECDSA certificate for
// 127.0.0.1, ::1 and localhost, valid for a day, and its key, as PEM.
func writeSelfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailtest", Organization: []string{"VelociCompanion tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{netip.MustParseAddr("127.0.0.1").AsSlice(), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer collects a child's output from two pipes at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
