package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/eval"
	"github.com/vidx/vidx/internal/testenv"
)

// TestEval runs `vidx eval` end to end on a small version of the generated
// example dataset with the colour bundle: the JSON must have exactly the
// documented shape, and colour captions must find their videos far above
// chance.
func TestEval(t *testing.T) {
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
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

	for _, tc := range []struct{ flag, codec string }{{"", "jpeg"}, {"png", "png"}} {
		t.Run("codec "+tc.codec, func(t *testing.T) {
			args := []string{"eval", "--bundle", filepath.Join(models, "color"), "--dataset", dataset, "--json", "--bank-size", "4"}
			if tc.flag != "" {
				args = append(args, "--codec", tc.flag)
			}
			checkEvalJSON(t, ctx, args, videos, len(captions), tc.codec)
		})
	}
}

// checkEvalJSON runs `vidx eval ... --json` and checks the output's shape and
// that colour captions find their videos far above chance.
func checkEvalJSON(t *testing.T, ctx context.Context, args []string, videos, captions int, codec string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("vidx eval: %v\nstderr:\n%s", err, errOut.String())
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, out.String())
	}
	if keys := sortedKeys(got); !slices.Equal(keys, []string{"captions", "codec", "pooling", "t2v", "t2v_stream", "v2t", "videos"}) {
		t.Errorf("top-level keys %v", keys)
	}
	var header struct {
		Videos, Captions int
		Pooling, Codec   string
	}
	if err := json.Unmarshal(out.Bytes(), &header); err != nil {
		t.Fatal(err)
	}
	if header.Videos != videos || header.Captions != captions || header.Pooling != "meanP" || header.Codec != codec {
		t.Errorf("videos %d, captions %d, pooling %q, codec %q; want %d, %d, meanP, %s",
			header.Videos, header.Captions, header.Pooling, header.Codec, videos, captions, codec)
	}
	chance := 100.0 / float64(videos)
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

	for _, want := range []string{"indexed 6 videos", "encode (" + codec + " frames)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("progress on stderr lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestEvalRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"video_id": "v", "path": "v.mp4", "captions": ["x"]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.jsonl")
	if err := os.WriteFile(good, []byte(`{"video_id": "w", "path": "w.mp4", "captions": ["x"]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w.mp4"), nil, 0o644); err != nil {
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
		{[]string{"eval", "--bundle", dir, "--dataset", good, "--codec", "gif"}, `codec "gif" is not jpeg or png`},
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
