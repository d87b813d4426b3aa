package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
)

func startBroker(t *testing.T, topics ...string) kafka.Config {
	t.Helper()
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 2, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return kafka.Config{Brokers: b.Addrs(), Partitions: 2}
}

func testLogger() *slog.Logger {
	if os.Getenv("VIDX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(ioDiscard{}, nil))
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

// collect reads n messages from topic.
func collect(t *testing.T, ctx context.Context, kc kafka.Config, topic string, n int) []pipeline.Message {
	t.Helper()
	out, err := read(ctx, kc, topic, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// read is collect for goroutines other than the test's own, which must not
// call t.Fatal.
func read(ctx context.Context, kc kafka.Config, topic string, n int) ([]pipeline.Message, error) {
	tap := kafka.NewTap(kc, topic, true)
	defer tap.Close()
	var out []pipeline.Message
	for len(out) < n {
		m, err := tap.Next(ctx)
		if err != nil {
			return out, fmt.Errorf("reading %s: got %d of %d messages: %w", topic, len(out), n, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func runStage(t *testing.T, ctx context.Context, s *kafka.Stage) {
	t.Helper()
	done := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stage returned %v", err)
		}
	})
}

// TestStageDeliversAndDeadLetters runs a stage whose handler upper-cases
// values, rejects some as poison, fails some transiently, and checks every
// message ends up exactly where it should.
func TestStageDeliversAndDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")

	var transient atomic.Int32
	h := pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		switch {
		case bytes.HasPrefix(m.Value, []byte("poison")):
			return nil, pipeline.Poisonf("cannot handle %q", m.Value)
		case bytes.HasPrefix(m.Value, []byte("flaky")) && transient.Add(1) <= 2:
			return nil, pipeline.Retryable(errors.New("store unavailable"))
		case bytes.HasPrefix(m.Value, []byte("broken")):
			return nil, errors.New("handler bug")
		}
		return []pipeline.Output{{Topic: "out", Key: m.Key, Value: bytes.ToUpper(m.Value)}}, nil
	})
	var retries atomic.Int32
	st, err := kafka.NewStage(kafka.StageConfig{
		Name:    "upper",
		Topics:  []string{"in"},
		Runtime: kafka.Runtime{MaxBatch: 4, MaxAttempts: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
	}, kc, h, testLogger(), kafka.Hooks{Retrying: func(string, pipeline.Message, int, error) { retries.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)

	values := []string{"a", "poison-1", "b", "flaky", "broken", "c"}
	var in []pipeline.Output
	for i, v := range values {
		// One key so order within the partition is the input order.
		in = append(in, pipeline.Output{Topic: "in", Key: []byte("k"), Value: []byte(v), Headers: map[string]string{"n": strconv.Itoa(i)}})
	}
	if err := kafka.Produce(ctx, kc, in...); err != nil {
		t.Fatal(err)
	}

	got := collect(t, ctx, kc, "out", 4)
	var vals []string
	for _, m := range got {
		vals = append(vals, string(m.Value))
	}
	if want := "[A B FLAKY C]"; fmt.Sprint(vals) != want {
		t.Errorf("outputs = %v, want %s", vals, want)
	}
	dead := collect(t, ctx, kc, "dead-letters", 2)
	reasons := map[string]schemas.DeadLetter{}
	for _, m := range dead {
		dl, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if dl.Topic != "in" || dl.Stage != "upper" {
			t.Errorf("dead letter origin = %s/%s, want in/upper", dl.Topic, dl.Stage)
		}
		if m.Headers["n"] == "" {
			t.Errorf("dead letter lost the original headers: %v", m.Headers)
		}
		reasons[string(dl.Value)] = dl
	}
	if dl, ok := reasons["poison-1"]; !ok || dl.Class != "poison" || dl.Attempts != 1 || dl.Offset != 1 {
		t.Errorf("poison dead letter = %+v", dl)
	}
	if dl, ok := reasons["broken"]; !ok || dl.Class != "unknown" || dl.Attempts != 2 {
		t.Errorf("unknown-error dead letter = %+v", dl)
	}
	// flaky fails twice (retryable, unbounded) and broken once before its
	// last attempt.
	if r := retries.Load(); r != 3 {
		t.Errorf("retries = %d, want 3", r)
	}
}

// TestStageCommitsOnlyAfterOutputs stops a stage and starts another in the
// same group: it must resume after the committed offsets, with nothing lost.
func TestStageResumesFromCommittedOffsets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")
	var seen atomic.Int32
	h := pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		seen.Add(1)
		return []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}, nil
	})
	cfg := kafka.StageConfig{Name: "copy", Topics: []string{"in"}, Runtime: kafka.Runtime{MaxBatch: 8}}
	produce := func(from, to int) {
		var in []pipeline.Output
		for i := from; i < to; i++ {
			in = append(in, pipeline.Output{Topic: "in", Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
		}
		if err := kafka.Produce(ctx, kc, in...); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 10)
	first, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- first.Run(runCtx) }()
	collect(t, ctx, kc, "out", 10)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	produce(10, 20)
	second, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, second)
	out := collect(t, ctx, kc, "out", 20)
	counts := map[string]int{}
	for _, m := range out {
		counts[string(m.Value)]++
	}
	for i := 0; i < 20; i++ {
		if counts[strconv.Itoa(i)] != 1 {
			t.Errorf("message %d delivered %d times", i, counts[strconv.Itoa(i)])
		}
	}
	if n := seen.Load(); n != 20 {
		t.Errorf("handler saw %d messages, want 20 (committed offsets not honoured)", n)
	}
}

func TestStageConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  kafka.StageConfig
		ok   bool
	}{
		{"ok", kafka.StageConfig{Name: "s", Topics: []string{"in"}}, true},
		{"no name", kafka.StageConfig{Topics: []string{"in"}}, false},
		{"no topics", kafka.StageConfig{Name: "s"}, false},
		{"dlq loop", kafka.StageConfig{Name: "s", Topics: []string{"dead-letters"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	base := errors.New("x")
	tests := []struct {
		err  error
		want pipeline.ErrorClass
	}{
		{base, pipeline.ClassUnknown},
		{pipeline.Poison(base), pipeline.ClassPoison},
		{fmt.Errorf("wrapped: %w", pipeline.Retryable(base)), pipeline.ClassRetryable},
		{pipeline.Retryable(pipeline.Poison(base)), pipeline.ClassRetryable},
	}
	for _, tt := range tests {
		if got := pipeline.Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
		if !errors.Is(tt.err, base) {
			t.Errorf("%v does not wrap the original error", tt.err)
		}
	}
}
