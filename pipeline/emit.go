package pipeline

import (
	"context"
	"errors"
)

// ErrNoEmitter is returned by Emit outside a stage runtime.
var ErrNoEmitter = errors.New("pipeline: no emitter in this context (not called from a running stage)")

type emitterKey struct{}

// Emit produces outputs now, before the handler returns, and waits for
// them to be acknowledged. It is for handlers whose outputs would not fit in
// memory all at once (the clips of a long video). Delivery stays
// at-least-once: the input's offset is still committed only after the
// handler returns, so a crash redelivers it and its outputs are produced
// again, which keyed, idempotent consumers absorb. A handler that fails
// after emitting has still produced what it emitted.
func Emit(ctx context.Context, outs ...Output) error {
	e, ok := ctx.Value(emitterKey{}).(EmitFunc)
	if !ok {
		return ErrNoEmitter
	}
	return e(ctx, outs)
}

// CanEmit reports whether ctx belongs to a running stage, so a handler can
// choose between emitting early and returning its outputs.
func CanEmit(ctx context.Context) bool {
	_, ok := ctx.Value(emitterKey{}).(EmitFunc)
	return ok
}

// EmitFunc produces outputs for the handler running in a stage, waiting
// until they are acknowledged.
type EmitFunc func(ctx context.Context, outs []Output) error

// WithEmitter is for runtimes: it gives a handler's context the way Emit
// reaches the runtime's producer.
func WithEmitter(ctx context.Context, fn EmitFunc) context.Context {
	return context.WithValue(ctx, emitterKey{}, fn)
}
