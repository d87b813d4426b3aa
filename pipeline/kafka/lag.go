package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// PartitionLag is how far a consumer group is behind on one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// Committed is the group's next offset to read; -1 when it has never
	// committed, in which case the lag counts from the first offset.
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
}

// GroupLag computes a group's lag on every partition of topics from its
// committed offsets and the partitions' end offsets, the same numbers an
// autoscaler on consumer lag uses.
func GroupLag(ctx context.Context, kc Config, group string, topics []string) ([]PartitionLag, error) {
	kc = kc.WithDefaults()
	client := kc.client()
	parts, err := partitionsOf(ctx, client, topics...)
	if err != nil {
		return nil, fmt.Errorf("lag of %s: %w", group, err)
	}
	committed, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err == nil {
		err = committed.Error
	}
	switch {
	case errors.Is(err, kafkago.GroupIdNotFound):
		// A group that never committed: everything is still to do.
		committed = &kafkago.OffsetFetchResponse{Topics: map[string][]kafkago.OffsetFetchPartition{}}
		for topic, ps := range parts {
			for _, p := range ps {
				committed.Topics[topic] = append(committed.Topics[topic], kafkago.OffsetFetchPartition{Partition: p, CommittedOffset: -1})
			}
		}
	case err != nil:
		return nil, fmt.Errorf("lag of %s: committed offsets: %w", group, err)
	}
	ends, err := spans(ctx, client, parts)
	if err != nil {
		return nil, fmt.Errorf("lag of %s: %w", group, err)
	}
	var out []PartitionLag
	for topic, ps := range committed.Topics {
		for _, p := range ps {
			sp := ends[topicPartition{topic, p.Partition}]
			pl := PartitionLag{Topic: topic, Partition: p.Partition, Committed: p.CommittedOffset, End: sp.end}
			from := p.CommittedOffset
			if from < 0 {
				from = sp.first
			}
			pl.Lag = max(0, pl.End-from)
			out = append(out, pl)
		}
	}
	slices.SortFunc(out, func(a, b PartitionLag) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return a.Partition - b.Partition
	})
	return out, nil
}

// reportLag records the stage's consumer lag every interval until ctx ends.
// A failed lookup is logged and retried next time: lag is for dashboards
// and autoscaling, never a reason to stop consuming.
func (s *Stage) reportLag(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lags, err := GroupLag(ctx, s.kafka, s.cfg.Group, s.cfg.Topics)
		if err != nil {
			s.log.Debug("consumer lag", "err", err)
			continue
		}
		for _, l := range lags {
			s.tel.Instruments().Lag.Record(ctx, l.Lag, metric.WithAttributes(
				attribute.String("stage", s.cfg.Name), attribute.String("topic", l.Topic),
				attribute.String("partition", strconv.Itoa(l.Partition))))
		}
	}
}
