package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/query"
)

// fixtures are generated once per test binary: models and videos take a
// few seconds to make.
type fixtures struct {
	models string
	videos map[string]string
}

var (
	fixOnce sync.Once
	fix     fixtures
	fixErr  error
)

var colours = []string{"red", "green", "blue", "yellow"}

func requireTools(t *testing.T) fixtures {
	t.Helper()
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
	fixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vidx-app-test-")
		if err != nil {
			fixErr = err
			return
		}
		fix.models = filepath.Join(dir, "models")
		if fixErr = testmodels.WriteAll(fix.models); fixErr != nil {
			return
		}
		fix.videos = map[string]string{}
		for _, c := range colours {
			p := filepath.Join(dir, c+".mp4")
			if fixErr = ffmpeg("-f", "lavfi", "-i", "color=c="+c+":size=320x240:rate=10:duration=3",
				"-vf", "noise=alls=10:allf=t", "-c:v", "libx264", "-pix_fmt", "yuv420p", p); fixErr != nil {
				return
			}
			fix.videos[c] = p
		}
		// Bad inputs: a text file named .mp4 and an mp4 cut in half.
		text := filepath.Join(dir, "notes.mp4")
		if fixErr = os.WriteFile(text, []byte("this is not a video\n"), 0o644); fixErr != nil {
			return
		}
		fix.videos["text"] = text
		whole, err := os.ReadFile(fix.videos["red"])
		if err != nil {
			fixErr = err
			return
		}
		cut := filepath.Join(dir, "truncated.mp4")
		if fixErr = os.WriteFile(cut, whole[:len(whole)/2], 0o644); fixErr != nil {
			return
		}
		fix.videos["truncated"] = cut
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func ffmpeg(args ...string) error {
	out, err := exec.Command("ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ffmpeg %v: %w: %s", args, err, out)
	}
	return nil
}

func testLogger() *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startApp runs every stage against a fresh embedded broker and store.
func startApp(t *testing.T, ctx context.Context, f fixtures, bundle string) *app.App {
	t.Helper()
	return startAppWith(t, ctx, f, func(c *config.Config) { c.Model.Bundle = filepath.Join(f.models, bundle) })
}

// startAppWith is startApp on the colour bundle with a configuration
// change; it stops the stages when the test ends.
func startAppWith(t *testing.T, ctx context.Context, f fixtures, change func(*config.Config), opts ...app.Option) *app.App {
	t.Helper()
	return startAppOn(t, ctx, f, nil, change, opts...)
}

// eachBroker runs fn once for each broker VIDX_TEST_KAFKA selects: a nil
// broker stands for the embedded one that `vidx up --embedded` starts, the
// other is the shared real Apache Kafka.
func eachBroker(t *testing.T, fn func(t *testing.T, b *kafkatest.Broker)) {
	t.Helper()
	kinds, err := kafkatest.Kinds()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			var b *kafkatest.Broker
			if k != kafkatest.Embedded {
				b = kafkatest.Start(t, k, 4)
			}
			fn(t, b)
		})
	}
}

// useBroker points cfg at b, with topics and consumer groups of the test's
// own so that tests sharing one real broker cannot see each other.
func useBroker(cfg *config.Config, b *kafkatest.Broker) {
	cfg.Embedded.Broker = false
	cfg.Kafka.Brokers, cfg.Kafka.Partitions = b.Addrs, b.Partitions
	tp := &cfg.Topics
	for _, name := range []*string{&tp.Videos, &tp.Clips, &tp.FrameEmbeddings, &tp.ClipEmbeddings, &tp.Queries,
		&tp.Results, &tp.DeadLetters, &tp.Streams, &tp.StreamState} {
		*name = b.Name(*name)
	}
	st := &cfg.Stages
	for stage, rt := range map[string]*kafka.Runtime{app.StageSample: &st.Sample.Runtime, app.StageEncode: &st.Encode,
		app.StagePool: &st.Pool.Runtime, app.StageIndex: &st.Index, app.StageQuery: &st.Query.Runtime} {
		rt.Group = b.Name("vidx-" + stage)
	}
	st.Sample.Streams.Group = b.Name("vidx-sample-streams")
}

// startAppOn is startAppWith on broker b (nil: the embedded broker).
func startAppOn(t *testing.T, ctx context.Context, f fixtures, b *kafkatest.Broker, change func(*config.Config), opts ...app.Option) *app.App {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = filepath.Join(f.models, "color")
	cfg.Stages.Query.MaxBatch = 1
	if change != nil {
		change(&cfg)
	}
	if b != nil {
		useBroker(&cfg, b)
	}
	a, err := app.New(ctx, cfg, app.AllStages, testLogger(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stages: %v", err)
		}
		a.Close()
	})
	return a
}

func publish(t *testing.T, ctx context.Context, a *app.App, key string, value []byte) {
	t.Helper()
	if err := kafka.Produce(ctx, a.Kafka(), pipeline.Output{Topic: a.Config.Topics.Videos, Key: []byte(key), Value: value}); err != nil {
		t.Fatal(err)
	}
}

