package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
)

// stores opens each store the index stage runs against.
var stores = []struct {
	name string
	open func(t *testing.T) sinks.Store
}{
	{"embedded", func(t *testing.T) sinks.Store { return openStore(t) }},
	{"qdrant", func(t *testing.T) sinks.Store {
		srv := qdranttest.New(t, qdranttest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := qdrant.Open(ctx, srv.URL(), qdrant.Config{RetryFor: 2 * time.Second}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// run is one ingest run of a video: windows of w seconds over dur seconds,
// stamped with gen, the last one carrying the run's clip count.
func run(video string, gen int64, dur, w float64) []clip {
	var out []clip
	for i := 0; float64(i)*w < dur; i++ {
		start, end := float64(i)*w, min(float64(i+1)*w, dur)
		out = append(out, clip{video: video, index: i, start: start, end: end, gen: gen,
			vec: []float32{1, float32(i), float32(gen % 7), 0.5}})
	}
	out[len(out)-1].genClips = len(out)
	return out
}

func msgs(t *testing.T, cs ...clip) []pipeline.Message {
	out := make([]pipeline.Message, len(cs))
	for i, c := range cs {
		out[i] = c.msg(t)
	}
	return out
}

// watched wraps a store and, after every write, checks that a search for
// video finds one of the runs whole: the old clips or the new ones.
type watched struct {
	sinks.Store
	t           *testing.T
	video       string
	runs        [][]clip
	failDeletes int // DeleteOlder calls to fail, as a crash would cut them
}

func (w *watched) check(after string) {
	w.t.Helper()
	ctx := context.Background()
	hits, err := w.Search(ctx, collect, sinks.SearchRequest{Vector: []float32{1, 1, 1, 1}, TopK: 100,
		Filter: sinks.Filter{VideoIDs: []string{w.video}}, Exact: true})
	if err != nil {
		w.t.Fatal(err)
	}
	have := map[string]bool{}
	for _, h := range hits {
		have[h.ID] = true
	}
	for _, r := range w.runs {
		whole := true
		for _, c := range r {
			whole = whole && have[sinks.PointID(c.video, c.start, c.end, model)]
		}
		if whole {
			return
		}
	}
	w.t.Errorf("after %s, a search finds %d clips of %s and no run whole", after, len(hits), w.video)
}

func (w *watched) Upsert(ctx context.Context, collection string, points []sinks.Point) error {
	err := w.Store.Upsert(ctx, collection, points)
	w.check("an upsert")
	return err
}

func (w *watched) DeleteOlder(ctx context.Context, collection, video string, gen int64) (int, error) {
	if w.failDeletes > 0 {
		w.failDeletes--
		return 0, errors.New("killed before the delete")
	}
	n, err := w.Store.DeleteOlder(ctx, collection, video, gen)
	w.check("a delete")
	return n, err
}

// videoClips returns the clips of video in the store, by start.
func videoClips(t *testing.T, st sinks.Store, video string) []string {
	t.Helper()
	hits, err := st.Search(context.Background(), collect, sinks.SearchRequest{Vector: []float32{1, 1, 1, 1}, TopK: 100,
		Filter: sinks.Filter{VideoIDs: []string{video}}, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range hits {
		out = append(out, fmt.Sprintf("%d:[%g,%g)", h.Payload.Generation, h.Payload.StartS, h.Payload.EndS))
	}
	slices.Sort(out)
	return out
}

func want(cs ...clip) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d:[%g,%g)", c.gen, c.start, c.end))
	}
	slices.Sort(out)
	return out
}

func handleOK(t *testing.T, h *Handler, batch []pipeline.Message) {
	t.Helper()
	for i, r := range h.Handle(context.Background(), batch) {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
}

// TestReingestReplaces is the user's story: a video indexed whole, then
// again in windows. Once the windows are all indexed the whole-video clip
// is gone; while they are being indexed, searches find one run whole.
func TestReingestReplaces(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			const g1, g2, g3 = 1733500000000001, 1733500000000002, 1733500000000003
			whole, windows, again := run("beach", g1, 5, 5), run("beach", g2, 5, 2), run("beach", g3, 5, 2)
			st := &watched{Store: sc.open(t), t: t, video: "beach", runs: [][]clip{whole, windows, again}}
			h := newHandler(t, st)
			handleOK(t, h, msgs(t, whole...))
			other := run("harbour", g1, 4, 2)
			handleOK(t, h, msgs(t, other...))

			// The windows arrive over two batches: until the last one the
			// old clip stays.
			handleOK(t, h, msgs(t, windows[:2]...))
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(append(slices.Clone(whole), windows[:2]...)...)) {
				t.Errorf("mid-run: %v", got)
			}
			handleOK(t, h, msgs(t, windows[2:]...))
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(windows...)) {
				t.Errorf("after the run: %v, want %v", got, want(windows...))
			}
			// The same cut again overwrites in place; a redelivered old
			// run's clip comes back next to it and goes with the next run.
			handleOK(t, h, msgs(t, again...))
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(again...)) {
				t.Errorf("after the same cut again: %v, want %v", got, want(again...))
			}
			if got := videoClips(t, st, "harbour"); !slices.Equal(got, want(other...)) {
				t.Errorf("another video changed: %v", got)
			}
		})
	}
}

