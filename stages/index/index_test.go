package index

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/embedded"
)

const (
	model   = "clip-vit-b32"
	dim     = 4
	collect = "clips"
)

var ingested = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func spec() sinks.CollectionSpec {
	return sinks.CollectionSpec{Name: collect, Dim: dim, Model: model, Pooling: "meanP"}
}

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), embedded.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newHandler(t *testing.T, st Store) *Handler {
	t.Helper()
	h, err := New(context.Background(), spec(), st, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return ingested }
	return h
}

type clip struct {
	video      string
	index      int
	start, end float64
	vec        []float32
	model      string // default model
	pooling    string // default meanP
	gen        int64
	genClips   int
	stream     string
	wall       time.Time // a live window's wall-clock start
}

func (c clip) header() schemas.ClipHeader {
	h := schemas.ClipHeader{
		VideoID:         c.video,
		Source:          "msrvtt",
		ClipIndex:       c.index,
		StartS:          c.start,
		EndS:            c.end,
		FrameTimes:      []float64{c.start, (c.start + c.end) / 2, c.end},
		Metadata:        map[string]string{"title": c.video + " title"},
		SampledAt:       ingested.Add(-time.Hour),
		Dim:             len(c.vec),
		Model:           c.model,
		Pooling:         c.pooling,
		StreamID:        c.stream,
		Generation:      c.gen,
		GenerationClips: c.genClips,
	}
	if !c.wall.IsZero() {
		h.WallStart, h.WallEnd = c.wall, c.wall.Add(time.Duration((c.end-c.start)*float64(time.Second)))
	}
	if h.Model == "" {
		h.Model = model
	}
	if h.Pooling == "" {
		h.Pooling = "meanP"
	}
	return h
}

func (c clip) msg(t *testing.T) pipeline.Message {
	t.Helper()
	value, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{Header: c.header(), Vectors: [][]float32{c.vec}})
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.Message{Topic: "clip-embeddings", Key: []byte(c.video), Value: value}
}

func count(t *testing.T, st *embedded.Store, f sinks.Filter) int {
	t.Helper()
	n, err := st.Count(context.Background(), collect, f)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func unit(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / math.Sqrt(s))
	}
	return out
}

