package query

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

// batchStore answers SearchBatch from a sliceStore and records the calls.
type batchStore struct {
	sliceStore
	batches  [][]sinks.SearchRequest
	searches int
	err      error
}

func (b *batchStore) Search(ctx context.Context, c string, req sinks.SearchRequest) ([]sinks.Hit, error) {
	b.searches++
	if b.err != nil {
		return nil, b.err
	}
	return b.sliceStore.Search(ctx, c, req)
}

func (b *batchStore) SearchBatch(ctx context.Context, c string, reqs []sinks.SearchRequest) ([][]sinks.Hit, error) {
	b.batches = append(b.batches, reqs)
	if b.err != nil {
		return nil, b.err
	}
	out := make([][]sinks.Hit, len(reqs))
	for i, r := range reqs {
		hits, err := b.sliceStore.Search(ctx, c, r)
		if err != nil {
			return nil, err
		}
		out[i] = hits
	}
	return out, nil
}

func batchFixture() (sliceStore, mapEncoder, []schemas.Query) {
	store := sliceStore{
		{ID: "a", Vector: unit(1, 0), Payload: sinks.Payload{VideoID: "A", StartS: 0}},
		{ID: "b", Vector: unit(0, 1), Payload: sinks.Payload{VideoID: "B", StartS: 10}},
		{ID: "c", Vector: unit(0.6, 0.6), Payload: sinks.Payload{VideoID: "C", StartS: 20, Source: "cam"}},
		{ID: "d", Vector: unit(-0.5, 0.3), Payload: sinks.Payload{VideoID: "D", StartS: 30, Source: "cam"}},
	}
	enc := mapEncoder{"x": unit(0.9, 0.1), "y": unit(0.1, 0.9), "z": unit(0.5, 0.5)}
	queries := []schemas.Query{
		{QueryID: "1", Text: "x", TopK: 2},
		{QueryID: "2", Text: "y", Rerank: RerankNone},
		{QueryID: "3", Text: "z", Rerank: RerankCAMoE, Filters: &schemas.Filters{Sources: []string{"cam"}}},
	}
	return store, enc, queries
}

// A micro-batch must cost one batch call and rank exactly as per-query
// searches do.
func TestMicroBatchUsesOneBatchSearch(t *testing.T) {
	ctx := context.Background()
	data, enc, queries := batchFixture()
	cfg := Config{Settings: Settings{Candidates: 3, BankSize: 8}}

	plain, err := New(ctx, cfg, enc, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.Answer(ctx, queries)
	if err != nil {
		t.Fatal(err)
	}

	store := &batchStore{sliceStore: data}
	h, err := New(ctx, cfg, enc, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Answer(ctx, queries)
	if err != nil {
		t.Fatal(err)
	}
	if len(store.batches) != 1 || store.searches != 0 {
		t.Fatalf("%d batch calls and %d single searches, want 1 and 0", len(store.batches), store.searches)
	}
	reqs := store.batches[0]
	wantReqs := []struct {
		topK        int
		withVectors bool
		filter      sinks.Filter
	}{
		{3, true, sinks.Filter{}},   // max(candidates 3, top_k 2)
		{10, false, sinks.Filter{}}, // the default top_k exceeds the candidates
		{10, true, sinks.Filter{Sources: []string{"cam"}}},
	}
	for i, w := range wantReqs {
		r := reqs[i]
		if r.TopK != w.topK || r.WithVectors != w.withVectors || !reflect.DeepEqual(r.Filter, w.filter) {
			t.Errorf("request %d = top %d vectors %t filter %+v; want top %d vectors %t filter %+v",
				i, r.TopK, r.WithVectors, r.Filter, w.topK, w.withVectors, w.filter)
		}
	}
	for i := range want {
		want[i].AnsweredAt, got[i].AnsweredAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("query %s: batch answer %+v, per-query answer %+v", queries[i].QueryID, got[i], want[i])
		}
	}

	// A single query needs no batch call.
	if _, err := h.Answer(ctx, queries[:1]); err != nil {
		t.Fatal(err)
	}
	if len(store.batches) != 1 || store.searches != 1 {
		t.Errorf("single query: %d batch calls and %d searches, want 1 and 1", len(store.batches), store.searches)
	}
}

func TestBatchSearchErrors(t *testing.T) {
	ctx := context.Background()
	data, enc, queries := batchFixture()
	tests := []struct {
		name      string
		err       error
		retryable bool
	}{
		{"store down", fmt.Errorf("qdrant unavailable"), true},
		{"collection not created yet", fmt.Errorf("collection clips: %w", sinks.ErrNotFound), false},
	}
	for _, tc := range tests {
		store := &batchStore{sliceStore: data, err: tc.err}
		h, err := New(ctx, Config{}, enc, store, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.Answer(ctx, queries)
		if tc.retryable {
			if !pipeline.IsRetryable(err) || !errors.Is(err, tc.err) {
				t.Errorf("%s: Answer error %v, want retryable", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for _, r := range res {
			if len(r.Hits) != 0 || r.Candidates != 0 {
				t.Errorf("%s: %d hits, want an empty answer", tc.name, len(r.Hits))
			}
		}
	}
}
