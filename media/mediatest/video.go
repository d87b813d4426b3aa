// Package mediatest holds test fixtures for code that decodes video: small
// generated videos, an HLS rendition served as a live stream, and a source
// Guard that admits the test servers on loopback. Tests of media and of the
// sample stage share them.
//
// It imports of vidx only sourceguard and internal/testenv.
package mediatest

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/internal/testenv"
	"github.com/vidx/vidx/sourceguard"
)

// RequireFFmpeg skips tests that need the real tools (fails them under
// make test, which installs the tools).
func RequireFFmpeg(tb testing.TB) {
	tb.Helper()
	testenv.Tools(tb, "install ffmpeg, e.g. scripts/setup.sh", "ffmpeg", "ffprobe")
}

// VideoCodecArgs prefers H.264 (B-frames, reordering: what real inputs look
// like) and falls back to ffmpeg's built-in MPEG-4 encoder.
func VideoCodecArgs(tb testing.TB) []string {
	tb.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	if err == nil && bytes.Contains(out, []byte(" libx264 ")) {
		return []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	}
	return []string{"-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p"}
}

// MakeVideo renders a lavfi source graph (e.g. "testsrc=size=320x240:rate=25:duration=5")
// into dir/name with extra output options and returns the path.
func MakeVideo(tb testing.TB, dir, name, graph string, extra ...string) string {
	tb.Helper()
	RequireFFmpeg(tb)
	path := filepath.Join(dir, name)
	args := []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", graph}
	args = append(args, VideoCodecArgs(tb)...)
	args = append(args, extra...)
	args = append(args, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path
}

// StepVideo is a 64x48 video whose red channel is 16*floor(t): the value of a
// decoded frame says which second it came from.
func StepVideo(tb testing.TB, dir string, seconds int) string {
	return MakeVideo(tb, dir, "steps.mp4",
		"color=c=black:s=64x48:r=25:d="+strconv.Itoa(seconds)+",format=gbrp,geq=r='16*floor(T)':g=0:b=0")
}

// LoopbackGuard allows the test servers on 127.0.0.1 and nothing else
// private.
func LoopbackGuard(tb testing.TB, p sourceguard.SourcePolicy) *sourceguard.Guard {
	tb.Helper()
	p.AllowNetworks = append(p.AllowNetworks, "127.0.0.1/32")
	g, err := sourceguard.NewGuard(p)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// RealTime skips tests that wait for a live source to play in real time
// when -short asks for a quick run.
func RealTime(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("plays a live source in real time; skipped with -short")
	}
}
