package eval

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vidx/vidx/stages/query"
)

// hubEmbeddings is the case dual softmax exists for: video 0 is a "hub"
// that caption 1 likes (0.8) more than its own video (0.75), but caption 0
// likes video 0 even more (0.9), so the text-axis softmax of column 0 gives
// caption 1 almost nothing there (e^-10 at temperature 0.01).
func hubEmbeddings() *Embeddings {
	return &Embeddings{
		Texts:  []string{"caption zero", "caption one"},
		Truth:  []int{0, 1},
		Cosine: [][]float64{{0.9, 0.2}, {0.8, 0.75}},
		// Bank rows come from the vectors: their inner products with the
		// videos are the cosines above, to float32 precision.
		TextVecs:  [][]float32{{0.9, 0.2}, {0.8, 0.75}},
		VideoVecs: [][]float32{{1, 0}, {0, 1}},
	}
}

func TestTransductiveDualSoftmaxFixesTheHub(t *testing.T) {
	e := hubEmbeddings()
	tests := []struct {
		mode     string
		t2v, v2t float64 // R@1
	}{
		// none: caption 1 ranks video 0 first; video 0's column is won by
		// caption 0 (its own), video 1's by caption 1 (0.75 > 0.2).
		{query.RerankNone, 50, 100},
		{query.RerankCAMoE, 100, 100},
		{query.RerankSymmetric, 100, 100},
	}
	for _, tt := range tests {
		t2v, v2t, err := Transductive(e.Cosine, e.Truth, tt.mode, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if t2v.R1 != tt.t2v || v2t.R1 != tt.v2t {
			t.Errorf("%s: t2v R@1 %.1f, v2t R@1 %.1f; want %.1f, %.1f", tt.mode, t2v.R1, v2t.R1, tt.t2v, tt.v2t)
		}
	}
	if _, _, err := Transductive(e.Cosine, e.Truth, "softmax", 0.01); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestStreamingDependsOnWhatCameBefore(t *testing.T) {
	e := hubEmbeddings()
	// In dataset order, caption 1 is re-ranked with caption 0 in the bank:
	// the hub is discounted, as in the transductive case.
	rows, err := StreamScores(e, query.RerankCAMoE, 0.01, 4)
	if err != nil {
		t.Fatal(err)
	}
	ranks, _ := TextToVideoRanks(rows, e.Truth)
	if !slices.Equal(ranks, []int{1, 1}) {
		t.Errorf("dataset order: ranks %v, want [1 1]", ranks)
	}
	// Reversed, caption 1 arrives to an empty bank: a text axis of one row
	// makes the softmax 1 and leaves plain cosine, which ranks the hub first.
	rev := &Embeddings{
		Texts: []string{e.Texts[1], e.Texts[0]}, Truth: []int{1, 0},
		Cosine: [][]float64{e.Cosine[1], e.Cosine[0]}, TextVecs: [][]float32{e.TextVecs[1], e.TextVecs[0]},
		VideoVecs: e.VideoVecs,
	}
	rows, err = StreamScores(rev, query.RerankCAMoE, 0.01, 4)
	if err != nil {
		t.Fatal(err)
	}
	ranks, _ = TextToVideoRanks(rows, rev.Truth)
	if !slices.Equal(ranks, []int{2, 1}) {
		t.Errorf("reversed order: ranks %v, want [2 1]", ranks)
	}
	if !slices.Equal(rows[0], rev.Cosine[0]) {
		t.Errorf("first caption with an empty bank: scores %v, want its cosine %v", rows[0], rev.Cosine[0])
	}
}

func TestStreamingBankZeroIsCosine(t *testing.T) {
	e := hubEmbeddings()
	for _, mode := range Modes() {
		rows, err := StreamScores(e, mode, 0.01, 0)
		if err != nil {
			t.Fatal(err)
		}
		ranks, _ := TextToVideoRanks(rows, e.Truth)
		if !slices.Equal(ranks, []int{1, 2}) {
			t.Errorf("%s with no bank: ranks %v, want cosine's [1 2]", mode, ranks)
		}
	}
}

// TestStreamingAxis checks which rows form each caption's text axis: the
// most recent distinct earlier captions, at most bankSize, never its own
// text.
func TestStreamingAxis(t *testing.T) {
	texts := []string{"a", "b", "a", "c", "d", "b"}
	e := &Embeddings{Texts: texts, Truth: make([]int, len(texts)), VideoVecs: [][]float32{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}}
	for i := range texts {
		v := []float32{float32(i + 1), float32(2*i%5 + 1), float32(7 - i)}
		e.TextVecs = append(e.TextVecs, query.Normalize(v))
		row := make([]float64, 3)
		for j, w := range e.VideoVecs {
			row[j] = query.Dot(e.TextVecs[i], w)
		}
		e.Cosine = append(e.Cosine, row)
	}
	dots := BankDots(e.TextVecs, e.VideoVecs)
	// Bank of 2, ring of distinct texts, oldest replaced; a repeated text
	// refreshes its vector in place.
	wantAxis := [][]int{
		{},     // a: empty bank
		{0},    // b: [a]
		{1},    // a: [a(0) b(1)] without a
		{2, 1}, // c: a refreshed to caption 2 in its slot
		{3, 1}, // d: c replaced a (the oldest slot)
		{3, 4}, // b: d replaced b, then b itself arrives: [c d]
	}
	for _, mode := range []string{query.RerankCAMoE, query.RerankSymmetric} {
		got, err := StreamScores(e, mode, 0.05, 2)
		if err != nil {
			t.Fatal(err)
		}
		for i, axis := range wantAxis {
			sims := [][]float64{e.Cosine[i]}
			for _, k := range axis {
				sims = append(sims, dots[k])
			}
			want, err := query.DualSoftmax(mode, 0.05, sims)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got[i], want[0]) {
				t.Errorf("%s caption %d (%s): scores %v, want %v (axis %v)", mode, i, texts[i], got[i], want[0], axis)
			}
		}
	}
}

func TestScoreReport(t *testing.T) {
	e := hubEmbeddings()
	r, err := Score(e, ScoreOptions{Temperature: 0.01, BankSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	if r.Videos != 2 || r.Captions != 2 || r.BankSize != 8 || r.Temperature != 0.01 {
		t.Errorf("report header %+v", r)
	}
	if r.T2V.None.R1 != 50 || r.T2V.CAMoE.R1 != 100 || r.T2V.Symmetric.R1 != 100 {
		t.Errorf("t2v %+v", r.T2V)
	}
	if r.T2VStream.None != r.T2V.None || r.T2VStream.CAMoE.R1 != 100 {
		t.Errorf("t2v streaming %+v", r.T2VStream)
	}
	if r.T2V.None.MnR != 1.5 || r.T2V.None.MdR != 1.5 {
		t.Errorf("t2v none ranks %+v", r.T2V.None)
	}
	bad := hubEmbeddings()
	bad.Cosine[1] = bad.Cosine[1][:1]
	if _, err := Score(bad, ScoreOptions{Temperature: 0.01}); err == nil {
		t.Error("ragged cosine accepted")
	}
	if _, err := Score(e, ScoreOptions{Temperature: 0.01, BankSize: -1}); err == nil {
		t.Error("negative bank accepted")
	}
	if _, err := Score(e, ScoreOptions{Temperature: 0}); err == nil {
		t.Error("zero temperature accepted")
	}
}

// TestRowSoftmaxIsDualSoftmax holds the streaming shortcut to the query
// stage's function: the first row must be bit-identical to
// query.DualSoftmax's, ties and negative cosines included.
func TestRowSoftmaxIsDualSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var rs rowSoftmax
	for trial := range 200 {
		rows, cols := 1+rng.IntN(6), 1+rng.IntN(9)
		sims := make([][]float64, rows)
		for i := range sims {
			sims[i] = make([]float64, cols)
			for j := range sims[i] {
				// Coarse values make exact ties common.
				sims[i][j] = float64(rng.IntN(41)-20) / 20
				if trial%2 == 0 {
					sims[i][j] = 2*rng.Float64() - 1
				}
			}
		}
		temp := []float64{0.01, 0.05, 1}[trial%3]
		camoe, symmetric := rs.first(sims[0], sims[1:], temp)
		for mode, got := range map[string][]float64{query.RerankCAMoE: camoe, query.RerankSymmetric: symmetric} {
			want, err := query.DualSoftmax(mode, temp, sims)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[0]) {
				t.Fatalf("trial %d %s at %v: first row %v, DualSoftmax %v (sims %v)", trial, mode, temp, got, want[0], sims)
			}
		}
	}
}
