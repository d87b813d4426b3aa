// Package chaos proves vidx's delivery guarantees by breaking things: it
// runs the broker and each stage as its own OS process, feeds video jobs,
// kills random stages with SIGKILL at random moments and restarts them,
// restarts the broker, takes the vector store down for a while and stops a
// stage with SIGTERM mid-batch, then checks the index: every job indexed,
// exactly the expected number of points per video, no orphan.
//
// The store is an in-process Qdrant test server (sinks/qdrant/qdranttest)
// that the index stage reaches over gRPC, so the harness can fail its
// upserts on demand and count points at the end.
package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/grpc/codes"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
)

// Config sizes a run.
type Config struct {
	// Bin is the vidx binary to run.
	Bin string
	// Dir holds models, videos, the broker's data, the store and logs.
	Dir string
	// Jobs is the number of video jobs; Kills the number of SIGKILLs.
	Jobs  int
	Kills int
	// Videos is the number of distinct generated videos the jobs cycle
	// through (each job has its own video id, so its own points).
	Videos int
	// Kafka is the broker: KafkaEmbedded (default) or KafkaReal, Apache
	// Kafka through KafkaScript (scripts/kafka.sh) with KafkaNodes nodes
	// (1, or 3 with replication factor 3 and min.insync.replicas 2).
	Kafka       string
	KafkaScript string
	KafkaNodes  int
	// BrokerRestart, BrokerLoss (one node of three killed for good),
	// StoreOutage and Drain enable those scenarios.
	BrokerRestart bool
	BrokerLoss    bool
	StoreOutage   time.Duration
	Drain         bool
	// Burst, when positive, publishes this many jobs at once after
	// calibration (before any disruption) and records each stage's peak
	// RSS before and after it.
	Burst int
	// Seed makes the kill schedule reproducible; 0 picks one.
	Seed uint64
	// Timeout bounds the whole run.
	Timeout time.Duration
	Log     *slog.Logger
}

// Report is the outcome of a run.
type Report struct {
	Jobs, Kills int
	// Lost counts jobs with fewer points than expected, Duplicated the
	// points beyond the expected count, Orphans points of no job.
	Lost, Duplicated, Orphans int
	DeadLetters               int
	Points                    int
	// PointsPerVideo is the expected count for each generated video.
	PointsPerVideo []int
	BrokerRestarts int
	BrokerLosses   int
	// Kafka names the broker the run used.
	Kafka string
	// OutageHeld says the index stage committed nothing while the store
	// refused upserts; OutageFailedUpserts counts the refused calls.
	OutageHeld          bool
	OutageFailedUpserts int
	// DrainExit is how long a SIGTERMed stage took to finish its batch and
	// exit; DrainClean says it exited with status 0.
	DrainExit  time.Duration
	DrainClean bool
	Unexpected int // stage exits the harness did not cause
	// ZombieRestarts counts broker restarts the harness made because a
	// consumer group kept a member whose process was dead long past the
	// session timeout, holding its partitions (a kfake coordinator fault;
	// a Kafka coordinator expires such members). They are reported, not
	// hidden: a run with none is the clean result.
	ZombieRestarts int
	// PeakRSS is each stage's peak resident set (VmHWM) after calibration
	// and after the burst, in bytes.
	PeakRSS map[string][2]int64
	Elapsed time.Duration
	Seed    uint64
}

// Summary is the one-line result.
func (r Report) Summary() string {
	return fmt.Sprintf("jobs=%d kills=%d lost=%d duplicated=%d", r.Jobs, r.Kills, r.Lost, r.Duplicated)
}

// String adds the details.
func (r Report) String() string {
	return fmt.Sprintf("%s kafka=%s orphans=%d dead_letters=%d points=%d points_per_video=%v broker_restarts=%d broker_losses=%d zombie_restarts=%d outage_held=%v outage_failed_upserts=%d drain_exit=%s drain_clean=%v unexpected_exits=%d elapsed=%s seed=%d",
		r.Summary(), r.Kafka, r.Orphans, r.DeadLetters, r.Points, r.PointsPerVideo, r.BrokerRestarts, r.BrokerLosses, r.ZombieRestarts, r.OutageHeld, r.OutageFailedUpserts,
		r.DrainExit.Round(time.Millisecond), r.DrainClean, r.Unexpected, r.Elapsed.Round(time.Second), r.Seed)
}

