package eval

import (
	"math"
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

// TestDualSoftmaxDirections checks the re-scored matrices of every mode in
// both directions against values worked out by hand. At temperature 1/ln 2
// a softmax weight is 2^s over the sum of 2^s, so with integer scores every
// weight is a simple fraction. S is [captions][videos], 2 x 3:
//
//	S = | 1 2 0 |   text-axis softmax    | 1/3 1/2 1/3 |
//	    | 2 2 1 |   (columns, 2^s):      | 2/3 1/2 2/3 |
//
//	video-axis softmax   | 2/7 4/7 1/7 |
//	(rows, 2^s):         | 2/5 2/5 1/5 |
func TestDualSoftmaxDirections(t *testing.T) {
	s := [][]float64{{1, 2, 0}, {2, 2, 1}}
	temp := 1 / math.Ln2
	tests := []struct {
		mode     string
		t2v, v2t [][]float64
	}{
		{query.RerankNone, s, s},
		{
			query.RerankCAMoE,
			// S * text-axis softmax: each video's weight spread over the
			// captions, the prior of text-to-video.
			[][]float64{{1.0 / 3, 1, 0}, {4.0 / 3, 1, 2.0 / 3}},
			// S * video-axis softmax: each caption's weight spread over
			// the videos, the prior of video-to-text.
			[][]float64{{2.0 / 7, 8.0 / 7, 0}, {4.0 / 5, 4.0 / 5, 1.0 / 5}},
		},
		{
			query.RerankSymmetric,
			[][]float64{{2.0 / 21, 4.0 / 7, 0}, {8.0 / 15, 2.0 / 5, 2.0 / 15}},
			[][]float64{{2.0 / 21, 4.0 / 7, 0}, {8.0 / 15, 2.0 / 5, 2.0 / 15}},
		},
	}
	near := func(a, b [][]float64) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if len(a[i]) != len(b[i]) {
				return false
			}
			for j := range a[i] {
				if math.Abs(a[i][j]-b[i][j]) > 1e-12 {
					return false
				}
			}
		}
		return true
	}
	for _, tt := range tests {
		t2v, err := TextToVideoScores(tt.mode, temp, s)
		if err != nil {
			t.Fatal(err)
		}
		if !near(t2v, tt.t2v) {
			t.Errorf("%s text-to-video: %v, want %v", tt.mode, t2v, tt.t2v)
		}
		v2t, err := VideoToTextScores(tt.mode, temp, s)
		if err != nil {
			t.Fatal(err)
		}
		if !near(v2t, tt.v2t) {
			t.Errorf("%s video-to-text: %v, want %v", tt.mode, v2t, tt.v2t)
		}
	}
	if _, err := VideoToTextScores(query.RerankCAMoE, temp, [][]float64{{1, 2}, {1}}); err == nil {
		t.Error("ragged matrix accepted")
	}
	if _, err := VideoToTextScores("softmax", temp, s); err == nil {
		t.Error("unknown mode accepted")
	}
}

// TestVideoToTextPrior is the case the video-axis prior exists for:
// caption 0 matches both videos equally (4, 4), so under plain scores it
// wins video 1's column from video 1's own caption (3). At temperature
// 1/ln 2, hand-computed:
//
//	camoe (S * video-axis softmax):  c0 = 4*(1/2) = 2 for both videos,
//	  c1 = (0, 3*8/9 = 8/3): video 1 ranks c1 first.
//	symmetric also multiplies by the text-axis softmax, which in video 1's
//	  column is 16/24 for c0 and 8/24 for c1: c0 = 4*(2/3)*(1/2) = 4/3,
//	  c1 = 3*(1/3)*(8/9) = 8/9, and c0 wins again.
//
// A prior over the caption axis (the text-to-video prior) leaves every
// column's order as it is, so camoe would equal none.
func TestVideoToTextPrior(t *testing.T) {
	s := [][]float64{{4, 4}, {0, 3}}
	truth := []int{0, 1}
	for _, tt := range []struct {
		mode  string
		ranks []int
		r1    float64
	}{
		{query.RerankNone, []int{1, 2}, 50},
		{query.RerankCAMoE, []int{1, 1}, 100},
		{query.RerankSymmetric, []int{1, 2}, 50},
	} {
		scores, err := VideoToTextScores(tt.mode, 1/math.Ln2, s)
		if err != nil {
			t.Fatal(err)
		}
		ranks, err := VideoToTextRanks(scores, truth)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ranks, tt.ranks) {
			t.Errorf("%s: video-to-text ranks %v, want %v", tt.mode, ranks, tt.ranks)
		}
		_, v2t, err := Transductive(s, truth, tt.mode, 1/math.Ln2)
		if err != nil {
			t.Fatal(err)
		}
		if v2t.R1 != tt.r1 {
			t.Errorf("%s: video-to-text R@1 %.1f, want %.1f", tt.mode, v2t.R1, tt.r1)
		}
	}
}

