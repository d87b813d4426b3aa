// Package pipeline is the contract between vidx's stage runtime and its
// handlers. A handler turns a batch of input messages into one Result per
// message and knows nothing about Kafka; cross-cutting concerns (retries,
// dead letters, panics, metrics, tracing) are middleware, each a
// func(Handler) Handler. The runtime that feeds handlers from Kafka lives
// in pipeline/kafka; nothing here imports a Kafka client.
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
