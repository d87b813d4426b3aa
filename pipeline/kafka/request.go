package kafka

import (
	"bytes"
	"context"
	"fmt"
	"time"

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
	parts, err := partitionsOf(ctx, client, replyTopic)
	if err != nil {
		return pipeline.Message{}, fmt.Errorf("request: %w", err)
	}
	partition := PartitionFor(msg.Key, parts[replyTopic])
	got, err := spans(ctx, client, map[string][]int{replyTopic: {partition}})
	if err != nil {
		return pipeline.Message{}, fmt.Errorf("request: %w", err)
	}
	start := got[topicPartition{replyTopic, partition}].end
	r, err := kc.partitionReader(replyTopic, partition, start, 100*time.Millisecond)
	if err != nil {
		return pipeline.Message{}, fmt.Errorf("request: %w", err)
	}
	defer r.Close()
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
