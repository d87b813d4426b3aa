package webtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/internal/testenv"
)

const chromium = "/usr/bin/chromium"

// requirePipeline skips where the stages cannot run (fails under make
// test, which installs what they need).
func requirePipeline(t testing.TB) {
	t.Helper()
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
}

// requireTools skips, saying what is missing, where the browser test
// cannot run: Debian's chromium, node and playwright-core.
func requireTools(t *testing.T) string {
	t.Helper()
	requirePipeline(t)
	testenv.File(t, chromium, "Debian's chromium", "make setup-test installs it")
	testenv.Tools(t, "the browser test drives chromium with playwright-core on node; install nodejs", "node")
	testenv.File(t, "node_modules/playwright-core/package.json", "playwright-core", "make setup-test runs npm ci in httpapi/webtest")
	node, _ := exec.LookPath("node")
	return node
}

func ffmpeg(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v: %s", args, err, out)
	}
}

// colourRun writes a video showing each colour for two seconds, encoded
// for browsers (H.264, moov first).
func colourRun(t testing.TB, path string, colours ...string) {
	t.Helper()
	var args []string
	var inputs string
	for i, c := range colours {
		args = append(args, "-f", "lavfi", "-i", "color=c="+c+":size=320x240:rate=10:duration=2")
		inputs += fmt.Sprintf("[%d:v]", i)
	}
	args = append(args, "-filter_complex", fmt.Sprintf("%sconcat=n=%d:v=1:a=0", inputs, len(colours)),
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", path)
	ffmpeg(t, args...)
}

func postJSON(ctx context.Context, url string, body any) (*http.Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

func getJSON(ctx context.Context, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil && resp.StatusCode == http.StatusOK {
		return resp.StatusCode, json.Unmarshal(data, v)
	}
	return resp.StatusCode, nil
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("%s: gave up, last state: %s", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pipeline is the whole pipeline on an embedded broker with the HTTP API,
// the colour videos indexed through it.
type pipeline struct {
	app    *app.App
	base   string
	videos string
}

// startIndexed runs every stage with the colour bundle and indexes three
// videos of two-second colour runs, in two-second windows, through
// POST /v1/videos: traffic's third window (from 4 s) is blue.
func startIndexed(t testing.TB, ctx context.Context) pipeline {
	t.Helper()
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	if err := testmodels.WriteAll(models); err != nil {
		t.Fatal(err)
	}
	videos := filepath.Join(dir, "videos")
	if err := os.MkdirAll(videos, 0o755); err != nil {
		t.Fatal(err)
	}
	// Windows of two seconds: traffic's third window (from 4 s) is blue.
	colourRun(t, filepath.Join(videos, "traffic.mp4"), "red", "green", "blue")
	colourRun(t, filepath.Join(videos, "meadow.mp4"), "green", "yellow")
	colourRun(t, filepath.Join(videos, "sunset.mp4"), "yellow", "red")

	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = filepath.Join(models, "color")
	cfg.Stages.Query.MaxBatch = 1
	cfg.Stages.Sample.Sources.FileRoots = []string{videos}
	cfg.HTTP.Addr = "127.0.0.1:0"
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("VIDX_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := app.New(ctx, cfg, app.AllStages, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("stages: %v", err)
		}
		a.Close()
	})
	base := "http://" + a.HTTPAddr()

	waitFor(t, ctx, "API ready", func() (bool, string) {
		code, err := getJSON(ctx, base+"/v1/videos/none", nil)
		return code == http.StatusNotFound, fmt.Sprint(code, err)
	})
	want := map[string]int{"traffic": 3, "meadow": 2, "sunset": 2}
	for id := range want {
		resp, err := postJSON(ctx, base+"/v1/videos", map[string]any{
			"video_id": id, "uri": filepath.Join(videos, id+".mp4"),
			"segment": map[string]any{"mode": "window", "window_s": 2, "stride_s": 2},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /v1/videos %s: %d", id, resp.StatusCode)
		}
	}
	for id, clips := range want {
		waitFor(t, ctx, id+" indexed", func() (bool, string) {
			var v httpapi.VideoResponse
			code, err := getJSON(ctx, base+"/v1/videos/"+id, &v)
			if v.Status == httpapi.StatusFailed {
				t.Fatalf("%s failed: %s", id, v.Error)
			}
			return code == 200 && v.Status == httpapi.StatusIndexed && v.Clips == clips, fmt.Sprintf("%d %+v %v", code, v, err)
		})
	}
	waitFor(t, ctx, "thumbnail of traffic's blue clip", func() (bool, string) {
		code, err := getJSON(ctx, base+httpapi.ThumbnailPath("traffic", 2), nil)
		return code == 200, fmt.Sprint(code, err)
	})
	return pipeline{app: a, base: base, videos: videos}
}

// TestSearchPageInBrowser searches from the page in chromium: the clip
// where "traffic" turns blue is first, with its thumbnail, and clicking it
// opens the player at the clip's start.
func TestSearchPageInBrowser(t *testing.T) {
	node := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	base := startIndexed(t, ctx).base

	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifacts, "search-page.png")
	cmd := exec.CommandContext(ctx, node, "search.mjs", base+"/", "blue", "traffic", "4", shot)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("browser: %s", strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatalf("browser check failed: %v\n%s", err, stderr.String())
	}
	var summary struct {
		Video          string  `json:"video"`
		Start          float64 `json:"start"`
		CurrentTime    float64 `json:"currentTime"`
		ThumbnailWidth int     `json:"thumbnailWidth"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &summary); err != nil {
		t.Fatalf("browser summary %q: %v", stdout.String(), err)
	}
	if summary.Video != "traffic" || summary.Start != 4 || summary.CurrentTime != 4 || summary.ThumbnailWidth <= 0 {
		t.Errorf("browser saw %+v, want traffic from 4 s with a thumbnail", summary)
	}
	t.Logf("screenshot: %s", shot)
	fmt.Printf("search page screenshot: %s\n", shot)
}
