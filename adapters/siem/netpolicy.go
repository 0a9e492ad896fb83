package siem

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrAddressNotAllowed is returned when a destination resolves to an address
// the network policy refuses.
var ErrAddressNotAllowed = errors.New("destination address not allowed")

// NetPolicy decides which addresses destinations may connect to. Tenant
// administrators configure destinations, so without a policy one could make
// the server connect to its own loopback, the cluster's private network or a
// cloud metadata service. By default only public unicast addresses are
// allowed; Allowed opens chosen private ranges (the SOC's own SIEM, or
// loopback for tests).
//
// The check runs on the address actually dialled (net.Dialer.Control), after
// name resolution, so a name that resolves to a refused address, or starts to
// after a DNS change, is refused too.
type NetPolicy struct {
	Allowed []netip.Prefix
}

// Permits reports whether ip may be dialled.
func (p NetPolicy) Permits(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pre := range p.Allowed {
		if pre.Contains(ip) {
			return true
		}
	}
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast(),
		ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast(), ip.IsMulticast():
		return false
	}
	for _, pre := range reserved {
		if pre.Contains(ip) {
			return false
		}
	}
	return true
}

// reserved are further ranges no SIEM lives in: carrier-grade NAT, the IETF
// protocol block, benchmarking, documentation and the former class E.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// Control is a net.Dialer Control function that refuses addresses the policy
// does not permit.
func (p NetPolicy) Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrAddressNotAllowed, host)
	}
	if !p.Permits(ip) {
		return fmt.Errorf("%w: %s", ErrAddressNotAllowed, ip)
	}
	return nil
}

// ParseNetworks parses comma-separated CIDRs (or single addresses).
func ParseNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
