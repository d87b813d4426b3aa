package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/vidx/vidx/pipeline"
)

// Compacted topics hold the latest record per key (a registry, a state
// table) rather than a stream of work. Their readers read whole partitions
// without a consumer group and commit nothing.

// EnsureCompactedTopics creates the missing topics with cleanup.policy
// compact. Existing topics are left as they are.
func EnsureCompactedTopics(ctx context.Context, c Config, topics ...string) error {
	c = c.WithDefaults()
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		if t == "" || slices.ContainsFunc(req.Topics, func(tc kafkago.TopicConfig) bool { return tc.Topic == t }) {
			continue
		}
		req.Topics = append(req.Topics, kafkago.TopicConfig{
			Topic:             t,
			NumPartitions:     c.Partitions,
			ReplicationFactor: c.ReplicationFactor,
			ConfigEntries:     []kafkago.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
		})
	}
	if len(req.Topics) == 0 {
		return nil
	}
	resp, err := c.client().CreateTopics(ctx, req)
	if err != nil {
		return pipeline.Retryable(fmt.Errorf("kafka: create compacted topics: %w", err))
	}
	return topicErrors("create compacted topics", resp.Errors)
}

// Partitions returns the sorted partition ids of topic.
func Partitions(ctx context.Context, c Config, topic string) ([]int, error) {
	c = c.WithDefaults()
	parts, err := partitionsOf(ctx, c.client(), topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return parts[topic], nil
}

// PartitionFor is the partition the runtime's producers write key to,
// given all of the topic's partitions.
func PartitionFor(key []byte, partitions []int) int {
	return (&kafkago.Hash{}).Balance(kafkago.Message{Key: key}, partitions...)
}

// offsetRange returns, per partition, the first offset still held and the
// end offset (the high watermark: the offset the next record will get).
func offsetRange(ctx context.Context, c Config, topic string, partitions []int) (first, end map[int]int64, err error) {
	got, err := spans(ctx, c.client(), map[string][]int{topic: partitions})
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: %s: %w", topic, err)
	}
	first, end = map[int]int64{}, map[int]int64{}
	for tp, sp := range got {
		first[tp.partition], end[tp.partition] = sp.first, sp.end
	}
	return first, end, nil
}

// readRange calls fn with the records of one partition from offset from up
// to end, returning the offset to continue at. Compaction leaves holes, at
// the end of a partition too, so it stops at end or when the broker has
// nothing left before end.
func readRange(ctx context.Context, c Config, topic string, partition int, from, end int64, fn func(pipeline.Message) error) (int64, error) {
	client := c.client()
	offset := from
	for offset < end {
		resp, err := client.Fetch(ctx, &kafkago.FetchRequest{
			Topic: topic, Partition: partition, Offset: offset,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err == nil {
			err = resp.Error
		}
		if err != nil {
			return offset, fmt.Errorf("kafka: read %s/%d at %d: %w", topic, partition, offset, err)
		}
		n := 0
		for {
			rec, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return offset, fmt.Errorf("kafka: read %s/%d at %d: %w", topic, partition, offset, err)
			}
			if rec.Offset < offset {
				continue // batches may start before the requested offset
			}
			m, err := recordMessage(topic, partition, rec)
			if err != nil {
				return offset, err
			}
			offset = rec.Offset + 1
			n++
			if err := fn(m); err != nil {
				return offset, err
			}
		}
		if n == 0 && resp.HighWatermark >= end {
			return end, nil // nothing readable left before end
		}
	}
	return offset, nil
}

func recordMessage(topic string, partition int, rec *kafkago.Record) (pipeline.Message, error) {
	m := pipeline.Message{Topic: topic, Partition: partition, Offset: rec.Offset, Time: rec.Time}
	var err error
	if rec.Key != nil {
		if m.Key, err = protocol.ReadAll(rec.Key); err != nil {
			return m, fmt.Errorf("kafka: record key: %w", err)
		}
	}
	if rec.Value != nil {
		if m.Value, err = protocol.ReadAll(rec.Value); err != nil {
			return m, fmt.Errorf("kafka: record value: %w", err)
		}
	}
	if len(rec.Headers) > 0 {
		m.Headers = make(map[string]string, len(rec.Headers))
		for _, h := range rec.Headers {
			m.Headers[h.Key] = string(h.Value)
		}
	}
	return m, nil
}

// TailPartition calls fn with every record of one partition from its first
// offset on, in order, until ctx ends (it then returns nil) or fn fails.
// caughtUp, when not nil, is called once every record written before the
// call has been passed to fn. A tombstone has a nil Message.Value.
func TailPartition(ctx context.Context, c Config, topic string, partition int, fn func(pipeline.Message) error, caughtUp func()) error {
	c = c.WithDefaults()
	first, end, err := offsetRange(ctx, c, topic, []int{partition})
	if err != nil {
		return err
	}
	next, err := readRange(ctx, c, topic, partition, first[partition], end[partition], fn)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if caughtUp != nil {
		caughtUp()
	}
	return TailFrom(ctx, c, topic, partition, next, fn)
}

// EndOffsets returns the end offset of each partition of topic: the offset
// its next record will get. A tool that must see what happens after it
// acts (vidx ingest following its jobs) reads these first and then tails
// from them with TailFrom.
func EndOffsets(ctx context.Context, c Config, topic string) (map[int]int64, error) {
	c = c.WithDefaults()
	parts, err := Partitions(ctx, c, topic)
	if err != nil {
		return nil, err
	}
	_, end, err := offsetRange(ctx, c, topic, parts)
	return end, err
}

// TailFrom calls fn with every record of one partition from offset on, in
// order, until ctx ends (it then returns nil) or fn fails.
func TailFrom(ctx context.Context, c Config, topic string, partition int, offset int64, fn func(pipeline.Message) error) error {
	c = c.WithDefaults()
	next := offset
	r, err := c.partitionReader(topic, partition, next, 250*time.Millisecond)
	if err != nil {
		return fmt.Errorf("kafka: %s/%d: %w", topic, partition, err)
	}
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kafka: read %s/%d: %w", topic, partition, err)
		}
		if err := fn(fromKafkaMessage(m)); err != nil {
			return err
		}
	}
}

// ReadCompacted calls fn with every record written to topic so far, each
// partition read from its first offset to its end offset at the time of
// the call. Records of one partition arrive in order.
func ReadCompacted(ctx context.Context, c Config, topic string, fn func(pipeline.Message) error) error {
	c = c.WithDefaults()
	parts, err := Partitions(ctx, c, topic)
	if err != nil {
		return err
	}
	first, end, err := offsetRange(ctx, c, topic, parts)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := readRange(ctx, c, topic, p, first[p], end[p], fn); err != nil {
			return err
		}
	}
	return nil
}