// Stages run as separate processes, in pipeline order: every stage of
// vidx's table but the query stage, which checking the index does not need.
var Stages = func() []string {
	var names []string
	for _, s := range app.Stages {
		if s.Name != app.StageQuery {
			names = append(names, s.Name)
		}
	}
	return names
}()

// groupAndInput are a stage's consumer group and input topic under the
// configuration the harness writes, which keeps vidx's defaults for both.
func groupAndInput(stage string) (group, input string) {
	spec, ok := app.Spec(stage)
	if !ok {
		panic("chaos: unknown stage " + stage)
	}
	cfg := config.Default()
	return spec.Group(cfg), spec.Input(cfg.Topics)
}

const collection = "chaos"

// Run performs one chaos run.
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	if cfg.Videos <= 0 {
		cfg.Videos = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Kafka == "" {
		cfg.Kafka = KafkaEmbedded
	}
	if cfg.KafkaNodes <= 0 {
		cfg.KafkaNodes = 1
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	rep.Jobs, rep.Seed = cfg.Jobs, cfg.Seed
	rep.Kafka = cfg.Kafka
	if cfg.Kafka == KafkaReal {
		rep.Kafka = fmt.Sprintf("real/%d", cfg.KafkaNodes)
	}
	start := time.Now()
	defer func() { rep.Elapsed = time.Since(start) }()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	log := cfg.Log

	h := &harness{cfg: cfg, log: log, procs: map[string]*proc{}}
	defer h.stopAll()
	if err := h.prepare(ctx); err != nil {
		return rep, err
	}
	qs, err := qdranttest.Start(qdranttest.Options{Dir: filepath.Join(cfg.Dir, "qdrant")})
	if err != nil {
		return rep, err
	}
	defer qs.Close()
	h.store = qs
	switch cfg.Kafka {
	case KafkaEmbedded:
		h.broker, err = newEmbeddedCluster(h)
	case KafkaReal:
		h.broker, err = newRealCluster(h, cfg.KafkaScript, cfg.KafkaNodes)
	default:
		err = fmt.Errorf("chaos: unknown broker kind %q (want %s or %s)", cfg.Kafka, KafkaEmbedded, KafkaReal)
	}
	if err != nil {
		return rep, err
	}
	if err := h.broker.start(ctx); err != nil {
		return rep, err
	}
	if err := h.writeConfig(); err != nil {
		return rep, err
	}
	for _, s := range Stages {
		if err := h.startStage(s); err != nil {
			return rep, err
		}
	}

	// Calibrate: one job per video with nothing broken says how many points
	// each video yields.
	for v := range cfg.Videos {
		if err := h.publish(ctx, fmt.Sprintf("calib-%d", v), v); err != nil {
			return rep, err
		}
	}
	if err := h.waitIdle(ctx); err != nil {
		return rep, fmt.Errorf("calibration: %w", err)
	}
	st, err := h.openStore(ctx)
	if err != nil {
		return rep, err
	}
	defer st.Close()
	for v := range cfg.Videos {
		n, err := st.Count(ctx, collection, sinks.Filter{VideoIDs: []string{fmt.Sprintf("calib-%d", v)}})
		if err != nil {
			return rep, fmt.Errorf("calibration count: %w", err)
		}
		if n == 0 {
			return rep, fmt.Errorf("calibration video %d produced no points; see the logs in %s", v, h.logDir())
		}
		rep.PointsPerVideo = append(rep.PointsPerVideo, n)
	}
	log.Info("calibrated", "points_per_video", rep.PointsPerVideo)
	if cfg.Burst > 0 {
		if rep.PeakRSS, err = h.burst(ctx, cfg.Burst); err != nil {
			return rep, err
		}
	}

	// Chaos: jobs are published in waves between disruptions so every
	// disruption lands on work in flight.
	waves := max(cfg.Kills, 1)
	published := 0
	publishWave := func(w int) error {
		target := cfg.Jobs * (w + 1) / waves
		for ; published < target; published++ {
			if err := h.publish(ctx, jobID(published), published%cfg.Videos); err != nil {
				return err
			}
		}
		return nil
	}
	brokerAt, lossAt, outageAt, drainAt := -1, -1, -1, -1
	if cfg.BrokerRestart {
		brokerAt = waves / 3
	}
	if cfg.BrokerLoss {
		lossAt = 3 * waves / 4
	}
	if cfg.StoreOutage > 0 {
		outageAt = waves / 2
	}
	if cfg.Drain {
		drainAt = 2 * waves / 3
	}
	for w := range waves {
		if err := publishWave(w); err != nil {
			return rep, err
		}
		if err := pipeline.Sleep(ctx, time.Duration(300+rng.IntN(1700))*time.Millisecond); err != nil {
			return rep, err
		}
		if w < cfg.Kills {
			victim := Stages[rng.IntN(len(Stages))]
			log.Info("SIGKILL", "stage", victim, "kill", rep.Kills+1)
			if err := h.kill(victim, syscall.SIGKILL); err != nil {
				return rep, err
			}
			rep.Kills++
			if err := pipeline.Sleep(ctx, time.Duration(rng.IntN(1000))*time.Millisecond); err != nil {
				return rep, err
			}
			if err := h.startStage(victim); err != nil {
				return rep, err
			}
		}
		if w == brokerAt {
			log.Info("restarting the broker")
			if err := h.broker.restart(ctx); err != nil {
				return rep, err
			}
			rep.BrokerRestarts++
		}
		if w == lossAt {
			log.Info("losing a broker for good")
			if err := h.broker.lose(ctx); err != nil {
				return rep, err
			}
			rep.BrokerLosses++
		}
		if w == outageAt {
			held, failed, err := h.storeOutage(ctx, cfg.StoreOutage)
			if err != nil {
				return rep, err
			}
			rep.OutageHeld, rep.OutageFailedUpserts = held, failed
		}
		if w == drainAt {
			d, clean, err := h.drain(ctx, "sample")
			if err != nil {
				return rep, err
			}
			rep.DrainExit, rep.DrainClean = d, clean
		}
	}
	if err := h.waitIdle(ctx); err != nil {
		return rep, err
	}

	// Check the index.
	total, err := st.Count(ctx, collection, sinks.Filter{})
	if err != nil {
		return rep, err
	}
	rep.Points = total
	// Every job published (calibration, burst and outage jobs included)
	// must hold exactly its video's points.
	accounted := 0
	for id, video := range h.published() {
		want := rep.PointsPerVideo[video]
		n, err := st.Count(ctx, collection, sinks.Filter{VideoIDs: []string{id}})
		if err != nil {
			return rep, err
		}
		accounted += n
		switch {
		case n < want:
			rep.Lost++
			log.Warn("job under-indexed", "job", id, "points", n, "want", want)
		case n > want:
			rep.Duplicated += n - want
			log.Warn("job over-indexed", "job", id, "points", n, "want", want)
		}
	}
	rep.Orphans = total - accounted
	if rep.DeadLetters, err = countTopic(ctx, h.kafka(), "dead-letters"); err != nil {
		return rep, err
	}
	rep.Unexpected = h.unexpectedExits()
	rep.ZombieRestarts = h.zombieRestarts
	return rep, nil
}

func jobID(i int) string { return fmt.Sprintf("job-%05d", i) }

// burst publishes n jobs at once and reports each stage's peak RSS before
// and after.
func (h *harness) burst(ctx context.Context, n int) (map[string][2]int64, error) {
	peaks := map[string][2]int64{}
	for _, s := range Stages {
		hwm, err := h.peakRSS(s)
		if err != nil {
			return nil, err
		}
		peaks[s] = [2]int64{hwm, 0}
	}
	for i := range n {
		if err := h.publish(ctx, fmt.Sprintf("burst-%05d", i), i%h.cfg.Videos); err != nil {
			return nil, err
		}
	}
	if err := h.waitIdle(ctx); err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}
	for _, s := range Stages {
		hwm, err := h.peakRSS(s)
		if err != nil {
			return nil, err
		}
		p := peaks[s]
		p[1] = hwm
		peaks[s] = p
		h.log.Info("peak RSS", "stage", s, "before_mib", p[0]>>20, "after_burst_mib", p[1]>>20)
	}
	return peaks, nil
}

