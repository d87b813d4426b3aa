package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
)

// TestStageRecoversPanics runs a stage whose handler panics on one message:
// the process lives on, that message is dead-lettered with the panic as its
// reason, and the message after it is delivered.
func TestStageRecoversPanics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := startBroker(t, "in", "out", "dead-letters")
	h := pipeline.PerMessage(func(_ context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		if string(m.Value) == "boom" {
			panic("nil map in the decoder")
		}
		return []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}, nil
	})
	st, err := kafka.NewStage(kafka.StageConfig{Name: "fragile", Topics: []string{"in"}, Runtime: kafka.Runtime{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}},
		kc, h, testLogger(), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: "in", Key: []byte("k"), Value: []byte("boom")},
		pipeline.Output{Topic: "in", Key: []byte("k"), Value: []byte("fine")}); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, kc, "out", 1); string(got[0].Value) != "fine" {
		t.Errorf("output %q, want fine", got[0].Value)
	}
	m := collect(t, ctx, kc, "dead-letters", 1)[0]
	dl, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dl.Reason, "handler panicked: nil map in the decoder") || dl.Attempts != 3 || string(dl.Value) != "boom" {
		t.Errorf("dead letter %+v", dl)
	}
}
