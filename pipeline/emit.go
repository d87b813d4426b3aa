package pipeline

import (
	"context"
	"errors"
	"log/slog"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/telemetry"
)

// ErrNoEmitter is returned by Emit outside a stage runtime.
var ErrNoEmitter = errors.New("pipeline: no emitter in this context (not called from a running stage)")

type emitterKey struct{}

// emitter produces outputs for the handler running in a stage.
type emitter func(ctx context.Context, outs []Output) error

// Emit produces outputs now, before the handler returns, and waits for
// them to be acknowledged. It is for handlers whose outputs would not fit in
// memory all at once (the clips of a long video). Delivery stays
// at-least-once: the input's offset is still committed only after the
// handler returns, so a crash redelivers it and its outputs are produced
// again, which keyed, idempotent consumers absorb. A handler that fails
// after emitting has still produced what it emitted.
func Emit(ctx context.Context, outs ...Output) error {
	e, ok := ctx.Value(emitterKey{}).(emitter)
	if !ok {
		return ErrNoEmitter
	}
	return e(ctx, outs)
}

// CanEmit reports whether ctx belongs to a running stage, so a handler can
// choose between emitting early and returning its outputs.
func CanEmit(ctx context.Context) bool {
	_, ok := ctx.Value(emitterKey{}).(emitter)
	return ok
}

// withEmitter gives the handler context a way to produce early, with the
// same writer, trace propagation and retries as the outputs it returns.
func (s *Stage) withEmitter(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, emitterKey{}, emitter(func(ctx context.Context, outs []Output) error {
		msgs := make([]kafka.Message, len(outs))
		parents := make([]trace.SpanContext, len(outs))
		parent := trace.SpanContextFromContext(ctx)
		for i, o := range outs {
			msgs[i] = kafka.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: toKafkaHeaders(o.Headers)}
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
	}))
}
