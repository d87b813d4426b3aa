package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	broker "github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
)

// ProbeCommand is the bench subcommand the memory step runs its baselines
// in: `vidx bench memory-probe [flags]` loads what its flags name, does
// one batch of work, prints its own peak RSS and exits. It is not meant to
// be run by hand.
const ProbeCommand = "memory-probe"

// memorySkip says why the memory step cannot run here, or "".
func (c *Config) memorySkip() string {
	switch {
	case c.Vidx == "":
		return "memory figures: no vidx executable to run the stages in"
	case runtime.GOOS != "linux":
		return "memory figures: need Linux's /proc"
	}
	return ""
}

// memoryFigures run each stage alone in a `vidx run STAGE` process of its
// own, with the default configuration (batch sizes, threads) and the
// benchmark's bundle, against a broker in this process, and report each
// process's peak RSS. The stages start one after the other in pipeline
// order, each once the one before it has committed all its input, so that
// every stage finds a backlog and works in full batches (the peak a busy
// replica reaches), and no two stages compete for the cores.
//
// Peak RSS is the kernel's VmHWM of each process, read from /proc before
// it is stopped. Not ru_maxrss: a child started by Go shares this
// process's memory until it calls exec, and Linux counts that towards the
// child's ru_maxrss. The sample stage's figure adds the largest sum of its
// ffmpeg and ffprobe children's VmHWM seen at once (polled every 20 ms),
// an upper bound on the process tree's peak.
func (c *Config) memoryFigures(ctx context.Context, m *bundle.Manifest, video string) ([]Figure, error) {
	if c.memorySkip() != "" {
		return nil, nil
	}
	nVideos, nQueries, limit := 8, 64, 10*time.Minute
	if c.Quick {
		nVideos, nQueries, limit = 2, 8, 3*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	work, err := os.MkdirTemp("", "vidx-bench-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	videoDir := filepath.Join(work, "videos")
	videos, err := videoCopies(videoDir, video, nVideos)
	if err != nil {
		return nil, err
	}

	cfg := config.Default()
	b, err := broker.StartBroker(broker.BrokerConfig{Partitions: cfg.Kafka.WithDefaults().Partitions, Topics: cfg.Topics.All()})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	cfg.Kafka.Brokers = b.Addrs()
	// The index and query stages each open an embedded store of their own
	// (it is locked to one process), filled like the query figures' store.
	for _, s := range []string{app.StageIndex, app.StageQuery} {
		sc := cfg
		sc.DataDir = filepath.Join(work, s)
		if _, err := fillStore(ctx, sc, m, c.Clips); err != nil {
			return nil, err
		}
	}

	var outs []pipeline.Output
	for i, v := range videos {
		job := schemas.VideoJob{SchemaVersion: schemas.Version, VideoID: fmt.Sprintf("mem-%03d", i), URI: v, Source: "bench"}
		value, err := schemas.Encode(&job)
		if err != nil {
			return nil, err
		}
		outs = append(outs, pipeline.Output{Topic: cfg.Topics.Videos, Key: []byte(job.VideoID), Value: value})
	}
	for i := range nQueries {
		q := schemas.Query{SchemaVersion: schemas.Version, QueryID: fmt.Sprintf("mem-q-%03d", i), Text: benchQueries[i%len(benchQueries)], TopK: 10}
		value, err := schemas.Encode(&q)
		if err != nil {
			return nil, err
		}
		outs = append(outs, pipeline.Output{Topic: cfg.Topics.Queries, Key: []byte(q.QueryID), Value: value})
	}
	if err := kafka.Produce(ctx, cfg.Kafka, outs...); err != nil {
		return nil, err
	}

	peaks := map[string]procPeak{}
	for _, spec := range app.Stages {
		p, err := c.stagePeak(ctx, cfg, spec, m, work, videoDir)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", spec.Name, err)
		}
		c.Logger.Info("memory", "stage", spec.Name, "vmhwm_mib", mib(p.self), "children_mib", mib(p.children))
		peaks[spec.Name] = p
	}
	if err := checkAnswered(ctx, cfg, nQueries); err != nil {
		return nil, err
	}
	if n, err := topicCount(ctx, cfg.Kafka, cfg.Topics.DeadLetters); err != nil || n > 0 {
		return nil, fmt.Errorf("memory run dead-lettered %d messages (%v): its figures would not be of real work", n, err)
	}

	// Baselines, each in a process of its own like the stages.
	ffmpeg, err := ffmpegPeak(ctx, video)
	if err != nil {
		return nil, fmt.Errorf("plain ffmpeg: %w", err)
	}
	vectors := []string{"--vectors", strconv.Itoa(c.Clips), "--dim", strconv.Itoa(m.EmbeddingDim)}
	probe := func(args ...string) (int64, error) {
		if c.ORTLib != "" {
			args = append(args, "--ort-lib", c.ORTLib)
		}
		return c.probePeak(ctx, args)
	}
	idle, err := probe()
	if err != nil {
		return nil, err
	}
	held, err := probe(vectors...)
	if err != nil {
		return nil, err
	}
	mb := cfg.Model.MaxBatch
	img, err := probe("--bundle", m.Dir, "--image-batch", strconv.Itoa(mb))
	if err != nil {
		return nil, err
	}
	txt, err := probe(append([]string{"--bundle", m.Dir, "--load-image", "--text-batch", strconv.Itoa(mb)}, vectors...)...)
	if err != nil {
		return nil, err
	}

	samplers := cfg.Stages.Sample.Runtime.WithDefaults("sample").Replicas
	store := fmt.Sprintf("embedded store of %d clips", c.Clips)
	fig := func(stage string, base int64, against, note string) Figure {
		p := peaks[stage]
		v := mib(p.self + p.children)
		return Figure{Name: "rss_peak_" + stage, Unit: "MiB", Vidx: v, Baseline: mib(base), Against: against, Ratio: mib(base) / v, Note: note}
	}
	model := fmt.Sprintf("model.max_batch %d, %d intra-op threads", mb, cfg.Model.IntraOpThreads)
	return []Figure{
		// Each sample consumer decodes a video at a time, so the least the
		// stage needs is a plain ffmpeg per consumer.
		fig(app.StageSample, ffmpeg*int64(samplers), fmt.Sprintf("plain ffmpeg -vf fps=1 to raw RGB, same video, times %d (one per sample consumer)", samplers),
			fmt.Sprintf("%d whole-mode jobs, %d consumers (stages.sample.replicas) each decoding one at a time; vidx %.0f MiB + ffmpeg/ffprobe children %.0f MiB",
				nVideos, samplers, mib(peaks[app.StageSample].self), mib(peaks[app.StageSample].children))),
		fig(app.StageEncode, img, "bare onnxruntime_go image session, one batch, in a process of its own",
			fmt.Sprintf("%d clips of up to %d frames, %d clips a batch; %s", nVideos, cfg.Stages.Sample.MaxFrames, cfg.Stages.Encode.MaxBatch, model)),
		fig(app.StagePool, idle, "idle vidx process", fmt.Sprintf("%s, %d clips a batch", cfg.Stages.Pool.Mode, cfg.Stages.Pool.MaxBatch)),
		fig(app.StageIndex, held, "vidx process holding the vectors as one flat array", fmt.Sprintf("%s; %d clips a batch", store, cfg.Stages.Index.MaxBatch)),
		fig(app.StageQuery, txt, "bare text session (one batch) + image session + flat vectors, one process",
			fmt.Sprintf("%s; %d queries at once, up to %d a batch; %s", store, nQueries, cfg.Stages.Query.MaxBatch, model)),
	}, nil
}

// procPeak is a process's own VmHWM and the largest sum of its
// descendants' VmHWM seen at one time, in KiB.
type procPeak struct{ self, children int64 }

func mib(kib int64) float64 { return float64(kib) / 1024 }

// stagePeak runs one stage in a process of its own until it has committed
// all of its input topic, and returns its peak RSS.
func (c *Config) stagePeak(ctx context.Context, cfg config.Config, spec app.StageSpec, m *bundle.Manifest, work, videoDir string) (procPeak, error) {
	args := []string{"run", spec.Name, "--brokers", strings.Join(cfg.Kafka.Brokers, ","), "--bundle", m.Dir,
		"--data-dir", filepath.Join(work, spec.Name), "--metrics-addr", "", "--http-addr", "", "--log-level", "warn"}
	if c.ORTLib != "" {
		args = append(args, "--ort-lib", c.ORTLib)
	}
	cmd := exec.CommandContext(ctx, c.Vidx, args...)
	// Local video files are read from the working directory (one of the
	// sample stage's default file roots).
	cmd.Dir = videoDir
	stderr := &tail{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return procPeak{}, err
	}
	w := watchProc(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("did not stop within 30 s of SIGINT")
		}
	}

	group, input := spec.Group(cfg), spec.Input(cfg.Topics)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			w.stop()
			return procPeak{}, fmt.Errorf("exited before finishing its input: %v: %s", err, stderr)
		case <-ctx.Done():
			w.stop()
			_ = stop()
			return procPeak{}, fmt.Errorf("input not committed in time: %w: %s", ctx.Err(), stderr)
		case <-tick.C:
		}
		lags, err := kafka.GroupLag(ctx, cfg.Kafka, group, []string{input})
		if err != nil {
			continue // the group may not exist yet
		}
		var lag, end int64
		for _, l := range lags {
			lag, end = lag+l.Lag, end+l.End
		}
		if lag == 0 && end > 0 {
			break
		}
	}
	// VmHWM before the stop: draining and closing are not the work measured.
	p := w.stop()
	if err := stop(); err != nil {
		return procPeak{}, fmt.Errorf("stopping: %w: %s", err, stderr)
	}
	if p.self == 0 {
		return procPeak{}, errors.New("no VmHWM read from /proc")
	}
	return p, nil
}

