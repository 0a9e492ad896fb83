package siem_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rsyslog is a real rsyslogd (the Debian package) listening with imtcp on a
// loopback port and writing what it receives to files in a temporary
// directory: raw.log holds each message as received (%rawmsg%), fields.log
// its parsed RFC 5424 fields separated by tabs.
type rsyslog struct {
	t    *testing.T
	dir  string
	conf string
	port int
	cmd  *exec.Cmd
	// waitExit receives the result of cmd.Wait.
	waitExit chan error
}

// tlsFiles are the PEM files of a TLS listener, and the pool that trusts it.
type tlsFiles struct {
	ca, cert, key string
	pool          *x509.CertPool
}

// startRsyslog starts rsyslogd on a free loopback port, over TLS when tf is
// not nil. It fails the test, never skips it, when rsyslogd is missing.
func startRsyslog(t *testing.T, tf *tlsFiles) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/rsyslogd"); statErr != nil {
			t.Fatalf("rsyslogd not found (apt-get install -y rsyslog rsyslog-openssl): %v", err)
		}
		bin = "/usr/sbin/rsyslogd"
	}
	dir := t.TempDir()
	r := &rsyslog{t: t, dir: dir, conf: filepath.Join(dir, "rsyslog.conf"), port: freePort(t)}
	var global, module string
	if tf != nil {
		global = fmt.Sprintf(` DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile=%q
	DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q`, tf.ca, tf.cert, tf.key)
		module = ` StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"`
	}
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k"%s)
module(load="imtcp"%s)
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="raw" type="string" string="%%rawmsg%%\n")
template(name="fields" type="string" string="%%hostname%%\t%%app-name%%\t%%procid%%\t%%msgid%%\t%%structured-data%%\t%%msg%%\n")
*.* action(type="omfile" file=%q template="raw")
*.* action(type="omfile" file=%q template="fields")
`, dir, global, module, r.port, filepath.Join(dir, "raw.log"), filepath.Join(dir, "fields.log"))
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *rsyslog) start(bin string) {
	r.t.Helper()
	r.cmd = exec.Command(bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	out, err := os.Create(filepath.Join(r.dir, "rsyslogd.out"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer out.Close()
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start rsyslogd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr(), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			r.waitExit = exited
			return
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.out"))
			r.t.Fatalf("rsyslogd exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd did not listen on %s", r.addr())
		}
		time.Sleep(20 * time.Millisecond) // polling a port, not waiting for work
	}
}

func (r *rsyslog) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.waitExit:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.waitExit
	}
	r.cmd = nil
}

// restart stops rsyslogd and starts it again on the same port.
func (r *rsyslog) restart() {
	r.t.Helper()
	r.stop()
	r.start(mustLook(r.t))
}

func mustLook(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
	}
	return bin
}

func (r *rsyslog) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// lines returns the lines rsyslog has written to name so far.
func (r *rsyslog) lines(name string) []string {
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		return nil
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitLines polls until name holds at least n lines and returns them.
func (r *rsyslog) waitLines(name string, n int) []string {
	r.t.Helper()
	var got []string
	eventually(r.t, 15*time.Second, func() bool {
		got = r.lines(name)
		return len(got) >= n
	}, func() string { return fmt.Sprintf("%s has %d lines, want %d", name, len(got), n) })
	return got
}

func eventually(t *testing.T, d time.Duration, ok func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", why())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newTLSFiles writes a CA and a server certificate for 127.0.0.1 and
// localhost into dir.
func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siem test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tf := &tlsFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"),
		pool: x509.NewCertPool()}
	tf.pool.AddCert(ca)
	for path, block := range map[string]*pem.Block{
		tf.ca: {Type: "CERTIFICATE", Bytes: caDER}, tf.cert: {Type: "CERTIFICATE", Bytes: der},
		tf.key: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tf
}

// clientTLS is the client side of tf.
func (tf *tlsFiles) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: tf.pool, MinVersion: tls.VersionTLS12}
}
