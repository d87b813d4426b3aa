package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/eval"
)

// TestEval runs `vidx eval` end to end on a small version of the generated
// example dataset with the colour bundle: the JSON must have exactly the
// documented shape, and colour captions must find their videos far above
// chance.
func TestEval(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed (run make setup)")
	}
	if _, err := os.Stat(onnx.DefaultLibPath()); err != nil {
		t.Skip("ONNX Runtime not installed (run make setup)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	models := filepath.Join(dir, "models")
	if err := testmodels.WriteAll(models); err != nil {
		t.Fatal(err)
	}
	const videos = 6
	dataset, err := eval.WriteExample(ctx, filepath.Join(dir, "example"), eval.ExampleOptions{Videos: videos})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := eval.LoadDataset(dataset)
	if err != nil {
		t.Fatal(err)
	}
	captions, _ := ds.Captions()

	var out, errOut bytes.Buffer
	args := []string{"eval", "--bundle", filepath.Join(models, "color"), "--dataset", dataset, "--json", "--bank-size", "4"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("vidx eval: %v\nstderr:\n%s", err, errOut.String())
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, out.String())
	}
	if keys := sortedKeys(got); !slices.Equal(keys, []string{"captions", "pooling", "t2v", "t2v_stream", "v2t", "videos"}) {
		t.Errorf("top-level keys %v", keys)
	}
	var header struct {
		Videos, Captions int
		Pooling          string
	}
	if err := json.Unmarshal(out.Bytes(), &header); err != nil {
		t.Fatal(err)
	}
	if header.Videos != videos || header.Captions != len(captions) || header.Pooling != "meanP" {
		t.Errorf("videos %d, captions %d, pooling %q; want %d, %d, meanP", header.Videos, header.Captions, header.Pooling, videos, len(captions))
	}
	chance := 100.0 / videos
	for _, dir := range []string{"t2v", "v2t", "t2v_stream"} {
		var modes map[string]map[string]float64
		if err := json.Unmarshal(got[dir], &modes); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if keys := sortedKeys(modes); !slices.Equal(keys, []string{"camoe", "none", "symmetric"}) {
			t.Errorf("%s: modes %v", dir, keys)
		}
		for mode, m := range modes {
			if keys := sortedKeys(m); !slices.Equal(keys, []string{"mdr", "mnr", "r1", "r10", "r5"}) {
				t.Errorf("%s %s: metrics %v", dir, mode, keys)
			}
			if m["r1"] < 3*chance {
				t.Errorf("%s %s: R@1 %.1f, want well above chance (%.1f)", dir, mode, m["r1"], chance)
			}
			if !(m["r1"] <= m["r5"] && m["r5"] <= m["r10"] && m["r10"] <= 100 && m["mdr"] >= 1 && m["mnr"] >= 1) {
				t.Errorf("%s %s: inconsistent metrics %v", dir, mode, m)
			}
		}
	}
	t.Log(out.String())

	if !strings.Contains(errOut.String(), "indexed 6 videos") {
		t.Errorf("progress on stderr lacks the ingest line:\n%s", errOut.String())
	}
}

func TestEvalRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"video_id": "v", "path": "v.mp4", "captions": ["x"]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string // in the error, or in stderr for usage errors
	}{
		{[]string{"eval"}, "Usage: vidx eval"},
		{[]string{"eval", "--bundle", dir}, "Usage: vidx eval"},
		{[]string{"eval", "--bundle", dir, "--dataset", bad}, "bad.jsonl:1: "},
		{[]string{"eval", "--example", dir, "--dataset", bad}, "leave out --dataset"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, &out, &errOut)
		if err == nil {
			t.Errorf("vidx %v: no error", tt.args)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) && !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("vidx %v: err %v, stderr %q; want %q", tt.args, err, errOut.String(), tt.want)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
