package kafka_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
)

// generations records the partitions each member holds, generation by
// generation.
type generations struct {
	mu   sync.Mutex
	held map[string][]int
}

func (g *generations) member(name string) func(ctx context.Context, _ int32, parts []int) {
	return func(ctx context.Context, _ int32, parts []int) {
		g.mu.Lock()
		g.held[name] = parts
		g.mu.Unlock()
		<-ctx.Done()
		g.mu.Lock()
		delete(g.held, name)
		g.mu.Unlock()
	}
}

// await waits until the members hold exactly want (member -> partition
// count) and every partition once.
func (g *generations) await(t *testing.T, ctx context.Context, partitions int, want map[string]int) {
	t.Helper()
	for {
		g.mu.Lock()
		var all []int
		ok := len(g.held) == len(want)
		for name, parts := range g.held {
			all = append(all, parts...)
			if n, in := want[name]; !in || (n >= 0 && len(parts) != n) {
				ok = false
			}
		}
		snapshot := map[string][]int{}
		for k, v := range g.held {
			snapshot[k] = v
		}
		g.mu.Unlock()
		slices.Sort(all)
		if ok && slices.Equal(all, seq(partitions)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("members hold %v, want %v sharing all %d partitions", snapshot, want, partitions)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// TestMember checks two members of a group share a topic's partitions
// without overlap, and that the one left takes them all when the other
// leaves.
func TestMember(t *testing.T) {
	kafkatest.Each(t, 4, []string{"registry"}, func(t *testing.T, b *kafkatest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		g := &generations{held: map[string][]int{}}
		m := kafka.Member{Group: b.Name("owners"), Topic: b.Name("registry"),
			Backoff: pipeline.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}, Log: testLogger()}
		run := func(ctx context.Context, name string) chan error {
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx, b.Config(), g.member(name)) }()
			return done
		}
		aCtx, stopA := context.WithCancel(ctx)
		doneA := run(aCtx, "a")
		g.await(t, ctx, 4, map[string]int{"a": 4})
		bCtx, stopB := context.WithCancel(ctx)
		defer stopB()
		doneB := run(bCtx, "b")
		g.await(t, ctx, 4, map[string]int{"a": 2, "b": 2})
		stopA()
		if err := <-doneA; err != nil {
			t.Fatalf("member a: %v", err)
		}
		g.await(t, ctx, 4, map[string]int{"b": 4})
		stopB()
		if err := <-doneB; err != nil {
			t.Fatalf("member b: %v", err)
		}
	})
}

// TestProducer checks a Producer's outputs arrive with their keys and
// headers.
func TestProducer(t *testing.T) {
	kafkatest.Each(t, 2, []string{"out"}, func(t *testing.T, b *kafkatest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p := kafka.NewProducer(b.Config(), pipeline.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}, testLogger())
		defer p.Close()
		topic := b.Name("out")
		if err := p.Produce(ctx, pipeline.Output{Topic: topic, Key: []byte("k1"), Value: []byte("v1"), Headers: map[string]string{"h": "1"}},
			pipeline.Output{Topic: topic, Key: []byte("k2"), Value: []byte("v2")}); err != nil {
			t.Fatal(err)
		}
		got := map[string]pipeline.Message{}
		for _, m := range collect(t, ctx, b.Config(), topic, 2) {
			got[string(m.Key)] = m
		}
		if string(got["k1"].Value) != "v1" || got["k1"].Headers["h"] != "1" || string(got["k2"].Value) != "v2" {
			t.Errorf("got %+v", got)
		}
	})
}
