package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/sourceguard"
)

// TestSparseDecodeMatchesFull decodes whole-mode clips by seeking and in
// one pass and requires the same frames, bit for bit, at the same times.
func TestSparseDecodeMatchesFull(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	made := map[string]string{}
	once := func(key string, render func() string) func() string {
		return func() string {
			if made[key] == "" {
				made[key] = render()
			}
			return made[key]
		}
	}
	gop := once("gop", func() string { return mediatest.LongGOPVideo(t, dir, "gop.mp4", 50.3) })
	vfr := once("vfr", func() string { return mediatest.VFRVideo(t, dir) })
	cases := []struct {
		name   string
		video  func() string
		fps    float64
		max    int
		sparse bool // the sparse path must be chosen and succeed
		force  bool // run the sparse path although Clips would not
		// fallback: the sparse path, chosen, must see that it cannot be
		// exact and leave the video to the full decode
		fallback bool
	}{
		{"b-frames long GOP mp4", gop, 1, 4, true, false, false},
		{"b-frames long GOP mkv", func() string { return mediatest.LongGOPVideo(t, dir, "gop.mkv", 50.3) }, 1, 4, true, false, false},
		{"fractional fps", gop, 2.5, 4, true, false, false},
		{"half fps", gop, 0.5, 2, true, false, false},
		{"variable frame rate", vfr, 1, 4, true, false, false},
		{"variable frame rate 3 fps", vfr, 3, 4, true, false, false},
		{"non-zero start", func() string { return mediatest.OffsetVideo(t, dir) }, 1, 4, true, false, false},
		{"seeks split across processes", gop, 1, seeksPerRun + 5, false, true, false},
		{"length unknown until decoded falls back", func() string {
			return mediatest.WithAudio(t, mediatest.LongGOPVideo(t, dir, "short-video.mkv", 40), filepath.Join(dir, "long-audio.mkv"), 60, 0, 0)
		}, 1, 4, true, false, true},
		{"short video falls back", func() string { return mediatest.LongGOPVideo(t, dir, "short.mp4", 6) }, 1, 4, false, false, false},
		{"MPEG-TS falls back", func() string { return mediatest.LongGOPVideo(t, dir, "gop.ts", 50.3) }, 1, 4, false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			d := newTestDecoder(t, Options{FPS: c.fps, MaxFrames: c.max, Logger: testLog(t)})
			path := c.video()
			src, px, p := openProbed(t, d, path)
			ok, why := d.sparse(src, px, p)
			if ok != c.sparse {
				t.Fatalf("sparse = %v (%s), want %v", ok, why, c.sparse)
			}
			var full []Clip
			if err := d.decode(ctx, src, px, p, nil, func(c Clip) error { full = append(full, c); return nil }); err != nil {
				t.Fatal(err)
			}
			if c.fallback {
				err := d.decodeSparse(ctx, src, px, p, func(Clip) error { t.Fatal("clip emitted"); return nil })
				if !errors.Is(err, errSparseFallback) {
					t.Fatalf("sparse decode: %v, want %v", err, errSparseFallback)
				}
			} else if c.sparse || c.force {
				var sparse []Clip
				if err := d.decodeSparse(ctx, src, px, p, func(c Clip) error { sparse = append(sparse, c); return nil }); err != nil {
					t.Fatalf("sparse decode: %v", err)
				}
				sameClips(t, "sparse", sparse, full)
				if n := len(full[0].Frames); n != c.max {
					t.Fatalf("full decode kept %d frames, want %d", n, c.max)
				}
			}
			sameClips(t, "Clips", collect(t, d, path), full)
		})
	}
}

// TestSparseRemoteFallsBack serves a long video over HTTP to a decoder
// without a guard, which does not know whether the server takes byte
// ranges: it is decoded in one pass and gives the local file's frames.
func TestSparseRemoteFallsBack(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	path := mediatest.LongGOPVideo(t, dir, "gop.mp4", 50.3)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	d := newTestDecoder(t, Options{MaxFrames: 4, Logger: testLog(t)})
	url := srv.URL + "/" + filepath.Base(path)
	src, px, p := openProbed(t, d, url)
	if ok, _ := d.sparse(src, px, p); ok {
		t.Fatal("remote source chosen for sparse decoding")
	}
	sameClips(t, "remote", collect(t, d, url), collect(t, d, path))
}

