package sample

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/internal/testenv"
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

// requireFFmpeg skips tests that need the real tools (fails them under
// make test, which installs the tools).
func requireFFmpeg(tb testing.TB) {
	tb.Helper()
	testenv.Tools(tb, "install ffmpeg, e.g. scripts/setup.sh", "ffmpeg", "ffprobe")
}

// videoCodecArgs prefers H.264 (B-frames, reordering: what real inputs look
// like) and falls back to ffmpeg's built-in MPEG-4 encoder.
func videoCodecArgs(tb testing.TB) []string {
	tb.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	if err == nil && bytes.Contains(out, []byte(" libx264 ")) {
		return []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	}
	return []string{"-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p"}
}

// makeVideo renders a lavfi source graph (e.g. "testsrc=size=320x240:rate=25:duration=5")
// into dir/name with extra output options and returns the path.
func makeVideo(tb testing.TB, dir, name, graph string, extra ...string) string {
	tb.Helper()
	requireFFmpeg(tb)
	path := filepath.Join(dir, name)
	args := []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", graph}
	args = append(args, videoCodecArgs(tb)...)
	args = append(args, extra...)
	args = append(args, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path
}

// stepVideo is a 64x48 video whose red channel is 16*floor(t): the value of a
// decoded frame says which second it came from.
func stepVideo(tb testing.TB, dir string, seconds int) string {
	return makeVideo(tb, dir, "steps.mp4",
		"color=c=black:s=64x48:r=25:d="+strconv.Itoa(seconds)+",format=gbrp,geq=r='16*floor(T)':g=0:b=0")
}

func newTestDecoder(tb testing.TB, o Options) *Decoder {
	tb.Helper()
	requireFFmpeg(tb)
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