// peakRSS reads VmHWM of a stage process from /proc.
func (h *harness) peakRSS(stage string) (int64, error) {
	h.mu.Lock()
	p := h.procs[stage]
	h.mu.Unlock()
	if p == nil {
		return 0, fmt.Errorf("no process %s", stage)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of %s: %w", stage, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS of %s: %q: %w", stage, line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("peak RSS of %s: no VmHWM in /proc status", stage)
}

type harness struct {
	cfg    Config
	log    *slog.Logger
	store  *qdranttest.Server
	broker cluster

	mu             sync.Mutex
	procs          map[string]*proc
	unexpected     int
	zombieRestarts int
	jobs           map[string]int // every published job's video
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	killed bool // by the harness
	err    error
	// log and logFrom locate this process's lines in its stage's log.
	log     string
	logFrom int64
}

func (h *harness) logDir() string     { return filepath.Join(h.cfg.Dir, "logs") }
func (h *harness) configPath() string { return filepath.Join(h.cfg.Dir, "vidx.yaml") }
func (h *harness) video(i int) string {
	return filepath.Join(h.cfg.Dir, "videos", "v"+strconv.Itoa(i)+".mp4")
}

func (h *harness) kafka() kafka.Config {
	return kafka.Config{Brokers: h.broker.addrs(), Partitions: 4, ReplicationFactor: h.broker.replication(), DialTimeout: 3 * time.Second}
}

// prepare writes the colour test bundle and short videos of distinct
// colours and lengths.
func (h *harness) prepare(ctx context.Context) error {
	for _, d := range []string{"videos", "logs"} {
		if err := os.MkdirAll(filepath.Join(h.cfg.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := testmodels.WriteAll(filepath.Join(h.cfg.Dir, "models")); err != nil {
		return fmt.Errorf("test models: %w", err)
	}
	colours := []string{"red", "green", "blue", "yellow", "white", "purple", "orange", "cyan"}
	for i := range h.cfg.Videos {
		// 3 to 6 seconds: with 2 s windows, 2 or 3 points per video.
		dur := 3 + i%4
		out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
			"-i", fmt.Sprintf("color=c=%s:size=96x64:rate=4:duration=%d", colours[i%len(colours)], dur),
			"-c:v", "libx264", "-pix_fmt", "yuv420p", h.video(i)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ffmpeg: %w: %s", err, out)
		}
	}
	return nil
}

func (h *harness) writeConfig() error {
	yaml := fmt.Sprintf(`data_dir: %s
log_level: info
kafka: {brokers: [%s], partitions: 4, replication_factor: %d, dial_timeout: 3s}
model: {bundle: %s, intra_op_threads: 1, inter_op_threads: 1}
store: {url: %q, collection: %s}
telemetry: {addr: ""}
stages:
  sample: {timeout: 60s, sources: {file_roots: [%s]}}
`, filepath.Join(h.cfg.Dir, "data"), strings.Join(h.broker.addrs(), ", "), h.broker.replication(), filepath.Join(h.cfg.Dir, "models", "color"), h.store.URL(), collection,
		filepath.Join(h.cfg.Dir, "videos"))
	return os.WriteFile(h.configPath(), []byte(yaml), 0o644)
}

func (h *harness) spawn(name string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(filepath.Join(h.logDir(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	var from int64
	if st, err := lf.Stat(); err == nil {
		from = st.Size()
	}
	cmd := exec.Command(h.cfg.Bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// A process group, so SIGKILL takes the stage's ffmpeg children too,
	// as a container kill would.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: lf.Name(), logFrom: from}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		h.mu.Lock()
		if !p.killed {
			h.unexpected++
		}
		h.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// startStage runs `vidx run STAGE` and keeps it running: a stage that
// exits on its own (the broker was away when it started) is restarted, as
// an orchestrator would.
func (h *harness) startStage(name string) error {
	p, err := h.spawn(name, "run", name, "--config", h.configPath())
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.procs[name] = p
	h.mu.Unlock()
	go func() {
		<-p.done
		h.mu.Lock()
		restart := !p.killed && h.procs[name] == p
		h.mu.Unlock()
		if restart {
			h.log.Warn("stage exited on its own; restarting", "stage", name, "err", p.err)
			time.Sleep(time.Second)
			h.mu.Lock()
			still := h.procs[name] == p
			h.mu.Unlock()
			if still {
				if err := h.startStage(name); err != nil {
					h.log.Error("restart", "stage", name, "err", err)
				}
			}
		}
	}()
	return nil
}

func (h *harness) kill(name string, sig syscall.Signal) error {
	h.mu.Lock()
	p := h.procs[name]
	if p != nil {
		p.killed = true
	}
	h.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	target := p.cmd.Process.Pid
	if sig == syscall.SIGKILL {
		target = -target
	}
	if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	<-p.done
	return nil
}

// storeOutage fails every upsert for d and reports whether the index
// stage's committed offsets stayed put meanwhile.
func (h *harness) storeOutage(ctx context.Context, d time.Duration) (held bool, failed int, err error) {
	h.log.Info("store outage", "for", d)
	h.store.Inject(qdranttest.Fault{Method: "Points/Upsert", Code: codes.Unavailable, Message: "chaos: store down"})
	// Batches whose upsert finished just before the fault may still commit.
	if err := pipeline.Sleep(ctx, time.Second); err != nil {
		return false, 0, err
	}
	// Make sure the outage meets work: publish jobs and wait until the
	// index stage tries to upsert them.
	h.store.ResetCalls()
	for v := range h.cfg.Videos {
		if err := h.publish(ctx, fmt.Sprintf("outage-%d", v), v); err != nil {
			return false, 0, err
		}
	}
	for deadline := time.Now().Add(time.Minute); h.store.Calls("Points/Upsert") == 0 && time.Now().Before(deadline); {
		if err := pipeline.Sleep(ctx, 200*time.Millisecond); err != nil {
			return false, 0, fmt.Errorf("store outage: the index stage never tried to upsert: %w", err)
		}
	}
	group, input := groupAndInput("index")
	before, err := kafka.GroupLag(ctx, h.kafka(), group, []string{input})
	if err != nil {
		return false, 0, err
	}
	if err := pipeline.Sleep(ctx, d); err != nil {
		return false, 0, err
	}
	after, err := kafka.GroupLag(ctx, h.kafka(), group, []string{input})
	failed = h.store.Calls("Points/Upsert")
	h.store.ClearFaults()
	if err != nil {
		return false, 0, err
	}
	held = true
	for i := range before {
		if i < len(after) && after[i].Committed != before[i].Committed {
			held = false
			h.log.Warn("index committed during the outage", "partition", after[i].Partition, "before", before[i].Committed, "after", after[i].Committed)
		}
	}
	return held, failed, nil
}

// drain sends SIGTERM to a stage while it works and times its exit.
func (h *harness) drain(ctx context.Context, name string) (time.Duration, bool, error) {
	h.mu.Lock()
	p := h.procs[name]
	h.mu.Unlock()
	// Mid-work means a stage that runs: one restarted a moment ago by a
	// kill may not have reached its first instruction yet.
	if err := waitStarted(ctx, p); err != nil {
		return 0, false, err
	}
	h.mu.Lock()
	p.killed = true
	h.mu.Unlock()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, false, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
	d := time.Since(start)
	clean := p.err == nil
	h.log.Info("SIGTERM drained", "stage", name, "exit_after", d, "err", p.err)
	return d, clean, h.startStage(name)
}

// waitStarted waits until p logs that its stage runs.
func waitStarted(ctx context.Context, p *proc) error {
	for {
		if b, err := os.ReadFile(p.log); err == nil && int64(len(b)) > p.logFrom &&
			strings.Contains(string(b[p.logFrom:]), `msg="stage started"`) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it started: %v", p.name, p.err)
		default:
		}
		if err := pipeline.Sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("%s never started: %w", p.name, err)
		}
	}
}

// waitIdle waits until every stage group has committed everything on its
// input topic, three checks in a row.
func (h *harness) waitIdle(ctx context.Context) error {
	streak := 0
	var last string
	lastChange := time.Now()
	for streak < 3 {
		if time.Since(lastChange) > 45*time.Second && h.broker.zombieProne() {
			zombie, err := h.zombieGroup(ctx)
			if err != nil {
				return err
			}
			if zombie != "" {
				h.log.Warn("a consumer group kept a dead member past its session timeout; restarting the broker", "group", zombie, "lag", last)
				if err := h.broker.restart(ctx); err != nil {
					return err
				}
				h.zombieRestarts++
			}
			lastChange = time.Now()
		}
		if err := pipeline.Sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("waiting for the pipeline to drain (last lag: %s): %w", last, err)
		}
		idle, desc := true, ""
		for _, s := range Stages {
			group, input := groupAndInput(s)
			lags, err := kafka.GroupLag(ctx, h.kafka(), group, []string{input})
			if err != nil {
				idle, desc = false, err.Error()
				break
			}
			var lag int64
			for _, l := range lags {
				lag += l.Lag
			}
			desc += fmt.Sprintf("%s=%d ", s, lag)
			if lag != 0 {
				idle = false
			}
		}
		if desc != last {
			lastChange = time.Now()
		}
		last = desc
		if idle {
			streak++
		} else {
			streak = 0
		}
	}
	return nil
}

// zombieGroup names a stage group with more members than the one process
// the harness runs for it, if any.
func (h *harness) zombieGroup(ctx context.Context) (string, error) {
	groups := make([]string, len(Stages))
	for i, s := range Stages {
		groups[i], _ = groupAndInput(s)
	}
	c := &kafkago.Client{Addr: kafkago.TCP(h.kafka().Brokers...), Timeout: 5 * time.Second}
	resp, err := c.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: groups})
	if err != nil {
		return "", fmt.Errorf("describe groups: %w", err)
	}
	for _, g := range resp.Groups {
		if len(g.Members) > 1 {
			return g.GroupID, nil
		}
	}
	return "", nil
}

func (h *harness) published() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.jobs))
	for id, v := range h.jobs {
		out[id] = v
	}
	return out
}

