package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/internal/testenv"
)

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"run"}, "run STAGE"},
		{[]string{"search"}, "search [flags] TEXT"},
		{[]string{"delete"}, "delete [flags] VIDEO_ID..."},
		{[]string{"models"}, "vidx models testdata DIR"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, &out, &errOut)
		if err == nil {
			t.Errorf("vidx %v: no error", tt.args)
		}
		if !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("vidx %v: stderr %q does not contain %q", tt.args, errOut.String(), tt.want)
		}
	}
}

func TestRunRejectsUnknownStage(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"run", "transcode", "--brokers", "127.0.0.1:1"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "transcode") {
		t.Errorf("err = %v, want it to name the unknown stage", err)
	}
}

func TestModelsTestdata(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"models", "testdata", dir}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	for _, f := range []string{"color/vidx-model.yaml", "color/image.onnx", "tiny-clip/text.onnx", "tiny-clip/vocab.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
}

// TestDemo runs `vidx demo` as a user would: it must index the generated
// videos over Kafka and rank each query's video first.
func TestDemo(t *testing.T) {
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"demo", "--dir", t.TempDir()}, &out, &errOut); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"all queries ranked their video first", "red-clip", "Kafka path vs decoded frames"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}
