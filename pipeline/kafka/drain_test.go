package kafka_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
)

// TestStopDrainsBatchInHand stops a stage while its handler is working: the
// batch in hand must still be produced and committed (a replacement consumer
// sees nothing to redo), as on a SIGTERM during a rolling restart.
func TestStopDrainsBatchInHand(t *testing.T) {
	kafkatest.Each(t, 2, []string{"in", "out", "dead-letters"}, testStopDrainsBatchInHand)
}

func testStopDrainsBatchInHand(t *testing.T, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kc := b.Config()
	in, out := b.Name("in"), b.Name("out")
	started := make(chan struct{}, 16)
	var calls atomic.Int32
	h := pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		calls.Add(1)
		started <- struct{}{}
		select {
		case <-time.After(300 * time.Millisecond): // slow work, e.g. a decode
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []pipeline.Output{{Topic: out, Key: m.Key, Value: m.Value}}, nil
	})
	cfg := kafka.StageConfig{Name: "slow", Topics: []string{in}, DeadLetterTopic: b.Name("dead-letters"), Runtime: kafka.Runtime{Group: b.Name("vidx-slow"), DrainTimeout: 5 * time.Second}}
	st, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: in, Key: []byte("k"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("handler never started")
	}
	stop() // the stop signal arrives mid-handler
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, kc, out, 1); string(got[0].Value) != "1" {
		t.Fatalf("output = %q", got[0].Value)
	}

	// A new consumer in the same group must start after the drained message.
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: in, Key: []byte("k"), Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	again, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, again)
	got := collect(t, ctx, kc, out, 2)
	if v := string(got[1].Value); v != "2" {
		t.Errorf("second output = %q, want 2", v)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2 (the drained message was redone)", n)
	}
}

// TestDrainTimeoutGivesUp checks a handler that outlives the drain timeout is
// cancelled and its message left uncommitted for redelivery.
func TestDrainTimeoutGivesUp(t *testing.T) {
	kafkatest.Each(t, 2, []string{"in", "out", "dead-letters"}, testDrainTimeoutGivesUp)
}

func testDrainTimeoutGivesUp(t *testing.T, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kc := b.Config()
	in, out := b.Name("in"), b.Name("out")
	started := make(chan struct{}, 16)
	var seen atomic.Int32
	stuck := pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		seen.Add(1)
		started <- struct{}{}
		<-ctx.Done()
		return nil, pipeline.Retryable(ctx.Err())
	})
	cfg := kafka.StageConfig{Name: "stuck", Topics: []string{in}, DeadLetterTopic: b.Name("dead-letters"), Runtime: kafka.Runtime{Group: b.Name("vidx-stuck"), DrainTimeout: 200 * time.Millisecond}}
	st, err := kafka.NewStage(cfg, kc, stuck, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: in, Key: []byte("k"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	<-started
	stopAt := time.Now()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stage did not stop after the drain timeout")
	}
	t.Logf("stopped %v after the signal", time.Since(stopAt).Round(time.Millisecond))

	// Redelivered to the next consumer.
	var redo atomic.Int32
	ok := pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		redo.Add(1)
		return []pipeline.Output{{Topic: out, Key: m.Key, Value: append(m.Value, strconv.Itoa(int(redo.Load()))...)}}, nil
	})
	again, err := kafka.NewStage(cfg, kc, ok, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, again)
	if got := collect(t, ctx, kc, out, 1); string(got[0].Value) != "x1" {
		t.Errorf("redelivered output = %q, want x1", got[0].Value)
	}
}
