package qdrant

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vidx/vidx/sinks"
)

var (
	// ErrUnavailable is returned when Qdrant stayed unreachable or kept
	// rate-limiting for longer than Config.RetryFor. The call may succeed
	// later; the index stage keeps its offsets uncommitted and retries.
	ErrUnavailable = errors.New("qdrant unavailable")
	// ErrAuth is returned when Qdrant rejects the API key.
	ErrAuth = errors.New("qdrant rejected the credentials")
)

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 2 * time.Second
	// retryAfterMax caps a server's retry-after hint, so a bogus value
	// cannot park a call for hours.
	retryAfterMax = 5 * time.Minute
)

// errWaitTimeout reports an upsert or delete that Qdrant accepted but did not
// apply within its wait timeout; repeating it is safe because writes are
// idempotent.
var errWaitTimeout = errors.New("qdrant accepted the write but did not apply it before its wait timeout")

// call runs fn with a per-attempt timeout and retries transient failures
// (Unavailable, ResourceExhausted, an attempt timing out) with exponential
// backoff, honouring the server's retry-after hint, for at most
// Config.RetryFor. Other errors are classified at once.
func (s *Store) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	start := time.Now()
	deadline := start.Add(s.cfg.RetryFor)
	backoff := backoffMin
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, fn)
		if errors.Is(err, ErrClosed) {
			return fmt.Errorf("qdrant %s: %w", op, err)
		}
		if err == nil {
			if attempt > 1 {
				s.log.Info("qdrant call succeeded after retries", "op", op, "attempts", attempt, "took", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("qdrant %s: %w", op, ctx.Err())
		}
		retry, after := transient(err)
		if !retry {
			return classify(op, err)
		}
		wait := after
		if wait == 0 {
			// Full jitter around the current step keeps many replicas from
			// hammering a recovering server in lockstep.
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, backoffMax)
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("qdrant %s: %w after %d attempts in %s: %w",
				op, ErrUnavailable, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		level := s.log.Debug
		if attempt == 1 || attempt%10 == 0 {
			level = s.log.Warn
		}
		level("qdrant call failed; retrying", "op", op, "attempt", attempt, "wait", wait, "code", status.Code(err).String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("qdrant %s: %w (last error: %w)", op, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// attempt runs fn once with the per-call timeout. The read lock keeps Close
// from emptying the connection pool under a call, without holding it while
// call sleeps between attempts.
func (s *Store) attempt(ctx context.Context, fn func(ctx context.Context) error) error {
	s.conn.RLock()
	defer s.conn.RUnlock()
	if s.closed {
		return ErrClosed
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return fn(actx)
}

// transient reports whether err is worth retrying and how long the server
// asked to wait (zero: use backoff).
func transient(err error) (bool, time.Duration) {
	if errors.Is(err, errWaitTimeout) {
		return true, 0
	}
	// The client library turns ResourceExhausted with a whole-second
	// retry-after trailer into its own error type, dropping the status.
	var re *qc.QdrantResourceExhaustedError
	if errors.As(err, &re) {
		return true, min(time.Duration(re.RetryAfterS)*time.Second, retryAfterMax)
	}
	var after time.Duration
	var ra *retryAfterError
	hinted := errors.As(err, &ra)
	if hinted {
		after = ra.after
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable:
		return true, after
	case codes.ResourceExhausted:
		// Only a rate limit that names its retry-after is worth waiting
		// for. Without one Qdrant means "never": the request costs more
		// than the limiter's whole budget. A full node (insufficient
		// storage) and grpc-go's oversized message share the code and
		// are not cured by a quick retry either.
		if hinted {
			return true, after
		}
		return false, 0
	case codes.DeadlineExceeded:
		// The server's own timeout (the request's timeout field, shorter
		// than the attempt's) or the attempt's: writes are idempotent, so
		// repeat. The server has answered or the attempt was cancelled
		// before the next one starts, so attempts never overlap.
		return true, 0
	}
	return false, 0
}

// Qdrant reports strict-mode limits as InvalidArgument ("Bad request: ...",
// lib/collection/src/operations/verification) and, up to 1.17, a full disk
// as Internal; since then a full node is ResourceExhausted carrying
// insufficientStorageKey. These markers tell capacity from bad data.
var capacityMessages = []string{
	"Max points count limit of",
	"Max vector storage size limit of",
	"Max payload storage size limit of",
	"Resident memory usage is at",
	"No space left on device",
	"Insufficient storage",
}

const insufficientStorageKey = "qdrant-insufficient-storage"

// batchLimitRE reads the limit of Qdrant's strict-mode batch size check:
// `Limit exceeded 200 > 100 for "upsert limit"`.
var batchLimitRE = regexp.MustCompile(`Limit exceeded \d+ > (\d+) for "(?:upsert|update) limit"`)

// tooLargeError reports a request the server refuses for its size alone:
// a batch over strict mode's upsert_max_batchsize, over a rate limiter's
// whole budget, or over the gRPC message limit. A smaller batch may pass;
// limit is the size the server named, 0 when it named none.
type tooLargeError struct {
	err   error
	limit int
}

func (e *tooLargeError) Error() string { return e.err.Error() }
func (e *tooLargeError) Unwrap() error { return e.err }

// classify maps a final gRPC error onto the sinks error contract.
func classify(op string, err error) error {
	var cap *capacityError
	if errors.As(err, &cap) {
		return fmt.Errorf("qdrant %s: %w: %w", op, sinks.ErrCapacity, err)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("qdrant %s: %w", op, err)
	}
	msg := st.Message()
	for _, m := range capacityMessages {
		if strings.Contains(msg, m) {
			return fmt.Errorf("qdrant %s: %w: %s", op, sinks.ErrCapacity, msg)
		}
	}
	switch st.Code() {
	case codes.InvalidArgument:
		if m := batchLimitRE.FindStringSubmatch(msg); m != nil {
			limit, _ := strconv.Atoi(m[1])
			return &tooLargeError{err: fmt.Errorf("qdrant %s: %w: %s (lower store.qdrant.upsert_batch)", op, sinks.ErrRejected, msg), limit: limit}
		}
		return fmt.Errorf("qdrant %s: %w: %s", op, sinks.ErrInvalid, msg)
	case codes.ResourceExhausted:
		if strings.Contains(msg, "message larger than max") {
			return &tooLargeError{err: fmt.Errorf("qdrant %s: %w: %s", op, sinks.ErrRejected, msg)}
		}
		// A rate limit without retry-after: the request alone exceeds the
		// limiter's budget, so sending it again can never pass.
		return &tooLargeError{err: fmt.Errorf("qdrant %s: %w: rate limit refuses this request for good, "+
			"raise Qdrant's strict_mode_config write/read_rate_limit or lower store.qdrant.upsert_batch: %s", op, sinks.ErrRejected, msg)}
	case codes.AlreadyExists:
		return fmt.Errorf("qdrant %s: %w: %s", op, errAlreadyExists, msg)
	case codes.NotFound:
		return fmt.Errorf("qdrant %s: %w: %s", op, sinks.ErrNotFound, msg)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("qdrant %s: %w: %s (check store.qdrant.api_key or VIDX_QDRANT_API_KEY)", op, ErrAuth, msg)
	}
	return fmt.Errorf("qdrant %s: %w", op, err)
}

// errAlreadyExists is Qdrant's answer to creating a collection that exists.
var errAlreadyExists = errors.New("already exists")

// capacityError marks a ResourceExhausted reply that carried Qdrant's
// insufficient-storage marker. It keeps the gRPC status visible.
type capacityError struct{ err error }

func (e *capacityError) Error() string { return e.err.Error() }
func (e *capacityError) Unwrap() error { return e.err }

// GRPCStatus lets status.FromError and status.Code see through the wrapper.
func (e *capacityError) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.err)
	return st
}

// retryAfterError carries a retry-after hint that came with an Unavailable
// or ResourceExhausted reply. It keeps the gRPC status visible to status
// helpers.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.err, e.after)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// GRPCStatus lets status.FromError and status.Code see through the wrapper.
func (e *retryAfterError) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.err)
	return st
}

// retryAfterInterceptor keeps the retry-after hint of Unavailable and
// ResourceExhausted replies, from trailers or headers, in seconds that may be
// fractional; the client library reads it only for ResourceExhausted and only
// in whole seconds from trailers.
func retryAfterInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var header, trailer metadata.MD
	opts = append(opts, grpc.Header(&header), grpc.Trailer(&trailer))
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil {
		return nil
	}
	if c := status.Code(err); c != codes.Unavailable && c != codes.ResourceExhausted {
		return err
	}
	if len(trailer.Get(insufficientStorageKey)) > 0 || len(header.Get(insufficientStorageKey)) > 0 {
		return &capacityError{err: err}
	}
	v := trailer.Get("retry-after")
	if len(v) == 0 {
		v = header.Get("retry-after")
	}
	if len(v) == 0 {
		return err
	}
	if d, ok := parseRetryAfter(v[0]); ok {
		return &retryAfterError{err: err, after: d}
	}
	return err
}

// parseRetryAfter reads a delay in seconds.
func parseRetryAfter(v string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || f != f {
		return 0, false
	}
	d := time.Duration(f * float64(time.Second))
	if f > retryAfterMax.Seconds() {
		d = retryAfterMax
	}
	return d, true
}

// apiKeyInterceptor sends the API key. The client library can do this too,
// but it then logs a warning through the process-wide default logger on
// every pooled connection; vidx warns once through its own logger.
func apiKeyInterceptor(key string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, "api-key", key), method, req, reply, cc, opts...)
	}
}
