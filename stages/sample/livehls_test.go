package sample

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/sourceguard"
)

// hlsFixture is a VOD HLS rendition of a video whose red channel says which
// second a frame is from (4*floor(T)), cut into 1 s segments once per test
// binary. liveHLS serves it as a live stream.
type hlsFixture struct {
	dir      string
	segments []string  // file names
	durs     []float64 // EXTINF
}

var (
	hlsMu       sync.Mutex
	hlsFixtures = map[string]hlsFixture{}
)

// fixtureSeconds is the fixture's length.
const fixtureSeconds = 60

// hlsSegments is the small fixture most tests use: 96x64 at 10 fps.
func hlsSegments(t testing.TB) hlsFixture {
	return hlsSegmentsOf(t, "96x64", 10)
}

// hlsSegmentsOf encodes the fixture at a size and frame rate once per test
// binary.
func hlsSegmentsOf(t testing.TB, size string, rate int) hlsFixture {
	t.Helper()
	requireFFmpeg(t)
	hlsMu.Lock()
	defer hlsMu.Unlock()
	key := size + "@" + strconv.Itoa(rate)
	if f, ok := hlsFixtures[key]; ok {
		return f
	}
	dir, err := os.MkdirTemp("", "vidx-hls-fixture-")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("color=c=black:s=%s:r=%d:d=%d,format=gbrp,geq=r='4*floor(T)':g=0:b=0", size, rate, fixtureSeconds)}
	if size != "96x64" {
		// A realistic picture costs a realistic decode: moving detail.
		args = []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi",
			"-i", fmt.Sprintf("testsrc2=s=%s:r=%d:d=%d", size, rate, fixtureSeconds)}
	}
	args = append(args, videoCodecArgs(t)...)
	args = append(args, "-g", strconv.Itoa(rate), "-keyint_min", strconv.Itoa(rate), "-sc_threshold", "0",
		"-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_playlist_type", "vod",
		"-hls_segment_filename", filepath.Join(dir, "seg%03d.ts"), filepath.Join(dir, "vod.m3u8"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "vod.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	f := hlsFixture{dir: dir}
	var dur float64
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(line, "#EXTINF:"); ok {
			dur, _ = strconv.ParseFloat(strings.TrimSuffix(d, ","), 64)
		} else if strings.HasSuffix(line, ".ts") {
			f.segments = append(f.segments, line)
			f.durs = append(f.durs, dur)
		}
	}
	hlsFixtures[key] = f
	return f
}

// liveHLS serves the fixture as a live playlist: segment i is published
// once its content has "happened" (start + end of segment i), like an
// encoder writing a live playlist. It can stall: hang every request until
// released.
type liveHLS struct {
	fix   hlsFixture
	start time.Time
	srv   *httptest.Server

	mu      sync.Mutex
	stalled chan struct{} // closed when the stall is released; nil when serving
	ended   bool
	reqs    int
}

// newLiveHLS starts serving the fixture live, as if the encoder had started
// ahead seconds ago.
func newLiveHLS(t testing.TB, ahead time.Duration) *liveHLS {
	t.Helper()
	return newLiveHLSOf(t, hlsSegments(t), ahead)
}

func newLiveHLSOf(t testing.TB, fix hlsFixture, ahead time.Duration) *liveHLS {
	t.Helper()
	realTime(t)
	l := &liveHLS{fix: fix, start: time.Now().Add(-ahead)}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(func() {
		l.release()
		l.srv.Close()
	})
	return l
}

func (l *liveHLS) URL() string { return l.srv.URL + "/live/stream.m3u8" }

// stall makes every request hang until release.
func (l *liveHLS) stall() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stalled == nil {
		l.stalled = make(chan struct{})
	}
}

func (l *liveHLS) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stalled != nil {
		close(l.stalled)
		l.stalled = nil
	}
}

// end publishes every segment and ENDLIST: the event is over.
func (l *liveHLS) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
}

// published is how many segments are out.
func (l *liveHLS) published() int {
	l.mu.Lock()
	ended := l.ended
	l.mu.Unlock()
	if ended {
		return len(l.fix.segments)
	}
	elapsed := time.Since(l.start).Seconds()
	n, acc := 0, 0.0
	for _, d := range l.fix.durs {
		if acc+d > elapsed {
			break
		}
		acc += d
		n++
	}
	return n
}

func (l *liveHLS) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.reqs++
	wait := l.stalled
	l.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-r.Context().Done():
			return
		}
	}
	name := strings.TrimPrefix(r.URL.Path, "/live/")
	if name == "stream.m3u8" {
		n := l.published()
		first := max(0, n-30)
		var b strings.Builder
		target := 1
		fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", target, first)
		for i := first; i < n; i++ {
			fmt.Fprintf(&b, "#EXTINF:%.6f,\n%s\n", l.fix.durs[i], l.fix.segments[i])
		}
		l.mu.Lock()
		if l.ended {
			b.WriteString("#EXT-X-ENDLIST\n")
		}
		l.mu.Unlock()
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		_, _ = w.Write([]byte(b.String()))
		return
	}
	for i, s := range l.fix.segments {
		if s == name && i < l.published() {
			http.ServeFile(w, r, filepath.Join(l.fix.dir, s))
			return
		}
	}
	http.NotFound(w, r)
}

// loopbackGuard allows the test servers on 127.0.0.1 and nothing else
// private.
func loopbackGuard(t testing.TB, p sourceguard.SourcePolicy) *sourceguard.Guard {
	t.Helper()
	p.AllowNetworks = append(p.AllowNetworks, "127.0.0.1/32")
	g, err := sourceguard.NewGuard(p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// testLog discards logs unless VIDX_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// realTime skips tests that wait for a live source to play in real time
// when -short asks for a quick run.
func realTime(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("plays a live source in real time; skipped with -short")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	hlsMu.Lock()
	for _, f := range hlsFixtures {
		os.RemoveAll(f.dir)
	}
	hlsMu.Unlock()
	os.Exit(code)
}
