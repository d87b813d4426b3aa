package streams_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/internal/testenv"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/query"
	"github.com/vidx/vidx/stages/sample/streams"
)

func appTestLog() *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// liveEncoder runs ffmpeg as a live encoder: a red test pattern at real
// time (-re) into an HLS playlist of 1 s segments, served over HTTP.
type liveEncoder struct {
	cmd   *exec.Cmd
	start time.Time // when ffmpeg began producing content time 0
	done  chan struct{}
	srv   *httptest.Server
}

func startLiveEncoder(t *testing.T, seconds int) *liveEncoder {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-v", "error", "-re",
		"-f", "lavfi", "-i", fmt.Sprintf("color=c=red:size=320x240:rate=10:duration=%d,noise=alls=10:allf=t", seconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "10", "-sc_threshold", "0",
		"-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_flags", "temp_file",
		filepath.Join(dir, "live.m3u8"))
	e := &liveEncoder{cmd: cmd, done: make(chan struct{}), srv: httptest.NewServer(http.FileServer(http.Dir(dir)))}
	e.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		cancel()
		<-e.done
		e.srv.Close()
	})
	return e
}

func (e *liveEncoder) playing() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// TestLiveStreamSearchableWhilePlaying registers a live HLS stream with the
// whole pipeline on the embedded broker and store: windows are indexed
// while the encoder plays, a query finds the stream before it ends, and the
// freshness of each window (from its end in the stream to its vector being
// searchable) is measured.
func TestLiveStreamSearchableWhilePlaying(t *testing.T) {
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
	if testing.Short() {
		t.Skip("plays a live source in real time; skipped with -short")
	}
	t.Parallel()
	models := filepath.Join(t.TempDir(), "models")
	if err := testmodels.WriteAll(models); err != nil {
		t.Fatal(err)
	}
	// VIDX_FRESHNESS_WINDOWS measures over more windows than the default.
	want := 10
	if n, _ := strconv.Atoi(os.Getenv("VIDX_FRESHNESS_WINDOWS")); n > want {
		want = n
	}
	const window = 2.0
	playFor := int(window)*want + 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(playFor+50)*time.Second)
	defer cancel()
	enc := startLiveEncoder(t, playFor)

	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = filepath.Join(models, "color")
	cfg.Stages.Query.MaxBatch = 1
	cfg.Telemetry.Addr = ""
	cfg.Stages.Sample.Sources.AllowNetworks = []string{"127.0.0.1/32"}
	cfg.Stages.Sample.Streams.WindowS = window
	cfg.Stages.Sample.Streams.BackoffMin = 200 * time.Millisecond
	a, err := app.New(ctx, cfg, app.AllStages, appTestLog())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("app: %v", err)
		}
	}()

	// The encoder needs a first segment before the playlist exists.
	url := enc.srv.URL + "/live.m3u8"
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(enc.start) > 15*time.Second {
			t.Fatal("the encoder wrote no playlist")
		}
		time.Sleep(100 * time.Millisecond)
	}
	kc, topics := a.Kafka(), a.Config.Topics
	if err := kafka.EnsureCompactedTopics(ctx, kc, topics.Streams, topics.StreamState); err != nil {
		t.Fatal(err)
	}
	spec := schemas.StreamSpec{StreamID: "red-cam", URI: url, Source: "lobby"}
	value, _ := schemas.EncodeStream(&spec)
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: topics.Streams, Key: []byte(spec.StreamID), Value: value}); err != nil {
		t.Fatal(err)
	}

	// Clip headers carry when each window ended in the stream.
	var mu sync.Mutex
	headers := map[int]schemas.ClipHeader{}
	go func() {
		tap := kafka.NewTap(kc, topics.Clips, true)
		defer tap.Close()
		for {
			m, err := tap.Next(runCtx)
			if err != nil {
				return
			}
			if c, err := schemas.DecodeClip(m.Value); err == nil && c.Header.StreamID == spec.StreamID {
				mu.Lock()
				headers[c.Header.ClipIndex] = c.Header
				mu.Unlock()
			}
		}
	}()

	probe := make([]float32, a.Manifest().EmbeddingDim)
	probe[0] = 1
	searchable := map[int]time.Time{}
	var queried bool
	for len(searchable) < want {
		if ctx.Err() != nil {
			t.Fatalf("%d windows searchable before the deadline, want %d", len(searchable), want)
		}
		hits, err := a.Store().Search(ctx, a.Config.Store.Collection, sinks.SearchRequest{
			Vector: probe, TopK: 1000, Filter: sinks.Filter{VideoIDs: []string{spec.StreamID}}})
		if err != nil && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		now := time.Now()
		for _, h := range hits {
			if _, ok := searchable[h.Payload.ClipIndex]; !ok {
				searchable[h.Payload.ClipIndex] = now
			}
		}
		if len(searchable) >= 3 && !queried {
			// Ask through the query stage while the encoder still plays.
			r := ask(t, ctx, a, "a red video")
			if !enc.playing() {
				t.Fatal("the stream ended before the query was answered")
			}
			if len(r.Hits) == 0 || r.Hits[0].VideoID != spec.StreamID || r.Hits[0].Source != "lobby" {
				t.Fatalf("query during the stream: %+v", r.Hits)
			}
			h := r.Hits[0]
			if h.EndS-h.StartS != window || h.StartS != float64(h.ClipIndex)*window {
				t.Errorf("hit names window %d as [%v, %v)", h.ClipIndex, h.StartS, h.EndS)
			}
			t.Logf("while playing: %q -> %s window %d [%.0fs, %.0fs)", r.Text, h.VideoID, h.ClipIndex, h.StartS, h.EndS)
			queried = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !enc.playing() {
		t.Error("the stream ended before its windows were searchable")
	}

	// Freshness: from the window's end in the stream (content time on the
	// encoder's clock: it includes the HLS segmenting and playlist polling
	// delays) to the moment its vector was searchable; and the pipeline's
	// share, from the clip's emission to searchable.
	mu.Lock()
	defer mu.Unlock()
	var pipe, produced []float64
	for idx, at := range searchable {
		h, ok := headers[idx]
		if !ok {
			continue
		}
		pipe = append(pipe, at.Sub(h.SampledAt).Seconds())
		// The encoder's MPEG-TS clock starts at 1.4 s.
		produced = append(produced, at.Sub(enc.start.Add(time.Duration((h.EndS-1.4)*float64(time.Second)))).Seconds())
	}
	if len(pipe) < want/2 {
		t.Fatalf("clip headers of %d windows seen, want %d", len(pipe), want/2)
	}
	t.Logf("freshness over %d windows of %.0f s: window end in the stream -> searchable p50 %.2fs p99 %.2fs; clip emitted -> searchable p50 %.2fs p99 %.2fs",
		len(pipe), window, percentile(produced, 0.5), percentile(produced, 0.99), percentile(pipe, 0.5), percentile(pipe, 0.99))
	if p := percentile(produced, 0.5); p > 15 {
		t.Errorf("median freshness %.1fs: windows are not searchable seconds after they end", p)
	}
	status := a.Streams.Status()
	if len(status) != 1 || status[0].State != schemas.StreamRunning || !status[0].Live || status[0].Windows < int64(want) {
		t.Errorf("status %+v", status)
	}
	states, err := streams.ReadStates(ctx, kc, topics.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	for id, st := range states {
		t.Logf("stream state %s: %+v", id, st)
	}
}

func ask(t *testing.T, ctx context.Context, a *app.App, text string) schemas.Result {
	t.Helper()
	r, err := query.Ask(ctx, a.Kafka(), a.Config.Topics.Queries, a.Config.Topics.Results, schemas.Query{Text: text, TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