func job(id, uri string) []byte {
	v, err := schemas.Encode(&schemas.VideoJob{VideoID: id, URI: uri, Source: "test"})
	if err != nil {
		panic(err)
	}
	return v
}

func waitCount(t *testing.T, ctx context.Context, s sinks.Store, collection string, want int) {
	t.Helper()
	for {
		n, err := s.Count(ctx, collection, sinks.Filter{})
		if err != nil && !errors.Is(err, sinks.ErrNotFound) {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if n > want {
			t.Fatalf("index holds %d clips, want %d", n, want)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("index holds %d clips after the deadline, want %d", n, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ask(t *testing.T, ctx context.Context, a *app.App, id, text string) schemas.Result {
	t.Helper()
	r, err := query.Ask(ctx, a.Kafka(), a.Config.Topics.Queries, a.Config.Topics.Results, schemas.Query{QueryID: id, Text: text, TopK: 4})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPipelineEndToEnd publishes good and bad jobs, waits for the index,
// then queries through the results topic: each colour query must rank its
// video first, and every bad job must be dead-lettered with its reason while
// the jobs after it are still indexed.
func TestPipelineEndToEnd(t *testing.T) {
	f := requireTools(t)
	eachBroker(t, func(t *testing.T, b *kafkatest.Broker) { testPipelineEndToEnd(t, f, b) })
}

func testPipelineEndToEnd(t *testing.T, f fixtures, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := startAppOn(t, ctx, f, b, nil)

	bad := []struct {
		key, value, reason string
	}{
		{"malformed", `{"schema_version": 1, "video_id": "x", "uri": `, "malformed JSON"},
		{"future", `{"schema_version": 99, "video_id": "x", "uri": "/x.mp4"}`, "unsupported schema version"},
		{"missing", string(job("missing", "/nonexistent/video.mp4")), "does not exist"},
		{"text", string(job("text", f.videos["text"])), "video"},
		{"truncated", string(job("truncated", f.videos["truncated"])), "video"},
	}
	// Interleave: a bad job before each good one, all on one key so they
	// share a partition and order.
	for i, c := range colours {
		if i < len(bad) {
			publish(t, ctx, a, "k", []byte(bad[i].value))
		}
		publish(t, ctx, a, "k", job(c, f.videos[c]))
	}
	publish(t, ctx, a, "k", []byte(bad[len(bad)-1].value))
	publish(t, ctx, a, "k", job("red-again", f.videos["red"]))

	waitCount(t, ctx, a.Store(), a.Config.Store.Collection, len(colours)+1)

	tap := kafka.NewTap(a.Kafka(), a.Config.Topics.DeadLetters, true)
	defer tap.Close()
	got := map[string]schemas.DeadLetter{}
	for len(got) < len(bad) {
		m, err := tap.Next(ctx)
		if err != nil {
			t.Fatalf("dead letters: got %d of %d: %v", len(got), len(bad), err)
		}
		dl, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			if string(dl.Value) == b.value {
				got[b.key] = dl
			}
		}
	}
	for _, b := range bad {
		dl := got[b.key]
		if dl.Class != "poison" || dl.Stage != app.StageSample || dl.Topic != a.Config.Topics.Videos {
			t.Errorf("%s: dead letter %s from %s/%s, want poison from sample/videos", b.key, dl.Class, dl.Stage, dl.Topic)
		}
		if !strings.Contains(dl.Reason, b.reason) {
			t.Errorf("%s: reason %q does not mention %q", b.key, dl.Reason, b.reason)
		}
		t.Logf("%s -> %s", b.key, dl.Reason)
	}

	for i, c := range colours {
		r := ask(t, ctx, a, fmt.Sprintf("q%d", i), "a "+c+" video")
		if len(r.Hits) == 0 {
			t.Fatalf("%s: no hits", c)
		}
		first := r.Hits[0].VideoID
		if first != c && !(c == "red" && first == "red-again") {
			t.Errorf("query %q ranked %s first: %+v", r.Text, first, r.Hits)
		}
		if r.Hits[0].Cosine <= r.Hits[len(r.Hits)-1].Cosine {
			t.Errorf("query %q: hits not ordered by relevance: %+v", r.Text, r.Hits)
		}
		if r.Rerank != "symmetric" || r.BankSize != i {
			t.Errorf("query %q: rerank %s with bank %d, want symmetric with %d", r.Text, r.Rerank, r.BankSize, i)
		}
	}
	checkQueriesByExampleAndErrors(t, ctx, a)
	checkDelete(t, ctx, a)
}

// checkQueriesByExampleAndErrors asks with an image and with an indexed
// clip, and sends queries that cannot be answered: each gets a result on
// the results topic, the bad ones with their error.
func checkQueriesByExampleAndErrors(t *testing.T, ctx context.Context, a *app.App) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.RGBA{255, 0, 0, 255}}, image.Point{}, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	askQ := func(q schemas.Query) schemas.Result {
		t.Helper()
		r, err := query.Ask(ctx, a.Kafka(), a.Config.Topics.Queries, a.Config.Topics.Results, q)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	byImage := askQ(schemas.Query{QueryID: "by-image", Image: base64.StdEncoding.EncodeToString(buf.Bytes()), TopK: 3})
	if byImage.Error != nil || len(byImage.Hits) == 0 || !strings.HasPrefix(byImage.Hits[0].VideoID, "red") {
		t.Errorf("a red picture: error %+v, hits %+v; want a red video first", byImage.Error, byImage.Hits)
	}
	like := askQ(schemas.Query{QueryID: "like-red", Like: &schemas.ClipRef{VideoID: "red", ClipIndex: 0}, TopK: 3})
	if like.Error != nil || len(like.Hits) == 0 || like.Hits[0].VideoID != "red-again" {
		t.Errorf("like red/0: error %+v, hits %+v; want red-again first", like.Error, like.Hits)
	}
	for _, h := range like.Hits {
		if h.VideoID == "red" && h.ClipIndex == 0 {
			t.Errorf("like red/0 returned the clip itself")
		}
	}
	unknown := askQ(schemas.Query{QueryID: "like-nothing", Like: &schemas.ClipRef{VideoID: "mauve", ClipIndex: 0}})
	if e := unknown.Error; e == nil || e.Code != schemas.ErrCodeInvalidQuery || !strings.Contains(e.Message, `"mauve"`) || len(unknown.Hits) != 0 {
		t.Errorf("unknown clip: %+v, want an invalid_query error naming it", unknown.Error)
	}
	// A malformed query never passes Ask's validation; send it raw.
	m, err := kafka.Request(ctx, a.Kafka(), pipeline.Output{Topic: a.Config.Topics.Queries, Key: []byte("q-malformed"),
		Value: []byte(`{"schema_version": 1, "query_id": "q-malformed", "text": "  "}`)}, a.Config.Topics.Results,
		func(m pipeline.Message) bool { return string(m.Key) == "q-malformed" })
	if err != nil {
		t.Fatal(err)
	}
	r, err := schemas.DecodeResult(m.Value)
	if err != nil || r.Error == nil || r.Error.Code != schemas.ErrCodeInvalidQuery || !strings.Contains(r.Error.Message, "text is required") {
		t.Errorf("malformed query: result %+v (%v), want invalid_query", r.Error, err)
	}
}

// checkDelete publishes a tombstone for one video on the videos topic: the
// index stage removes its clips and no other.
func checkDelete(t *testing.T, ctx context.Context, a *app.App) {
	t.Helper()
	coll := a.Config.Store.Collection
	before, err := a.Store().Count(ctx, coll, sinks.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	del := pipeline.Output{Topic: a.Config.Topics.Videos, Key: []byte("red-again"), Headers: map[string]string{schemas.HeaderCommand: schemas.CommandDelete}}
	if err := kafka.Produce(ctx, a.Kafka(), del); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := a.Store().Count(ctx, coll, sinks.Filter{VideoIDs: []string{"red-again"}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("red-again still has %d clips after its delete", n)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if after, _ := a.Store().Count(ctx, coll, sinks.Filter{}); after != before-1 {
		t.Errorf("%d clips after deleting one video of one clip, want %d", after, before-1)
	}
}

// TestLongVideoWindowsAllIndexed indexes a video in window mode with more
// windows than the sample stage holds before producing, so clips go out
// while ffmpeg still decodes: every window must be indexed exactly once.
func TestLongVideoWindowsAllIndexed(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	video := filepath.Join(t.TempDir(), "long.mp4")
	if err := ffmpeg("-f", "lavfi", "-i", "color=c=blue:size=320x240:rate=5:duration=21", "-c:v", "libx264", "-pix_fmt", "yuv420p", video); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, ctx, f, "color")
	value, err := schemas.Encode(&schemas.VideoJob{VideoID: "long", URI: video,
		Segment: &schemas.Segment{Mode: schemas.ModeWindow, WindowS: 2, StrideS: 2}})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, ctx, a, "long", value)
	const windows = 11 // 21 s in 2 s windows, the last one partial
	waitCount(t, ctx, a.Store(), a.Config.Store.Collection, windows)
	probe := make([]float32, a.Manifest().EmbeddingDim)
	probe[0] = 1
	hits, err := a.Store().Search(ctx, a.Config.Store.Collection, sinks.SearchRequest{
		Vector: probe, TopK: 100, Filter: sinks.Filter{VideoIDs: []string{"long"}}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, h := range hits {
		if seen[h.Payload.ClipIndex] {
			t.Errorf("window %d indexed twice", h.Payload.ClipIndex)
		}
		seen[h.Payload.ClipIndex] = true
		if h.Payload.EndS-h.Payload.StartS > 2.001 {
			t.Errorf("window %d spans %.1f-%.1f s", h.Payload.ClipIndex, h.Payload.StartS, h.Payload.EndS)
		}
	}
	for i := 0; i < windows; i++ {
		if !seen[i] {
			t.Errorf("window %d missing", i)
		}
	}
}
