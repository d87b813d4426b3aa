package streams

import (
	"log/slog"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
)

// testLog discards logs unless VIDX_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger { return mediatest.Log(t) }

func TestMain(m *testing.M) { mediatest.Main(m) }
