package streams_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/stages/sample"
)

func cpuSeconds(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// TestStreamCapacity measures what one sample-stage replica spends per live
// stream at 1 fps: N simulated live HLS cameras (VIDX_STREAM_CAPACITY=N,
// picture VIDX_STREAM_SIZE, default 640x360 at 25 fps) are decoded,
// windowed, cropped and JPEG-encoded for VIDX_STREAM_SECONDS (default 30),
// and the CPU time of the process and its ffmpeg children is divided by
// the wall time. Kafka is left out: its cost is the broker's. Every stream
// must keep up with real time.
func TestStreamCapacity(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VIDX_STREAM_CAPACITY"))
	if n <= 0 {
		t.Skip("set VIDX_STREAM_CAPACITY=N to measure N concurrent streams")
	}
	size := os.Getenv("VIDX_STREAM_SIZE")
	if size == "" {
		size = "640x360"
	}
	seconds := 30
	if s, _ := strconv.Atoi(os.Getenv("VIDX_STREAM_SECONDS")); s > 0 {
		seconds = min(s, mediatest.FixtureSeconds-10)
	}
	fix := mediatest.HLSSegmentsOf(t, size, 25)
	live := mediatest.NewLiveHLSOf(t, fix, 5*time.Second)
	const window = 10.0
	d, err := media.NewStreamDecoder(media.StreamOptions{WindowS: window, StallTimeout: 20 * time.Second,
		Guard: mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{IOTimeout: 2 * time.Second}), Logger: mediatest.Log(t)})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	lastEnd := make([]float64, n)
	windows := make([]int, n)
	var wg sync.WaitGroup
	selfBefore, childBefore := cpuSeconds(syscall.RUSAGE_SELF), cpuSeconds(syscall.RUSAGE_CHILDREN)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.Run(ctx, live.URL()+"?cam="+strconv.Itoa(i), nil, func(w media.Window) error {
				if _, err := sample.PackClip(schemas.ClipHeader{VideoID: "cam", ClipIndex: w.Index, StartS: w.StartS, EndS: w.EndS}, w.Frames, schemas.CodecJPEG, 95); err != nil {
					return err
				}
				mu.Lock()
				lastEnd[i], windows[i] = w.EndS, windows[i]+1
				mu.Unlock()
				return nil
			})
			if ctx.Err() == nil {
				t.Errorf("stream %d stopped: %v", i, err)
			}
		}()
	}
	time.Sleep(time.Duration(seconds) * time.Second)
	edge := float64(live.Published()) + mediatest.TSStart
	cancel()
	wg.Wait()
	wall := time.Since(start).Seconds()
	self, children := cpuSeconds(syscall.RUSAGE_SELF)-selfBefore, cpuSeconds(syscall.RUSAGE_CHILDREN)-childBefore
	cores := (self + children) / wall
	behind := 0
	for i := range n {
		// A stream keeping up has emitted the window before the one in
		// progress at the live edge.
		if lastEnd[i] < edge-2*window-1 {
			behind++
			t.Logf("stream %d: last window ends at %.1f s, live edge %.1f s", i, lastEnd[i], edge)
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%d streams of %s@25fps at 1 fps for %.0fs: %.2f cores (vidx %.2f, ffmpeg %.2f), %.3f cores/stream; %d behind; loadavg %s",
		n, size, wall, cores, self/wall, children/wall, cores/float64(n), behind, load)
	if behind > 0 {
		t.Errorf("%d of %d streams fell behind real time", behind, n)
	}
}
