//go:build !linux

package siem

import "net"

// socketIdle cannot peek without blocking here; the caller's short read
// decides.
func socketIdle(net.Conn) bool { return false }
