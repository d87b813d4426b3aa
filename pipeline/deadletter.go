package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/vidx/vidx/schemas"
)

// DeadLetter replaces each message the handler gave up on (a *GaveUpError,
// or poison from a handler without the retry middleware) by one output: the
// original message on topic, with the reason, class, stage, attempts and
// origin in vidx-* headers next to its own headers. Other failures pass
// through untouched.
func DeadLetter(stage, topic string, log *slog.Logger, onDead func(m Message, err error, class ErrorClass, attempts int)) Middleware {
	return DeadLetterReplying(stage, topic, log, onDead, nil)
}

// ReplyFunc returns outputs to produce next to a message's dead letter:
// the query stage answers a query it gave up on, so the asker hears why
// instead of waiting out its timeout.
type ReplyFunc func(m Message, err error, class ErrorClass) []Output

// DeadLetterReplying is DeadLetter that also produces reply's outputs for
// each dead-lettered message (reply may be nil).
func DeadLetterReplying(stage, topic string, log *slog.Logger, onDead func(m Message, err error, class ErrorClass, attempts int), reply ReplyFunc) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, batch []Message) []Result {
			results := next.Handle(ctx, batch)
			for i, res := range results {
				if res.Err == nil || i >= len(batch) {
					continue
				}
				cause, class, attempts := res.Err, Classify(res.Err), 1
				var gaveUp *GaveUpError
				if errors.As(res.Err, &gaveUp) {
					cause, class, attempts = gaveUp.Err, gaveUp.Class, gaveUp.Attempts
				} else if class != ClassPoison {
					continue
				}
				m := batch[i]
				log.WarnContext(m.Context(ctx), "dead-lettering message", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "class", class, "attempts", attempts, "err", cause)
				if onDead != nil {
					onDead(m, cause, class, attempts)
				}
				outs := []Output{deadLetterOutput(stage, topic, m, cause, class, attempts)}
				if reply != nil {
					outs = append(outs, reply(m, cause, class)...)
				}
				results[i] = Result{Outputs: outs, span: res.span}
			}
			return results
		})
	}
}

func deadLetterOutput(stage, topic string, m Message, err error, class ErrorClass, attempts int) Output {
	dl := schemas.DeadLetter{
		Reason:    err.Error(),
		Class:     class.String(),
		Stage:     stage,
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Attempts:  attempts,
		FailedAt:  time.Now(),
	}
	h := dl.Headers()
	for k, v := range m.Headers {
		if _, taken := h[k]; !taken {
			h[k] = v
		}
	}
	return Output{Topic: topic, Key: m.Key, Value: m.Value, Headers: h}
}
