package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

// Tap reads a topic outside any stage, for tools (vidx search) and tests.
// It joins a consumer group of its own so it sees every partition.
type Tap struct {
	r *kafkago.Reader
}

// NewTap starts reading topic from its first offset (fromStart) or from
// messages produced after the tap joined.
func NewTap(kc Config, topic string, fromStart bool) *Tap {
	kc = kc.WithDefaults()
	var id [6]byte
	_, _ = rand.Read(id[:])
	start := kafkago.LastOffset
	if fromStart {
		start = kafkago.FirstOffset
	}
	return &Tap{r: kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:           kc.Brokers,
		GroupID:           "vidx-tap-" + hex.EncodeToString(id[:]),
		GroupTopics:       []string{topic},
		StartOffset:       start,
		MaxBytes:          4 << 20,
		MaxWait:           200 * time.Millisecond,
		HeartbeatInterval: time.Second,
		JoinGroupBackoff:  200 * time.Millisecond,
		Dialer:            kc.dialer(),
	})}
}

// Next returns the next message.
func (t *Tap) Next(ctx context.Context) (pipeline.Message, error) {
	m, err := t.r.FetchMessage(ctx)
	if err != nil {
		return pipeline.Message{}, err
	}
	return fromKafkaMessage(m), nil
}

// Close leaves the group.
func (t *Tap) Close() error { return t.r.Close() }

// Produce writes messages synchronously with the runtime's producer settings.
func Produce(ctx context.Context, kc Config, outs ...pipeline.Output) error {
	w := NewWriter(kc)
	defer w.Close()
	msgs := make([]kafkago.Message, len(outs))
	for i, o := range outs {
		msgs[i] = kafkago.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: toKafkaHeaders(o.Headers)}
	}
	return w.WriteMessages(ctx, msgs...)
}
