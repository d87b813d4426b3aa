package pipeline

import (
	"context"
	"strconv"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/telemetry"
)

// Option configures a Stage.
type Option func(*Stage)

// WithReply makes the stage produce fn's outputs next to every dead letter
// it writes (see ReplyFunc).
func WithReply(fn ReplyFunc) Option {
	return func(s *Stage) { s.reply = fn }
}

// WithTelemetry makes the stage trace every message (W3C trace context in
// Kafka headers, OpenTelemetry messaging conventions) and record runtime
// metrics. Handlers find the same Telemetry in their context.
func WithTelemetry(t *telemetry.Telemetry) Option {
	return func(s *Stage) { s.tel = t }
}

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

// inject writes the trace context of the span that produced a message into
// its headers.
func (s *Stage) inject(parent trace.SpanContext, km *kafka.Message) {
	if !parent.IsValid() {
		return
	}
	carrier := propagation.MapCarrier{}
	s.tel.Propagator().Inject(trace.ContextWithSpanContext(context.Background(), parent), carrier)
	for k, v := range carrier {
		km.Headers = setHeader(km.Headers, k, v)
	}
}

func setHeader(hs []kafka.Header, k, v string) []kafka.Header {
	for i := range hs {
		if hs[i].Key == k {
			hs[i].Value = []byte(v)
			return hs
		}
	}
	return append(hs, kafka.Header{Key: k, Value: []byte(v)})
}

// sendSpans starts one producer span per outgoing message, child of the
// span that produced it, and injects the send span's context into its
// headers so the next stage continues the same trace.
func (s *Stage) sendSpans(ctx context.Context, msgs []kafka.Message, parents []trace.SpanContext) []trace.Span {
	spans := make([]trace.Span, len(msgs))
	for i := range msgs {
		pctx := ctx
		if parents[i].IsValid() {
			pctx = trace.ContextWithSpanContext(ctx, parents[i])
		}
		_, sp := s.tel.Tracer().Start(pctx, msgs[i].Topic+" send",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				semconv.MessagingSystemKafka,
				semconv.MessagingOperationTypeSend,
				semconv.MessagingDestinationName(msgs[i].Topic),
				attribute.String("vidx.stage", s.cfg.Name),
			))
		spans[i] = sp
		s.inject(sp.SpanContext(), &msgs[i])
	}
	return spans
}
