package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/telemetry"
)

var quiet = slog.New(slog.DiscardHandler)

func msgs(values ...string) []pipeline.Message {
	out := make([]pipeline.Message, len(values))
	for i, v := range values {
		out[i] = pipeline.Message{Topic: "in", Partition: 1, Offset: int64(10 + i), Key: []byte("k" + v), Value: []byte(v),
			Headers: map[string]string{"origin": v}}
	}
	return out
}

// echo outputs each message's value on "out".
func echo(_ context.Context, batch []pipeline.Message) []pipeline.Result {
	res := make([]pipeline.Result, len(batch))
	for i, m := range batch {
		res[i].Outputs = []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}
	}
	return res
}

func TestChainOrder(t *testing.T) {
	var order []string
	mark := func(name string) pipeline.Middleware {
		return func(next pipeline.Handler) pipeline.Handler {
			return pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
				order = append(order, name+">")
				r := next.Handle(ctx, b)
				order = append(order, "<"+name)
				return r
			})
		}
	}
	h := pipeline.Chain(pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
		order = append(order, "handler")
		return echo(ctx, b)
	}), mark("a"), mark("b"))
	h.Handle(context.Background(), msgs("x"))
	if got, want := strings.Join(order, " "), "a> b> handler <b <a"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
}

func TestRecoverer(t *testing.T) {
	cases := []struct {
		name    string
		handler pipeline.HandlerFunc
		wantErr string // on every result; "" means the handler's own results
	}{
		{"passes results through", echo, ""},
		{"panic", func(context.Context, []pipeline.Message) []pipeline.Result { panic("boom") }, "handler panicked: boom"},
		{"wrong result count", func(context.Context, []pipeline.Message) []pipeline.Result { return make([]pipeline.Result, 1) },
			"handler returned 1 results for 3 messages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := pipeline.Recoverer(quiet)(c.handler).Handle(context.Background(), msgs("a", "b", "c"))
			if len(res) != 3 {
				t.Fatalf("%d results for 3 messages", len(res))
			}
			for i, r := range res {
				switch {
				case c.wantErr == "" && (r.Err != nil || string(r.Outputs[0].Value) != string(msgs("a", "b", "c")[i].Value)):
					t.Errorf("result %d = %+v", i, r)
				case c.wantErr != "" && (r.Err == nil || r.Err.Error() != c.wantErr):
					t.Errorf("result %d error %v, want %q", i, r.Err, c.wantErr)
				case c.wantErr != "" && pipeline.Classify(r.Err) != pipeline.ClassUnknown:
					t.Errorf("result %d class %s, want unknown (bounded retries, then dead letter)", i, pipeline.Classify(r.Err))
				}
			}
		})
	}
}

