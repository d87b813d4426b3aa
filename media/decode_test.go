package media

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/pipeline"
)

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	d := newTestDecoder(t, Options{})
	path := mediatest.MakeVideo(t, dir, "a.mp4", "testsrc=size=320x240:rate=25:duration=5")
	info, err := d.Probe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Width != 320 || info.Height != 240 || info.FPS != 25 || math.Abs(info.DurationS-5) > 0.05 || info.Codec == "" {
		t.Errorf("Probe = %+v", info)
	}
}

// Uniform selection over 15 one-second frames picks CLIP4Clip's indices, and
// each decoded frame really is the one from that second.
func TestWholeSelections(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.StepVideo(t, dir, 15)
	for _, tc := range []struct {
		sel  string
		want []int
	}{
		{SelectUniform, []int{0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 14}},
		{SelectHead, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{SelectTail, []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			d := newTestDecoder(t, Options{Selection: tc.sel, Size: 32})
			clips := collect(t, d, path)
			if len(clips) != 1 {
				t.Fatalf("%d clips", len(clips))
			}
			c := clips[0]
			if c.Index != 0 || c.StartS != 0 || math.Abs(c.EndS-15) > 0.05 {
				t.Errorf("clip %d [%v, %v)", c.Index, c.StartS, c.EndS)
			}
			checkSteps(t, c.Frames, tc.want, 32)
		})
	}
}

// checkSteps verifies frame timestamps and that each crop shows its second.
func checkSteps(t *testing.T, frames []Frame, wantSeconds []int, size int) {
	t.Helper()
	got := make([]int, len(frames))
	for i, f := range frames {
		got[i] = int(f.TimeS)
		if f.TimeS != float64(got[i]) {
			t.Errorf("frame %d at %v s, want whole seconds at 1 fps", i, f.TimeS)
		}
		if f.Image.Bounds() != image.Rect(0, 0, size, size) {
			t.Fatalf("crop %v", f.Image.Bounds())
		}
		c := f.Image.RGBAAt(size/2, size/2)
		if sec := int(math.Round(float64(c.R) / 16)); sec != got[i] || c.G > 24 || c.B > 24 {
			t.Errorf("frame at %ds looks like second %d (pixel %v)", got[i], sec, c)
		}
	}
	if !slices.Equal(got, wantSeconds) {
		t.Errorf("frames at %v s, want %v", got, wantSeconds)
	}
}

func TestWindowMode(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.StepVideo(t, dir, 15)
	d := newTestDecoder(t, Options{Mode: ModeWindow, WindowS: 5, StrideS: 3, MaxFrames: 3, Size: 16})
	clips := collect(t, d, path)
	want := []struct {
		start, end float64
		secs       []int
	}{
		{0, 5, []int{0, 2, 4}},
		{3, 8, []int{3, 5, 7}},
		{6, 11, []int{6, 8, 10}},
		{9, 14, []int{9, 11, 13}},
		{12, 15, []int{12, 13, 14}}, // partial: 3 frames, all kept
	}
	if len(clips) != len(want) {
		t.Fatalf("%d clips, want %d", len(clips), len(want))
	}
	for i, c := range clips {
		if c.Index != i || c.StartS != want[i].start || math.Abs(c.EndS-want[i].end) > 0.05 {
			t.Errorf("clip %d: index %d [%v, %v), want [%v, %v)", i, c.Index, c.StartS, c.EndS, want[i].start, want[i].end)
		}
		checkSteps(t, c.Frames, want[i].secs, 16)
	}
}

// Windows are delivered while ffmpeg is still decoding, and an error from
// the callback stops the decode and comes back unchanged.
func TestWindowStreamingAndEarlyStop(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.StepVideo(t, dir, 15)
	d := newTestDecoder(t, Options{Mode: ModeWindow, WindowS: 2, Size: 16})
	stopErr := errors.New("enough")
	var got []int
	err := d.Clips(context.Background(), path, func(c Clip) error {
		got = append(got, c.Index)
		if c.Index == 1 {
			return stopErr
		}
		return nil
	})
	if !errors.Is(err, stopErr) || !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("err %v after clips %v", err, got)
	}
}