func sameClips(t *testing.T, what string, got, want []Clip) {
	t.Helper()
	if len(got) != 1 || len(want) != 1 {
		t.Fatalf("%s: %d clips, full decode %d; want 1 each", what, len(got), len(want))
	}
	g, w := got[0], want[0]
	if g.Index != w.Index || g.StartS != w.StartS || g.EndS != w.EndS {
		t.Fatalf("%s: clip %d [%v, %v], full decode %d [%v, %v]", what, g.Index, g.StartS, g.EndS, w.Index, w.StartS, w.EndS)
	}
	if len(g.Frames) != len(w.Frames) {
		t.Fatalf("%s: %d frames, full decode %d", what, len(g.Frames), len(w.Frames))
	}
	for i := range g.Frames {
		gf, wf := g.Frames[i], w.Frames[i]
		if gf.TimeS != wf.TimeS {
			t.Fatalf("%s: frame %d at %vs, full decode %vs", what, i, gf.TimeS, wf.TimeS)
		}
		if !bytes.Equal(gf.Image.Pix, wf.Image.Pix) || gf.Image.Rect != wf.Image.Rect {
			t.Fatalf("%s: frame %d (%vs) differs from the full decode's", what, i, gf.TimeS)
		}
	}
}

func TestSparseChoice(t *testing.T) {
	local := sourceguard.Source{URI: "/v.mp4", Local: "/v.mp4", Input: "file:/v.mp4"}
	remote := sourceguard.Source{URI: "http://h/v.mp4", Input: "http://h/v.mp4", Remote: true}
	ranged := remote
	ranged.Ranges = true
	hls := ranged
	hls.HLS = &sourceguard.HLSInfo{}
	mp4 := "mov,mp4,m4a,3gp,3g2,mj2"
	long := probed{Info: Info{DurationS: 600, Width: 1280, Height: 720}, format: mp4}
	cases := []struct {
		name string
		o    Options
		src  sourceguard.Source
		p    probed
		want bool
	}{
		{"long local mp4", Options{}, local, long, true},
		{"matroska", Options{}, local, probed{Info: long.Info, format: "matroska,webm"}, true},
		{"remote", Options{}, remote, long, false},
		{"remote with byte ranges", Options{}, ranged, long, true},
		{"HLS", Options{}, hls, long, false},
		{"mpegts", Options{}, local, probed{Info: long.Info, format: "mpegts"}, false},
		{"unknown duration", Options{}, local, probed{Info: Info{Width: 1280, Height: 720}, format: mp4}, false},
		{"window mode", Options{Mode: ModeWindow, WindowS: 10}, local, long, false},
		{"head selection", Options{Selection: SelectHead}, local, long, false},
		{"kept frames 10 s apart", Options{}, local, probed{Info: Info{DurationS: 120}, format: mp4}, true},
		{"kept frames 9.9 s apart", Options{}, local, probed{Info: Info{DurationS: 118.8}, format: mp4}, false},
		{"many frames kept", Options{MaxFrames: 100}, local, long, false},
		{"low sampling rate", Options{FPS: 0.02}, local, long, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &Decoder{opts: c.o.WithDefaults()}
			if got, why := d.sparse(c.src, nil, c.p); got != c.want {
				t.Fatalf("sparse = %v (%s), want %v", got, why, c.want)
			}
		})
	}
}

func TestParseShowinfoPTS(t *testing.T) {
	cases := []struct {
		line string
		pts  int64
		ok   bool
	}{
		{"[Parsed_showinfo_1 @ 0x55d5] n:  12 pts:    599 pts_time:599 duration: 1 pos: 123", 599, true},
		{"[Parsed_showinfo_1 @ 0x55d5] n:   0 pts:      0 pts_time:0", 0, true},
		{"[Parsed_showinfo_1 @ 0x55d5] config in time_base: 1/1, frame_rate: 1/1", 0, false},
		{"[Parsed_showinfo_1 @ 0x55d5] n:   3 pts: NOPTS pts_time:NOPTS", 0, false},
		{"frame=   12 fps=0.0 q=-0.0 size=N/A", 0, false},
	}
	for _, c := range cases {
		pts, ok := parseShowinfoPTS(c.line)
		if pts != c.pts || ok != c.ok {
			t.Errorf("parseShowinfoPTS(%q) = %d, %v; want %d, %v", c.line, pts, ok, c.pts, c.ok)
		}
	}
}