func TestHandleIndexesClips(t *testing.T) {
	st := openStore(t)
	h := newHandler(t, st)
	clips := []clip{
		{video: "video7", index: 0, start: 0, end: 10, vec: []float32{1, 0, 0, 0}},
		{video: "video7", index: 1, start: 10, end: 20, vec: []float32{0, 2, 0, 0}},
		{video: "video9", index: 0, start: 0, end: 10, vec: []float32{0, 0, 3, 4}, wall: ingested.Add(-time.Minute)},
	}
	batch := make([]pipeline.Message, len(clips))
	for i, c := range clips {
		batch[i] = c.msg(t)
	}
	res := h.Handle(context.Background(), batch)
	if len(res) != len(batch) {
		t.Fatalf("%d results for %d messages", len(res), len(batch))
	}
	for i, r := range res {
		if r.Err != nil || len(r.Outputs) != 0 {
			t.Fatalf("message %d: err %v, %d outputs", i, r.Err, len(r.Outputs))
		}
	}
	if n := count(t, st, sinks.Filter{}); n != 3 {
		t.Fatalf("Count = %d after indexing 3 clips", n)
	}
	if n := count(t, st, sinks.Filter{VideoIDs: []string{"video7"}}); n != 2 {
		t.Fatalf("Count(video7) = %d, want 2", n)
	}
	for _, c := range clips {
		hits, err := st.Search(context.Background(), collect, sinks.SearchRequest{Vector: c.vec, TopK: 1, WithVectors: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 1 {
			t.Fatalf("%d hits", len(hits))
		}
		hit := hits[0]
		if want := sinks.PointID(c.video, c.start, c.end, model); hit.ID != want {
			t.Errorf("%s/%d: point id %s, want the deterministic %s", c.video, c.index, hit.ID, want)
		}
		want := sinks.Payload{
			VideoID: c.video, Source: "msrvtt", ClipIndex: c.index, StartS: c.start, EndS: c.end,
			Frames: 3, IngestedAt: ingested, Metadata: map[string]string{"title": c.video + " title"}, WallStart: c.wall,
		}
		got := hit.Payload
		if got.VideoID != want.VideoID || got.Source != want.Source || got.ClipIndex != want.ClipIndex ||
			got.StartS != want.StartS || got.EndS != want.EndS || got.Frames != want.Frames ||
			!got.IngestedAt.Equal(want.IngestedAt) || got.Metadata["title"] != want.Metadata["title"] || len(got.Metadata) != 1 ||
			!got.WallStart.Equal(want.WallStart) {
			t.Errorf("%s/%d: payload %+v, want %+v", c.video, c.index, got, want)
		}
		if math.Abs(float64(hit.Score)-1) > 1e-6 {
			t.Errorf("%s/%d: score %v for its own vector", c.video, c.index, hit.Score)
		}
		u := unit(c.vec)
		for j := range u {
			if math.Abs(float64(hit.Vector[j]-u[j])) > 1e-6 {
				t.Fatalf("%s/%d: stored vector %v, want %v", c.video, c.index, hit.Vector, u)
			}
		}
	}

	// Redelivery of the batch, and of one clip with a new vector, overwrites
	// the same points.
	for range 2 {
		for i, r := range h.Handle(context.Background(), batch) {
			if r.Err != nil {
				t.Fatalf("redelivered message %d: %v", i, r.Err)
			}
		}
	}
	moved := clips[0]
	moved.vec = []float32{0, 0, 0, 1}
	if r := h.Handle(context.Background(), []pipeline.Message{moved.msg(t)}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if n := count(t, st, sinks.Filter{}); n != 3 {
		t.Fatalf("Count = %d after redelivery, want 3", n)
	}
	hits, err := st.Search(context.Background(), collect, sinks.SearchRequest{Vector: moved.vec, TopK: 1})
	if err != nil {
		t.Fatal(err)
	}
	if hits[0].ID != sinks.PointID("video7", 0, 10, model) || hits[0].Score < 0.999 {
		t.Fatalf("re-indexed clip: hit %s score %v", hits[0].ID, hits[0].Score)
	}
}

func TestHandlePoisonKeepsTheRest(t *testing.T) {
	st := openStore(t)
	h := newHandler(t, st)
	frameEmb, err := schemas.EncodeEmbeddings(schemas.KindFrameEmbeddings, &schemas.Embeddings{
		Header:  clip{video: "v", vec: make([]float32, dim)}.header(),
		Vectors: [][]float32{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	good := func(i int) clip {
		return clip{video: "good", index: i, start: float64(i), end: float64(i + 1), vec: []float32{1, float32(i), 0, 1}}
	}
	cases := []struct {
		msg    pipeline.Message
		poison bool
	}{
		{good(0).msg(t), false},
		{clip{video: "m", end: 1, vec: []float32{1, 0, 0, 0}, model: "clip-vit-b16"}.msg(t), true},
		{clip{video: "p", end: 1, vec: []float32{1, 0, 0, 0}, pooling: "seqTransf"}.msg(t), true},
		{clip{video: "d", end: 1, vec: []float32{1, 0, 0, 0, 0, 0, 0, 0}}.msg(t), true},
		{good(1).msg(t), false},
		{pipeline.Message{Value: []byte("not a clip embedding")}, true},
		{pipeline.Message{Value: frameEmb}, true},
		// Valid to the schema, refused by the store: isolated, not the batch.
		{clip{video: "zero", end: 1, vec: []float32{0, 0, 0, 0}}.msg(t), true},
		{good(2).msg(t), false},
	}
	batch := make([]pipeline.Message, len(cases))
	for i, c := range cases {
		batch[i] = c.msg
	}
	res := h.Handle(context.Background(), batch)
	if len(res) != len(batch) {
		t.Fatalf("%d results for %d messages", len(res), len(batch))
	}
	for i, c := range cases {
		if c.poison != pipeline.IsPoison(res[i].Err) || (!c.poison && res[i].Err != nil) {
			t.Errorf("message %d: err %v, want poison=%v", i, res[i].Err, c.poison)
		}
	}
	if n := count(t, st, sinks.Filter{}); n != 3 {
		t.Fatalf("Count = %d, want the 3 good clips", n)
	}
	if n := count(t, st, sinks.Filter{VideoIDs: []string{"good"}}); n != 3 {
		t.Fatalf("Count(good) = %d, want 3", n)
	}
}

func TestNewCollectionChecks(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := New(ctx, spec(), st); err != nil {
		t.Fatal(err)
	}
	got, err := st.Collection(ctx, collect)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sinks.CollectionSpec{Name: collect, Dim: dim, Distance: "cosine", Model: model, Pooling: "meanP"}); got != want {
		t.Fatalf("collection %+v, want %+v", got, want)
	}
	// The same spec again (a restarted stage) is fine.
	if _, err := New(ctx, spec(), st); err != nil {
		t.Fatalf("New with the same spec: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(s *sinks.CollectionSpec)
	}{
		{"other model", func(s *sinks.CollectionSpec) { s.Model = "clip-vit-b16" }},
		{"other pooling", func(s *sinks.CollectionSpec) { s.Pooling = "seqTransf" }},
		{"other dim", func(s *sinks.CollectionSpec) { s.Dim = 512 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := spec()
			c.edit(&s)
			if _, err := New(ctx, s, st); !errors.Is(err, sinks.ErrIncompatible) {
				t.Fatalf("New = %v, want an error wrapping ErrIncompatible", err)
			}
		})
	}
	if after, _ := st.Collection(ctx, collect); after != got {
		t.Fatalf("refused New changed the collection to %+v", after)
	}
	for _, c := range []struct {
		name string
		edit func(s *sinks.CollectionSpec)
	}{
		{"no name", func(s *sinks.CollectionSpec) { s.Name = "" }},
		{"no model", func(s *sinks.CollectionSpec) { s.Model = "" }},
		{"no pooling", func(s *sinks.CollectionSpec) { s.Pooling = "" }},
		{"no dim", func(s *sinks.CollectionSpec) { s.Dim = 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := spec()
			s.Name = "other"
			c.edit(&s)
			if _, err := New(ctx, s, st); err == nil {
				t.Fatal("New accepted an incomplete spec")
			}
		})
	}
}

func TestHandleClosedStoreIsRetryable(t *testing.T) {
	st := openStore(t)
	h := newHandler(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	batch := []pipeline.Message{
		clip{video: "a", end: 1, vec: []float32{1, 0, 0, 0}}.msg(t),
		{Value: []byte("junk")},
		clip{video: "b", end: 1, vec: []float32{0, 1, 0, 0}}.msg(t),
	}
	res := h.Handle(context.Background(), batch)
	for _, i := range []int{0, 2} {
		if !pipeline.IsRetryable(res[i].Err) || !errors.Is(res[i].Err, embedded.ErrClosed) {
			t.Errorf("message %d: err %v, want a retryable error wrapping ErrClosed", i, res[i].Err)
		}
	}
	if !pipeline.IsPoison(res[1].Err) {
		t.Errorf("junk message: err %v, want poison", res[1].Err)
	}
	if _, err := New(context.Background(), spec(), st); err == nil {
		t.Error("New succeeded on a closed store")
	}
}