func TestRedVideo(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.MakeVideo(t, dir, "red.mp4", "color=c=red:size=320x240:rate=25:duration=3")
	d := newTestDecoder(t, Options{})
	clips := collect(t, d, "file://"+path)
	if len(clips) != 1 || len(clips[0].Frames) != 3 {
		t.Fatalf("clips %+v", clips)
	}
	for _, f := range clips[0].Frames {
		img := f.Image
		for _, p := range []image.Point{{0, 0}, {112, 112}, {223, 223}, {5, 200}} {
			if c := img.RGBAAt(p.X, p.Y); c.R < 235 || c.G > 20 || c.B > 20 || c.A != 255 {
				t.Fatalf("frame at %vs pixel %v = %v, want red", f.TimeS, p, c)
			}
		}
	}
}

func TestFrameSizes(t *testing.T) {
	dir := t.TempDir()
	landscape := mediatest.MakeVideo(t, dir, "l.mp4", "testsrc=size=320x240:rate=25:duration=2")
	rotated := filepath.Join(dir, "r.mp4")
	if out, err := execFFmpeg("-i", landscape, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, path string
		w, h       int
	}{
		{"320x240", landscape, 320, 240},
		{"240x320", mediatest.MakeVideo(t, dir, "p.mp4", "testsrc=size=240x320:rate=25:duration=2"), 240, 320},
		{"1280x720", mediatest.MakeVideo(t, dir, "hd.mp4", "testsrc=size=1280x720:rate=25:duration=2"), 1280, 720},
		{"rotated", rotated, 240, 320},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder(t, Options{})
			info, err := d.Probe(context.Background(), tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != tc.w || info.Height != tc.h {
				t.Errorf("probed %dx%d, want %dx%d", info.Width, info.Height, tc.w, tc.h)
			}
			clips := collect(t, d, tc.path)
			if len(clips) != 1 || len(clips[0].Frames) != 2 {
				t.Fatalf("%d clips", len(clips))
			}
			for _, f := range clips[0].Frames {
				if f.Image.Bounds() != image.Rect(0, 0, 224, 224) {
					t.Errorf("crop %v", f.Image.Bounds())
				}
			}
		})
	}
}

func execFFmpeg(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return commandOutput(ctx, "ffmpeg", append([]string{"-hide_banner", "-v", "error", "-y"}, args...)...)
}

func TestBadInputsArePoison(t *testing.T) {
	dir := t.TempDir()
	good := mediatest.MakeVideo(t, dir, "good.mp4", "testsrc=size=320x240:rate=25:duration=3")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// Zeroing the media data keeps the index intact, so the file probes fine
	// but not a single frame decodes.
	zeroed := slices.Clone(data)
	if i := strings.Index(string(zeroed), "mdat"); i > 4 {
		n := int(zeroed[i-4])<<24 | int(zeroed[i-3])<<16 | int(zeroed[i-2])<<8 | int(zeroed[i-1])
		clear(zeroed[i+4 : i-4+n])
	} else {
		t.Fatal("no mdat box")
	}
	audio := filepath.Join(dir, "audio.m4a")
	if out, err := execFFmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", audio); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, uri, reason string
	}{
		{"missing", filepath.Join(dir, "nope.mp4"), "does not exist"},
		{"missing file URI", "file://" + filepath.Join(dir, "nope.mp4"), "does not exist"},
		{"text named mp4", writeFile(t, filepath.Join(dir, "x.mp4"), []byte("hello, not a video\n")), "not a video"},
		{"truncated mp4", writeFile(t, filepath.Join(dir, "half.mp4"), data[:len(data)/2]), "moov atom not found"},
		{"empty", writeFile(t, filepath.Join(dir, "empty.mp4"), nil), "empty"},
		{"directory", dir, "directory"},
		{"audio only", audio, "no video stream"},
		{"zero frames", writeFile(t, filepath.Join(dir, "zeroed.mp4"), zeroed), "no video frames decoded"},
		{"protocol-like path", "concat:" + good + "|" + good, "does not exist"},
		{"ftp", "ftp://example.com/a.mp4", "unsupported URI scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder(t, Options{})
			err := d.Clips(context.Background(), tc.uri, func(Clip) error {
				t.Error("clip emitted")
				return nil
			})
			if !pipeline.IsPoison(err) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v (class %v), want poison mentioning %q", err, pipeline.Classify(err), tc.reason)
			}
		})
	}
}

