package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
)

func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCollectInputs(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "trips", "beach.mp4"))
	touch(t, filepath.Join(dir, "trips", "2024", "hike.MOV"))
	touch(t, filepath.Join(dir, "trips", "notes.txt"))
	touch(t, filepath.Join(dir, "trips", "beach.mkv")) // same id as beach.mp4
	touch(t, filepath.Join(dir, "loose", "a.webm"))
	touch(t, filepath.Join(dir, "loose", "b.jpg"))
	named := touch(t, filepath.Join(dir, "odd.bin"))

	inputs, skipped := collectInputs([]string{
		filepath.Join(dir, "trips"),
		filepath.Join(dir, "loose", "*"),
		named,
		"https://example.com/v/clip.mp4?sig=1",
		filepath.Join(dir, "missing.mp4"),
		filepath.Join(dir, "nothing-*.mp4"),
	})
	var ids []string
	for _, in := range inputs {
		ids = append(ids, in.VideoID)
		if !strings.Contains(in.URI, "://") && !filepath.IsAbs(in.URI) {
			t.Errorf("%s: uri %q is not absolute", in.VideoID, in.URI)
		}
	}
	want := []string{"2024/hike", "beach", "beach~2", "a", "odd", "clip"}
	if !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[filepath.Base(s.Path)] = s.Reason
	}
	for name, want := range map[string]string{"notes.txt": "not a video file", "b.jpg": "not a video file",
		"missing.mp4": "does not exist", "nothing-*.mp4": "matches nothing"} {
		if !strings.Contains(reasons[name], want) {
			t.Errorf("%s: skipped with %q, want %q", name, reasons[name], want)
		}
	}
	if len(skipped) != 4 {
		t.Errorf("skipped %+v, want 4", skipped)
	}
}

// TestIngestFollowsToTheIndex runs `vidx ingest` on a folder against a
// broker where a fake pipeline answers each job: two clip embeddings for
// good videos, a dead letter for the bad one. The summary must count
// both, name the failure's reason and list the skipped file.
func TestIngestFollowsToTheIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topics := config.Default().Topics
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 2, Topics: topics.All()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc := kafka.Config{Brokers: b.Addrs()}.WithDefaults()
	dir := t.TempDir()
	t.Chdir(dir)
	touch(t, filepath.Join(dir, "in", "a.mp4"))
	touch(t, filepath.Join(dir, "in", "b.mp4"))
	touch(t, filepath.Join(dir, "in", "bad.mp4"))
	touch(t, filepath.Join(dir, "in", "readme.md"))

	// The fake pipeline.
	go func() {
		for p := range 2 {
			go kafka.TailFrom(ctx, kc, topics.Videos, p, 0, func(m pipeline.Message) error {
				job, err := schemas.DecodeVideoJob(m.Value)
				if err != nil {
					return nil
				}
				if job.VideoID == "bad" {
					d := schemas.DeadLetter{Reason: "moov atom not found", Class: "poison", Stage: "sample", Topic: topics.Videos, FailedAt: time.Now()}
					return kafka.Produce(ctx, kc, pipeline.Output{Topic: topics.DeadLetters, Key: m.Key, Value: m.Value, Headers: d.Headers()})
				}
				for i := range 2 {
					h := schemas.ClipHeader{VideoID: job.VideoID, ClipIndex: i, StartS: float64(i), EndS: float64(i + 1),
						FrameTimes: []float64{float64(i)}, Dim: 2, Model: "m", Pooling: "meanP", Generation: 1, SampledAt: time.Now()}
					if i == 1 {
						h.GenerationClips = 2
					}
					v, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{Header: h, Vectors: [][]float32{{1, 0}}})
					if err != nil {
						return err
					}
					if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: topics.ClipEmbeddings, Key: m.Key, Value: v}); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}()

	// No index stage yet: the clips reach its topic, but nothing is in the
	// store, so no video counts as indexed.
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"ingest", "--brokers", b.Addrs()[0], "--json", "--timeout", "4s", "--metadata", "trip=alps", filepath.Join(dir, "in")}, &out, &errOut)
	if err == nil {
		t.Fatalf("without an index stage: no error; stderr %s", errOut.String())
	}
	var pending ingestSummary
	if err := json.Unmarshal(out.Bytes(), &pending); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if pending.Indexed != 0 || pending.Pending != 2 || pending.Failed != 1 {
		t.Errorf("without an index stage: summary %+v, want 2 pending and 1 failed", pending)
	}

	// A stand-in index stage: it commits what it reads, as the real one
	// does once the store has the clips.
	idx, err := kafka.NewStage(kafka.StageConfig{Name: "index", Topics: []string{topics.ClipEmbeddings}, Runtime: kafka.Runtime{MaxBatch: 16}},
		kc, pipeline.PerMessage(func(context.Context, pipeline.Message) ([]pipeline.Output, error) { return nil, nil }),
		slog.New(slog.DiscardHandler), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	go idx.Run(ctx)

	out.Reset()
	err = run(ctx, []string{"ingest", "--brokers", b.Addrs()[0], "--json", "--metadata", "trip=alps", filepath.Join(dir, "in")}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 videos failed") {
		t.Fatalf("err %v, want one failed video; stderr %s", err, errOut.String())
	}
	var s ingestSummary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if s.Published != 3 || s.Indexed != 2 || s.Failed != 1 || s.Pending != 0 || s.Clips != 4 {
		t.Errorf("summary %+v", s)
	}
	for _, v := range s.Videos {
		switch v.VideoID {
		case "bad":
			if v.Status != "failed" || v.Error != "moov atom not found" {
				t.Errorf("bad: %+v", v)
			}
		default:
			if v.Status != "indexed" || v.Clips != 2 || v.Total != 2 {
				t.Errorf("%s: %+v", v.VideoID, v)
			}
		}
	}
	if len(s.Skipped) != 1 || filepath.Base(s.Skipped[0].Path) != "readme.md" {
		t.Errorf("skipped %+v, want readme.md", s.Skipped)
	}

	// --no-wait publishes and returns; the jobs carry the metadata.
	out.Reset()
	if err := run(ctx, []string{"ingest", "--brokers", b.Addrs()[0], "--no-wait", "--metadata", "trip=alps", filepath.Join(dir, "in", "a.mp4")}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	if !strings.Contains(out.String(), "published a (") {
		t.Errorf("stdout %q", out.String())
	}
	found := false
	_ = kafka.ScanTopic(ctx, kc, topics.Videos, func(m pipeline.Message) error {
		if job, err := schemas.DecodeVideoJob(m.Value); err == nil && job.Metadata["trip"] != "alps" {
			t.Errorf("job %s without the metadata: %+v", job.VideoID, job.Metadata)
		}
		found = true
		return nil
	})
	if !found {
		t.Error("no jobs on the videos topic")
	}
}
