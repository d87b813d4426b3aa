package kafka_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
)

// TestMaxBatchBytes checks a burst of large messages is cut into batches
// of bounded size even when MaxBatch would allow many more.
func TestMaxBatchBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")
	const n, size, limit = 12, 400, 1000
	var outs []pipeline.Output
	for range n {
		outs = append(outs, pipeline.Output{Topic: "in", Key: []byte("one-partition"), Value: bytes.Repeat([]byte{'x'}, size)})
	}
	if err := kafka.Produce(ctx, kc, outs...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sizes []int
	h := pipeline.HandlerFunc(func(_ context.Context, batch []pipeline.Message) []pipeline.Result {
		mu.Lock()
		sizes = append(sizes, len(batch))
		mu.Unlock()
		return make([]pipeline.Result, len(batch))
	})
	cfg := kafka.StageConfig{Name: "bytes", Topics: []string{"in"}, Runtime: kafka.Runtime{MaxBatch: 100, MaxWait: 500 * time.Millisecond, MaxBatchBytes: limit}}
	st, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)
	for {
		mu.Lock()
		total := 0
		for _, s := range sizes {
			total += s
		}
		got := append([]int(nil), sizes...)
		mu.Unlock()
		if total >= n {
			// The message that crosses the limit is kept: at most
			// ceil(limit/size) messages per batch.
			for _, s := range got {
				if s > (limit+size-1)/size {
					t.Fatalf("batch of %d messages of %d bytes with max_batch_bytes %d: %v", s, size, limit, got)
				}
			}
			if len(got) < n*size/limit-1 {
				t.Fatalf("batches %v: the byte limit did not split the burst", got)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("handled %d of %d messages", total, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestEager checks an eager stage hands a lone message to its handler at
// once, though MaxWait is an hour, and still batches a backlog the reader
// has prefetched.
func TestEager(t *testing.T) {
	kafkatest.Each(t, 2, []string{"in", "dead-letters"}, testEager)
}

func testEager(t *testing.T, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kc := b.Config()
	in := b.Name("in")
	batches := make(chan int, 100)
	release := make(chan struct{})
	h := pipeline.HandlerFunc(func(_ context.Context, batch []pipeline.Message) []pipeline.Result {
		batches <- len(batch)
		<-release
		return make([]pipeline.Result, len(batch))
	})
	cfg := kafka.StageConfig{Name: "eager", Topics: []string{in}, DeadLetterTopic: b.Name("dead-letters"),
		Runtime: kafka.Runtime{Group: b.Name("eager"), MaxBatch: 50, MaxWait: time.Hour, Eager: true}}
	st, err := kafka.NewStage(cfg, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)
	produce := func(n int) {
		var outs []pipeline.Output
		for range n {
			outs = append(outs, pipeline.Output{Topic: in, Key: []byte("one-partition"), Value: []byte("q")})
		}
		if err := kafka.Produce(ctx, kc, outs...); err != nil {
			t.Fatal(err)
		}
	}
	produce(1)
	select {
	case n := <-batches:
		if n != 1 {
			t.Fatalf("first batch has %d messages, want the lone one", n)
		}
	case <-ctx.Done():
		t.Fatal("a lone message waited for company: the handler never ran")
	}
	// While the handler holds the first batch, a backlog arrives and is
	// prefetched; the next batch takes more than one of it.
	produce(20)
	time.Sleep(2 * time.Second)
	close(release)
	total, most := 0, 0
	for total < 20 {
		select {
		case n := <-batches:
			total += n
			most = max(most, n)
		case <-ctx.Done():
			t.Fatalf("got %d of 20 backlog messages", total)
		}
	}
	if most < 2 {
		t.Errorf("a prefetched backlog was handled one message at a time")
	}
}
