package media

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/sourceguard"
)

func newTestStreamDecoder(t testing.TB, o StreamOptions) *StreamDecoder {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	if o.Guard == nil {
		o.Guard = mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{IOTimeout: 2 * time.Second})
	}
	if o.Logger == nil {
		o.Logger = testLog(t)
	}
	d, err := NewStreamDecoder(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// windowSink collects emitted windows.
type windowSink struct {
	mu   sync.Mutex
	wins []Window
	at   []time.Time
}

func (s *windowSink) emit(w Window) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wins = append(s.wins, w)
	s.at = append(s.at, time.Now())
	return nil
}

func (s *windowSink) windows() []Window {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Window(nil), s.wins...)
}

// waitWindows waits until the sink holds n windows.
func (s *windowSink) waitWindows(t *testing.T, n int, timeout time.Duration) []Window {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w := s.windows()
		if len(w) >= n {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d windows after %v, want %d", len(w), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redSecond reads which second of the fixture a crop shows from its red
// channel (4*floor(T)).
func redSecond(f Frame) float64 {
	c := f.Image.RGBAAt(f.Image.Bounds().Dx()/2, f.Image.Bounds().Dy()/2)
	return math.Round(float64(c.R) / 4)
}

// checkWindows asserts what every stream window must satisfy: indices
// strictly increasing, frames inside the window and in time order, and
// each frame showing the content of its time.
func checkWindows(t *testing.T, wins []Window, o Options, offset float64) {
	t.Helper()
	for i, w := range wins {
		if i > 0 && w.Index <= wins[i-1].Index {
			t.Errorf("window %d follows window %d", w.Index, wins[i-1].Index)
		}
		start := float64(w.Index) * o.StrideS
		if math.Abs(w.StartS-start) > 1e-9 || w.EndS > start+o.WindowS+1e-9 || w.EndS <= w.StartS {
			t.Errorf("window %d covers [%v, %v), want [%v, %v)", w.Index, w.StartS, w.EndS, start, start+o.WindowS)
		}
		if len(w.Frames) == 0 || len(w.Frames) > o.MaxFrames {
			t.Errorf("window %d has %d frames", w.Index, len(w.Frames))
		}
		for j, f := range w.Frames {
			if f.TimeS < w.StartS-1e-9 || f.TimeS >= w.EndS+1e-9 {
				t.Errorf("window %d [%v, %v) holds a frame at %v", w.Index, w.StartS, w.EndS, f.TimeS)
			}
			if j > 0 && f.TimeS <= w.Frames[j-1].TimeS {
				t.Errorf("window %d: frame times %v then %v", w.Index, w.Frames[j-1].TimeS, f.TimeS)
			}
			// Frames sit on whole content seconds (10 fps, 1 fps sampling
			// from a segment boundary), so the content second is exact.
			if want := math.Floor(f.TimeS - offset + 0.05); redSecond(f) != want {
				t.Errorf("window %d: frame at stream time %v shows second %v, want %v", w.Index, f.TimeS, redSecond(f), want)
			}
		}
	}
}

func contiguous(wins []Window) bool {
	for i := 1; i < len(wins); i++ {
		if wins[i].Index != wins[i-1].Index+1 {
			return false
		}
	}
	return true
}

func TestStreamDecoderLiveHLS(t *testing.T) {
	t.Parallel()
	live := mediatest.NewLiveHLS(t, 6*time.Second)
	edge := float64(live.Published()) + mediatest.TSStart
	o := StreamOptions{WindowS: 2, MaxFrames: 4, StallTimeout: 10 * time.Second}
	d := newTestStreamDecoder(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sink windowSink
	done := make(chan error, 1)
	var res RunResult
	go func() {
		var err error
		res, err = d.Run(ctx, live.URL(), nil, sink.emit)
		done <- err
	}()
	wins := sink.waitWindows(t, 4, 20*time.Second)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
	if !res.Live || res.Windows < 4 {
		t.Errorf("result %+v, want a live run with at least 4 windows", res)
	}
	checkWindows(t, wins, d.win, mediatest.TSStart)
	if !contiguous(wins) {
		t.Errorf("windows not contiguous: %v", indices(wins))
	}
	for _, w := range wins[1:] {
		if len(w.Frames) != 2 {
			t.Errorf("window %d: %d frames, want 2 (2 s at 1 fps)", w.Index, len(w.Frames))
		}
		if !w.Live || w.WallStart.IsZero() || w.WallEnd.Before(w.WallStart) {
			t.Errorf("window %d: live %v, wall [%v, %v]", w.Index, w.Live, w.WallStart, w.WallEnd)
		}
	}
	// A live source joins near its edge: the first window is recent, not
	// the start of the stream.
	if wins[0].StartS < edge-5 || wins[0].StartS > edge {
		t.Errorf("first window starts at %v, the live edge was at %v", wins[0].StartS, edge)
	}
}

func indices(wins []Window) []int {
	out := make([]int, len(wins))
	for i, w := range wins {
		out[i] = w.Index
	}
	return out
}

// A run resumed after an earlier one continues with the next window: none
// repeated, none missing, though the source moved on meanwhile.
func TestStreamDecoderResumeLive(t *testing.T) {
	t.Parallel()
	live := mediatest.NewLiveHLS(t, 4*time.Second)
	d := newTestStreamDecoder(t, StreamOptions{WindowS: 2, MaxFrames: 4})
	run := func(resume *Resume, n int) []Window {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var sink windowSink
		done := make(chan error, 1)
		go func() {
			_, err := d.Run(ctx, live.URL(), resume, sink.emit)
			done <- err
		}()
		sink.waitWindows(t, n, 20*time.Second)
		cancel()
		<-done
		return sink.windows()
	}
	first := run(nil, 2)
	last := first[len(first)-1]
	time.Sleep(3 * time.Second) // the source plays on while no one reads it
	second := run(&Resume{Live: true, Index: last.Index, StartS: last.StartS, EndS: last.EndS, WallEnd: last.WallEnd}, 2)
	if second[0].Index != last.Index+1 {
		t.Errorf("resumed at window %d after window %d", second[0].Index, last.Index)
	}
	all := append(first, second...)
	checkWindows(t, all, d.win, mediatest.TSStart)
	if !contiguous(all) {
		t.Errorf("windows %v are not contiguous", indices(all))
	}
}

// A stalled source is stopped by the watchdog with a retryable error.
func TestStreamDecoderStall(t *testing.T) {
	t.Parallel()
	live := mediatest.NewLiveHLS(t, 3*time.Second)
	d := newTestStreamDecoder(t, StreamOptions{WindowS: 2, StallTimeout: 2 * time.Second,
		Guard: mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{IOTimeout: 30 * time.Second})})
	var sink windowSink
	done := make(chan error, 1)
	go func() {
		_, err := d.Run(context.Background(), live.URL(), nil, func(w Window) error {
			live.Stall() // the source hangs once it has delivered a window
			return sink.emit(w)
		})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStalled) || !pipeline.IsRetryable(err) {
			t.Fatalf("err = %v (class %v), want retryable ErrStalled", err, pipeline.Classify(err))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a stalled stream was not stopped")
	}
}

// A file is windowed like a live stream, in file time, to its end; a
// resumed run seeks and cuts exactly the windows that were left.
func TestStreamDecoderFileResume(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.MakeVideo(t, dir, "steps.ts", "color=c=black:s=96x64:r=10:d=13,format=gbrp,geq=r='4*floor(T)':g=0:b=0",
		"-g", "100", "-f", "mpegts")
	d := newTestStreamDecoder(t, StreamOptions{WindowS: 4, StrideS: 3, MaxFrames: 8})
	run := func(resume *Resume) (RunResult, []Window) {
		var sink windowSink
		res, err := d.Run(context.Background(), path, resume, sink.emit)
		if err != nil {
			t.Fatal(err)
		}
		return res, sink.windows()
	}
	res, all := run(nil)
	if res.Live || !res.Ended {
		t.Fatalf("file run %+v, want ended in file time", res)
	}
	checkWindows(t, all, d.win, 0)
	// Windows [0,4) [3,7) [6,10) [9,13) [12,13): the last cut at the end.
	if got := indices(all); len(got) != 5 || !contiguous(all) || got[0] != 0 {
		t.Fatalf("windows %v, want 0..4", got)
	}
	if end := all[len(all)-1].EndS; math.Abs(end-13) > 0.05 {
		t.Errorf("last window ends at %v, want the file's end 13", end)
	}
	for _, w := range all[:4] {
		if len(w.Frames) != 4 {
			t.Errorf("window %d: %d frames, want 4", w.Index, len(w.Frames))
		}
	}
	k := all[1]
	_, rest := run(&Resume{Index: k.Index, StartS: k.StartS, EndS: k.EndS})
	if len(rest) != len(all)-2 {
		t.Fatalf("resumed after window %d: windows %v", k.Index, indices(rest))
	}
	for i, w := range rest {
		want := all[i+2]
		if w.Index != want.Index || len(w.Frames) != len(want.Frames) {
			t.Errorf("resumed window %d with %d frames, full run had window %d with %d", w.Index, len(w.Frames), want.Index, len(want.Frames))
			continue
		}
		for j := range w.Frames {
			if math.Abs(w.Frames[j].TimeS-want.Frames[j].TimeS) > 1e-6 {
				t.Errorf("window %d frame %d at %v, full run at %v", w.Index, j, w.Frames[j].TimeS, want.Frames[j].TimeS)
			}
		}
	}
}

// args passes each protocol its whitelist and I/O timeout, and never
// RTMP's -timeout, which would make ffmpeg listen instead of connect.
func TestStreamArgs(t *testing.T) {
	g := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{IOTimeout: 7 * time.Second})
	d := &StreamDecoder{o: StreamOptions{}, win: StreamOptions{}.WindowOptions(), guard: g}
	px, err := g.StartProxy("http://h/v.ts", testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	live := &sourceguard.HLSInfo{Live: true, Target: 2, Count: 30}
	resume := &Resume{Live: true, Index: 9, EndS: 100, WallEnd: time.Now().Add(-20 * time.Second)}
	cases := []struct {
		name   string
		src    sourceguard.Source
		resume *Resume
		seek   float64
		want   []string
		absent []string
	}{
		{"file", sourceguard.Source{Scheme: sourceguard.SchemeFile, Input: "file:/dev/fd/3"}, nil, 0,
			[]string{"-protocol_whitelist file", "-i file:/dev/fd/3"}, []string{"-rw_timeout", "-ss"}},
		{"file resumed", sourceguard.Source{Scheme: sourceguard.SchemeFile, Input: "file:/v.mp4"}, &Resume{Index: 3}, 35,
			[]string{"-ss 35.000 -i file:/v.mp4"}, nil},
		{"http", sourceguard.Source{Scheme: sourceguard.SchemeHTTP, Input: "http://h/v.ts", Proxied: true}, nil, 0,
			[]string{"-protocol_whitelist http,https,tcp,tls,crypto,httpproxy", "-http_proxy " + px.URL(), "-rw_timeout 7000000", "-reconnect 1"},
			[]string{"-live_start_index"}},
		{"live HLS resumed", sourceguard.Source{Scheme: sourceguard.SchemeHTTPS, Input: "https://h/l.m3u8", Proxied: true, HLS: live}, resume, 0,
			[]string{"-live_start_index -18"}, nil}, // 20 s behind and 10 s of slack at 2 s a segment (ceil gives 16), plus 2
		{"rtsp", sourceguard.Source{Scheme: sourceguard.SchemeRTSP, Input: "rtsp://10.0.0.7/s"}, nil, 0,
			[]string{"-protocol_whitelist rtsp,rtp,srtp,udp,tcp,tls", "-rtsp_transport tcp", "-timeout 7000000"}, []string{"-http_proxy"}},
		{"rtmp", sourceguard.Source{Scheme: sourceguard.SchemeRTMP, Input: "rtmp://10.0.0.7/live/k"}, nil, 0,
			[]string{"-protocol_whitelist rtmp,rtmps,tcp,tls", "-rw_timeout 7000000"}, []string{"-timeout "}},
		{"srt", sourceguard.Source{Scheme: sourceguard.SchemeSRT, Input: "srt://10.0.0.7:9000"}, nil, 0,
			[]string{"-protocol_whitelist srt,udp"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p *sourceguard.Proxy
			if c.src.Proxied {
				p = px
			}
			args := strings.Join(d.args(c.src, p, c.resume, c.seek), " ")
			for _, w := range append(c.want, "-map 0:v:0", "showinfo=checksum=0", "-fps_mode passthrough", "-f rawvideo -pix_fmt rgb24 pipe:") {
				if !strings.Contains(args, w) {
					t.Errorf("args lack %q:\n%s", w, args)
				}
			}
			for _, a := range c.absent {
				if strings.Contains(args, a) {
					t.Errorf("args hold %q:\n%s", a, args)
				}
			}
		})
	}
}

// A camera's password stays out of errors, which end up in the stream
// state and logs, even where ffmpeg quotes the URL.
func TestStreamErrorsHidePassword(t *testing.T) {
	d := newTestStreamDecoder(t, StreamOptions{StallTimeout: 5 * time.Second})
	port := freePort(t, "tcp") // nothing listens there
	for _, uri := range []string{
		fmt.Sprintf("rtsp://admin:hunter2@127.0.0.1:%d/stream1", port),
		fmt.Sprintf("rtmp://admin:hunter2@127.0.0.1:%d/live/key", port),
	} {
		_, err := d.Run(context.Background(), uri, nil, func(Window) error { return nil })
		if err == nil {
			t.Fatalf("%s: no error from a closed port", uri)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the password: %v", err)
		}
		if !pipeline.IsRetryable(err) && pipeline.Classify(err) != pipeline.ClassUnknown {
			t.Errorf("%s: a camera that is not up yet is %v, want a retry: %v", uri, pipeline.Classify(err), err)
		}
		t.Log(err)
	}
}
