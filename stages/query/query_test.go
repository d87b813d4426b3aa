package query

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

func TestDualSoftmaxByHand(t *testing.T) {
	// S = [[0.3, 0.1], [0.2, 0.4]], temperature 0.1. By hand:
	// text-axis softmax, column 0: e^3/(e^3+e^2) = 0.7310585786, column 1:
	// e^1/(e^1+e^4) = 0.0474258732 (row 0); video-axis softmax, row 0:
	// e^3/(e^3+e^1) = 0.8807970780, row 1: e^4/(e^2+e^4) = 0.8807970780.
	sims := [][]float64{{0.3, 0.1}, {0.2, 0.4}}
	tests := []struct {
		mode string
		want [][]float64
	}{
		{RerankNone, [][]float64{{0.3, 0.1}, {0.2, 0.4}}},
		{RerankCAMoE, [][]float64{
			{0.3 * 0.7310585786, 0.1 * 0.0474258732},
			{0.2 * 0.2689414214, 0.4 * 0.9525741268}}},
		{RerankSymmetric, [][]float64{
			{0.3 * 0.7310585786 * 0.8807970780, 0.1 * 0.0474258732 * 0.1192029220},
			{0.2 * 0.2689414214 * 0.1192029220, 0.4 * 0.9525741268 * 0.8807970780}}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			got, err := DualSoftmax(tt.mode, 0.1, sims)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				for j := range tt.want[i] {
					if math.Abs(got[i][j]-tt.want[i][j]) > 1e-9 {
						t.Errorf("[%d][%d] = %.10f, want %.10f", i, j, got[i][j], tt.want[i][j])
					}
				}
			}
		})
	}
	if sims[0][0] != 0.3 {
		t.Error("DualSoftmax modified its input")
	}
}

func TestDualSoftmaxStableAtLowTemperature(t *testing.T) {
	// cos/0.001 = 1000 overflows a naive exp.
	got, err := DualSoftmax(RerankSymmetric, 0.001, [][]float64{{0.9, 0.8}, {0.7, 0.95}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		for _, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite score %v in %v", v, got)
			}
		}
	}
}

