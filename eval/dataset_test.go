package eval

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeDataset(t *testing.T, dir, content string) string {
	t.Helper()
	file := filepath.Join(dir, "dataset.jsonl")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestLoadDataset(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "videos"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"videos/a.mp4", "b.mp4"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(dir, "b.mp4")
	file := writeDataset(t, dir, `{"video_id": "a", "path": "videos/a.mp4", "captions": ["a dog", "a brown dog"], "split": "test"}

{"video_id": "b", "path": "`+abs+`", "captions": ["a cat"]}
{"video_id": "c", "path": "https://example.com/c.mp4", "captions": ["a car"]}
`)
	ds, err := LoadDataset(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Videos) != 3 {
		t.Fatalf("%d videos, want 3", len(ds.Videos))
	}
	wantURI := []string{filepath.Join(dir, "videos/a.mp4"), abs, "https://example.com/c.mp4"}
	wantLine := []int{1, 3, 4}
	for i, v := range ds.Videos {
		if v.URI != wantURI[i] || v.Line != wantLine[i] {
			t.Errorf("video %d: uri %s line %d, want %s line %d", i, v.URI, v.Line, wantURI[i], wantLine[i])
		}
	}
	texts, truth := ds.Captions()
	if !slices.Equal(texts, []string{"a dog", "a brown dog", "a cat", "a car"}) || !slices.Equal(truth, []int{0, 0, 1, 2}) {
		t.Errorf("captions %q -> %v", texts, truth)
	}
}

func TestLoadDatasetErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ok.mp4"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := `{"video_id": "ok", "path": "ok.mp4", "captions": ["fine"]}` + "\n"
	tests := []struct {
		name string
		line string
		want string
	}{
		{"invalid JSON", `{"video_id": "v", "path": "ok.mp4", "captions": ["x"]`, "invalid JSON"},
		{"not an object", `["ok.mp4"]`, "want a JSON object"},
		{"captions not a list", `{"video_id": "v", "path": "ok.mp4", "captions": "a dog"}`, "field captions"},
		{"missing file", `{"video_id": "v", "path": "missing.mp4", "captions": ["x"]}`, "missing.mp4: file does not exist"},
		{"directory", `{"video_id": "v", "path": ".", "captions": ["x"]}`, "is a directory"},
		{"no captions", `{"video_id": "v", "path": "ok.mp4", "captions": []}`, `video "v": no captions`},
		{"captions absent", `{"video_id": "v", "path": "ok.mp4"}`, "no captions"},
		{"blank caption", `{"video_id": "v", "path": "ok.mp4", "captions": ["x", "  "]}`, "caption 2 is blank"},
		{"no video id", `{"path": "ok.mp4", "captions": ["x"]}`, "video_id is missing"},
		{"no path", `{"video_id": "v", "captions": ["x"]}`, "path is missing"},
		{"repeated id", `{"video_id": "ok", "path": "ok.mp4", "captions": ["x"]}`, `video_id "ok" repeats line 1`},
		{"bad id", `{"video_id": "a\nb", "path": "ok.mp4", "captions": ["x"]}`, "printable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeDataset(t, dir, good+"\n"+tt.line+"\n"+good)
			_, err := LoadDataset(file)
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != 3 || !strings.Contains(err.Error(), "dataset.jsonl:3: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (line %d), want line 3 and %q", err, le.Line, tt.want)
			}
		})
	}
	if _, err := LoadDataset(writeDataset(t, dir, "\n\n")); err == nil || !strings.Contains(err.Error(), "no videos") {
		t.Errorf("empty dataset: err = %v", err)
	}
	if _, err := LoadDataset(filepath.Join(dir, "nope.jsonl")); err == nil {
		t.Error("missing dataset file accepted")
	}
}
