package media

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/sourceguard"
)

// TestToolEnvironment: ffmpeg and ffprobe run with OpenBLAS on one thread
// unless the environment names a count, and a guarded source still drops
// the proxy settings that would steer ffmpeg around its checks.
func TestToolEnvironment(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	video := mediatest.MakeVideo(t, dir, "v.mp4", "testsrc=size=160x120:rate=10:duration=2")
	bin := t.TempDir()
	// Each wrapper appends what it saw to its log and runs the real tool.
	wrap := func(tool string) string {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(bin, tool+".log")
		return toolScript(t, bin, tool, "echo \"blas=${OPENBLAS_NUM_THREADS-unset} proxy=${http_proxy-unset}\" >> "+
			strconv.Quote(log)+"\nexec "+strconv.Quote(real)+" \"$@\"\n")
	}
	ffmpeg, ffprobe := wrap("ffmpeg"), wrap("ffprobe")
	guard := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{FileRoots: []string{dir}})
	for _, tc := range []struct {
		name      string
		blas      string // OPENBLAS_NUM_THREADS of this process; "" for unset
		guard     *sourceguard.Guard
		wantBlas  string
		wantProxy string
	}{
		{"unset, unguarded", "", nil, "1", "http://127.0.0.1:9/"},
		{"unset, guarded", "", guard, "1", "unset"},
		{"set by the caller", "4", nil, "4", "http://127.0.0.1:9/"},
		{"set by the caller, guarded", "4", guard, "4", "unset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("http_proxy", "http://127.0.0.1:9/")
			if tc.blas == "" {
				t.Setenv("OPENBLAS_NUM_THREADS", "")
				os.Unsetenv("OPENBLAS_NUM_THREADS")
			} else {
				t.Setenv("OPENBLAS_NUM_THREADS", tc.blas)
			}
			for _, tool := range []string{ffmpeg, ffprobe} {
				os.Remove(tool + ".log")
			}
			// ffprobe reads the MP4 rather than its headers being read in-process.
			d := newTestDecoder(t, Options{FFmpegPath: ffmpeg, FFprobePath: ffprobe, Probe: ProbeFFprobe, Guard: tc.guard, Logger: testLog(t)})
			if got := len(collect(t, d, video)); got != 1 {
				t.Fatalf("%d clips, want 1", got)
			}
			want := "blas=" + tc.wantBlas + " proxy=" + tc.wantProxy
			for _, tool := range []string{ffmpeg, ffprobe} {
				data, err := os.ReadFile(tool + ".log")
				if err != nil {
					t.Fatalf("%s did not run: %v", filepath.Base(tool), err)
				}
				for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
					if line != want {
						t.Errorf("%s saw %q, want %q", filepath.Base(tool), line, want)
					}
				}
			}
		})
	}
}

func TestToolEnv(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{nil, []string{"OPENBLAS_NUM_THREADS=1"}},
		{[]string{"PATH=/bin"}, []string{"PATH=/bin", "OPENBLAS_NUM_THREADS=1"}},
		{[]string{"OPENBLAS_NUM_THREADS=3", "PATH=/bin"}, []string{"OPENBLAS_NUM_THREADS=3", "PATH=/bin"}},
		{[]string{"XOPENBLAS_NUM_THREADS=3"}, []string{"XOPENBLAS_NUM_THREADS=3", "OPENBLAS_NUM_THREADS=1"}},
	} {
		in := slices.Clone(tc.in)
		if got := ToolEnv(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("ToolEnv(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !slices.Equal(tc.in, in) {
			t.Errorf("ToolEnv changed its argument: %q", tc.in)
		}
	}
}
