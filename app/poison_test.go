package app_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

// TestPoisonInputs sends one of each kind of bad input to the stage that
// first sees it, each followed on the same partition by a good video, and
// checks every bad input is dead-lettered by the right stage with full
// headers (class, reason, stage, attempts, origin) while every good video is
// still indexed: no bad input stalls its partition. Malformed JSON, an
// unknown schema version, a missing file, a text file and a truncated MP4
// are covered by TestPipelineEndToEnd.
func TestPoisonInputs(t *testing.T) {
	f := requireTools(t)
	eachBroker(t, func(t *testing.T, b *kafkatest.Broker) { testPoisonInputs(t, f, b) })
}

func testPoisonInputs(t *testing.T, f fixtures, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	red, err := os.ReadFile(f.videos["red"])
	if err != nil {
		t.Fatal(err)
	}
	// An H.264 stream relabelled with a codec tag no decoder knows.
	unknownCodec := []byte(strings.Replace(string(red), "avc1", "zzz1", -1))
	noise := make([]byte, 64<<10)
	_, _ = rand.Read(noise)
	corrupt := append(append([]byte(nil), red[:64]...), noise...)
	wide := filepath.Join(dir, "wide.mp4")
	if err := ffmpeg("-f", "lavfi", "-i", "color=c=red:size=640x64:rate=5:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", wide); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long.mp4")
	if err := ffmpeg("-f", "lavfi", "-i", "color=c=red:size=64x64:rate=1:duration=20", "-c:v", "libx264", "-pix_fmt", "yuv420p", long); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.mp4")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	garbageClip := []byte("VIDX\x01\x01\x00\x00\x00\x02{}")
	nanEmbedding := func() []byte {
		e := schemas.Embeddings{Header: schemas.ClipHeader{VideoID: "nan", EndS: 1, FrameTimes: []float64{0}, Dim: 4, Model: "color"},
			Vectors: [][]float32{{0.5, 0.5, 0.5, 0.5}}}
		b, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &e)
		if err != nil {
			t.Fatal(err)
		}
		// Overwrite the last float with NaN after encoding (the encoder
		// refuses it).
		copy(b[len(b)-4:], []byte{0, 0, 0xc0, 0x7f})
		return b
	}()

	a := startAppOn(t, ctx, f, b, func(c *config.Config) {
		c.Stages.Sample.Sources.MaxWidth, c.Stages.Sample.Sources.MaxHeight = 400, 400
		c.Stages.Sample.Sources.MaxDuration = 10 * time.Second
	})
	topics := a.Config.Topics
	type badInput struct {
		name, topic string
		value       []byte
		stage       string
		reason      string // a case-insensitive substring of the dead letter's reason
	}
	bad := []badInput{
		{"zero-length file", topics.Videos, job("empty", write("empty.mp4", nil)), app.StageSample, "empty"},
		{"corrupt file", topics.Videos, job("corrupt", write("corrupt.mp4", corrupt)), app.StageSample, "video"},
		{"unsupported codec", topics.Videos, job("codec", write("codec.mp4", unknownCodec)), app.StageSample, ""},
		{"resolution over the limit", topics.Videos, job("wide", wide), app.StageSample, "exceed the 400x400 limit"},
		{"duration over the limit", topics.Videos, job("long", long), app.StageSample, "exceeds the 10s limit"},
		{"named pipe", topics.Videos, job("fifo", fifo), app.StageSample, "not a regular file"},
		{"oversized metadata", topics.Videos, oversizedJob(t), app.StageSample, "metadata"},
		{"empty message", topics.Videos, []byte{}, app.StageSample, ""},
		{"garbage clip", topics.Clips, garbageClip, app.StageEncode, ""},
		{"garbage frame embeddings", topics.FrameEmbeddings, []byte("not an embedding"), app.StagePool, ""},
		{"NaN clip embedding", topics.ClipEmbeddings, nanEmbedding, app.StageIndex, ""},
		{"malformed query", topics.Queries, []byte(`{"schema_version":1,"query_id":`), app.StageQuery, "json"},
	}
	// Each bad input goes to the partition its good follower uses.
	for i, b := range bad {
		key := "p" + strconv.Itoa(i%4)
		if err := kafka.Produce(ctx, a.Kafka(), pipeline.Output{Topic: b.topic, Key: []byte(key), Value: b.value}); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if b.topic == topics.Videos {
			publish(t, ctx, a, key, job("good-"+strconv.Itoa(i), f.videos[colours[i%len(colours)]]))
		}
	}
	goods := 0
	for _, b := range bad {
		if b.topic == topics.Videos {
			goods++
		}
	}
	waitCount(t, ctx, a.Store(), a.Config.Store.Collection, goods)

	tap := kafka.NewTap(a.Kafka(), topics.DeadLetters, true)
	defer tap.Close()
	got := map[string]schemas.DeadLetter{}
	for len(got) < len(bad) {
		m, err := tap.Next(ctx)
		if err != nil {
			t.Fatalf("dead letters: got %d of %d (%v): %v", len(got), len(bad), keys(got), err)
		}
		dl, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
		if err != nil {
			t.Fatalf("dead letter without valid headers: %v (%v)", err, m.Headers)
		}
		for _, b := range bad {
			if string(dl.Value) == string(b.value) && dl.Topic == b.topic {
				got[b.name] = dl
			}
		}
	}
	for _, b := range bad {
		dl := got[b.name]
		t.Logf("%-26s -> %s/%s after %d attempt(s): %s", b.name, dl.Stage, dl.Class, dl.Attempts, dl.Reason)
		if dl.Stage != b.stage || dl.Topic != b.topic {
			t.Errorf("%s: dead-lettered by %s from %s, want %s from %s", b.name, dl.Stage, dl.Topic, b.stage, b.topic)
		}
		if dl.Class != "poison" && !(dl.Class == "unknown" && dl.Attempts == 3) {
			t.Errorf("%s: class %s after %d attempts", b.name, dl.Class, dl.Attempts)
		}
		if dl.Attempts < 1 || dl.Offset < 0 || dl.FailedAt.IsZero() {
			t.Errorf("%s: incomplete headers: %+v", b.name, dl)
		}
		if !strings.Contains(strings.ToLower(dl.Reason), strings.ToLower(b.reason)) {
			t.Errorf("%s: reason %q does not mention %q", b.name, dl.Reason, b.reason)
		}
	}
}

