package kafka_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
)

// TestOutputTopicDeletedUnderStage deletes a running stage's output topic on
// Apache Kafka (which, like managed clusters, does not auto-create topics):
// the stage must say why it cannot produce, commit nothing meanwhile, and
// deliver the message once the topic is back. The embedded broker recreates
// a deleted topic on the next produce, so only the real broker shows this.
func TestOutputTopicDeletedUnderStage(t *testing.T) {
	kinds, err := kafkatest.Kinds()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		if k != kafkatest.Real {
			continue
		}
		t.Run(string(k), func(t *testing.T) { testOutputTopicDeleted(t, kafkatest.Start(t, k, 2, "in", "out", "dead-letters")) })
		return
	}
	t.Skip("needs Apache Kafka (VIDX_TEST_KAFKA=real or both): the embedded broker auto-creates deleted topics")
}

func testOutputTopicDeleted(t *testing.T, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc := b.Config()
	in, out, group := b.Name("in"), b.Name("out"), b.Name("vidx-relay")
	var logs lockedBuffer
	h := pipeline.PerMessage(func(_ context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		return []pipeline.Output{{Topic: out, Key: m.Key, Value: m.Value}}, nil
	})
	st, err := kafka.NewStage(kafka.StageConfig{
		Name:            "relay",
		Topics:          []string{in},
		DeadLetterTopic: b.Name("dead-letters"),
		Runtime:         kafka.Runtime{Group: group, BackoffMax: time.Second},
	}, kc, h, slog.New(slog.NewTextHandler(&logs, nil)), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runStage(t, ctx, st)
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: in, Key: []byte("k"), Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	collect(t, ctx, kc, out, 1)

	client := &kafkago.Client{Addr: kafkago.TCP(kc.Brokers...), Timeout: 10 * time.Second}
	resp, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{out}})
	if err != nil || resp.Errors[out] != nil {
		t.Fatalf("delete %s: %v %v", out, err, resp.Errors)
	}
	if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: in, Key: []byte("k"), Value: []byte("during")}); err != nil {
		t.Fatal(err)
	}
	// The stage keeps trying and says why; the input stays uncommitted.
	for !strings.Contains(logs.String(), "produce failed, retrying") {
		if ctx.Err() != nil {
			t.Fatalf("no produce failure logged:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	lags, err := kafka.GroupLag(ctx, kc, group, []string{in})
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	for _, l := range lags {
		lag += l.Lag
	}
	if lag != 1 {
		t.Errorf("lag %d while the output topic is gone, want 1 (the message in hand uncommitted)", lag)
	}

	// Deletion is asynchronous: the name is free once the broker says so.
	for {
		err := kafka.EnsureTopics(ctx, kc, out)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("recreate %s: %v", out, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := collect(t, ctx, kc, out, 1); string(got[0].Value) != "during" {
		t.Errorf("after the topic came back: %q, want during", got[0].Value)
	}
}