// checkAnswered reads the results topic from its start and checks that
// every benchmark query was answered without an error.
func checkAnswered(ctx context.Context, cfg config.Config, n int) error {
	tap := kafka.NewTap(cfg.Kafka, cfg.Topics.Results, true)
	defer tap.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < n {
		msg, err := tap.Next(ctx)
		if err != nil {
			return fmt.Errorf("results: %d of %d queries answered: %w", len(seen), n, err)
		}
		r, err := schemas.DecodeResult(msg.Value)
		if err != nil {
			return err
		}
		if r.Error != nil {
			return fmt.Errorf("query %s: %s: %s", r.QueryID, r.Error.Code, r.Error.Message)
		}
		seen[r.QueryID] = true
	}
	return nil
}

func topicCount(ctx context.Context, kc kafka.Config, topic string) (int64, error) {
	ends, err := kafka.EndOffsets(ctx, kc, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n, nil
}

// ffmpegPeak runs plain ffmpeg at 1 fps to raw RGB, the sample figures'
// baseline, and returns its VmHWM, polled until it exits: ffmpeg sizes its
// buffers at the start, so the last reading is its peak.
func ffmpegPeak(ctx context.Context, video string) (int64, error) {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", video,
		"-vf", "fps=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:")
	cmd.Env = media.ToolEnv(os.Environ())
	cmd.Stdout = io.Discard
	stderr := &tail{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	w := watchProc(cmd.Process.Pid)
	err := cmd.Wait()
	p := w.stop()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, stderr)
	}
	if p.self == 0 {
		return 0, errors.New("no VmHWM read from /proc")
	}
	return p.self, nil
}

