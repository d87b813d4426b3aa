package pipeline

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential with jitter in its upper half, so replicas that
// failed together do not retry in lockstep. The runtime's produce and
// commit retries, the retry middleware and the live-stream runner share it.
type Backoff struct {
	Min time.Duration
	Max time.Duration
}

// Delay is the wait before retry number attempt (1-based).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Min << min(max(attempt-1, 0), 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Until runs fn until it succeeds or ctx ends, waiting Delay between
// attempts and telling onErr (which may be nil) of each failure. It
// returns fn's last error when ctx ends first.
func (b Backoff) Until(ctx context.Context, fn func() error, onErr func(attempt int, err error)) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if onErr != nil {
			onErr(attempt, err)
		}
		if Sleep(ctx, b.Delay(attempt)) != nil {
			return err
		}
	}
}

// Sleep waits d or until ctx ends, whichever is first, and returns ctx's
// error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
