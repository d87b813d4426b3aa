//go:build chaos

package chaos_test

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vidx/vidx/chaos"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/internal/testenv"
)

var (
	jobs  = flag.Int("chaos.jobs", 16, "video jobs (the full run uses 200)")
	kills = flag.Int("chaos.kills", 4, "SIGKILLs of random stages (the full run uses 20)")
	seed  = flag.Uint64("chaos.seed", 0, "kill schedule seed (0: random)")
	keep  = flag.Bool("chaos.keep", false, "keep the work directory (models, videos, logs)")
	kafka = flag.String("chaos.kafka", "embedded", "broker: embedded (vidx broker) or real (Apache Kafka through scripts/kafka.sh)")
	nodes = flag.Int("chaos.nodes", 1, "real Kafka nodes: 1, or 3 (replication 3, min.insync.replicas 2; one node is lost for good mid-run)")
	burst = flag.Int("chaos.burst", 0, "publish this many jobs at once before the chaos and report peak RSS per stage (40 is 10x the calibration load)")
)

// TestChaos runs the broker and every stage as separate processes, breaks
// them, and checks nothing was lost or indexed twice:
//
//	go test -tags chaos ./chaos/                                          # small run
//	go test -tags chaos ./chaos/ -chaos.jobs 200 -chaos.kills 20 -timeout 30m -v  # full run
//	go test -tags chaos ./chaos/ -chaos.kafka real -chaos.nodes 3 ...           # on Apache Kafka
func TestChaos(t *testing.T) {
	testenv.Tools(t, "run make setup", "ffmpeg", "ffprobe")
	testenv.File(t, onnx.DefaultLibPath(), "ONNX Runtime library", "run make setup or set VIDX_ORT_LIB")
	dir := t.TempDir()
	if *keep {
		var err error
		if dir, err = os.MkdirTemp("", "vidx-chaos-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("work directory: %s", dir)
	}
	bin := filepath.Join(dir, "vidx")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/vidx").CombinedOutput(); err != nil {
		t.Fatalf("build vidx: %v\n%s", err, out)
	}
	level := slog.LevelInfo
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	timeout := time.Duration(60+*jobs+30**kills) * time.Second
	if *kafka == chaos.KafkaReal {
		// A JVM per node to start, and a rolling restart, on a busy machine.
		timeout += time.Duration(120+60**nodes) * time.Second
	}
	rep, err := chaos.Run(context.Background(), chaos.Config{
		Bin: bin, Dir: dir, Jobs: *jobs, Kills: *kills, Seed: *seed, Burst: *burst,
		Kafka: *kafka, KafkaScript: "../scripts/kafka.sh", KafkaNodes: *nodes,
		BrokerRestart: true, BrokerLoss: *kafka == chaos.KafkaReal && *nodes >= 3,
		StoreOutage: 5 * time.Second, Drain: true,
		Timeout: timeout, Log: log,
	})
	if err != nil {
		t.Fatalf("chaos run: %v\n%s", err, chaos.Tails(dir, 15))
	}
	t.Log(rep.String())
	for _, s := range chaos.Stages {
		if p, ok := rep.PeakRSS[s]; ok {
			t.Logf("peak RSS %-6s %4d MiB after calibration, %4d MiB after a burst of %d jobs", s, p[0]>>20, p[1]>>20, *burst)
		}
	}
	// The summary line goes to stdout as well, for scripts.
	os.Stdout.WriteString(rep.Summary() + "\n")
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Orphans != 0 {
		t.Errorf("delivery broken: %s\n%s", rep, chaos.Tails(dir, 15))
	}
	if rep.DeadLetters != 0 {
		t.Errorf("%d dead letters for valid jobs", rep.DeadLetters)
	}
	if rep.Kills != *kills || rep.BrokerRestarts != 1 {
		t.Errorf("ran %d kills and %d broker restarts, want %d and 1", rep.Kills, rep.BrokerRestarts, *kills)
	}
	if *kafka == chaos.KafkaReal && *nodes >= 3 && rep.BrokerLosses != 1 {
		t.Errorf("lost %d brokers, want 1", rep.BrokerLosses)
	}
	// A stage must ride out broker restarts and losses, never exit on its
	// own; and Apache Kafka needs no harness help with dead group members.
	if rep.Unexpected != 0 {
		t.Errorf("%d stage exits the harness did not cause", rep.Unexpected)
	}
	if *kafka == chaos.KafkaReal && rep.ZombieRestarts != 0 {
		t.Errorf("%d broker restarts for dead group members on Apache Kafka", rep.ZombieRestarts)
	}
	if !rep.OutageHeld {
		t.Error("the index stage committed offsets while the store refused upserts")
	}
	if rep.OutageFailedUpserts == 0 {
		t.Error("no upsert was attempted during the store outage: the outage did not hit work in flight")
	}
	if !rep.DrainClean || rep.DrainExit > 35*time.Second {
		t.Errorf("SIGTERM: exit after %s, clean %v; want a clean exit within the 30s drain timeout", rep.DrainExit, rep.DrainClean)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
