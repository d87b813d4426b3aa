package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/pull"
	"github.com/vidx/vidx/encoders/testmodels"
)

func TestModelsPullList(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"models", "pull", "--list"}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	for _, name := range []string{"clip-vit-base-patch32", "clip-vit-base-patch16"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("--list does not show %s:\n%s", name, out.String())
		}
	}
}

func TestModelsPullIndex(t *testing.T) {
	src := t.TempDir()
	if err := testmodels.WriteAll(src); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(src, "color"))
	if err != nil {
		t.Fatal(err)
	}
	var idx pull.Index
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, "color", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		idx.Files = append(idx.Files, pull.File{Path: e.Name(), SHA256: hex.EncodeToString(s[:]), Size: int64(len(data))})
	}
	index, _ := json.Marshal(idx)
	mux := http.NewServeMux()
	mux.HandleFunc("/color/index.json", func(w http.ResponseWriter, r *http.Request) { w.Write(index) })
	mux.Handle("/color/", http.StripPrefix("/color/", http.FileServer(http.Dir(filepath.Join(src, "color")))))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	dir := filepath.Join(t.TempDir(), "bundle")
	// Flags may follow the positional arguments.
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"models", "pull", srv.URL + "/color/index.json", dir, "--attempts", "2"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"image.onnx", "downloaded", "verified sha256:", "(index)", "ready in " + dir + ": use it with --bundle"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.String())
		}
	}
	// Not a terminal: progress comes as log lines.
	if !strings.Contains(errOut.String(), "msg=downloaded") {
		t.Errorf("stderr has no progress lines:\n%s", errOut.String())
	}

	out.Reset()
	errOut.Reset()
	if err := run(context.Background(), []string{"models", "pull", "--quiet", srv.URL + "/color/index.json", dir}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if errOut.Len() != 0 {
		t.Errorf("--quiet wrote to stderr: %s", errOut.String())
	}
	if strings.Contains(out.String(), "downloaded") || !strings.Contains(out.String(), "present") {
		t.Errorf("second pull should find every file present:\n%s", out.String())
	}
}

func TestModelsPullUsage(t *testing.T) {
	for _, args := range [][]string{{"models", "pull"}, {"models", "pull", "only-one-arg"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err != errUsage {
			t.Errorf("%v: err = %v, want usage", args, err)
		}
		if !strings.Contains(errOut.String(), "models pull [flags] URL|NAME DIR") {
			t.Errorf("%v: usage not shown: %s", args, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"models", "pull", "http://example.invalid/m.tar.gz", t.TempDir()}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--insecure-http") {
		t.Errorf("plain http to a remote host: err = %v", err)
	}
}