// probePeak runs `vidx bench memory-probe ARGS` and returns the peak RSS it
// reports for itself.
func (c *Config) probePeak(ctx context.Context, args []string) (int64, error) {
	cmd := exec.CommandContext(ctx, c.Vidx, append([]string{"bench", ProbeCommand}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("memory probe %v: %w: %s", args, err, lastLine(stderr.String()))
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "vmhwm_kib "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("memory probe %v: no vmhwm_kib line in %q", args, out)
}

// MemoryProbe is the memory step's baseline process (ProbeCommand): it
// loads the towers its flags name with the default session options, runs
// one batch through each tower asked to run, holds the vectors asked for,
// and prints its VmHWM in KiB as "vmhwm_kib N".
func MemoryProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(ProbeCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("bundle", "", "model bundle")
	lib := fs.String("ort-lib", "", "ONNX Runtime library (default: onnx.DefaultLibPath)")
	imageBatch := fs.Int("image-batch", 0, "load the image tower and run one batch of this many images")
	loadImage := fs.Bool("load-image", false, "load the image tower without running it")
	textBatch := fs.Int("text-batch", 0, "load the text tower and run one batch of this many full-length texts")
	vectors := fs.Int("vectors", 0, "hold this many vectors of --dim float32 in one array")
	dim := fs.Int("dim", 0, "vector dimension for --vectors")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *imageBatch < 0 || *textBatch < 0 || *vectors < 0 || (*vectors > 0 && *dim <= 0) {
		return fmt.Errorf("%s: bad arguments %v", ProbeCommand, args)
	}
	flat := make([]float32, *vectors**dim)
	for i := range flat {
		flat[i] = 1 // touch every page, as a loaded store has
	}
	if *imageBatch > 0 || *loadImage || *textBatch > 0 {
		if *dir == "" {
			return fmt.Errorf("%s: --bundle is required to load a tower", ProbeCommand)
		}
		release, err := probeTowers(*dir, *lib, *imageBatch, *loadImage, *textBatch)
		if err != nil {
			return err
		}
		defer release()
	}
	hwm, err := readStatusKiB(os.Getpid(), "VmHWM")
	if err != nil {
		return err
	}
	runtime.KeepAlive(flat)
	_, err = fmt.Fprintf(stdout, "vmhwm_kib %d\n", hwm)
	return err
}

// probeTowers loads bare sessions with the stages' default options (those
// of config.Default) and runs one batch on those asked to run. The caller
// reads the peak before calling release.
func probeTowers(dir, lib string, imageBatch int, loadImage bool, textBatch int) (release func(), err error) {
	var closers []func()
	release = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	m, err := bundle.Load(dir)
	if err != nil {
		return nil, err
	}
	if lib == "" {
		lib = onnx.DefaultLibPath()
	}
	rt, err := onnx.NewRuntime(lib)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { rt.Close() })
	d := config.Default().Model
	o := onnx.SessionOptions{IntraOpThreads: d.IntraOpThreads, InterOpThreads: d.InterOpThreads, MaxBatch: d.MaxBatch, NoSpinning: !d.AllowSpinning}
	so, err := o.ORTOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	if imageBatch > 0 || loadImage {
		n := max(imageBatch, 1)
		size := m.Image.Size
		in, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(size), int64(size)), randomPixels(n*3*size*size, 1))
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { in.Destroy() })
		out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), int64(m.EmbeddingDim)))
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { out.Destroy() })
		s, err := ort.NewAdvancedSession(m.Path(m.Image.ONNX), []string{m.Image.Input}, []string{m.Image.Output}, []ort.Value{in}, []ort.Value{out}, so)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { s.Destroy() })
		if imageBatch > 0 {
			if err := s.Run(); err != nil {
				return nil, err
			}
		}
	}
	if textBatch > 0 {
		t, err := newBareText(m, o, textBatch)
		if err != nil {
			return nil, err
		}
		closers = append(closers, t.close)
		ids := make([]int64, textBatch*m.Text.ContextLength)
		for i := range ids {
			ids[i] = m.Text.PadID
		}
		if _, err := t.run(ids, m.Text.PadID); err != nil {
			return nil, err
		}
	}
	return release, nil
}

// watchProc polls a process's VmHWM and its descendants' every 20 ms until
// stop, which returns the last readings.
type procWatch struct {
	mu   sync.Mutex
	peak procPeak
	done chan struct{}
	wg   sync.WaitGroup
}

func watchProc(pid int) *procWatch {
	w := &procWatch{done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			w.read(pid)
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *procWatch) read(pid int) {
	self, err := readStatusKiB(pid, "VmHWM")
	if err != nil {
		return // gone, or not yet exec'd
	}
	var children int64
	for _, c := range descendants(pid) {
		if v, err := readStatusKiB(c, "VmHWM"); err == nil {
			children += v
		}
	}
	w.mu.Lock()
	w.peak.self = max(w.peak.self, self)
	w.peak.children = max(w.peak.children, children)
	w.mu.Unlock()
}

func (w *procWatch) stop() procPeak {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// descendants lists pid's child processes and theirs, from each thread's
// /proc children file.
func descendants(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

// readStatusKiB reads one "kB" field of /proc/PID/status.
func readStatusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// tail keeps the last max bytes written to it, for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
