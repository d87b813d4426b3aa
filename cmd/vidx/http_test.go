package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
)

func TestConfineFiles(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(dir, "videos")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file.mp4")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		configured []string
		folders    []string
		want       []string
		err        string
	}{
		{"defaults", nil, nil, []string{wd, "data"}, ""},
		{"defaults and folders", nil, []string{folder}, []string{wd, "data", folder}, ""},
		{"configured roots are kept", []string{"/srv/videos"}, nil, []string{"/srv/videos"}, ""},
		{"configured roots and folders", []string{"/srv/videos"}, []string{folder}, []string{"/srv/videos", folder}, ""},
		{"missing folder", nil, []string{filepath.Join(dir, "nope")}, nil, "video folder"},
		{"a file is no folder", nil, []string{file}, nil, "not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = "data"
			cfg.Stages.Sample.Sources.FileRoots = tc.configured
			err := confineFiles(&cfg, tc.folders)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Stages.Sample.Sources.FileRoots; !slices.Equal(got, tc.want) {
				t.Errorf("file roots %v, want %v", got, tc.want)
			}
		})
	}
	if st, err := os.Stat(filepath.Join(dir, "data")); err != nil || !st.IsDir() {
		t.Errorf("the data directory, a default root, was not created: %v", err)
	}
}

func TestHTTPAddr(t *testing.T) {
	withFile := filepath.Join(t.TempDir(), "vidx.yaml")
	if err := os.WriteFile(withFile, []byte("http: {addr: \"127.0.0.1:9000\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name               string
		file, flag, defult string
		want               string
	}{
		{"up: the default", "", "-", "127.0.0.1:8080", "127.0.0.1:8080"},
		{"up: the file wins over the default", withFile, "-", "127.0.0.1:8080", "127.0.0.1:9000"},
		{"up: the flag wins over the file", withFile, ":7000", "127.0.0.1:8080", ":7000"},
		{"up: an empty flag disables", withFile, "", "127.0.0.1:8080", ""},
		{"run: no default", "", "-", "", ""},
		{"run: the file", withFile, "-", "", "127.0.0.1:9000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cf := configFlags{path: tc.file, httpAddr: tc.flag, httpDefault: tc.defult, metricsAddr: "-", brokerPort: -1, embedded: true}
			cfg, err := cf.load(func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if cfg.HTTP.Addr != tc.want {
				t.Errorf("http.addr %q, want %q", cfg.HTTP.Addr, tc.want)
			}
		})
	}
}

// TestIngestNotesFileOutsideRoots checks that `vidx ingest` of a file the
// sample stage would refuse by default says how to allow it.
func TestIngestNotesFileOutsideRoots(t *testing.T) {
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 1, Topics: []string{config.Default().Topics.Videos}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	work, elsewhere := t.TempDir(), t.TempDir()
	t.Chdir(work)
	cases := []struct {
		name string
		path string
		note bool
	}{
		{"in the working directory", filepath.Join(work, "in.mp4"), false},
		{"elsewhere", filepath.Join(elsewhere, "out.mp4"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(tc.path, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{"ingest", "--brokers", b.Addrs()[0], "--no-wait", tc.path}, &out, &errOut); err != nil {
				t.Fatal(err, errOut.String())
			}
			hint := "vidx up --embedded " + filepath.Dir(tc.path)
			if got := strings.Contains(errOut.String(), hint); got != tc.note {
				t.Errorf("stderr %q: note naming %q = %v, want %v", errOut.String(), hint, got, tc.note)
			}
		})
	}
}
