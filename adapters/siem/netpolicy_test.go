package siem

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestNetPolicy(t *testing.T) {
	open := NetPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	tests := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"2001:4860:4860::8888", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"10.20.5.6", true},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"fd00::1", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"224.0.0.1", false},
		{"::ffff:127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := open.Permits(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Permits(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

// TestNetPolicyRefusesDial shows the policy applies to the address really
// dialled: a listener on loopback is refused by default and reached when
// loopback is allowed.
func TestNetPolicyRefusesDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 2 * time.Second, Control: NetPolicy{}.Control}
	if _, err := d.Dial("tcp", l.Addr().String()); !errors.Is(err, ErrAddressNotAllowed) {
		t.Fatalf("dial loopback by default: %v, want ErrAddressNotAllowed", err)
	}
	allowed, err := ParseNetworks([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	d.Control = NetPolicy{Allowed: allowed}.Control
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial allowed loopback: %v", err)
	}
	c.Close()
}