func TestRetry(t *testing.T) {
	const attempts = 3
	fast := pipeline.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}
	errFlaky := errors.New("flaky")
	cases := []struct {
		name string
		// fail says whether call n (from 1) fails message v, and how.
		fail         func(call int, v string) error
		wantCalls    int
		wantSizes    []int // batch size of each call
		wantRetries  int
		wantGaveUp   map[string]int // value -> attempts
		wantPoison   map[string]bool
		wantFinished []string
	}{
		{name: "all succeed", fail: func(int, string) error { return nil },
			wantCalls: 1, wantSizes: []int{3}, wantFinished: []string{"a", "b", "c"}},
		{name: "poison gives up at once", fail: func(_ int, v string) error {
			if v == "b" {
				return pipeline.Poisonf("bad %s", v)
			}
			return nil
		}, wantCalls: 1, wantSizes: []int{3}, wantGaveUp: map[string]int{"b": 1}, wantPoison: map[string]bool{"b": true}, wantFinished: []string{"a", "c"}},
		{name: "unknown error gives up after MaxAttempts, only it is retried", fail: func(_ int, v string) error {
			if v == "c" {
				return errFlaky
			}
			return nil
		}, wantCalls: 3, wantSizes: []int{3, 1, 1}, wantRetries: 2, wantGaveUp: map[string]int{"c": 3}, wantFinished: []string{"a", "b"}},
		{name: "retryable succeeds on the third call", fail: func(call int, v string) error {
			if v == "a" && call < 3 {
				return pipeline.Retryable(errFlaky)
			}
			return nil
		}, wantCalls: 3, wantSizes: []int{3, 1, 1}, wantRetries: 2, wantFinished: []string{"a", "b", "c"}},
		{name: "retryable is retried past MaxAttempts", fail: func(call int, v string) error {
			if v == "b" && call < 6 {
				return pipeline.Retryable(errFlaky)
			}
			return nil
		}, wantCalls: 6, wantSizes: []int{3, 1, 1, 1, 1, 1}, wantRetries: 5, wantFinished: []string{"a", "b", "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sizes []int
			calls, retries := 0, 0
			h := pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
				calls++
				sizes = append(sizes, len(b))
				res := echo(ctx, b)
				for i, m := range b {
					if err := c.fail(calls, string(m.Value)); err != nil {
						res[i] = pipeline.Result{Err: err}
					}
				}
				return res
			})
			res := pipeline.Retry(attempts, fast, quiet, func(pipeline.Message, int, error) { retries++ })(h).Handle(context.Background(), msgs("a", "b", "c"))
			if calls != c.wantCalls || retries != c.wantRetries || !equalInts(sizes, c.wantSizes) {
				t.Errorf("calls %d sizes %v retries %d, want %d %v %d", calls, sizes, retries, c.wantCalls, c.wantSizes, c.wantRetries)
			}
			var finished []string
			for i, r := range res {
				v := string(msgs("a", "b", "c")[i].Value)
				if r.Err == nil {
					if len(r.Outputs) != 1 || string(r.Outputs[0].Value) != v {
						t.Errorf("%s: outputs %+v", v, r.Outputs)
					}
					finished = append(finished, v)
					continue
				}
				var gu *pipeline.GaveUpError
				if !errors.As(r.Err, &gu) {
					t.Errorf("%s: error %v is not a GaveUpError", v, r.Err)
					continue
				}
				if want, ok := c.wantGaveUp[v]; !ok || gu.Attempts != want {
					t.Errorf("%s: gave up after %d attempts, want %v", v, gu.Attempts, c.wantGaveUp)
				}
				if (gu.Class == pipeline.ClassPoison) != c.wantPoison[v] {
					t.Errorf("%s: class %s", v, gu.Class)
				}
			}
			if strings.Join(finished, ",") != strings.Join(c.wantFinished, ",") {
				t.Errorf("finished %v, want %v", finished, c.wantFinished)
			}
		})
	}

	t.Run("stopped while retrying leaves the error unresolved", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		slow := pipeline.Backoff{Min: time.Hour, Max: time.Hour}
		h := pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
			cancel()
			return []pipeline.Result{{Err: pipeline.Retryable(errFlaky)}}
		})
		res := pipeline.Retry(attempts, slow, quiet, nil)(h).Handle(ctx, msgs("a"))
		var gu *pipeline.GaveUpError
		if res[0].Err == nil || errors.As(res[0].Err, &gu) || !pipeline.IsRetryable(res[0].Err) {
			t.Errorf("error %v: want a retryable error, not given up on (the batch must be redelivered)", res[0].Err)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeadLetter(t *testing.T) {
	cause := errors.New("cannot decode")
	cases := []struct {
		name      string
		err       error
		wantDead  bool
		class     string
		attempts  int
		wantError bool // passed through as an error
	}{
		{"success passes", nil, false, "", 0, false},
		{"given up after retries", &pipeline.GaveUpError{Err: cause, Class: pipeline.ClassUnknown, Attempts: 3}, true, "unknown", 3, false},
		{"poison without the retry middleware", pipeline.Poison(cause), true, "poison", 1, false},
		{"retryable passes as an error", pipeline.Retryable(cause), false, "", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var dead []pipeline.Message
			h := pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
				res := echo(ctx, b)
				if c.err != nil {
					res[0] = pipeline.Result{Err: c.err}
				}
				return res
			})
			in := msgs("v")
			res := pipeline.DeadLetter("sample", "dlq", quiet, func(m pipeline.Message, _ error, _ pipeline.ErrorClass, _ int) {
				dead = append(dead, m)
			})(h).Handle(context.Background(), in)
			r := res[0]
			if (r.Err != nil) != c.wantError {
				t.Fatalf("error %v, want error %v", r.Err, c.wantError)
			}
			if !c.wantDead {
				if len(dead) != 0 || (r.Err == nil && r.Outputs[0].Topic != "out") {
					t.Errorf("dead-lettered: %+v", r)
				}
				return
			}
			if len(dead) != 1 || len(r.Outputs) != 1 || r.Outputs[0].Topic != "dlq" {
				t.Fatalf("outputs %+v, hook calls %d", r.Outputs, len(dead))
			}
			o := r.Outputs[0]
			dl, err := schemas.ParseDeadLetter(o.Key, o.Value, o.Headers)
			if err != nil {
				t.Fatal(err)
			}
			if dl.Reason != cause.Error() && !strings.Contains(dl.Reason, cause.Error()) || dl.Class != c.class || dl.Attempts != c.attempts ||
				dl.Stage != "sample" || dl.Topic != "in" || dl.Partition != 1 || dl.Offset != 10 || string(dl.Value) != "v" {
				t.Errorf("dead letter %+v", dl)
			}
			if o.Headers["origin"] != "v" {
				t.Errorf("the message's own headers were dropped: %v", o.Headers)
			}
		})
	}
}

