package sample

import (
	"log/slog"
	"os"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
)

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
