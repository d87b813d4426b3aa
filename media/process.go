package media

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vidx/vidx/sourceguard"
)

// stderrLimit bounds the ffmpeg/ffprobe diagnostics kept per call; a corrupt
// file can make ffmpeg log one line per packet.
const stderrLimit = 8 << 10

// waitDelay is how long Wait lets a killed process's pipes drain before it
// closes them itself, so a grandchild holding them cannot block a decode.
const waitDelay = 2 * time.Second

// execStartError means the tool could not be started at all (not installed,
// not executable): a problem with this host, never with the input.
type execStartError struct {
	tool string
	err  error
}

func (e *execStartError) Error() string { return fmt.Sprintf("start %s: %v", e.tool, e.err) }
func (e *execStartError) Unwrap() error { return e.err }

// command prepares bin so that cancelling ctx kills it together with
// anything it spawned, in ToolEnv's environment.
func command(ctx context.Context, bin string, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = waitDelay
	cmd.Env = ToolEnv(os.Environ())
	setProcessGroup(cmd)
	return cmd
}

// ToolEnv is env for ffmpeg and ffprobe: OpenBLAS limited to one thread
// unless env says otherwise. Debian's builds link OpenBLAS (libavfilter
// through pocketsphinx), and where its threaded build is installed the
// worker threads it starts with the process spin in sched_yield before
// they sleep, although no filter vidx runs uses BLAS: about 0.1
// CPU-seconds a process, a fifth of decoding a 30 s 640x360 video.
func ToolEnv(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "OPENBLAS_NUM_THREADS=") {
			return env
		}
	}
	return append(slices.Clone(env), "OPENBLAS_NUM_THREADS=1")
}

// run executes bin to completion, writing its output to stdout and stderr.
func (d *Decoder) run(ctx context.Context, src sourceguard.Source, bin string, args []string, stdout, stderr io.Writer) error {
	cmd := command(ctx, bin, args)
	src.Prepare(cmd)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	d.opts.Logger.DebugContext(ctx, "sample: exec", "cmd", bin, "args", src.Scrub(strings.Join(args, " ")))
	if err := cmd.Start(); err != nil {
		return &execStartError{tool: bin, err: err}
	}
	return cmd.Wait()
}

// tailBuffer keeps the last limit bytes written to it: the end of ffmpeg's
// log is where the reason for a failure is.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func newTailBuffer(limit int) *tailBuffer { return &tailBuffer{limit: limit} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.limit {
		t.buf = append(t.buf[:0], p[len(p)-t.limit:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
