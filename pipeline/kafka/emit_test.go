package kafka_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// TestEmitProducesBeforeTheHandlerReturns checks a handler can produce part
// of its outputs early and return the rest: all arrive, and the early ones
// are on the topic while the handler is still running.
func TestEmitProducesBeforeTheHandlerReturns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")
	type reading struct {
		msgs []pipeline.Message
		err  error
	}
	early := make(chan reading, 1)
	h := pipeline.PerMessage(func(ctx context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		if !pipeline.CanEmit(ctx) {
			return nil, errors.New("no emitter in a stage's handler context")
		}
		for i := 0; i < 3; i++ {
			if err := pipeline.Emit(ctx, pipeline.Output{Topic: "out", Key: m.Key, Value: []byte("early-" + strconv.Itoa(i))}); err != nil {
				return nil, err
			}
		}
		// The early outputs are readable before this handler returns.
		msgs, err := read(ctx, kc, "out", 3)
		early <- reading{msgs, err}
		return []pipeline.Output{{Topic: "out", Key: m.Key, Value: []byte("last")}}, nil
	})
	st, err := kafka.NewStage(kafka.StageConfig{Name: "emitter", Topics: []string{"in"}}, kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: "in", Key: []byte("k"), Value: []byte("go")}); err != nil {
		t.Fatal(err)
	}
	got := <-early
	if got.err != nil {
		t.Fatal(got.err)
	}
	for i, m := range got.msgs {
		if want := "early-" + strconv.Itoa(i); string(m.Value) != want {
			t.Errorf("early output %d = %q, want %q", i, m.Value, want)
		}
	}
	all := collect(t, ctx, kc, "out", 4)
	if string(all[3].Value) != "last" {
		t.Errorf("last output = %q", all[3].Value)
	}
	if err := pipeline.Emit(context.Background(), pipeline.Output{Topic: "out"}); !errors.Is(err, pipeline.ErrNoEmitter) {
		t.Errorf("Emit outside a stage = %v, want ErrNoEmitter", err)
	}
}