func (h *harness) publish(ctx context.Context, id string, video int) error {
	h.mu.Lock()
	if h.jobs == nil {
		h.jobs = map[string]int{}
	}
	h.jobs[id] = video
	h.mu.Unlock()
	job := schemas.VideoJob{VideoID: id, URI: h.video(video), Source: "chaos",
		Segment: &schemas.Segment{Mode: schemas.ModeWindow, WindowS: 2, StrideS: 2}}
	v, err := schemas.Encode(&job)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = kafka.Produce(pctx, h.kafka(), pipeline.Output{Topic: "videos", Key: []byte(id), Value: v})
		cancel()
		if err == nil || attempt == 5 {
			return err
		}
		if err := pipeline.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

func (h *harness) openStore(ctx context.Context) (*qdrant.Store, error) {
	return qdrant.Open(ctx, h.store.URL(), qdrant.Default(), h.log)
}

func (h *harness) unexpectedExits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unexpected
}

func (h *harness) stopAll() {
	h.mu.Lock()
	procs := make([]*proc, 0, len(h.procs))
	for _, p := range h.procs {
		p.killed = true
		procs = append(procs, p)
	}
	h.procs = map[string]*proc{}
	h.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(40 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if h.broker != nil {
		h.broker.stop()
	}
}

func countTopic(ctx context.Context, kc kafka.Config, topic string) (int, error) {
	n := 0
	err := kafka.ScanTopic(ctx, kc, topic, func(pipeline.Message) error { n++; return nil })
	return n, err
}

// tail returns the last lines of a log file, for failure messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Tails returns the end of every process log.
func Tails(dir string, n int) string {
	var b strings.Builder
	for _, name := range append([]string{"broker"}, Stages...) {
		fmt.Fprintf(&b, "--- %s\n%s\n", name, tail(filepath.Join(dir, "logs", name+".log"), n))
	}
	return b.String()
}
