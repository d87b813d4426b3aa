package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// TestRetriedSubsetIsNotCommittedPast stops a stage while one message of a
// batch is still being retried (its neighbours succeeded) and checks a new
// consumer in the group gets that message again: no commit passed it.
func TestRetriedSubsetIsNotCommittedPast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")
	kc.Partitions = 1
	var mu sync.Mutex
	seen := map[string]int{}
	healthy := false
	retrying := make(chan struct{}, 64)
	h := pipeline.PerMessage(func(_ context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		mu.Lock()
		defer mu.Unlock()
		seen[string(m.Value)]++
		if string(m.Value) == "stuck" && !healthy {
			retrying <- struct{}{}
			return nil, pipeline.Retryable(errors.New("store unavailable"))
		}
		return []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}, nil
	})
	cfg := kafka.StageConfig{
		Name:    "subset",
		Topics:  []string{"in"},
		Runtime: kafka.Runtime{MaxBatch: 8, MaxWait: 300 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond},
	}
	var outs []pipeline.Output
	for _, v := range []string{"a", "stuck", "b"} {
		outs = append(outs, pipeline.Output{Topic: "in", Key: []byte("same-partition"), Value: []byte(v)})
	}
	if err := kafka.Produce(ctx, kc, outs...); err != nil {
		t.Fatal(err)
	}
	first, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- first.Run(runCtx) }()
	for range 3 { // a few retries of the subset
		select {
		case <-retrying:
		case <-ctx.Done():
			t.Fatal("the stuck message was never retried")
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("neighbours not handled before the stop: %v", seen)
	}
	before := seen["stuck"]
	healthy = true
	mu.Unlock()

	again, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, again)
	got := collect(t, ctx, kc, "out", 1)
	found := false
	for _, m := range got {
		found = found || string(m.Value) == "stuck"
	}
	for !found {
		m := collect(t, ctx, kc, "out", 3)
		for _, o := range m {
			found = found || string(o.Value) == "stuck"
		}
		if !found {
			t.Fatalf("outputs %d, the stuck message never came through", len(m))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["stuck"] <= before {
		t.Fatalf("stuck message handled %d times after restart, want a redelivery", seen["stuck"]-before)
	}
}