// TestReingestKilledBetweenUpsertAndDelete cuts the run off after its last
// batch is written and before the old clips are deleted: both are found,
// the batch comes back retryable, and its redelivery to a restarted stage
// completes the replace.
func TestReingestKilledBetweenUpsertAndDelete(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			old, fresh := run("beach", 10, 5, 5), run("beach", 20, 6, 2)
			st := &watched{Store: sc.open(t), t: t, video: "beach", runs: [][]clip{old, fresh}}
			handleOK(t, newHandler(t, st), msgs(t, old...))

			st.failDeletes = 1
			batch := msgs(t, fresh...)
			res := newHandler(t, st).Handle(context.Background(), batch)
			for i, r := range res {
				if !pipeline.IsRetryable(r.Err) {
					t.Errorf("message %d: %v, want retryable so the batch stays uncommitted", i, r.Err)
				}
			}
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(append(slices.Clone(old), fresh...)...)) {
				t.Errorf("after the kill: %v, want both runs", got)
			}
			// A restarted stage knows nothing of the run but what the
			// redelivered batch says.
			handleOK(t, newHandler(t, st), batch)
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(fresh...)) {
				t.Errorf("after the replay: %v, want %v", got, want(fresh...))
			}
		})
	}
}

// TestReingestWaitsForMissingClips covers runs whose clips do not all
// arrive with the last one: a clip still being retried delays the replace
// until it is written, and a clip that is dead-lettered keeps the old
// clips. Stream windows never replace anything.
func TestReingestWaitsForMissingClips(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			old, fresh := run("beach", 1, 4, 4), run("beach", 2, 6, 2)
			st := &watched{Store: sc.open(t), t: t, video: "beach", runs: [][]clip{old, fresh}}
			h := newHandler(t, st)
			handleOK(t, h, msgs(t, old...))

			handleOK(t, h, msgs(t, fresh[0], fresh[2]))
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(old[0], fresh[0], fresh[2])) {
				t.Errorf("last clip before the middle one: %v", got)
			}
			handleOK(t, h, msgs(t, fresh[1]))
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(fresh...)) {
				t.Errorf("after the middle clip: %v, want %v", got, want(fresh...))
			}

			// A run with a clip the stage refuses keeps the older run.
			broken := run("beach", 3, 6, 2)
			broken[1].vec = []float32{1e-5, 0, 0, 0}
			res := h.Handle(context.Background(), msgs(t, broken...))
			if !pipeline.IsPoison(res[1].Err) || !errors.Is(res[1].Err, sinks.ErrInvalid) {
				t.Errorf("near-zero clip: %v, want poison wrapping ErrInvalid", res[1].Err)
			}
			st.runs = append(st.runs, broken)
			if got := videoClips(t, st, "beach"); !slices.Equal(got, want(broken[0], fresh[1], broken[2])) {
				t.Errorf("run with a dead-lettered clip: %v", got)
			}

			// Stream windows append.
			for i := range 3 {
				w := clip{video: "lobby", index: i, start: float64(2 * i), end: float64(2*i + 2), stream: "lobby", vec: []float32{1, 0, float32(i), 1}}
				handleOK(t, h, msgs(t, w))
			}
			if n, err := st.Count(context.Background(), collect, sinks.Filter{VideoIDs: []string{"lobby"}}); err != nil || n != 3 {
				t.Errorf("stream windows: %d, %v; want 3", n, err)
			}
		})
	}
}

// TestNearZeroVectorIsPoison checks the index stage's reason for a vector
// the stores would refuse, before any store sees it.
func TestNearZeroVectorIsPoison(t *testing.T) {
	tests := []struct {
		name   string
		vec    []float32
		poison bool
	}{
		{"zero", []float32{0, 0, 0, 0}, true},
		{"near zero", []float32{1e-4, 1e-4, 1e-4, 1e-4}, true}, // squared norm 4e-8
		{"short", []float32{1e-3, 0, 0, 0}, false},             // squared norm 1e-6
		{"unit", []float32{0, 1, 0, 0}, false},
	}
	st := openStore(t)
	h := newHandler(t, st)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Handle(context.Background(), msgs(t, clip{video: tc.name, end: 1, vec: tc.vec}))
			if got := pipeline.IsPoison(res[0].Err); got != tc.poison || (!tc.poison && res[0].Err != nil) {
				t.Fatalf("err %v, want poison=%v", res[0].Err, tc.poison)
			}
			if tc.poison && !errors.Is(res[0].Err, sinks.ErrInvalid) {
				t.Errorf("err %v does not wrap ErrInvalid", res[0].Err)
			}
			n, err := st.Count(context.Background(), collect, sinks.Filter{VideoIDs: []string{tc.name}})
			if err != nil || (n == 1) == tc.poison {
				t.Errorf("stored %d points, %v", n, err)
			}
		})
	}
}

// refusing is a store whose upserts fail with err.
type refusing struct {
	sinks.Store
	err error
}

func (r refusing) Upsert(context.Context, string, []sinks.Point) error { return r.err }

// TestStoreRefusalsAreNotPoison classifies the store's refusals of good
// data: down or full is retried until it passes, refused for good fails
// the runtime's bounded attempts; none is the message's fault.
func TestStoreRefusalsAreNotPoison(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		retryable bool
	}{
		{"unavailable", fmt.Errorf("qdrant upsert: %w", errors.New("connection refused")), true},
		{"capacity", fmt.Errorf("qdrant upsert: %w: Bad request: Max points count limit of 10 reached!", sinks.ErrCapacity), true},
		{"rejected", fmt.Errorf("qdrant upsert: %w: rate limit", sinks.ErrRejected), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, refusing{Store: openStore(t), err: tc.err})
			res := h.Handle(context.Background(), msgs(t, clip{video: "v", end: 1, vec: []float32{1, 0, 0, 0}}))
			err := res[0].Err
			if err == nil || pipeline.IsPoison(err) || pipeline.IsRetryable(err) != tc.retryable || !errors.Is(err, tc.err) {
				t.Errorf("err %v: poison=%v retryable=%v, want retryable=%v and never poison",
					err, pipeline.IsPoison(err), pipeline.IsRetryable(err), tc.retryable)
			}
		})
	}
}
