package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
)

// TestKafkaCalls makes every kind of Kafka request vidx makes, one step per
// API, against each selected broker: on a broker that has dropped a
// protocol version vidx's client still uses, the failing step names the
// request. docs/deploy.md lists the broker versions this passed on.
func TestKafkaCalls(t *testing.T) {
	kafkatest.Each(t, 2, nil, testKafkaCalls)
}

func testKafkaCalls(t *testing.T, b *kafkatest.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc := b.Config()
	in, out, compact, dead := b.Name("calls-in"), b.Name("calls-out"), b.Name("calls-compact"), b.Name("calls-dead")
	group := b.Name("vidx-calls")
	const n = 6

	steps := []struct {
		api string
		run func() error
	}{
		{"Metadata (ApiVersions, Metadata)", func() error { return kafka.Ping(ctx, kc) }},
		{"CreateTopics", func() error { return kafka.EnsureTopics(ctx, kc, in, out, dead) }},
		{"CreateTopics on existing topics", func() error { return kafka.EnsureTopics(ctx, kc, in, out, dead) }},
		{"CreateTopics with cleanup.policy=compact", func() error {
			if err := kafka.EnsureCompactedTopics(ctx, kc, compact); err != nil {
				return err
			}
			return checkCompacted(ctx, kc, compact)
		}},
		{"Produce acks=all", func() error {
			var outs []pipeline.Output
			for i := range n {
				outs = append(outs, pipeline.Output{Topic: in, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
			}
			outs = append(outs, pipeline.Output{Topic: compact, Key: []byte("s"), Value: []byte("old")},
				pipeline.Output{Topic: compact, Key: []byte("s"), Value: []byte("new")})
			return kafka.Produce(ctx, kc, outs...)
		}},
		{"consumer group: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetFetch, Fetch, OffsetCommit, LeaveGroup", func() error {
			committed := make(chan int, 2*n)
			h := pipeline.PerMessage(func(_ context.Context, m pipeline.Message) ([]pipeline.Output, error) {
				return []pipeline.Output{{Topic: out, Key: m.Key, Value: m.Value}}, nil
			})
			st, err := kafka.NewStage(kafka.StageConfig{Name: "calls", Topics: []string{in}, DeadLetterTopic: dead, Runtime: kafka.Runtime{Group: group, MaxBatch: 4}},
				kc, h, testLogger(), kafka.Hooks{Committed: func(_ string, msgs []pipeline.Message) { committed <- len(msgs) }})
			if err != nil {
				return err
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- st.Run(runCtx) }()
			got := 0
			for got < n {
				select {
				case c := <-committed:
					got += c
				case <-ctx.Done():
					stop()
					return fmt.Errorf("committed %d of %d messages: %w", got, n, ctx.Err())
				}
			}
			stop()
			return <-done
		}},
		{"lag: OffsetFetch, ListOffsets", func() error {
			lags, err := kafka.GroupLag(ctx, kc, group, []string{in})
			if err != nil {
				return err
			}
			var total, end int64
			for _, l := range lags {
				total, end = total+l.Lag, end+l.End
			}
			if total != 0 || end != n {
				return fmt.Errorf("lag %d over %d messages, want 0 over %d: %+v", total, end, n, lags)
			}
			return nil
		}},
		{"scan: ListOffsets, Fetch", func() error {
			seen := 0
			if err := kafka.ScanTopic(ctx, kc, out, func(pipeline.Message) error { seen++; return nil }); err != nil {
				return err
			}
			if seen != n {
				return fmt.Errorf("scanned %d messages on %s, want %d", seen, out, n)
			}
			return nil
		}},
		{"compacted read: Metadata, ListOffsets, Fetch", func() error {
			var last string
			if err := kafka.ReadCompacted(ctx, kc, compact, func(m pipeline.Message) error { last = string(m.Value); return nil }); err != nil {
				return err
			}
			if last != "new" {
				return fmt.Errorf("last value %q, want new", last)
			}
			return nil
		}},
		{"tap: a consumer group of its own", func() error {
			tap := kafka.NewTap(kc, out, true)
			defer tap.Close()
			_, err := tap.Next(ctx)
			return err
		}},
		{"request/reply", func() error {
			go func() {
				// Answer the request once it is on the topic.
				time.Sleep(300 * time.Millisecond)
				_ = kafka.Produce(ctx, kc, pipeline.Output{Topic: out, Key: []byte("req"), Value: []byte("reply")})
			}()
			m, err := kafka.Request(ctx, kc, pipeline.Output{Topic: in, Key: []byte("req"), Value: []byte("ask")}, out,
				func(m pipeline.Message) bool { return string(m.Value) == "reply" })
			if err == nil && string(m.Value) != "reply" {
				err = fmt.Errorf("reply %q", m.Value)
			}
			return err
		}},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s on %s broker %v: %v", s.api, b.Kind, b.Addrs, err)
		}
	}
}

// checkCompacted reads the topic's cleanup.policy back (DescribeConfigs).
func checkCompacted(ctx context.Context, kc kafka.Config, topic string) error {
	c := &kafkago.Client{Addr: kafkago.TCP(kc.Brokers...), Timeout: 10 * time.Second}
	resp, err := c.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"}}}})
	if err != nil {
		return fmt.Errorf("DescribeConfigs: %w", err)
	}
	for _, r := range resp.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" && e.ConfigValue == "compact" {
				return nil
			}
		}
	}
	return fmt.Errorf("%s: cleanup.policy is not compact: %+v", topic, resp.Resources)
}
