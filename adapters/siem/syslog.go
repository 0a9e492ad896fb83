package siem

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Syslog transports.
const (
	TransportTCP = "tcp"
	TransportTLS = "tls"
)

// SyslogConfig says where and how a SyslogSender delivers.
type SyslogConfig struct {
	Transport string // TransportTCP or TransportTLS
	Addr      string // host:port
	// TLS configures a TransportTLS connection; its ServerName defaults to
	// the host of Addr. Nil uses the system roots.
	TLS *tls.Config
	// DialTimeout bounds connecting (and the TLS handshake); 10s when zero.
	DialTimeout time.Duration
	// Control, if set, vets the address dialled (see NetPolicy.Control).
	Control func(network, address string, c syscall.RawConn) error
	// WriteTimeout bounds writing one batch; 10s when zero.
	WriteTimeout time.Duration
}

// SyslogSender writes RFC 5424 messages to one syslog receiver over TCP or
// TLS, framed with RFC 6587 octet counting. It keeps one connection, opened
// on first use and again after any failure.
//
// A successful Send means the receiver's kernel accepted the bytes, not that
// the receiver stored them: plain syslog has no acknowledgements, so a
// message in flight when the receiver dies can be lost. The forwarder's
// at-least-once guarantee covers what Send reports as failed.
//
// A SyslogSender is safe for concurrent use; sends are serialised.
type SyslogSender struct {
	cfg SyslogConfig

	mu   sync.Mutex
	conn net.Conn
	w    *bufio.Writer
}

// NewSyslogSender returns a sender for cfg; it connects on first use.
func NewSyslogSender(cfg SyslogConfig) (*SyslogSender, error) {
	switch cfg.Transport {
	case TransportTCP, TransportTLS:
	default:
		return nil, fmt.Errorf("syslog transport %q: want tcp or tls", cfg.Transport)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("syslog address %q: %w", cfg.Addr, err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	return &SyslogSender{cfg: cfg}, nil
}

// Send writes msgs, each one framed, as one batch. On any error the
// connection is closed, so the next Send reconnects, and the whole batch
// should be considered undelivered.
func (s *SyslogSender) Send(ctx context.Context, msgs ...[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.connectLocked(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(s.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := s.conn.SetWriteDeadline(deadline); err != nil {
		s.closeLocked()
		return fmt.Errorf("syslog %s: %w", s.cfg.Addr, err)
	}
	var frame []byte
	for _, m := range msgs {
		frame = OctetCount(frame[:0], m)
		if _, err := s.w.Write(frame); err != nil {
			s.closeLocked()
			return fmt.Errorf("syslog write %s: %w", s.cfg.Addr, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		s.closeLocked()
		return fmt.Errorf("syslog write %s: %w", s.cfg.Addr, err)
	}
	return nil
}

func (s *SyslogSender) connectLocked(ctx context.Context) error {
	if s.conn != nil {
		if !s.peerClosedLocked() {
			return nil
		}
		s.closeLocked()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var (
		conn net.Conn
		err  error
	)
	switch s.cfg.Transport {
	case TransportTLS:
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.cfg.TLS != nil {
			cfg = s.cfg.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(s.cfg.Addr)
		}
		d := tls.Dialer{NetDialer: &net.Dialer{Control: s.cfg.Control}, Config: cfg}
		conn, err = d.DialContext(ctx, "tcp", s.cfg.Addr)
	default:
		d := net.Dialer{Control: s.cfg.Control}
		conn, err = d.DialContext(ctx, "tcp", s.cfg.Addr)
	}
	if err != nil {
		return fmt.Errorf("syslog connect %s: %w", s.cfg.Addr, err)
	}
	s.conn, s.w = conn, bufio.NewWriterSize(conn, 64<<10)
	return nil
}

// peerClosedLocked reports whether the receiver closed the connection, so a
// batch is not written into a socket that will only fail later. A syslog
// receiver never writes, so a successful zero-timeout read of nothing means
// the connection is open; EOF or a reset means it is not. It costs up to a
// millisecond per Send, which the batching of the consumer spreads over up
// to a few hundred events. (A non-blocking peek at the socket instead made
// events written right after the receiver restarted go missing in
// TestForwarderToRsyslogSurvivesRestart.)
func (s *SyslogSender) peerClosedLocked() bool {
	if err := s.conn.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return true
	}
	var one [1]byte
	_, err := s.conn.Read(one[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

func (s *SyslogSender) closeLocked() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.conn, s.w = nil, nil
}

// Close closes the connection, if any.
func (s *SyslogSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	return nil
}