func TestDualSoftmaxRejects(t *testing.T) {
	tests := []struct {
		name string
		mode string
		temp float64
		sims [][]float64
	}{
		{"unknown mode", "softer", 0.01, [][]float64{{1}}},
		{"zero temperature", RerankCAMoE, 0, [][]float64{{1}}},
		{"ragged", RerankCAMoE, 0.01, [][]float64{{1, 2}, {1}}},
	}
	for _, tt := range tests {
		if _, err := DualSoftmax(tt.mode, tt.temp, tt.sims); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

// mapEncoder embeds texts from a fixed table.
type mapEncoder map[string][]float32

func (m mapEncoder) Dim() int { return 3 }
func (m mapEncoder) EncodeTexts(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v, ok := m[t]
		if !ok {
			return nil, fmt.Errorf("no vector for %q", t)
		}
		out[i] = v
	}
	return out, nil
}

// sliceStore searches a slice by brute force.
type sliceStore []sinks.Point

func (s sliceStore) Search(_ context.Context, _ string, req sinks.SearchRequest) ([]sinks.Hit, error) {
	var hits []sinks.Hit
	for _, p := range s {
		if req.Filter.Match(p.Payload) {
			hits = append(hits, sinks.Hit{Point: p, Score: float32(Dot(req.Vector, p.Vector))})
		}
	}
	slices.SortFunc(hits, func(a, b sinks.Hit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return hits[:min(len(hits), req.TopK)], nil
}

func unit(x, y float64) []float32 {
	return []float32{float32(x), float32(y), float32(math.Sqrt(1 - x*x - y*y))}
}

// The query bank: a query that alone prefers video A must prefer B once the
// bank holds a text that matches A much better, exactly as the text-axis
// softmax says.
func TestBankChangesRankingAsTheFormulaSays(t *testing.T) {
	ctx := context.Background()
	store := sliceStore{
		{ID: "a", Vector: []float32{1, 0, 0}, Payload: sinks.Payload{VideoID: "A"}},
		{ID: "b", Vector: []float32{0, 1, 0}, Payload: sinks.Payload{VideoID: "B"}},
	}
	enc := mapEncoder{
		"q": unit(0.6, 0.5),
		"t": unit(0.9, 0.1),
	}
	ask := func(h *Handler) schemas.Result {
		t.Helper()
		res, err := h.Answer(ctx, []schemas.Query{{QueryID: "1", Text: "q"}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	cfg := Config{Model: "m", Settings: Settings{Rerank: RerankCAMoE, Temperature: 0.1}}

	h, err := New(ctx, cfg, enc, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	alone := ask(h)
	if alone.Hits[0].VideoID != "A" || alone.BankSize != 0 {
		t.Fatalf("without a bank: first = %s (bank %d), want A (0)", alone.Hits[0].VideoID, alone.BankSize)
	}

	bankFile := filepath.Join(t.TempDir(), "bank.txt")
	if err := os.WriteFile(bankFile, []byte("t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.BankFile = bankFile
	h, err = New(ctx, cfg, enc, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	withBank := ask(h)
	if withBank.BankSize != 1 {
		t.Fatalf("bank size = %d, want 1", withBank.BankSize)
	}
	// camoe score = cos * e^(cos_q/T) / (e^(cos_q/T) + e^(cos_t/T)).
	want := map[string]float64{
		"A": 0.6 * math.Exp(6) / (math.Exp(6) + math.Exp(9)),
		"B": 0.5 * math.Exp(5) / (math.Exp(5) + math.Exp(1)),
	}
	if withBank.Hits[0].VideoID != "B" {
		t.Errorf("with the bank: first = %s, want B", withBank.Hits[0].VideoID)
	}
	for _, hit := range withBank.Hits {
		if math.Abs(hit.Score-want[hit.VideoID]) > 1e-5 {
			t.Errorf("%s: score %.6f, want %.6f", hit.VideoID, hit.Score, want[hit.VideoID])
		}
		if hit.VideoID == "A" && math.Abs(hit.Cosine-0.6) > 1e-6 {
			t.Errorf("A: cosine %.6f, want 0.6", hit.Cosine)
		}
	}

	// Queries of one micro-batch form the text axis together: asking q and
	// t at once matches the bank case, without a bank.
	cfg.BankFile, cfg.BankSize = "", -1
	if _, err := New(ctx, cfg, enc, store, nil); err == nil {
		t.Error("negative bank size accepted")
	}
	cfg.BankSize = 1
	h, err = New(ctx, cfg, enc, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	both, err := h.Answer(ctx, []schemas.Query{{QueryID: "1", Text: "q"}, {QueryID: "2", Text: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	if both[0].Hits[0].VideoID != "B" || both[1].Hits[0].VideoID != "A" {
		t.Errorf("batch: q first = %s, t first = %s; want B, A", both[0].Hits[0].VideoID, both[1].Hits[0].VideoID)
	}
	if math.Abs(both[0].Hits[0].Score-want["B"]) > 1e-5 {
		t.Errorf("batch: q's B score %.6f, want %.6f", both[0].Hits[0].Score, want["B"])
	}
	// The batch went into the bank (size 1: the last text wins).
	if n := h.BankLen(); n != 1 {
		t.Errorf("bank holds %d, want 1", n)
	}
}

func TestBankEvictsOldestAndDeduplicates(t *testing.T) {
	b := NewBank[[]float32](2)
	b.Add("x", []float32{1})
	b.Add("y", []float32{2})
	b.Add("x", []float32{3}) // refresh, no growth
	b.Add("z", []float32{4}) // evicts the oldest slot (x)
	got := b.Snapshot(nil)
	if len(got) != 2 {
		t.Fatalf("bank len = %d, want 2", len(got))
	}
	vals := []float32{got[0][0], got[1][0]}
	slices.Sort(vals)
	if vals[0] != 2 || vals[1] != 4 {
		t.Errorf("bank = %v, want [2 4]", vals)
	}
	if ex := b.Snapshot(func(t string) bool { return t == "y" }); len(ex) != 1 || ex[0][0] != 4 {
		t.Errorf("snapshot excluding y = %v", ex)
	}
}

func TestFiltersReachTheStore(t *testing.T) {
	ctx := context.Background()
	noon := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { w := noon.Add(d); return &w }
	store := sliceStore{
		{ID: "a", Vector: []float32{1, 0, 0}, Payload: sinks.Payload{VideoID: "A", StartS: 0, Metadata: map[string]string{"camera": "north"}}},
		{ID: "b", Vector: []float32{0.9, 0.1, 0.42}, Payload: sinks.Payload{VideoID: "B", StartS: 10, Metadata: map[string]string{"camera": "south"}, WallStart: noon}},
		{ID: "c", Vector: []float32{0.8, 0.6, 0}, Payload: sinks.Payload{VideoID: "C", StartS: 20, WallStart: noon.Add(time.Hour)}},
	}
	h, err := New(ctx, Config{Settings: Settings{Rerank: RerankNone}}, mapEncoder{"q": unit(1, 0)}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		filters *schemas.Filters
		want    []string
	}{
		{"video ids", &schemas.Filters{VideoIDs: []string{"B"}}, []string{"B"}},
		{"metadata", &schemas.Filters{Metadata: map[string]string{"camera": "north"}}, []string{"A"}},
		{"wall from", &schemas.Filters{WallFrom: at(time.Minute)}, []string{"C"}},
		{"wall window", &schemas.Filters{WallFrom: at(-time.Minute), WallTo: at(time.Minute)}, []string{"B"}},
	}
	for _, c := range cases {
		res, err := h.Answer(ctx, []schemas.Query{{QueryID: "1", Text: "q", Filters: c.filters}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, hit := range res[0].Hits {
			got = append(got, hit.VideoID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: hits %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	v := Normalize([]float32{3, 4, 0})
	if v[0] != 0.6 || v[1] != 0.8 || v[2] != 0 {
		t.Errorf("Normalize(3,4,0) = %v", v)
	}
	if z := Normalize([]float32{0, 0}); z[0] != 0 || z[1] != 0 || math.IsNaN(float64(z[0])) {
		t.Errorf("Normalize(0,0) = %v", z)
	}
}