func oversizedJob(t *testing.T) []byte {
	j := schemas.VideoJob{SchemaVersion: schemas.Version, VideoID: "big", URI: "/x.mp4", Metadata: map[string]string{}}
	for i := range schemas.MaxMetadataLen + 1 {
		j.Metadata["k"+strconv.Itoa(i)] = strings.Repeat("x", 1000)
	}
	b, err := schemas.Encode(&j)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys(m map[string]schemas.DeadLetter) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDecodeTimeoutIsRetriedThenDeadLettered gives the sample stage a decode
// timeout no video can meet: a timeout may be transient, so the job is
// retried a bounded number of times, then dead-lettered with its reason,
// and nothing is indexed.
func TestDecodeTimeoutIsRetriedThenDeadLettered(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := startAppWith(t, ctx, f, func(c *config.Config) {
		c.Stages.Sample.Timeout = time.Millisecond
		c.Stages.Sample.MaxAttempts = 2
	})
	publish(t, ctx, a, "slow", job("slow", f.videos["red"]))
	tap := kafka.NewTap(a.Kafka(), a.Config.Topics.DeadLetters, true)
	defer tap.Close()
	m, err := tap.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Stage != app.StageSample || dl.Class != "unknown" || dl.Attempts != 2 || !strings.Contains(dl.Reason, "timed out") {
		t.Errorf("dead letter = stage %s class %s attempts %d reason %q; want sample, unknown, 2, a timeout", dl.Stage, dl.Class, dl.Attempts, dl.Reason)
	}
	if n, err := a.Store().Count(ctx, a.Config.Store.Collection, sinks.Filter{}); err != nil || n != 0 {
		t.Errorf("index holds %d clips (%v), want 0", n, err)
	}
}
