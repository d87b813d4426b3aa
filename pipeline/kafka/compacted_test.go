package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// TestCompactedRegistry writes a small key table (updates and a tombstone)
// to a compacted topic and reads it back: whole, and tailed per partition
// with a caught-up signal before the records written afterwards.
func TestCompactedRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc := startBroker(t)
	const topic = "registry"
	if err := kafka.EnsureCompactedTopics(ctx, kc, topic, topic); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureCompactedTopics(ctx, kc, topic); err != nil {
		t.Fatalf("second create: %v", err)
	}
	parts, err := kafka.Partitions(ctx, kc, topic)
	if err != nil || !slices.Equal(parts, []int{0, 1}) {
		t.Fatalf("partitions %v, %v", parts, err)
	}
	put := func(key string, value []byte) {
		t.Helper()
		if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: topic, Key: []byte(key), Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		put(fmt.Sprintf("k%d", i%3), []byte(fmt.Sprintf("v%d", i)))
	}
	put("k1", nil) // tombstone

	table := func() map[string]string {
		got := map[string]string{}
		err := kafka.ReadCompacted(ctx, kc, topic, func(m pipeline.Message) error {
			if m.Value == nil {
				delete(got, string(m.Key))
			} else {
				got[string(m.Key)] = string(m.Value)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := table(), map[string]string{"k0": "v3", "k2": "v5"}; !maps.Equal(got, want) {
		t.Fatalf("table %v, want %v", got, want)
	}

	// Tail the partition k0 lives on: everything before the call arrives
	// before caughtUp, later records after it.
	p := kafka.PartitionFor([]byte("k0"), parts)
	var mu sync.Mutex
	var seen []string
	caught := make(chan int, 1)
	tailCtx, stopTail := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- kafka.TailPartition(tailCtx, kc, topic, p, func(m pipeline.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if m.Partition != p {
				return fmt.Errorf("record of partition %d while tailing %d", m.Partition, p)
			}
			seen = append(seen, string(m.Key)+"="+string(m.Value))
			return nil
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			caught <- len(seen)
		})
	}()
	var before int
	select {
	case before = <-caught:
	case <-ctx.Done():
		t.Fatal("never caught up")
	}
	put("k0", []byte("v9"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n, last := len(seen), ""
		if n > 0 {
			last = seen[n-1]
		}
		mu.Unlock()
		if last == "k0=v9" {
			if n != before+1 {
				t.Errorf("%d records after caught up, want 1", n-before)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tail never saw the new record; saw %v", seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if before == 0 {
		t.Error("caught up before reading the existing records")
	}
	stopTail()
	if err := <-done; err != nil {
		t.Fatalf("tail: %v", err)
	}
}
