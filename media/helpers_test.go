package media

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vidx/vidx/sourceguard"

	"github.com/vidx/vidx/media/mediatest"
)

func newTestDecoder(tb testing.TB, o Options) *Decoder {
	tb.Helper()
	mediatest.RequireFFmpeg(tb)
	d, err := NewDecoder(o)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// collect runs Clips and returns every clip it emitted.
func collect(tb testing.TB, d *Decoder, uri string) []Clip {
	tb.Helper()
	var clips []Clip
	err := d.Clips(context.Background(), uri, func(c Clip) error {
		clips = append(clips, c)
		return nil
	})
	if err != nil {
		tb.Fatalf("Clips(%s): %v", uri, err)
	}
	return clips
}

func writeFile(tb testing.TB, path string, data []byte) string {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func commandOutput(ctx context.Context, bin string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}

// testLog discards logs unless VIDX_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger { return mediatest.Log(t) }

func TestMain(m *testing.M) { mediatest.Main(m) }

// openProbed opens uri as d's jobs do and probes it; the source is
// released when the test ends.
func openProbed(tb testing.TB, d *Decoder, uri string) (sourceguard.Source, *sourceguard.Proxy, probed) {
	tb.Helper()
	ctx := context.Background()
	src, px, err := d.open(ctx, uri)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.release(&src, px) })
	p, err := d.probe(ctx, src, px)
	if err != nil {
		tb.Fatal(err)
	}
	return src, px, p
}

// toolScript writes an executable shell script standing in for a tool,
// body after its #! line, and returns its path.
func toolScript(tb testing.TB, dir, name, body string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}
