package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

// Member takes part in a consumer group for components that own
// partitions rather than consume them message by message (the live-stream
// runner owns the streams whose ids hash to its registry partitions).
type Member struct {
	// Group and Topic name the consumer group and the topic whose
	// partitions it shares out.
	Group string
	Topic string
	// Backoff paces rejoining after an error.
	Backoff pipeline.Backoff
	Log     *slog.Logger
}

// Run joins the group and calls run for each generation with the
// partitions this member was assigned, sorted. run's context ends when the
// generation does (a member joined or left); run must return soon after.
// A failed join or a lost broker is retried; Run returns nil when ctx
// ends, after leaving the group.
func (m Member) Run(ctx context.Context, kc Config, run func(ctx context.Context, generation int32, partitions []int)) error {
	kc = kc.WithDefaults()
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                m.Group,
		Brokers:           kc.Brokers,
		Topics:            []string{m.Topic},
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  15 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		StartOffset:       kafkago.FirstOffset,
		Dialer:            kc.dialer(),
		Logger:            kafkaLogger{log, slog.LevelDebug - 4},
		ErrorLogger:       kafkaLogger{log, slog.LevelDebug},
	})
	if err != nil {
		return fmt.Errorf("group %s: %w", m.Group, err)
	}
	for attempt := 1; ; {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("consumer group", "group", m.Group, "err", err)
			if pipeline.Sleep(ctx, m.Backoff.Delay(attempt)) != nil {
				break
			}
			attempt++
			continue
		}
		attempt = 1
		var parts []int
		for _, a := range gen.Assignments[m.Topic] {
			parts = append(parts, a.ID)
		}
		slices.Sort(parts)
		gen.Start(func(gctx context.Context) { run(gctx, gen.ID, parts) })
	}
	// Closing ends the generation, which ends run, then leaves the group.
	_ = cg.Close()
	return nil
}

// Producer writes outputs with the runtime's producer settings and retries
// each write with backoff until it is acknowledged or ctx ends, for
// components that produce outside a stage's handler.
type Producer struct {
	w       *kafkago.Writer
	backoff pipeline.Backoff
	log     *slog.Logger
}

// NewProducer returns a Producer; Close it when done.
func NewProducer(kc Config, b pipeline.Backoff, log *slog.Logger) *Producer {
	if log == nil {
		log = slog.Default()
	}
	return &Producer{w: NewWriter(kc), backoff: b, log: log}
}

// Produce writes outs, all acknowledged, or returns the last error once
// ctx ends.
func (p *Producer) Produce(ctx context.Context, outs ...pipeline.Output) error {
	msgs := make([]kafkago.Message, len(outs))
	for i, o := range outs {
		msgs[i] = kafkago.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: toKafkaHeaders(o.Headers)}
	}
	return p.backoff.Until(ctx, func() error { return p.w.WriteMessages(ctx, msgs...) }, func(attempt int, err error) {
		p.log.Warn("produce failed, retrying", "attempt", attempt, "messages", len(msgs), "err", err)
	})
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
