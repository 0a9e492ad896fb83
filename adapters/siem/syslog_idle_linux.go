package siem

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// socketIdle reports, without blocking, whether conn's socket has nothing to
// read: no data, no end of stream and no error, which is what a healthy
// connection to a syslog receiver (one that never writes) looks like. It
// peeks at the socket under a TLS connection, so false also covers a TLS
// record waiting there; the caller then reads to find out more.
func socketIdle(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	idle := false
	var one [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		idle = errors.Is(rerr, syscall.EAGAIN)
		return true // never wait for the socket to become readable
	})
	return err == nil && idle
}
