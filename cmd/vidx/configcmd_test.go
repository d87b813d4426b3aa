package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vidx/vidx/config"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		file string
		want []string // every problem, in order; nil: the file is fine
	}{
		{"the example file", filepath.Join("..", "..", "deploy", "vidx.example.yaml"), nil},
		{"every kind of problem", write("bad.yaml", `log_level: loud
kafka:
  partitons: 3
store:
  url: qdrant://q:6334
  qdrant:
    hnsw_m: -4
stages:
  sample:
    fps: many
  query:
    rerank: fancy
`), []string{
			"kafka.partitons: field partitons not found",
			"stages.sample.fps: cannot unmarshal !!str `many`",
			`log_level "loud"`,
			"store.qdrant.hnsw_m -4",
			`stages.query: rerank "fancy"`,
		}},
		{"not YAML", write("broken.yaml", "kafka: [\n"), []string{"did not find expected"}},
		{"missing", filepath.Join(dir, "nope.yaml"), []string{"no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkConfigFile(tc.file, func(string) string { return "" })
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d: %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d %q does not contain %q", i, got[i], w)
				}
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"config", "check", tc.file}, &out, &errOut)
			if (err == nil) != (tc.want == nil) {
				t.Errorf("vidx config check: %v (stdout %q)", err, out.String())
			}
		})
	}
}

// TestConfigPrint checks the printed configuration loads back to the same
// settings, with secrets redacted.
func TestConfigPrint(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.yaml")
	if err := os.WriteFile(in, []byte("store:\n  collection: trips\n  qdrant:\n    api_key: s3cret\n    metadata_indexes: [camera]\nhttp:\n  auth_token: t0ken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "print", "--config", in}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	if s := out.String(); strings.Contains(s, "s3cret") || strings.Contains(s, "t0ken") || !strings.Contains(s, "[REDACTED]") {
		t.Errorf("secrets not redacted:\n%s", s)
	}
	printed := filepath.Join(dir, "printed.yaml")
	if err := os.WriteFile(printed, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The command applies the environment's overrides (VIDX_ORT_LIB and the
	// like) and prints the result, so the printed file must load back
	// without them to what the input gives with them.
	noEnv := func(string) string { return "" }
	want, err := config.Load(in, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(printed, noEnv)
	if err != nil {
		t.Fatalf("the printed configuration does not load: %v", err)
	}
	want.Store.Qdrant.APIKey, want.HTTP.AuthToken = "[REDACTED]", "[REDACTED]"
	// Compared as YAML: an empty list prints as [] and loads back as an
	// empty slice where the default is nil, which means the same.
	var gotYAML, wantYAML bytes.Buffer
	if err := printConfig(&gotYAML, got.Effective()); err != nil {
		t.Fatal(err)
	}
	if err := printConfig(&wantYAML, want.Effective()); err != nil {
		t.Fatal(err)
	}
	if gotYAML.String() != wantYAML.String() || gotYAML.String() != out.String() {
		t.Errorf("printed configuration loads as\n%s\nwant\n%s", gotYAML.String(), wantYAML.String())
	}
	if got.Store.Collection != "trips" || len(got.Store.Qdrant.MetadataIndexes) != 1 {
		t.Errorf("settings lost: %+v", got.Store)
	}
	// Defaults are printed as the packages fill them.
	for _, line := range []string{"group: vidx-encode", "max_attempts: 3", "candidates: 100", "mode: meanP", "batch_timeout: 1ms"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("printed configuration lacks %q", line)
		}
	}
}
