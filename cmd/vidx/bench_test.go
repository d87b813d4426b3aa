package main

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vidx/vidx/bench"
)

// asMainEnv makes this test binary run vidx's main instead of the tests:
// `vidx bench` starts stages and probes as processes of its own executable,
// which under `go test` is this binary.
const asMainEnv = "VIDX_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) != "" {
		main()
		return
	}
	// Set for the whole binary, so that no child ever runs the tests again.
	os.Setenv(asMainEnv, "1")
	os.Exit(m.Run())
}

// quantizerReady reports whether the int8 quantizer's virtual environment
// is prepared (scripts/setup.sh --test), without installing anything.
func quantizerReady() bool {
	if _, err := exec.LookPath("python3"); err != nil {
		return false
	}
	venv := filepath.Join(cacheDirForTest(), "py-quantize", "bin", "python")
	return exec.Command(venv, "-c", "import onnxruntime.quantization").Run() == nil
}

// cacheDirForTest is where scripts/setup.sh and scripts/quantize.py keep
// their files.
func cacheDirForTest() string {
	if d := os.Getenv("VIDX_CACHE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "vidx")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "vidx")
}

// TestBenchQuick runs the smoke-test benchmark and checks the report's
// shape: every figure present with a baseline and a ratio. Timings are
// never asserted.
func TestBenchQuick(t *testing.T) {
	requireORT(t)
	requireFFmpeg(t)
	cache := t.TempDir()
	want := []string{"encode_fp32", "encode_fp32_nospin", "beside_ffmpeg_encode_nospin", "beside_ffmpeg_sample_nospin",
		"sample_dense_1fps", "sample_whole_12", "query_p50_200", "query_p99_2000", "text_p50_to_end_token", "query_kafka_p50_2000", "query_kafka_p99_2000", "query_kafka_p50_nospin_2000", "query_kafka_p99_nospin_2000", "pipeline_fp32", "pipeline_fp32_nospin", "pipeline_fp32_threads",
		"rss_peak_sample", "rss_peak_encode", "rss_peak_pool", "rss_peak_index", "rss_peak_query"}
	withInt8 := quantizerReady()
	if withInt8 {
		want = append(want, "encode_int8", "encode_int8_nospin", "int8_speed", "int8_frame_cosine", "pipeline_int8", "pipeline_int8_probe", "query_kafka_int8_p50_2000")
	} else {
		t.Log("int8 figures expected to be skipped: the quantizer's venv is not prepared (scripts/setup.sh --test)")
	}

	t.Run("json", func(t *testing.T) {
		out, stderr, err := runCmd(t, "bench", "--quick", "--json", "--threads", "1", "--cache-dir", cache)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		var rep bench.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !rep.Quick || rep.Machine.Threads != 1 || rep.Machine.ORT == "" {
			t.Errorf("report header: %+v", rep.Machine)
		}
		var names []string
		for _, f := range rep.Figures {
			names = append(names, f.Name)
			if !(f.Vidx > 0) || !(f.Baseline > 0) || math.IsInf(f.Ratio, 0) || !(f.Ratio > 0) || f.Unit == "" || f.Against == "" {
				t.Errorf("figure %+v: want positive vidx, baseline and ratio, a unit and a baseline name", f)
			}
			if f.Unit == "cosine" && f.Vidx < 0.99 {
				t.Errorf("int8 frame cosine %.4f, want >= 0.99", f.Vidx)
			}
		}
		for _, w := range want {
			if !slices.Contains(names, w) {
				t.Errorf("figure %s missing; got %v", w, names)
			}
		}
		if !withInt8 && !slices.ContainsFunc(rep.Skipped, func(s string) bool { return strings.Contains(s, "int8") }) {
			t.Errorf("int8 figures neither measured nor reported skipped: %v", rep.Skipped)
		}
	})
	t.Run("only", func(t *testing.T) {
		out, stderr, err := runCmd(t, "bench", "--quick", "--json", "--threads", "1", "--cache-dir", cache, "--only", "query")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		var rep bench.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, f := range rep.Figures {
			if !strings.HasPrefix(f.Name, "query_p") && !strings.HasPrefix(f.Name, "text_p") {
				t.Errorf("figure %s measured though only the query step was asked for", f.Name)
			}
		}
		if len(rep.Figures) == 0 || !slices.ContainsFunc(rep.Skipped, func(s string) bool { return strings.HasPrefix(s, "query-kafka") }) {
			t.Errorf("figures %v, skipped %v", rep.Figures, rep.Skipped)
		}
		for _, bad := range []struct{ flag, value, want string }{
			{"--only", "encode,nope", `unknown step "nope"`},
			{"--shape", "b8", `unknown model shape "b8"`},
		} {
			if _, stderr, err := runCmd(t, "bench", "--quick", "--cache-dir", cache, bad.flag, bad.value); err == nil || !strings.Contains(err.Error()+stderr, bad.want) {
				t.Errorf("%s %s accepted: %v %s", bad.flag, bad.value, err, stderr)
			}
		}
	})
	t.Run("table", func(t *testing.T) {
		// The second run finds the models and video in the cache.
		out, stderr, err := runCmd(t, "bench", "--quick", "--threads", "1", "--cache-dir", cache)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		lines := strings.Split(out, "\n")
		header := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "figure ") })
		if header < 0 || !strings.Contains(lines[header], "baseline") || !strings.Contains(lines[header], "ratio") {
			t.Fatalf("no table header:\n%s", out)
		}
		for _, w := range want {
			if !slices.ContainsFunc(lines[header+1:], func(l string) bool { return strings.HasPrefix(l, w+" ") }) {
				t.Errorf("no row for %s:\n%s", w, out)
			}
		}
	})
}

func TestBenchAndQuantizeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "extra"},
		{"bench", "--threads", "x"},
		{"models", "quantize", "only-one"},
		{"models", "quantize"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if _, _, err := runCmd(t, args...); !errors.Is(err, errUsage) {
				t.Errorf("err %v, want usage", err)
			}
		})
	}
}
