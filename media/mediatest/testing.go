package mediatest

import (
	"log/slog"
	"os"
	"testing"
)

// Log discards logs unless VIDX_TEST_LOG is set; then it writes them, at
// debug level and tagged with the test's name, to stderr.
func Log(t testing.TB) *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// Main runs a package's tests and then removes the fixtures they
// generated; call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	RemoveFixtures()
	os.Exit(code)
}
