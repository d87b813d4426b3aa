package kafka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// TestGroupLag checks lag before a group commits anything, and after it
// consumed part of a topic.
func TestGroupLag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")
	var msgs []pipeline.Output
	for i := 0; i < 10; i++ {
		msgs = append(msgs, pipeline.Output{Topic: "in", Key: []byte(strconv.Itoa(i)), Value: []byte("x")})
	}
	if err := kafka.Produce(ctx, kc, msgs...); err != nil {
		t.Fatal(err)
	}
	total := func(lags []kafka.PartitionLag) (n int64) {
		for _, l := range lags {
			n += l.Lag
		}
		return n
	}
	lags, err := kafka.GroupLag(ctx, kc, "vidx-copy", []string{"in"})
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 2 || total(lags) != 10 {
		t.Fatalf("before any commit: lags %+v, want 2 partitions totalling 10", lags)
	}
	st, err := kafka.NewStage(kafka.StageConfig{Name: "copy", Topics: []string{"in"}, Runtime: kafka.Runtime{MaxBatch: 4}}, kc,
		pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
			return []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}, nil
		}), testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)
	collect(t, ctx, kc, "out", 10)
	for {
		lags, err = kafka.GroupLag(ctx, kc, "vidx-copy", []string{"in"})
		if err != nil {
			t.Fatal(err)
		}
		if total(lags) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("lag never reached 0: %+v", lags)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, l := range lags {
		if l.Committed != l.End {
			t.Errorf("partition %d: committed %d, end %d", l.Partition, l.Committed, l.End)
		}
	}
}
