package eval

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/internal/testenv"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
)

// The generated models and example videos take a few seconds; they are made
// once per test binary.
var (
	fixOnce sync.Once
	fixDir  string
	fixErr  error
)

// exampleVideosInTests is how many example videos the tests generate.
const exampleVideosInTests = 6

func TestMain(m *testing.M) {
	code := m.Run()
	if fixDir != "" {
		os.RemoveAll(fixDir)
	}
	os.Exit(code)
}

// fixtures returns a directory holding models/ (the test bundles) and
// example/ (the first example videos and their dataset.jsonl), or skips.
func fixtures(t *testing.T) string {
	t.Helper()
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
	fixOnce.Do(func() {
		if fixDir, fixErr = os.MkdirTemp("", "vidx-eval-test-"); fixErr != nil {
			return
		}
		if fixErr = testmodels.WriteAll(filepath.Join(fixDir, "models")); fixErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, fixErr = WriteExample(ctx, filepath.Join(fixDir, "example"), ExampleOptions{Videos: exampleVideosInTests})
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fixDir
}

func testLogger() *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestStreamingMatchesQueryStage checks the in-process streaming scores
// against the real query stage: the captions are published one at a time
// through the queries topic to a query stage with the same bank size, and
// every video's score in its results must equal ours, for every mode.
func TestStreamingMatchesQueryStage(t *testing.T) {
	fix := fixtures(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	videos := filepath.Join(fix, "example", "videos")
	dsFile := filepath.Join(t.TempDir(), "streaming.jsonl")
	// With a bank of 3: captions 2 and 4 repeat texts still in the bank
	// (left out of their own axis, refreshed in place); from caption 5 on
	// the ring evicts.
	lines := []string{
		`{"video_id": "red", "path": "` + filepath.Join(videos, "red.mp4") + `", "captions": ["a red screen", "red"]}`,
		`{"video_id": "red-then-blue", "path": "` + filepath.Join(videos, "red-then-blue.mp4") + `", "captions": ["red", "red and then blue", "a red screen"]}`,
		`{"video_id": "green", "path": "` + filepath.Join(videos, "green.mp4") + `", "captions": ["green", "a green and blue image"]}`,
		`{"video_id": "blue", "path": "` + filepath.Join(videos, "blue.mp4") + `", "captions": ["something blue", "blue"]}`,
		`{"video_id": "yellow", "path": "` + filepath.Join(videos, "yellow.mp4") + `", "captions": ["a yellow and green picture", "red and then blue"]}`,
	}
	if err := os.WriteFile(dsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDataset(dsFile)
	if err != nil {
		t.Fatal(err)
	}
	const bankSize = 3
	ev, err := Start(ctx, Options{
		Bundle: filepath.Join(fix, "models", "color"), Dataset: ds, BankSize: bankSize,
		WorkDir: t.TempDir(), Log: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if err := ev.Ingest(ctx); err != nil {
		t.Fatal(err)
	}
	emb, err := ev.Embed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	report, err := ev.Score(emb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ev.Config()
	// The store is a directory with a lock: the query stages below open it
	// after the ingest stages let go.
	if err := ev.Close(); err != nil {
		t.Fatal(err)
	}

	n := len(ds.Videos)
	for _, mode := range Modes() {
		want, err := StreamScores(emb, mode, report.Temperature, bankSize)
		if err != nil {
			t.Fatal(err)
		}
		// A fresh query stage per mode: each starts with an empty bank.
		qc := cfg
		qc.Embedded.BrokerPort = 0
		qc.Stages.Query.MaxBatch = 1
		qc.Stages.Query.BankSize = bankSize
		qc.Stages.Query.Rerank = mode
		qc.Stages.Query.Temperature = report.Temperature
		qc.Stages.Query.Candidates = n
		qc.Stages.Query.TopK = n
		a, err := app.New(ctx, qc, []string{app.StageQuery}, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }()

		got := make([][]float64, len(emb.Texts))
		for i, text := range emb.Texts {
			res, err := ask(ctx, a.Kafka(), qc.Topics.Queries, qc.Topics.Results, fmt.Sprintf("%s-%d", mode, i), text, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Hits) != n || res.Candidates != n {
				t.Fatalf("%s caption %d: %d hits of %d candidates, want %d", mode, i, len(res.Hits), res.Candidates, n)
			}
			got[i] = make([]float64, n)
			for _, h := range res.Hits {
				got[i][videoIndex(t, ds, h.VideoID)] = h.Score
			}
			for j := range n {
				if d := math.Abs(got[i][j] - want[i][j]); d > 1e-12*math.Max(1, math.Abs(want[i][j])) {
					t.Errorf("%s caption %d %q, video %s: query stage score %.17g, eval %.17g",
						mode, i, text, ds.Videos[j].VideoID, got[i][j], want[i][j])
				}
			}
		}
		stop()
		if err := <-done; err != nil {
			t.Errorf("query stage: %v", err)
		}
		a.Close()

		gotRanks, err := TextToVideoRanks(got, emb.Truth)
		if err != nil {
			t.Fatal(err)
		}
		if m := Summarize(gotRanks); m != report.T2VStream.Get(mode) {
			t.Errorf("%s: metrics from the query stage %+v, eval reports %+v", mode, m, report.T2VStream.Get(mode))
		}
		t.Logf("%s: ranks over Kafka %v; eval %+v", mode, gotRanks, report.T2VStream.Get(mode))
	}
	// The dataset is built so the modes and ranks are not all trivial.
	if report.T2VStream.None.R1 == 100 || report.T2VStream.None.R1 == 0 {
		t.Errorf("streaming none R@1 %.1f: the dataset no longer exercises ranking", report.T2VStream.None.R1)
	}
}

// ask publishes one query and waits for its result.
func ask(ctx context.Context, kc kafka.Config, queries, results, id, text string, topK int) (schemas.Result, error) {
	q := schemas.Query{QueryID: id, Text: text, TopK: topK}
	value, err := schemas.Encode(&q)
	if err != nil {
		return schemas.Result{}, err
	}
	var res schemas.Result
	_, err = kafka.Request(ctx, kc, pipeline.Output{Topic: queries, Key: []byte(id), Value: value}, results,
		func(m pipeline.Message) bool {
			r, err := schemas.DecodeResult(m.Value)
			if err != nil || r.QueryID != id {
				return false
			}
			res = r
			return true
		})
	return res, err
}

func videoIndex(t *testing.T, ds *Dataset, id string) int {
	t.Helper()
	for i, v := range ds.Videos {
		if v.VideoID == id {
			return i
		}
	}
	t.Fatalf("result names unknown video %q", id)
	return -1
}

// TestIngestReportsDeadLetters checks that a dataset file that is not a
// video fails the evaluation with the video and its line, instead of
// waiting forever for it to be indexed.
func TestIngestReportsDeadLetters(t *testing.T) {
	fix := fixtures(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.mp4"), []byte("this is not a video\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := writeDataset(t, dir, `{"video_id": "red", "path": "`+filepath.Join(fix, "example", "videos", "red.mp4")+`", "captions": ["red"]}
{"video_id": "notes", "path": "notes.mp4", "captions": ["some notes"]}
`)
	ds, err := LoadDataset(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Evaluate(ctx, Options{Bundle: filepath.Join(fix, "models", "color"), Dataset: ds, Log: testLogger()})
	if err == nil || !strings.Contains(err.Error(), `video "notes"`) || !strings.Contains(err.Error(), "line 2") ||
		!strings.Contains(err.Error(), "stage sample") {
		t.Errorf("err = %v, want it to name video notes, line 2 and the sample stage", err)
	}
}

func TestStartRejects(t *testing.T) {
	fix := fixtures(t)
	ds := &Dataset{File: "x", Videos: []Video{{VideoID: "v", URI: "/dev/null", Captions: []string{"x"}}}}
	color := filepath.Join(fix, "models", "color")
	used := t.TempDir()
	if err := os.MkdirAll(filepath.Join(used, "data", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"pooling", Options{Bundle: color, Dataset: ds, Pooling: "maxP"}, `pooling "maxP"`},
		{"bank", Options{Bundle: color, Dataset: ds, BankSize: -1}, "bank size"},
		{"bundle", Options{Bundle: filepath.Join(fix, "nope"), Dataset: ds}, "nope"},
		{"dataset", Options{Bundle: color}, "no dataset"},
		{"used work dir", Options{Bundle: color, Dataset: ds, WorkDir: used}, "earlier run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Start(context.Background(), tt.o)
			if err == nil {
				e.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
