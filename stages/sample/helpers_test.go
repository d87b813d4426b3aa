package sample

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
)

// fakeResolver answers from a table, like a DNS server an attacker
// controls.
type fakeResolver map[string][]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
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

// testLog discards logs unless VIDX_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func TestMain(m *testing.M) {
	code := m.Run()
	mediatest.RemoveFixtures()
	os.Exit(code)
}
