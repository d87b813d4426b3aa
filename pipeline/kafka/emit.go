package kafka

import (
	"context"
	"log/slog"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/telemetry"
)

// withEmitter gives the handler context a way to produce early, with the
// same writer, trace propagation and retries as the outputs it returns.
func (s *Stage) withEmitter(ctx context.Context, log *slog.Logger) context.Context {
	return pipeline.WithEmitter(ctx, func(ctx context.Context, outs []pipeline.Output) error {
		msgs := make([]kafkago.Message, len(outs))
		parents := make([]trace.SpanContext, len(outs))
		parent := trace.SpanContextFromContext(ctx)
		for i, o := range outs {
			msgs[i] = kafkago.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: toKafkaHeaders(o.Headers)}
			parents[i] = parent
		}
		sends := s.sendSpans(ctx, msgs, parents)
		err := s.produce(ctx, log, msgs)
		for _, sp := range sends {
			telemetry.End(sp, err)
		}
		if err == nil {
			s.tel.Instruments().Produced.Add(ctx, int64(len(msgs)), metric.WithAttributes(attribute.String("stage", s.cfg.Name)))
		}
		return err
	})
}
