package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// Recoverer turns a handler that panics, or returns a result count other
// than one per message, into failed results for the whole batch. The
// failure is unclassified, so the retry middleware tries it a bounded
// number of times and the dead-letter middleware then routes it: a message
// that makes its handler panic cannot stall its partition or end the
// process.
func Recoverer(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, batch []Message) (results []Result) {
			defer func() {
				r := recover()
				if r == nil {
					return
				}
				log.ErrorContext(ctx, "handler panicked", "panic", r, "messages", len(batch), "stack", string(debug.Stack()))
				results = failAll(len(batch), fmt.Errorf("handler panicked: %v", r))
			}()
			results = next.Handle(ctx, batch)
			if len(results) != len(batch) {
				results = failAll(len(batch), fmt.Errorf("handler returned %d results for %d messages", len(results), len(batch)))
			}
			return results
		})
	}
}

func failAll(n int, err error) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i].Err = err
	}
	return out
}
