package kafka

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

// Request produces msg and waits for the first message on replyTopic with
// the same key for which accept returns true. The reply topic is keyed like
// the request (results are keyed by query id), so only the one partition the
// key hashes to is read, from the offset it had before the request was
// sent: nothing older is scanned and nothing newer is missed.
func Request(ctx context.Context, kc Config, msg pipeline.Output, replyTopic string, accept func(pipeline.Message) bool) (pipeline.Message, error) {
	kc = kc.WithDefaults()
	if len(msg.Key) == 0 {
		return pipeline.Message{}, fmt.Errorf("request: the message needs a key to find its reply")
	}
	client := kc.client()
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{replyTopic}})
	if err != nil {
		return pipeline.Message{}, fmt.Errorf("request: metadata of %s: %w", replyTopic, err)
	}
	var parts []int
	for _, t := range meta.Topics {
		if t.Name != replyTopic {
			continue
		}
		if t.Error != nil {
			return pipeline.Message{}, fmt.Errorf("request: topic %s: %w", replyTopic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return pipeline.Message{}, fmt.Errorf("request: topic %s has no partitions", replyTopic)
	}
	// The writer balances over the sorted partition list; do the same.
	slices.Sort(parts)
	partition := (&kafkago.Hash{}).Balance(kafkago.Message{Key: msg.Key}, parts...)
	offs, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{
		Topics: map[string][]kafkago.OffsetRequest{replyTopic: {kafkago.LastOffsetOf(partition)}},
	})
	if err != nil {
		return pipeline.Message{}, fmt.Errorf("request: offsets of %s: %w", replyTopic, err)
	}
	start := int64(-1)
	for _, po := range offs.Topics[replyTopic] {
		if po.Partition == partition {
			if po.Error != nil {
				return pipeline.Message{}, fmt.Errorf("request: offsets of %s/%d: %w", replyTopic, partition, po.Error)
			}
			start = po.LastOffset
		}
	}
	if start < 0 {
		return pipeline.Message{}, fmt.Errorf("request: no offset for %s/%d", replyTopic, partition)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:   kc.Brokers,
		Topic:     replyTopic,
		Partition: partition,
		MaxBytes:  4 << 20,
		MaxWait:   100 * time.Millisecond,
		Dialer:    kc.dialer(),
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return pipeline.Message{}, fmt.Errorf("request: %w", err)
	}
	if err := Produce(ctx, kc, msg); err != nil {
		return pipeline.Message{}, fmt.Errorf("request: produce to %s: %w", msg.Topic, err)
	}
	for {
		m, err := r.FetchMessage(ctx) // no group: nothing to commit
		if err != nil {
			return pipeline.Message{}, fmt.Errorf("request: waiting for the reply on %s: %w", replyTopic, err)
		}
		pm := fromKafkaMessage(m)
		if bytes.Equal(m.Key, msg.Key) && (accept == nil || accept(pm)) {
			return pm, nil
		}
	}
}