// rangeServer serves dir over HTTP, with byte ranges where ranges is set
// (http.ServeContent) and as one plain stream otherwise, and counts the
// range requests it answers.
type rangeServer struct {
	dir    string
	ranges bool
	ranged atomic.Int64
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, err := os.Open(filepath.Join(s.dir, filepath.Base(r.URL.Path)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	if !s.ranges {
		io.Copy(w, f)
		return
	}
	if r.Header.Get("Range") != "" {
		s.ranged.Add(1)
	}
	http.ServeContent(w, r, f.Name(), time.Time{}, f)
}

// TestSparseRemoteRanges decodes a long video served over HTTP through a
// guard: where the server takes byte ranges it is decoded by seeking,
// with range requests through the source proxy, and gives the local full
// decode's frames; where it does not, it is decoded in one pass. (The
// stream-only server gets Matroska: an MP4 whose index is at its end
// cannot be read without seeking at all.)
func TestSparseRemoteRanges(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		ranges bool
	}{{"gop.mp4", true}, {"gop.mkv", false}} {
		t.Run(fmt.Sprintf("%s/ranges=%v", tc.name, tc.ranges), func(t *testing.T) {
			path := mediatest.LongGOPVideo(t, dir, tc.name, 50.3)
			want := collect(t, newTestDecoder(t, Options{MaxFrames: 4, Logger: testLog(t)}), path)
			rs := &rangeServer{dir: dir, ranges: tc.ranges}
			srv := httptest.NewServer(rs)
			defer srv.Close()
			g := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{})
			d := newTestDecoder(t, Options{MaxFrames: 4, Guard: g, Logger: testLog(t)})
			url := srv.URL + "/" + tc.name
			src, px, p := openProbed(t, d, url)
			if ok, why := d.sparse(src, px, p); ok != tc.ranges {
				t.Fatalf("sparse = %v (%s), want %v", ok, why, tc.ranges)
			}
			rs.ranged.Store(0)
			sameClips(t, "remote", collect(t, d, url), want)
			// One request per seek at least: the tail and the kept frames
			// but the last.
			if n := rs.ranged.Load(); tc.ranges && n < 4 {
				t.Fatalf("seeking decode made %d range requests", n)
			}
		})
	}
}

// TestSparseArgsUseProxy checks that every input of the seeking commands
// of a proxied source goes through the source proxy: a direct connection
// would bypass the policy checks the proxy makes.
func TestSparseArgsUseProxy(t *testing.T) {
	g := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{})
	px, err := g.StartProxy("http://127.0.0.1:1/v.mp4", testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	src := sourceguard.Source{URI: "http://127.0.0.1:1/v.mp4", Input: "http://127.0.0.1:1/v.mp4", Remote: true, Proxied: true, Ranges: true}
	d := &Decoder{opts: Options{}.WithDefaults()}
	p := probed{Info: Info{DurationS: 600, Width: 64, Height: 48}, format: "mov,mp4,m4a,3gp,3g2,mj2"}
	for name, args := range map[string][]string{
		"seeks": d.sparseArgs(src, px, p, []int{0, 50, 300}),
		"tail":  d.tailArgs(src, px, p, 600),
	} {
		inputs := 0
		for i, a := range args {
			if a != "-i" {
				continue
			}
			inputs++
			if !slices.Contains(args[:i], px.URL()) || !slices.Contains(args[:i], "-http_proxy") {
				t.Fatalf("%s: input %d is not read through the proxy: %q", name, inputs, args)
			}
		}
		if proxied := strings.Count(strings.Join(args, " "), "-http_proxy "+px.URL()); inputs == 0 || proxied != inputs {
			t.Fatalf("%s: %d inputs, %d through the proxy: %q", name, inputs, proxied, args)
		}
	}
}

// TestSparseGuardedFile decodes a guarded local file, which ffmpeg reads
// through an inherited descriptor that every seeking input opens anew.
func TestSparseGuardedFile(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	path := mediatest.LongGOPVideo(t, dir, "gop.mp4", 50.3)
	g := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{FileRoots: []string{dir}})
	guarded := newTestDecoder(t, Options{MaxFrames: 4, Guard: g, Logger: testLog(t)})
	ctx := context.Background()
	src, px, p := openProbed(t, guarded, path)
	ok, why := guarded.sparse(src, px, p)
	if !ok {
		t.Fatalf("guarded local file not decoded sparsely: %s", why)
	}
	var sparse []Clip
	if err := guarded.decodeSparse(ctx, src, px, p, func(c Clip) error { sparse = append(sparse, c); return nil }); err != nil {
		t.Fatalf("sparse decode: %v", err)
	}
	guarded.release(&src, px)
	var full []Clip
	plain := newTestDecoder(t, Options{MaxFrames: 4, Logger: testLog(t)})
	psrc, ppx, err := plain.open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.release(&psrc, ppx)
	if err := plain.decode(ctx, psrc, ppx, p, nil, func(c Clip) error { full = append(full, c); return nil }); err != nil {
		t.Fatal(err)
	}
	sameClips(t, "guarded sparse", sparse, full)
}
