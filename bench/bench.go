// Package bench measures vidx against the floors it is built on, side by
// side in one run: the image encoder against a bare onnxruntime_go loop,
// int8 against float32, sampling against plain ffmpeg, and query latency
// against a bare text-tower run plus a plain scan. Ratios taken in one run
// stay meaningful on a busy machine where absolute numbers do not.
//
// It generates its own inputs: random-weight CLIP towers at ViT-B/32 scale
// (scripts/export_bundle.py), their int8 copy (scripts/quantize.py), ffmpeg
// test videos and a store filled with random vectors, cached under
// ~/.cache/vidx/bench. Quick mode uses the tiny generated test models and
// small inputs, to check that the benchmark runs, not to time anything.
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
)

// Config selects what a run measures and where its inputs live.
type Config struct {
	// Quick uses tiny models and inputs: seconds, for smoke tests.
	Quick bool
	// CacheDir holds generated models and videos; default
	// ~/.cache/vidx/bench (or under $VIDX_CACHE_DIR).
	CacheDir string
	// RepoDir is the source checkout whose scripts/export_bundle.py builds
	// the B/32-scale models; default: found upwards from the working
	// directory. Quick mode does not need it.
	RepoDir string
	// ORTLib is the ONNX Runtime library; default onnx.DefaultLibPath.
	ORTLib string
	// Threads is ONNX Runtime's intra-op thread count for every session,
	// vidx's and the baselines'; default one per CPU.
	Threads int
	// Python runs the quantizer; QuantizeScript is scripts/quantize.py.
	// Without a script the int8 figures are skipped.
	Python, QuantizeScript string
	// Clips is the number of points in the query benchmark's store;
	// default 100000 (quick: 2000).
	Clips int
	// Pipeline, when set, runs every stage in this process on a batch of
	// videos and returns how long indexing took (the caller owns the app
	// wiring); without it the pipeline figures are skipped.
	Pipeline func(context.Context, PipelineRun) (time.Duration, error)
	// Vidx is the vidx executable the memory step runs each stage in, one
	// process per stage; without it the memory figures are skipped.
	Vidx string
	// Shape is the full run's model shape, one of Shapes; default b32.
	Shape string
	// Only, when not empty, names the steps to run (see Steps); the rest
	// are reported skipped. The pipeline step runs the encode step too: its
	// baseline is the bare encoder's rate.
	Only []string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Steps names the benchmark's steps in the order they run.
var Steps = []string{"encode", "pipeline", "sample", "query", "query-kafka", "memory"}

// runs reports whether step is to be measured.
func (c *Config) runs(step string) bool {
	if len(c.Only) == 0 {
		return true
	}
	return slices.Contains(c.Only, step) || (step == "encode" && slices.Contains(c.Only, "pipeline"))
}

// Figure is one measured vidx number next to its baseline.
type Figure struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Vidx     float64 `json:"vidx"`
	Baseline float64 `json:"baseline"`
	// Against names the baseline.
	Against string `json:"against"`
	// Ratio is vidx over baseline for rates and similarities, baseline
	// over vidx for latencies: above 1 means vidx does better.
	Ratio float64 `json:"ratio"`
	Note  string  `json:"note,omitempty"`
}

