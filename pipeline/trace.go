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

// tracedBatch holds the process spans of a batch.
type tracedBatch struct {
	spans []trace.Span
	batch trace.Span
}

// startBatch starts one process span per message, each a child of the
// context its producer injected, and returns the context the handler runs
// in: the message's span for a single message, else a batch span linked to
// every message span.
func (s *Stage) startBatch(ctx context.Context, batch []Message) (context.Context, *tracedBatch) {
	tb := &tracedBatch{spans: make([]trace.Span, len(batch))}
	tracer := s.tel.Tracer()
	links := make([]trace.Link, len(batch))
	for i := range batch {
		m := &batch[i]
		parent := s.tel.Propagator().Extract(ctx, propagation.MapCarrier(m.Headers))
		_, span := tracer.Start(parent, m.Topic+" process",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				semconv.MessagingSystemKafka,
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingDestinationName(m.Topic),
				semconv.MessagingDestinationPartitionID(strconv.Itoa(m.Partition)),
				semconv.MessagingKafkaOffset(int(m.Offset)),
				semconv.MessagingConsumerGroupName(s.cfg.Group),
				attribute.String("vidx.stage", s.cfg.Name),
			))
		m.span = span.SpanContext()
		tb.spans[i] = span
		links[i] = trace.Link{SpanContext: m.span}
	}
	hctx := telemetry.With(ctx, s.tel)
	if len(batch) == 1 {
		return trace.ContextWithSpan(hctx, tb.spans[0]), tb
	}
	hctx, tb.batch = tracer.Start(hctx, s.cfg.Name+" batch",
		trace.WithLinks(links...),
		trace.WithAttributes(semconv.MessagingBatchMessageCount(len(batch)), attribute.String("vidx.stage", s.cfg.Name)))
	return hctx, tb
}

func (tb *tracedBatch) end(err error) {
	for _, sp := range tb.spans {
		telemetry.End(sp, err)
	}
	if tb.batch != nil {
		telemetry.End(tb.batch, err)
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
