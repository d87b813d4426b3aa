package kafka

import (
	"context"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/telemetry"
)

// Option configures a Stage.
type Option func(*Stage)

// WithReply makes the stage produce fn's outputs next to every dead letter
// it writes (see ReplyFunc).
func WithReply(fn pipeline.ReplyFunc) Option {
	return func(s *Stage) { s.reply = fn }
}

// WithTelemetry makes the stage trace every message (W3C trace context in
// Kafka headers, OpenTelemetry messaging conventions) and record runtime
// metrics. Handlers find the same Telemetry in their context.
func WithTelemetry(t *telemetry.Telemetry) Option {
	return func(s *Stage) { s.tel = t }
}

// inject writes the trace context of the span that produced a message into
// its headers.
func (s *Stage) inject(parent trace.SpanContext, km *kafkago.Message) {
	if !parent.IsValid() {
		return
	}
	carrier := propagation.MapCarrier{}
	s.tel.Propagator().Inject(trace.ContextWithSpanContext(context.Background(), parent), carrier)
	for k, v := range carrier {
		km.Headers = setHeader(km.Headers, k, v)
	}
}

func setHeader(hs []kafkago.Header, k, v string) []kafkago.Header {
	for i := range hs {
		if hs[i].Key == k {
			hs[i].Value = []byte(v)
			return hs
		}
	}
	return append(hs, kafkago.Header{Key: k, Value: []byte(v)})
}

// sendSpans starts one producer span per outgoing message, child of the
// span that produced it, and injects the send span's context into its
// headers so the next stage continues the same trace.
func (s *Stage) sendSpans(ctx context.Context, msgs []kafkago.Message, parents []trace.SpanContext) []trace.Span {
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