func TestHTTPSource(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.MakeVideo(t, dir, "v.mp4", "testsrc=size=320x240:rate=25:duration=3")
	mux := http.NewServeMux()
	mux.HandleFunc("/v.mp4", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	mux.HandleFunc("/busy.mp4", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	d := newTestDecoder(t, Options{})
	clips := collect(t, d, srv.URL+"/v.mp4")
	if len(clips) != 1 || len(clips[0].Frames) != 3 {
		t.Fatalf("clips %+v", clips)
	}
	err := d.Clips(context.Background(), srv.URL+"/missing.mp4", func(Clip) error { return nil })
	if !pipeline.IsPoison(err) {
		t.Errorf("404: err = %v (class %v), want poison", err, pipeline.Classify(err))
	}
	err = d.Clips(context.Background(), srv.URL+"/busy.mp4", func(Clip) error { return nil })
	if !pipeline.IsRetryable(err) {
		t.Errorf("503: err = %v (class %v), want retryable", err, pipeline.Classify(err))
	}
}

// stallingServer serves the first part of a faststart MP4 and then hangs, so
// ffmpeg blocks on a read that never completes. It reports when ffmpeg's
// connection goes away, which happens only once the process is gone.
func stallingServer(t *testing.T, path string) (url string, gone <-chan struct{}) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/3])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		done <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/stall.mp4", done
}

func TestCancelStopsFFmpeg(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.MakeVideo(t, dir, "fs.mp4", "testsrc=size=320x240:rate=25:duration=20", "-movflags", "+faststart")
	url, gone := stallingServer(t, path)
	d := newTestDecoder(t, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(700*time.Millisecond, cancel)
	start := time.Now()
	err := d.Clips(ctx, url, func(Clip) error { return nil })
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) || pipeline.Classify(err) != pipeline.ClassUnknown {
		t.Fatalf("err = %v (class %v), want unclassified context.Canceled", err, pipeline.Classify(err))
	}
	if elapsed > 3*time.Second {
		t.Errorf("Clips returned %v after cancel", elapsed)
	}
	select {
	case <-gone:
	case <-time.After(3 * time.Second):
		t.Error("ffmpeg still connected after cancel")
	}
}

// Options.Timeout bounds a decode; a remote source that stalls is retryable.
func TestTimeoutIsRetryableForHTTP(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.MakeVideo(t, dir, "fs.mp4", "testsrc=size=320x240:rate=25:duration=20", "-movflags", "+faststart")
	url, _ := stallingServer(t, path)
	d := newTestDecoder(t, Options{Timeout: 700 * time.Millisecond})
	start := time.Now()
	err := d.Clips(context.Background(), url, func(Clip) error { return nil })
	if !errors.Is(err, ErrTimeout) || !pipeline.IsRetryable(err) {
		t.Fatalf("err = %v (class %v), want retryable ErrTimeout", err, pipeline.Classify(err))
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// A deadline no decode can meet ends a local file's job with ErrTimeout,
// left unclassified for bounded retries, whichever step it stops: the
// probe (ffprobe) or the start of ffmpeg (after headers read in-process).
func TestTimeoutOfLocalFile(t *testing.T) {
	path := mediatest.MakeVideo(t, t.TempDir(), "v.mp4", "testsrc=size=160x120:rate=25:duration=3")
	for _, probe := range []string{ProbeAuto, ProbeFFprobe} {
		t.Run(probe, func(t *testing.T) {
			d := newTestDecoder(t, Options{Timeout: time.Nanosecond, Probe: probe, Logger: testLog(t)})
			err := d.Clips(context.Background(), path, func(Clip) error { return nil })
			if !errors.Is(err, ErrTimeout) || pipeline.Classify(err) != pipeline.ClassUnknown {
				t.Fatalf("err = %v (class %v), want unclassified ErrTimeout", err, pipeline.Classify(err))
			}
		})
	}
}