// TestTracing checks each message gets a process span that continues its
// producer's trace, and that the span ends with the message's outcome.
func TestTracing(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	tel, err := telemetry.FromProviders(tp, sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	// The producer's trace, injected as a previous stage would.
	ctx, parent := tp.Tracer("test").Start(context.Background(), "upstream")
	in := msgs("ok", "bad")
	for i := range in {
		tel.Propagator().Inject(ctx, propagation.MapCarrier(in[i].Headers))
	}
	parent.End()
	var handlerSpan trace.SpanContext
	h := pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
		handlerSpan = trace.SpanContextFromContext(ctx)
		res := echo(ctx, b)
		res[1] = pipeline.Result{Err: errors.New("failed")}
		return res
	})
	pipeline.Tracing(tel, "encode", "vidx-encode")(h).Handle(context.Background(), in)
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		byName[s.Name] = append(byName[s.Name], s)
	}
	process := byName["in process"]
	if len(process) != 2 || len(byName["encode batch"]) != 1 {
		t.Fatalf("spans %v", byName)
	}
	for _, s := range process {
		if s.Parent.TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("process span not in the producer's trace")
		}
	}
	if process[0].Status.Code == process[1].Status.Code {
		t.Errorf("the failed message's span has the same status as the finished one: %v", process[0].Status)
	}
	if !handlerSpan.Equal(byName["encode batch"][0].SpanContext) {
		t.Errorf("handler ran outside the batch span")
	}
}

// TestDeadLetterReplying checks a dead-lettered message gets the reply's
// outputs next to its dead letter, with the cause and class, and that
// messages passing through get none.
func TestDeadLetterReplying(t *testing.T) {
	cause := errors.New("bad query")
	cases := []struct {
		name      string
		err       error
		wantTopic []string
		wantClass pipeline.ErrorClass
	}{
		{"success gets no reply", nil, []string{"out"}, 0},
		{"poison is answered", pipeline.Poison(cause), []string{"dlq", "results"}, pipeline.ClassPoison},
		{"given up is answered", &pipeline.GaveUpError{Err: cause, Class: pipeline.ClassRetryable, Attempts: 3}, []string{"dlq", "results"}, pipeline.ClassRetryable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := pipeline.HandlerFunc(func(ctx context.Context, b []pipeline.Message) []pipeline.Result {
				res := echo(ctx, b)
				if c.err != nil {
					res[0] = pipeline.Result{Err: c.err}
				}
				return res
			})
			var gotErr error
			var gotClass pipeline.ErrorClass
			reply := func(m pipeline.Message, err error, class pipeline.ErrorClass) []pipeline.Output {
				gotErr, gotClass = err, class
				return []pipeline.Output{{Topic: "results", Key: m.Key, Value: []byte(err.Error())}}
			}
			res := pipeline.DeadLetterReplying("query", "dlq", quiet, nil, reply)(h).Handle(context.Background(), msgs("v"))
			var topics []string
			for _, o := range res[0].Outputs {
				topics = append(topics, o.Topic)
			}
			if !slices.Equal(topics, c.wantTopic) {
				t.Fatalf("output topics %v, want %v", topics, c.wantTopic)
			}
			if c.err != nil && (!errors.Is(gotErr, cause) || gotClass != c.wantClass) {
				t.Errorf("reply saw %v (%v), want %v (%v)", gotErr, gotClass, cause, c.wantClass)
			}
		})
	}
}
