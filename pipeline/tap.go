package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/segmentio/kafka-go"
)

// Tap reads a topic outside any stage, for tools (vidx search) and tests.
// It joins a consumer group of its own so it sees every partition.
type Tap struct {
	r *kafka.Reader
}

// NewTap starts reading topic from its first offset (fromStart) or from
// messages produced after the tap joined.
func NewTap(kc KafkaConfig, topic string, fromStart bool) *Tap {
	kc = kc.WithDefaults()
	var id [6]byte
	_, _ = rand.Read(id[:])
	start := kafka.LastOffset
	if fromStart {
		start = kafka.FirstOffset
	}
	return &Tap{r: kafka.NewReader(kafka.ReaderConfig{
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
func (t *Tap) Next(ctx context.Context) (Message, error) {
	m, err := t.r.FetchMessage(ctx)
	if err != nil {
		return Message{}, err
	}
	return fromKafkaMessage(m), nil
}

// Close leaves the group.
func (t *Tap) Close() error { return t.r.Close() }

// Produce writes messages synchronously with the runtime's producer settings.
func Produce(ctx context.Context, kc KafkaConfig, outs ...Output) error {
	w := NewWriter(kc)
	defer w.Close()
	msgs := make([]kafka.Message, len(outs))
	for i, o := range outs {
		msgs[i] = kafka.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: toKafkaHeaders(o.Headers)}
	}
	return w.WriteMessages(ctx, msgs...)
}