// Report is a run's result.
type Report struct {
	Quick   bool      `json:"quick"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Machine Machine   `json:"machine"`
	Models  []string  `json:"models"`
	Figures []Figure  `json:"figures"`
	// Skipped names figures that could not be measured, with the reason.
	Skipped []string `json:"skipped,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs    int    `json:"cpus"`
	Threads int    `json:"ort_threads"`
	OS      string `json:"os"`
	ORT     string `json:"onnxruntime"`
	FFmpeg  string `json:"ffmpeg"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1-minute figure: above
	// the core count, other processes shared the machine.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

func (c *Config) defaults() error {
	if c.CacheDir == "" {
		dir := os.Getenv("VIDX_CACHE_DIR")
		if dir == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				return fmt.Errorf("bench: cache directory: %w", err)
			}
			dir = filepath.Join(cache, "vidx")
		}
		c.CacheDir = filepath.Join(dir, "bench")
	}
	if c.Threads == 0 {
		c.Threads = runtime.NumCPU()
	}
	if c.Threads < 0 {
		return fmt.Errorf("bench: threads must be >= 0, got %d", c.Threads)
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.Clips == 0 {
		c.Clips = 100_000
		if c.Quick {
			c.Clips = 2000
		}
	}
	if c.Clips < 0 {
		return fmt.Errorf("bench: clips must be >= 0, got %d", c.Clips)
	}
	if c.Shape == "" {
		c.Shape = "b32"
	}
	if _, ok := shapes[c.Shape]; !ok {
		return fmt.Errorf("bench: unknown model shape %q (want %s)", c.Shape, strings.Join(Shapes, " or "))
	}
	for _, s := range c.Only {
		if !slices.Contains(Steps, s) {
			return fmt.Errorf("bench: unknown step %q (want %s)", s, strings.Join(Steps, ", "))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Run prepares the inputs and measures every figure.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		return nil, fmt.Errorf("bench: ffmpeg not found (run make setup): %w", err)
	}
	rep := &Report{Quick: cfg.Quick, Started: time.Now().UTC()}
	rep.Machine = Machine{CPUs: runtime.NumCPU(), Threads: cfg.Threads, OS: runtime.GOOS + "/" + runtime.GOARCH,
		FFmpeg: ffmpegVersion(ctx), LoadBefore: loadAvg()}

	fp32, err := cfg.fp32Bundle(ctx)
	if err != nil {
		return nil, err
	}
	// The encode, pipeline and Kafka query steps measure the int8 bundle.
	var int8Dir string
	if cfg.runs("encode") || cfg.runs("query-kafka") {
		if int8Dir, err = cfg.int8Bundle(ctx, fp32); err != nil {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("int8 figures: %v", err))
			cfg.Logger.Warn("int8 bundle unavailable; int8 figures skipped", "err", err)
		}
	}
	rt, err := onnx.NewRuntime(cfg.ORTLib)
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	rep.Machine.ORT = rt.Version()

	mf, err := bundle.Load(fp32)
	if err != nil {
		return nil, err
	}
	rep.Models = append(rep.Models, describeModel(mf))
	var mq *bundle.Manifest
	if int8Dir != "" {
		if mq, err = bundle.Load(int8Dir); err != nil {
			return nil, err
		}
		rep.Models = append(rep.Models, describeModel(mq))
	}
	video, err := cfg.video(ctx)
	if err != nil {
		return nil, err
	}

	var bareFP32 float64
	steps := []struct {
		name string
		fn   func() ([]Figure, error)
	}{
		{"encode", func() ([]Figure, error) {
			figs, fp32, err := cfg.encodeFigures(ctx, rt, mf, mq, video)
			bareFP32 = fp32.bestBare()
			return figs, err
		}},
		{"pipeline", func() ([]Figure, error) { return cfg.pipelineFigures(ctx, mf, mq, bareFP32) }},
		{"sample", func() ([]Figure, error) { return cfg.sampleFigures(ctx, video) }},
		{"query", func() ([]Figure, error) { return cfg.queryFigures(ctx, rt, mf) }},
		{"query-kafka", func() ([]Figure, error) {
			figs, err := cfg.queryKafkaFigures(ctx, rt, mf, cfg.Clips, "", false)
			if err != nil {
				return figs, err
			}
			spun, err := cfg.queryKafkaFigures(ctx, rt, mf, cfg.Clips, "", true)
			if err != nil {
				return figs, err
			}
			figs = append(figs, spinComparison(figs, spun, cfg.Clips)...)
			if mq == nil {
				return figs, nil
			}
			// Both towers of the int8 bundle quantized: the query stage as
			// a deployment choosing it runs.
			q, err := cfg.queryKafkaFigures(ctx, rt, mq, cfg.Clips, "_int8", false)
			return append(figs, q...), err
		}},
		{"memory", func() ([]Figure, error) { return cfg.memoryFigures(ctx, mf, video) }},
	}
	for _, s := range steps {
		if !cfg.runs(s.name) {
			rep.Skipped = append(rep.Skipped, s.name+" figures: not asked for")
			continue
		}
		cfg.Logger.Info("measuring", "step", s.name)
		figs, err := s.fn()
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", s.name, err)
		}
		rep.Figures = append(rep.Figures, figs...)
	}
	if cfg.Pipeline == nil {
		rep.Skipped = append(rep.Skipped, "pipeline figures: no pipeline runner")
	}
	if why := cfg.memorySkip(); why != "" && cfg.runs("memory") {
		rep.Skipped = append(rep.Skipped, why)
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.Seconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

func describeModel(m *bundle.Manifest) string {
	size := func(f string) float64 {
		fi, err := os.Stat(m.Path(f))
		if err != nil {
			return 0
		}
		return float64(fi.Size()) / 1e6
	}
	return fmt.Sprintf("%s (%s): image %.0f MB, text %.0f MB, embedding %d", m.Name, m.Dir, size(m.Image.ONNX), size(m.Text.ONNX), m.EmbeddingDim)
}

// Shapes of the full run's random models. Both are ViT 12x768 with CLIP's
// 12x512 text tower (exported with a dynamic sequence axis) and 512-d
// embeddings; B/32 cuts a 224 image into 7x7 patches, B/16 into 14x14, so
// its image tower does about 4.4 times the work.
var shapes = map[string][]string{
	"b32": {"--format", "openai", "--random-init", "--width", "768", "--layers", "12",
		"--text-width", "512", "--patch-size", "32", "--embed-dim", "512", "--name", "bench-b32"},
	"b16": {"--format", "openai", "--random-init", "--width", "768", "--layers", "12",
		"--text-width", "512", "--patch-size", "16", "--embed-dim", "512", "--name", "bench-b16"},
}

// Shapes lists the model shapes a full run can measure.
var Shapes = []string{"b32", "b16"}

// modelDir names the cached export after the shape, its arguments and the
// tokenizer, so a change to them exports anew instead of reusing models of
// another kind.
func (c *Config) modelDir(clipTokenizer bool) string {
	key := strings.Join(shapes[c.Shape], " ")
	if clipTokenizer {
		key += " tokenizer=clip"
	}
	sum := sha256.Sum256([]byte(key))
	return c.Shape + "-" + hex.EncodeToString(sum[:4])
}

// clipTokenizer is the folder of CLIP's own BPE files where the shared
// folder has them ($VIDX_SHARED_DIR, or shared/ beside the checkout), else
// "". Without them the export takes the test bundle's small vocabulary,
// which splits a caption into two or three times the tokens CLIP's does,
// and the text tower's cost grows with the tokens.
func (c *Config) clipTokenizer() string {
	var dirs []string
	if env := os.Getenv("VIDX_SHARED_DIR"); env != "" {
		dirs = append(dirs, filepath.Join(env, "clip-tokenizer"), env)
	}
	if repo, err := c.repo(); err == nil {
		dirs = append(dirs, filepath.Join(repo, "..", "shared", "clip-tokenizer"))
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "bpe_simple_vocab_16e6.txt.gz")); err == nil {
			return d
		}
	}
	return ""
}

// fp32Bundle returns the float32 bundle, generating it on first use.
func (c *Config) fp32Bundle(ctx context.Context) (string, error) {
	if c.Quick {
		// The dynamic-length tiny bundle, so a smoke run also takes the
		// end-token path of the text tower.
		tiny := filepath.Join(c.CacheDir, "quick", "tiny-clip-dynamic")
		if _, err := os.Stat(filepath.Join(tiny, bundle.ManifestFile)); err == nil {
			return tiny, nil
		}
		if err := testmodels.WriteTinyCLIPDynamicBundle(tiny); err != nil {
			return "", fmt.Errorf("bench: test models: %w", err)
		}
		return tiny, nil
	}
	tok := c.clipTokenizer()
	dir := filepath.Join(c.CacheDir, c.modelDir(tok != "")+"-fp32")
	if _, err := os.Stat(filepath.Join(dir, bundle.ManifestFile)); err == nil {
		return dir, nil
	}
	repo, err := c.repo()
	if err != nil {
		return "", err
	}
	if tok == "" {
		// The generated test bundle's small vocabulary fits the random
		// model's 49408-row embedding too.
		c.Logger.Warn("CLIP's tokenizer files not found (shared/clip-tokenizer): the text figures use a small test vocabulary, which gives longer token sequences")
		quick := filepath.Join(c.CacheDir, "quick")
		if err := testmodels.WriteAll(quick); err != nil {
			return "", fmt.Errorf("bench: test models: %w", err)
		}
		tok = filepath.Join(quick, "tiny-clip")
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	args := append([]string{filepath.Join(repo, "scripts", "export_bundle.py")}, shapes[c.Shape]...)
	checkpoint := filepath.Join(c.CacheDir, c.Shape+"-random.pt")
	args = append(args, "--checkpoint", checkpoint, "--out", tmp,
		"--tokenizer", tok, "-q")
	c.Logger.Info("exporting random CLIP towers at real scale (a few minutes, once)", "shape", c.Shape, "dir", dir)
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: export %s models (needs Debian's python3-torch: scripts/setup.sh --test): %w: %s", c.Shape, err, lastLine(stderr.String()))
	}
	os.Remove(checkpoint)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// int8Bundle returns the quantized copy of fp32, making it on first use.
func (c *Config) int8Bundle(ctx context.Context, fp32 string) (string, error) {
	dir := filepath.Join(filepath.Dir(fp32), filepath.Base(fp32)+"-int8")
	if _, err := os.Stat(filepath.Join(dir, bundle.ManifestFile)); err == nil {
		return dir, nil
	}
	if c.QuantizeScript == "" {
		return "", errors.New("no quantizer script")
	}
	c.Logger.Info("quantizing to int8 (once)", "dir", dir)
	os.RemoveAll(dir)
	if _, err := bundle.Quantize(ctx, fp32, dir, bundle.QuantizeOptions{Script: c.QuantizeScript, Python: c.Python}); err != nil {
		return "", err
	}
	return dir, nil
}

func (c *Config) repo() (string, error) {
	if c.RepoDir != "" {
		return c.RepoDir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "export_bundle.py")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: scripts/export_bundle.py not found above the working directory (run from the source checkout)")
		}
		dir = parent
	}
}

// video returns the benchmark's test video: 60 s of 640x360 at 25 fps
// (quick: 8 s of 320x180), rendered by ffmpeg's testsrc2 on first use.
func (c *Config) video(ctx context.Context) (string, error) {
	name, graph := "testsrc2-640x360-60s.mp4", "testsrc2=size=640x360:rate=25:duration=60"
	if c.Quick {
		name, graph = "testsrc2-320x180-8s.mp4", "testsrc2=size=320x180:rate=25:duration=8"
	}
	return c.renderVideo(ctx, name, graph)
}

// longVideo is the sparse sampling input: a 10-minute 720p video, of which
// whole mode keeps 12 frames. --quick renders a small one just long enough
// for the sparse path.
func (c *Config) longVideo(ctx context.Context) (string, error) {
	name, graph := "testsrc2-1280x720-600s.mp4", "testsrc2=size=1280x720:rate=25:duration=600"
	if c.Quick {
		name, graph = "testsrc2-320x180-120s.mp4", "testsrc2=size=320x180:rate=25:duration=120"
	}
	return c.renderVideo(ctx, name, graph)
}

// renderVideo renders a lavfi graph to CacheDir/videos/name once.
func (c *Config) renderVideo(ctx context.Context, name, graph string) (string, error) {
	dir := filepath.Join(c.CacheDir, "videos")
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".tmp.mp4"
	args := []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", graph}
	args = append(args, videoCodecArgs(ctx)...)
	args = append(args, tmp)
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: render test video: %w: %s", err, lastLine(string(out)))
	}
	return path, os.Rename(tmp, path)
}

// videoCodecArgs prefers H.264 with B-frames (what real videos are).
func videoCodecArgs(ctx context.Context) []string {
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-encoders").Output()
	if err == nil && strings.Contains(string(out), " libx264 ") {
		return []string{"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"}
	}
	return []string{"-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"}
}

func ffmpegVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
