package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// GaveUpError is a message's final failure: poison, or unclassified and
// tried Attempts times. The dead-letter middleware routes these.
type GaveUpError struct {
	Err      error
	Class    ErrorClass
	Attempts int
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("gave up after %d attempt(s) (%s): %v", e.Attempts, e.Class, e.Err)
}

func (e *GaveUpError) Unwrap() error { return e.Err }

// Retry calls the handler again with the messages that failed, after an
// exponential backoff, and hands only those back to it. Poison fails at
// once and an unclassified error after MaxAttempts, both as *GaveUpError;
// a retryable error is retried until it succeeds. When ctx ends while
// messages still fail, their errors are returned as they are (not given
// up on), so the batch is not committed and is redelivered.
func Retry(maxAttempts int, b Backoff, log *slog.Logger, onRetry func(m Message, attempt int, err error)) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, batch []Message) []Result {
			final := make([]Result, len(batch))
			attempts := make([]int, len(batch))
			pending, index := batch, make([]int, len(batch))
			for i := range index {
				index[i] = i
			}
			for len(pending) > 0 {
				results := next.Handle(ctx, pending)
				var again []Message
				var againIdx []int
				worst := 0
				for i, res := range results {
					at := index[i]
					if res.Err == nil {
						final[at] = res
						continue
					}
					attempts[at]++
					n := attempts[at]
					class := Classify(res.Err)
					var gaveUp *GaveUpError
					switch {
					case errors.As(res.Err, &gaveUp):
						final[at] = res
					case class == ClassPoison || (class == ClassUnknown && n >= maxAttempts):
						final[at] = Result{Err: &GaveUpError{Err: res.Err, Class: class, Attempts: n}}
					case ctx.Err() != nil:
						final[at] = res
					default:
						m := pending[i]
						if onRetry != nil {
							onRetry(m, n, res.Err)
						}
						log.WarnContext(m.Context(ctx), "handler failed, retrying", "topic", m.Topic, "offset", m.Offset, "class", class, "attempt", n, "err", res.Err)
						again, againIdx = append(again, m), append(againIdx, at)
						worst = max(worst, n)
					}
				}
				if len(again) == 0 {
					break
				}
				if Sleep(ctx, b.Delay(worst)) != nil {
					for _, at := range againIdx {
						final[at] = Result{Err: Retryable(fmt.Errorf("stopped while retrying: %w", ctx.Err()))}
					}
					break
				}
				pending, index = again, againIdx
			}
			return final
		})
	}
}
