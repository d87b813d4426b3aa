package pipeline

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/telemetry"
)

// SpanContext is the span that processed the result's message, set by
// the tracing middleware: the runtime makes it the parent of the send spans
// of the result's outputs.
func (r Result) SpanContext() trace.SpanContext { return r.span }

// Context returns ctx carrying the span that processes m, so a handler's
// per-message spans join the message's trace.
func (m Message) Context(ctx context.Context) context.Context {
	if !m.span.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, m.span)
}

// Tracing starts one process span per message, each a child of the
// context its producer injected (W3C trace context in Kafka headers), runs
// the handler in the message's span (one message) or in a batch span linked
// to every message span, and ends each span with its message's outcome.
// Results carry their message's span: the parent of the send spans of its
// outputs, so the next stage continues the trace.
func Tracing(tel *telemetry.Telemetry, stage, group string) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, in []Message) []Result {
			batch := append([]Message(nil), in...)
			spans := make([]trace.Span, len(batch))
			links := make([]trace.Link, len(batch))
			tracer := tel.Tracer()
			for i := range batch {
				m := &batch[i]
				parent := tel.Propagator().Extract(ctx, propagation.MapCarrier(m.Headers))
				_, span := tracer.Start(parent, m.Topic+" process",
					trace.WithSpanKind(trace.SpanKindConsumer),
					trace.WithAttributes(
						semconv.MessagingSystemKafka,
						semconv.MessagingOperationTypeProcess,
						semconv.MessagingDestinationName(m.Topic),
						semconv.MessagingDestinationPartitionID(strconv.Itoa(m.Partition)),
						semconv.MessagingKafkaOffset(int(m.Offset)),
						semconv.MessagingConsumerGroupName(group),
						attribute.String("vidx.stage", stage),
					))
				m.span = span.SpanContext()
				spans[i] = span
				links[i] = trace.Link{SpanContext: m.span}
			}
			hctx := telemetry.With(ctx, tel)
			var batchSpan trace.Span
			if len(batch) == 1 {
				hctx = trace.ContextWithSpan(hctx, spans[0])
			} else {
				hctx, batchSpan = tracer.Start(hctx, stage+" batch",
					trace.WithLinks(links...),
					trace.WithAttributes(semconv.MessagingBatchMessageCount(len(batch)), attribute.String("vidx.stage", stage)))
			}
			results := next.Handle(hctx, batch)
			var failed error
			for i, sp := range spans {
				var err error
				if i < len(results) {
					err = results[i].Err
					results[i].span = batch[i].span
				}
				if err != nil {
					failed = err
				}
				telemetry.End(sp, err)
			}
			if batchSpan != nil {
				telemetry.End(batchSpan, failed)
			}
			return results
		})
	}
}