// TestTransductiveSeveralCaptions runs the whole transductive path on two
// captions per video (mode none, so the scores are the input) and checks the
// table rows against ranks worked by hand. Captions c0, c1 describe v0; c2,
// c3 v1; c4, c5 v2.
//
// Text-to-video, per caption: c0 .9 beats .85 .2 -> 1; c1 .3 is beaten by
// .9 and .4 -> 3; c2 .8 -> 1; c3 .2 is beaten by .6 -> 2; c4 .7 -> 1; c5 .1
// is beaten by .3 and .2 -> 3. Sorted 1 1 1 2 3 3: mean 11/6, median 1 (the
// lower middle: with several captions per video CLIP4Clip summarises
// text-to-video with torch.median in tensor_text_to_video_metrics).
//
// Video-to-text, caption groups by their best caption (CLIP4Clip's
// tensor_video_to_text_sim): v0's column c0..c5 = .9 .3 .1 .6 .2 .3, groups
// .9 .6 .3 -> 1. v1's column .85 .9 .8 .2 .1 .2, groups .9 .8 .2 -> 2 (both
// of v0's captions beat .8, but v0 counts once; ranking single captions
// would give 3). v2's column .2 .4 .3 .1 .7 .1, groups .4 .3 .7 -> 1.
// Ranks 1 2 1: median 1, mean 4/3.
func TestTransductiveSeveralCaptions(t *testing.T) {
	s := [][]float64{
		{0.9, 0.85, 0.2},
		{0.3, 0.9, 0.4},
		{0.1, 0.8, 0.3},
		{0.6, 0.2, 0.1},
		{0.2, 0.1, 0.7},
		{0.3, 0.2, 0.1},
	}
	truth := []int{0, 0, 1, 1, 2, 2}
	t2v, v2t, err := Transductive(s, truth, query.RerankNone, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	wantT2V := Metrics{R1: 50, R5: 100, R10: 100, MdR: 1, MnR: 11.0 / 6}
	wantV2T := Metrics{R1: 200.0 / 3, R5: 100, R10: 100, MdR: 1, MnR: 4.0 / 3}
	if !closeMetrics(t2v, wantT2V) {
		t.Errorf("text-to-video %+v, want %+v", t2v, wantT2V)
	}
	if !closeMetrics(v2t, wantV2T) {
		t.Errorf("video-to-text %+v, want %+v", v2t, wantV2T)
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

// TestSingleQueryAxis pins down what docs/eval.md says the query stage does
// with a one-query batch and an empty bank: a text axis of one row. The
// text-axis softmax is then 1, so camoe returns the cosines; symmetric
// multiplies by the row's own video-axis softmax, s*e^(s/T)/Z, which keeps
// the cosine order among candidates whose cosine is above -T and stays
// negative below 0 (so they remain last) but is not monotone there.
func TestSingleQueryAxis(t *testing.T) {
	const temp = 0.01
	row := []float64{0.31, 0.28, 0.3, 0, -0.2, -0.05}
	camoe, err := query.DualSoftmax(query.RerankCAMoE, temp, [][]float64{row})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(camoe[0], row) {
		t.Errorf("camoe on one row: %v, want the cosines %v", camoe[0], row)
	}
	sym, err := query.DualSoftmax(query.RerankSymmetric, temp, [][]float64{row})
	if err != nil {
		t.Fatal(err)
	}
	order := func(s []float64) []int {
		idx := []int{0, 1, 2, 3, 4, 5}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case s[a] > s[b]:
				return -1
			case s[a] < s[b]:
				return 1
			}
			return 0
		})
		return idx
	}
	// Cosine order: .31 .3 .28 0 -.05 -.2. Symmetric keeps the four
	// non-negative ones in place; of the two negative ones, -.2 scores
	// -.2*e^-51/Z, nearer 0 than -.05*e^-36/Z, so it comes first.
	if got := order(row); !slices.Equal(got, []int{0, 2, 1, 3, 5, 4}) {
		t.Fatalf("cosine order %v", got)
	}
	if got := order(sym[0]); !slices.Equal(got, []int{0, 2, 1, 3, 4, 5}) {
		t.Errorf("symmetric order %v, want [0 2 1 3 4 5]", got)
	}
}
