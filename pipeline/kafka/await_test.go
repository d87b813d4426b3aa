package kafka_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer is a log sink safe for the logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAwaitTopics starts a process before its broker: it must wait, say so,
// and go on once the broker answers; with no broker at all it must give up
// after the start-up timeout with an error naming the brokers.
func TestAwaitTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("broker comes up late", func(t *testing.T) {
		port := freePort(t)
		var logs lockedBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		kc := kafka.Config{Brokers: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, Partitions: 2,
			DialTimeout: 500 * time.Millisecond, StartupTimeout: 30 * time.Second}
		started := make(chan *embedded.Broker, 1)
		go func() {
			time.Sleep(1500 * time.Millisecond)
			b, err := embedded.StartBroker(embedded.BrokerConfig{Port: port, Partitions: 2})
			if err != nil {
				t.Errorf("late broker: %v", err)
			}
			started <- b
		}()
		err := kafka.AwaitTopics(ctx, kc, log, "late-topic")
		if b := <-started; b != nil {
			defer b.Close()
		}
		if err != nil {
			t.Fatalf("AwaitTopics: %v", err)
		}
		if !strings.Contains(logs.String(), "kafka not reachable yet") {
			t.Errorf("no waiting message logged:\n%s", logs.String())
		}
		if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: "late-topic", Value: []byte("x")}); err != nil {
			t.Errorf("topic not usable after AwaitTopics: %v", err)
		}
	})

	t.Run("no broker", func(t *testing.T) {
		kc := kafka.Config{Brokers: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))},
			DialTimeout: 200 * time.Millisecond, StartupTimeout: time.Second}
		err := kafka.AwaitTopics(ctx, kc, slog.New(slog.DiscardHandler), "t")
		if err == nil || !strings.Contains(err.Error(), "unreachable for 1s") || !strings.Contains(err.Error(), kc.Brokers[0]) {
			t.Fatalf("err = %v, want unreachable for 1s naming %s", err, kc.Brokers[0])
		}
	})

	t.Run("stopped while waiting", func(t *testing.T) {
		kc := kafka.Config{Brokers: []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))},
			DialTimeout: 200 * time.Millisecond, StartupTimeout: time.Minute}
		sctx, stop := context.WithTimeout(ctx, 800*time.Millisecond)
		defer stop()
		if err := kafka.AwaitTopics(sctx, kc, slog.New(slog.DiscardHandler), "t"); err == nil || sctx.Err() == nil {
			t.Fatalf("err = %v after the context ended", err)
		}
	})
}
