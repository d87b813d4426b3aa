// Package pipeline is the stage runtime: it moves messages between Kafka
// topics and handlers. A handler turns a batch of input messages into output
// messages and knows nothing about Kafka; the runtime owns the consumer
// group, batching, producing, offset commits, retries and dead letters.
//
// Delivery is at-least-once: offsets of a batch are committed only after
// every output of that batch (dead letters included) has been acknowledged
// by all in-sync replicas. Downstream writes are keyed so a redelivered
// message overwrites rather than duplicates.
package pipeline

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Message is one consumed record.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string
	Time      time.Time

	// span is the span processing this message, set by the runtime.
	span trace.SpanContext
}

// Output is one record a handler wants produced.
type Output struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers map[string]string
}

// Result is a handler's outcome for one input message: its outputs, or an
// error classified with Poison or Retryable.
type Result struct {
	Outputs []Output
	Err     error

	// span is the span that processed the message, set by the tracing
	// middleware: the parent of the outputs' send spans.
	span trace.SpanContext
}

// Handler processes a batch of messages and returns exactly one Result per
// input message, in the same order. Handlers must be safe to call again with
// the same messages (redelivery after a crash).
type Handler interface {
	Handle(ctx context.Context, batch []Message) []Result
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, batch []Message) []Result

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, batch []Message) []Result { return f(ctx, batch) }

// PerMessage adapts a one-message function to Handler for stages that gain
// nothing from batching.
func PerMessage(fn func(ctx context.Context, m Message) ([]Output, error)) Handler {
	return HandlerFunc(func(ctx context.Context, batch []Message) []Result {
		res := make([]Result, len(batch))
		for i, m := range batch {
			res[i].Outputs, res[i].Err = fn(ctx, m)
		}
		return res
	})
}
