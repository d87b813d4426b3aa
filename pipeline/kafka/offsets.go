package kafka

import (
	"context"
	"fmt"
	"slices"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// span is what a partition holds: from its first offset still held up to
// its end (the high watermark, the offset the next record will get).
type span struct{ first, end int64 }

// partitionsOf returns each topic's sorted partition ids. A topic the
// brokers report an error for, or one without partitions, is an error.
func partitionsOf(ctx context.Context, client *kafkago.Client, topics ...string) (map[string][]int, error) {
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata of %v: %w", topics, err)
	}
	out := map[string][]int{}
	for _, t := range meta.Topics {
		if !slices.Contains(topics, t.Name) {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			out[t.Name] = append(out[t.Name], p.ID)
		}
	}
	for _, t := range topics {
		if len(out[t]) == 0 {
			return nil, fmt.Errorf("topic %s has no partitions", t)
		}
		// The writer's balancer works on the sorted list; so does every
		// reader that finds a key's partition.
		slices.Sort(out[t])
	}
	return out, nil
}

// spans returns the first and end offsets of the given partitions, in one
// request.
func spans(ctx context.Context, client *kafkago.Client, parts map[string][]int) (map[topicPartition]span, error) {
	reqs := map[string][]kafkago.OffsetRequest{}
	for topic, ps := range parts {
		for _, p := range ps {
			reqs[topic] = append(reqs[topic], kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
		}
	}
	resp, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return nil, fmt.Errorf("offsets: %w", err)
	}
	out := map[topicPartition]span{}
	for topic, pos := range resp.Topics {
		for _, po := range pos {
			if po.Error != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", topic, po.Partition, po.Error)
			}
			out[topicPartition{topic, po.Partition}] = span{po.FirstOffset, po.LastOffset}
		}
	}
	for topic, ps := range parts {
		for _, p := range ps {
			if _, ok := out[topicPartition{topic, p}]; !ok {
				return nil, fmt.Errorf("no offsets for %s/%d", topic, p)
			}
		}
	}
	return out, nil
}

// partitionReader reads one partition from offset from, outside any
// consumer group: for scans, requests and compacted reads.
func (c Config) partitionReader(topic string, partition int, from int64, maxWait time.Duration) (*kafkago.Reader, error) {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:   c.Brokers,
		Topic:     topic,
		Partition: partition,
		MinBytes:  1,
		MaxBytes:  4 << 20,
		MaxWait:   maxWait,
		Dialer:    c.dialer(),
	})
	if err := r.SetOffset(from); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
