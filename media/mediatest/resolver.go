package mediatest

import (
	"context"
	"net"
	"net/netip"
)

// Resolver answers host lookups from a table, like a DNS server an
// attacker controls: tests point names at addresses a Guard must refuse.
type Resolver map[string][]string

// LookupNetIP returns the table's addresses for host.
func (r Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}
