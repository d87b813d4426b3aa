package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/vidx/vidx/pipeline"
)

// ScanTopic calls fn for every message of topic that exists when the scan
// starts, partition by partition in offset order, then returns. It joins no
// consumer group and commits nothing, so tools can read a topic (the
// dead-letter topic) without moving any stage's position.
func ScanTopic(ctx context.Context, kc Config, topic string, fn func(pipeline.Message) error) error {
	kc = kc.WithDefaults()
	client := kc.client()
	parts, err := partitionsOf(ctx, client, topic)
	if err != nil {
		return fmt.Errorf("scan %s: %w", topic, err)
	}
	got, err := spans(ctx, client, parts)
	if err != nil {
		return fmt.Errorf("scan %s: %w", topic, err)
	}
	first, last := map[int]int64{}, map[int]int64{}
	for tp, sp := range got {
		first[tp.partition], last[tp.partition] = sp.first, sp.end
	}
	for _, p := range parts[topic] {
		if last[p] <= first[p] {
			continue
		}
		if err := scanPartition(ctx, kc, topic, p, first[p], last[p], fn); err != nil {
			return err
		}
	}
	return nil
}

func scanPartition(ctx context.Context, kc Config, topic string, partition int, from, end int64, fn func(pipeline.Message) error) error {
	r, err := kc.partitionReader(topic, partition, from, 100*time.Millisecond)
	if err != nil {
		return fmt.Errorf("scan %s/%d: %w", topic, partition, err)
	}
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("scan %s/%d at offset %d of %d: %w", topic, partition, r.Offset(), end, err)
		}
		if err := fn(fromKafkaMessage(m)); err != nil {
			return err
		}
		if m.Offset+1 >= end {
			return nil
		}
	}
}
