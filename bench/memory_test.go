package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func requireProc(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux's /proc")
	}
}

// TestBenchMemoryProbe runs the probe in this process: the peak it prints must
// cover the vectors it was asked to hold, and bad arguments are refused.
func TestBenchMemoryProbe(t *testing.T) {
	requireProc(t)
	const vectors, dim = 200_000, 64 // 48.8 MiB of float32
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"vectors", []string{"--vectors", strconv.Itoa(vectors), "--dim", strconv.Itoa(dim)}, false},
		{"vectors without dim", []string{"--vectors", "10"}, true},
		{"negative batch", []string{"--image-batch", "-1"}, true},
		{"tower without bundle", []string{"--text-batch", "8"}, true},
		{"extra argument", []string{"x"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := MemoryProbe(context.Background(), tc.args, &out, &errOut)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error; printed %q", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err, errOut.String())
			}
			v, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "vmhwm_kib ")
			kib, perr := strconv.ParseInt(v, 10, 64)
			if !ok || perr != nil {
				t.Fatalf("output %q, want vmhwm_kib N", out.String())
			}
			if min := int64(vectors * dim * 4 / 1024); kib < min {
				t.Errorf("peak %d KiB, below the %d KiB of vectors held", kib, min)
			}
		})
	}
}

// TestBenchWatchProc finds a child process and its peak RSS.
func TestBenchWatchProc(t *testing.T) {
	requireProc(t)
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if !slices.Contains(descendants(os.Getpid()), cmd.Process.Pid) {
		t.Errorf("descendants of %d lack child %d", os.Getpid(), cmd.Process.Pid)
	}
	w := watchProc(os.Getpid())
	w.read(os.Getpid())
	p := w.stop()
	self, err := readStatusKiB(os.Getpid(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	if p.self <= 0 || p.self > self || p.children <= 0 {
		t.Errorf("peak %+v: want own VmHWM in (0, %d] and a positive children's sum", p, self)
	}
	if _, err := readStatusKiB(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("missing field read without an error")
	}
}

func TestBenchTail(t *testing.T) {
	tl := &tail{max: 8}
	for _, s := range []string{"abc", "defgh", "ijk"} {
		tl.Write([]byte(s))
	}
	if got := tl.String(); got != "defghijk" {
		t.Errorf("tail %q, want the last 8 bytes", got)
	}
}
