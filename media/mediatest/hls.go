package mediatest

import (
	"context"
	"fmt"
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
)

// HLSFixture is a VOD HLS rendition of a video whose red channel says which
// second a frame is from (4*floor(T)), cut into 1 s segments once per test
// binary. LiveHLS serves it as a live stream.
type HLSFixture struct {
	Dir      string
	Segments []string  // file names
	Durs     []float64 // EXTINF
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]HLSFixture{}
)

// TSStart is where ffmpeg's MPEG-TS muxer starts its clock: stream time of
// the fixture's live HLS is content time + TSStart.
const TSStart = 1.4

// FixtureSeconds is the fixture's length.
const FixtureSeconds = 60

// HLSSegments is the small fixture most tests use: 96x64 at 10 fps.
func HLSSegments(t testing.TB) HLSFixture {
	return HLSSegmentsOf(t, "96x64", 10)
}

// HLSSegmentsOf encodes the fixture at a size and frame rate once per test
// binary.
func HLSSegmentsOf(t testing.TB, size string, rate int) HLSFixture {
	t.Helper()
	RequireFFmpeg(t)
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	key := size + "@" + strconv.Itoa(rate)
	if f, ok := fixtures[key]; ok {
		return f
	}
	dir, err := os.MkdirTemp("", "vidx-hls-fixture-")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("color=c=black:s=%s:r=%d:d=%d,format=gbrp,geq=r='4*floor(T)':g=0:b=0", size, rate, FixtureSeconds)}
	if size != "96x64" {
		// A realistic picture costs a realistic decode: moving detail.
		args = []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi",
			"-i", fmt.Sprintf("testsrc2=s=%s:r=%d:d=%d", size, rate, FixtureSeconds)}
	}
	args = append(args, VideoCodecArgs(t)...)
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
	f := HLSFixture{Dir: dir}
	var dur float64
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(line, "#EXTINF:"); ok {
			dur, _ = strconv.ParseFloat(strings.TrimSuffix(d, ","), 64)
		} else if strings.HasSuffix(line, ".ts") {
			f.Segments = append(f.Segments, line)
			f.Durs = append(f.Durs, dur)
		}
	}
	fixtures[key] = f
	return f
}

// LiveHLS serves a fixture as a live playlist: segment i is published
// once its content has "happened" (start + end of segment i), like an
// encoder writing a live playlist. It can stall: hang every request until
// released.
type LiveHLS struct {
	fix   HLSFixture
	start time.Time
	srv   *httptest.Server

	mu      sync.Mutex
	stalled chan struct{} // closed when the stall is released; nil when serving
	ended   bool
	reqs    int
}

// NewLiveHLS starts serving the fixture live, as if the encoder had started
// ahead seconds ago.
func NewLiveHLS(t testing.TB, ahead time.Duration) *LiveHLS {
	t.Helper()
	return NewLiveHLSOf(t, HLSSegments(t), ahead)
}

// NewLiveHLSOf is NewLiveHLS of another fixture.
func NewLiveHLSOf(t testing.TB, fix HLSFixture, ahead time.Duration) *LiveHLS {
	t.Helper()
	RealTime(t)
	l := &LiveHLS{fix: fix, start: time.Now().Add(-ahead)}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(func() {
		l.Release()
		l.srv.Close()
	})
	return l
}

// URL is the live playlist.
func (l *LiveHLS) URL() string { return l.srv.URL + "/live/stream.m3u8" }

// Stall makes every request hang until release.
func (l *LiveHLS) Stall() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stalled == nil {
		l.stalled = make(chan struct{})
	}
}

func (l *LiveHLS) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stalled != nil {
		close(l.stalled)
		l.stalled = nil
	}
}

// End publishes every segment and ENDLIST: the event is over.
func (l *LiveHLS) End() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
}

// Published is how many segments are out.
func (l *LiveHLS) Published() int {
	l.mu.Lock()
	ended := l.ended
	l.mu.Unlock()
	if ended {
		return len(l.fix.Segments)
	}
	elapsed := time.Since(l.start).Seconds()
	n, acc := 0, 0.0
	for _, d := range l.fix.Durs {
		if acc+d > elapsed {
			break
		}
		acc += d
		n++
	}
	return n
}

func (l *LiveHLS) serve(w http.ResponseWriter, r *http.Request) {
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
		n := l.Published()
		first := max(0, n-30)
		var b strings.Builder
		target := 1
		fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", target, first)
		for i := first; i < n; i++ {
			fmt.Fprintf(&b, "#EXTINF:%.6f,\n%s\n", l.fix.Durs[i], l.fix.Segments[i])
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
	for i, s := range l.fix.Segments {
		if s == name && i < l.Published() {
			http.ServeFile(w, r, filepath.Join(l.fix.Dir, s))
			return
		}
	}
	http.NotFound(w, r)
}

// RemoveFixtures deletes the HLS fixtures this test binary encoded; call it
// from TestMain after the tests ran.
func RemoveFixtures() {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	for k, f := range fixtures {
		os.RemoveAll(f.Dir)
		delete(fixtures, k)
	}
}
