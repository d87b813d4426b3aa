package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// Broker kinds a run can use.
const (
	// KafkaEmbedded runs `vidx broker` (franz-go's kfake) as a process.
	KafkaEmbedded = "embedded"
	// KafkaReal runs Apache Kafka through scripts/kafka.sh.
	KafkaReal = "real"
)

// cluster is the broker side of a run: started once, broken on schedule.
type cluster interface {
	start(ctx context.Context) error
	// restart stops and starts the cluster (a single node) or one node of
	// it (a rolling restart), on the same ports and data.
	restart(ctx context.Context) error
	// lose kills one node for good; only a replicated cluster survives it.
	lose(ctx context.Context) error
	addrs() []string
	// replication is the replication factor of the topics vidx creates.
	replication() int
	// zombieProne says the coordinator may keep a dead member's partitions
	// (kfake does; Apache Kafka expires members after the session timeout).
	zombieProne() bool
	stop()
}

// embeddedCluster is `vidx broker` in a process of its own.
type embeddedCluster struct {
	h    *harness
	port int
	proc *proc
}

func newEmbeddedCluster(h *harness) (*embeddedCluster, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return &embeddedCluster{h: h, port: port}, nil
}

func (c *embeddedCluster) addrs() []string   { return []string{"127.0.0.1:" + strconv.Itoa(c.port)} }
func (c *embeddedCluster) replication() int  { return 1 }
func (c *embeddedCluster) zombieProne() bool { return true }

func (c *embeddedCluster) start(ctx context.Context) error {
	p, err := c.h.spawn("broker", "broker", "--port", strconv.Itoa(c.port), "--data-dir", filepath.Join(c.h.cfg.Dir, "broker"), "--partitions", "4")
	if err != nil {
		return err
	}
	c.proc = p
	return waitBrokers(ctx, c.h.kafka(), 30*time.Second)
}

// restart stops the broker with SIGTERM (it saves its state) and starts it
// again on the same port and data.
func (c *embeddedCluster) restart(ctx context.Context) error {
	c.proc.killed = true
	if err := c.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	<-c.proc.done
	if err := pipeline.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	return c.start(ctx)
}

func (c *embeddedCluster) lose(context.Context) error {
	return fmt.Errorf("the embedded broker is a single node: losing it loses everything")
}

func (c *embeddedCluster) stop() {
	if c.proc == nil {
		return
	}
	c.proc.killed = true
	_ = c.proc.cmd.Process.Signal(syscall.SIGTERM)
	<-c.proc.done
}

// realCluster is Apache Kafka on loopback, driven by scripts/kafka.sh with
// a directory of the run's own.
type realCluster struct {
	h      *harness
	script string
	nodes  int
	dir    string
	boot   []string
	// next is the node a rolling restart takes down next; lost the node
	// killed for good (0: none).
	next, lost int
}

func newRealCluster(h *harness, script string, nodes int) (*realCluster, error) {
	if nodes != 1 && nodes != 3 {
		return nil, fmt.Errorf("real Kafka: %d nodes; want 1 or 3", nodes)
	}
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("real Kafka: %w", err)
	}
	return &realCluster{h: h, script: script, nodes: nodes, dir: filepath.Join(h.cfg.Dir, "kafka"), next: 1}, nil
}

func (c *realCluster) addrs() []string   { return c.boot }
func (c *realCluster) zombieProne() bool { return false }
func (c *realCluster) replication() int {
	if c.nodes >= 3 {
		return 3
	}
	return 1
}

// run calls the script; its stdout is the bootstrap address where it prints
// one, its stderr goes to the broker log.
func (c *realCluster) run(ctx context.Context, args ...string) (string, error) {
	lf, err := os.OpenFile(filepath.Join(c.h.logDir(), "broker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer lf.Close()
	cmd := exec.CommandContext(ctx, "bash", append([]string{c.script}, args...)...)
	cmd.Env = append(os.Environ(), "VIDX_KAFKA_DIR="+c.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, lf
	c.h.log.Info("kafka.sh", "args", args)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafka.sh %s: %w (see %s)", strings.Join(args, " "), err, lf.Name())
	}
	return strings.TrimSpace(out.String()), nil
}

func (c *realCluster) start(ctx context.Context) error {
	out, err := c.run(ctx, "start", "--nodes", strconv.Itoa(c.nodes), "--fresh")
	if err != nil {
		return err
	}
	c.boot = strings.Split(out, ",")
	return waitBrokers(ctx, c.h.kafka(), time.Minute)
}

func (c *realCluster) restart(ctx context.Context) error {
	if c.nodes == 1 {
		_, err := c.run(ctx, "restart")
		return err
	}
	// Rolling: one node down and back, the others keep serving.
	n := c.next
	if n == c.lost {
		n = n%c.nodes + 1
	}
	c.next = n%c.nodes + 1
	if _, err := c.run(ctx, "stop-node", strconv.Itoa(n)); err != nil {
		return err
	}
	if err := pipeline.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	_, err := c.run(ctx, "start-node", strconv.Itoa(n))
	return err
}

func (c *realCluster) lose(ctx context.Context) error {
	if c.nodes < 3 {
		return fmt.Errorf("real Kafka: losing a node of %d loses the data", c.nodes)
	}
	if c.lost != 0 {
		return fmt.Errorf("real Kafka: node %d is already lost", c.lost)
	}
	// Node 1: the likeliest active controller, and losing the controller
	// as well as a broker is the harder case.
	c.lost = 1
	_, err := c.run(ctx, "kill-node", strconv.Itoa(c.lost))
	return err
}

func (c *realCluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.run(ctx, "clean"); err != nil {
		c.h.log.Warn("stopping Kafka", "err", err)
	}
}

// waitBrokers waits until the brokers answer a metadata request.
func waitBrokers(ctx context.Context, kc kafka.Config, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := kafka.Ping(pctx, kc)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker did not come up: %w", err)
		}
		if err := pipeline.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
