package pipeline

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vidx/vidx/telemetry"
)

// Metrics records each batch's messages and size and the handler's time
// (vidx.messages.consumed, vidx.batch.size, vidx.handle.duration).
func Metrics(tel *telemetry.Telemetry, stage string) Middleware {
	attrs := metric.WithAttributes(attribute.String("stage", stage))
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, batch []Message) []Result {
			inst := tel.Instruments()
			inst.Consumed.Add(ctx, int64(len(batch)), attrs)
			inst.BatchSize.Record(ctx, int64(len(batch)), attrs)
			start := time.Now()
			results := next.Handle(ctx, batch)
			inst.HandleSeconds.Record(ctx, time.Since(start).Seconds(), attrs)
			return results
		})
	}
}
