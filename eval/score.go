package eval

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/vidx/vidx/stages/query"
)

// Modes lists the dual-softmax modes in the order the table prints them.
func Modes() []string { return []string{query.RerankNone, query.RerankCAMoE, query.RerankSymmetric} }

// ByMode holds one row of Metrics per dual-softmax mode.
type ByMode struct {
	None      Metrics `json:"none"`
	CAMoE     Metrics `json:"camoe"`
	Symmetric Metrics `json:"symmetric"`
}

// Get returns the row of mode (one of Modes).
func (b *ByMode) Get(mode string) Metrics {
	switch mode {
	case query.RerankCAMoE:
		return b.CAMoE
	case query.RerankSymmetric:
		return b.Symmetric
	}
	return b.None
}

func (b *ByMode) set(mode string, m Metrics) {
	switch mode {
	case query.RerankNone:
		b.None = m
	case query.RerankCAMoE:
		b.CAMoE = m
	case query.RerankSymmetric:
		b.Symmetric = m
	}
}

// Report is the result of an evaluation. Its JSON form is what
// `vidx eval --json` prints; the fields without a JSON name only label the
// human table.
type Report struct {
	// T2V and V2T are transductive: the whole caption set is the text axis
	// of the dual softmax, as the papers evaluate.
	T2V ByMode `json:"t2v"`
	V2T ByMode `json:"v2t"`
	// T2VStream ranks each caption as the query stage would answer it:
	// against a text axis of itself and a bank of earlier captions.
	T2VStream ByMode `json:"t2v_stream"`
	Videos    int    `json:"videos"`
	Captions  int    `json:"captions"`
	Pooling   string `json:"pooling"`
	// Codec is the frames' transport from the sample stage to the encoder
	// (jpeg or png).
	Codec string `json:"codec,omitempty"`

	Model       string  `json:"-"`
	BankSize    int     `json:"-"`
	Temperature float64 `json:"-"`
}

// Embeddings holds everything scoring needs, in dataset order: caption i
// describes video Truth[i].
type Embeddings struct {
	Texts []string
	Truth []int
	// Cosine is [captions][videos]: the store's cosine similarity between
	// each caption and each video, exactly as the query stage receives it
	// from a search.
	Cosine [][]float64
	// TextVecs are the L2-normalised caption embeddings, as the query stage
	// keeps them in its bank.
	TextVecs [][]float32
	// VideoVecs are the clip vectors read back from the store.
	VideoVecs [][]float32
}

func (e *Embeddings) check() error {
	m, n := len(e.Texts), len(e.VideoVecs)
	switch {
	case len(e.Truth) != m || len(e.Cosine) != m || len(e.TextVecs) != m:
		return fmt.Errorf("embeddings: %d texts, %d labels, %d cosine rows, %d text vectors",
			m, len(e.Truth), len(e.Cosine), len(e.TextVecs))
	case n == 0:
		return fmt.Errorf("embeddings: no videos")
	}
	for i, row := range e.Cosine {
		if len(row) != n {
			return fmt.Errorf("embeddings: cosine row %d has %d columns for %d videos", i, len(row), n)
		}
		if e.Truth[i] < 0 || e.Truth[i] >= n {
			return fmt.Errorf("embeddings: caption %d: video %d out of range [0, %d)", i, e.Truth[i], n)
		}
	}
	return nil
}

// ScoreOptions configures scoring.
type ScoreOptions struct {
	// Temperature of the dual softmax on cosine: 1/logit_scale of the
	// bundle (0.01 for CLIP).
	Temperature float64
	// BankSize is how many earlier distinct captions form the streaming text
	// axis besides the caption itself (the query stage's bank_size).
	BankSize int
}

// Score computes every table row: transductive text-to-video and
// video-to-text, and streaming text-to-video, for each mode.
func Score(e *Embeddings, o ScoreOptions) (*Report, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	if o.BankSize < 0 {
		return nil, fmt.Errorf("bank size must not be negative, got %d", o.BankSize)
	}
	r := &Report{Videos: len(e.VideoVecs), Captions: len(e.Texts), BankSize: o.BankSize, Temperature: o.Temperature}
	for _, mode := range Modes() {
		t2v, v2t, err := Transductive(e.Cosine, e.Truth, mode, o.Temperature)
		if err != nil {
			return nil, err
		}
		r.T2V.set(mode, t2v)
		r.V2T.set(mode, v2t)
	}
	stream, err := streamScores(e, o.Temperature, o.BankSize)
	if err != nil {
		return nil, err
	}
	for _, mode := range Modes() {
		ranks, err := TextToVideoRanks(stream[mode], e.Truth)
		if err != nil {
			return nil, err
		}
		r.T2VStream.set(mode, summarizeT2V(ranks, e.Truth))
	}
	return r, nil
}

// Transductive re-scores the whole [captions][videos] cosine matrix with
// dual softmax (every caption on the text axis, every video on the video
// axis) and ranks it both ways. Each direction puts the prior on its own
// candidate axis: text-to-video scores come from TextToVideoScores,
// video-to-text scores from VideoToTextScores.
func Transductive(cosine [][]float64, truth []int, mode string, temp float64) (t2v, v2t Metrics, err error) {
	s, err := TextToVideoScores(mode, temp, cosine)
	if err != nil {
		return t2v, v2t, err
	}
	tr, err := TextToVideoRanks(s, truth)
	if err != nil {
		return t2v, v2t, err
	}
	s, err = VideoToTextScores(mode, temp, cosine)
	if err != nil {
		return t2v, v2t, err
	}
	vr, err := VideoToTextRanks(s, truth)
	if err != nil {
		return t2v, v2t, err
	}
	return summarizeT2V(tr, truth), Summarize(vr), nil
}

// TextToVideoScores re-scores a [captions][videos] matrix for ranking videos
// per caption: query.DualSoftmax, the query stage's function. camoe
// multiplies by a softmax over the text axis (each video's column over the
// captions), the prior that discounts a video many captions match;
// symmetric multiplies by the video-axis softmax too.
func TextToVideoScores(mode string, temp float64, cosine [][]float64) ([][]float64, error) {
	return query.DualSoftmax(mode, temp, cosine)
}

// VideoToTextScores re-scores a [captions][videos] matrix for ranking
// captions per video: the text-to-video rule on the transposed
// [videos][captions] matrix, transposed back. camoe thus multiplies by a
// softmax over the video axis (each caption's row over the videos), the
// prior that discounts a caption matching many videos; a prior over the
// caption axis would be a positive factor monotone in the score within each
// video's column and could not change a video-to-text ranking. symmetric
// multiplies by both softmaxes, as in the text-to-video direction.
func VideoToTextScores(mode string, temp float64, cosine [][]float64) ([][]float64, error) {
	t, err := transpose(cosine)
	if err != nil {
		return nil, err
	}
	s, err := query.DualSoftmax(mode, temp, t)
	if err != nil {
		return nil, err
	}
	if len(s) == 0 {
		// No videos: keep one (empty) row per caption.
		return make([][]float64, len(cosine)), nil
	}
	return transpose(s)
}

func transpose(m [][]float64) ([][]float64, error) {
	if len(m) == 0 {
		return nil, nil
	}
	cols := len(m[0])
	out := make([][]float64, cols)
	for j := range out {
		out[j] = make([]float64, len(m))
	}
	for i, row := range m {
		if len(row) != cols {
			return nil, fmt.Errorf("similarity matrix is ragged: row %d has %d columns, row 0 has %d", i, len(row), cols)
		}
		for j, v := range row {
			out[j][i] = v
		}
	}
	return out, nil
}

// StreamScores returns, for each caption in dataset order, the scores the
// query stage gives every video when the captions arrive one at a time with
// a bank of bankSize: the caption's own cosine row is re-scored against a
// text axis of itself and the bank, then the caption joins the bank.
func StreamScores(e *Embeddings, mode string, temp float64, bankSize int) ([][]float64, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	if !query.ValidRerank(mode) {
		return nil, fmt.Errorf("unknown rerank mode %q (want none, camoe or symmetric)", mode)
	}
	all, err := streamScores(e, temp, bankSize)
	if err != nil {
		return nil, err
	}
	return all[mode], nil
}

// streamScores computes the streaming scores of every mode at once: camoe
// and symmetric share the text-axis softmax, the costly part.
func streamScores(e *Embeddings, temp float64, bankSize int) (map[string][][]float64, error) {
	if bankSize < 0 {
		return nil, fmt.Errorf("bank size must not be negative, got %d", bankSize)
	}
	if !(temp > 0) {
		return nil, fmt.Errorf("rerank temperature must be positive, got %v", temp)
	}
	n := len(e.Texts)
	none := make([][]float64, n)
	for i, row := range e.Cosine {
		none[i] = append([]float64(nil), row...)
	}
	camoe, symmetric := make([][]float64, n), make([][]float64, n)
	out := map[string][][]float64{query.RerankNone: none, query.RerankCAMoE: camoe, query.RerankSymmetric: symmetric}
	if n == 0 {
		return out, nil
	}
	dots := BankDots(e.TextVecs, e.VideoVecs)
	// The bank evolves caption by caption; which rows each caption sees is
	// cheap to record, the softmaxes are then independent and run in
	// parallel.
	axes := make([][]int, n)
	// The query stage's own bank, holding caption indexes instead of
	// vectors: same ring order, refresh and own-text exclusion.
	b := query.NewBank[int](bankSize)
	for i, t := range e.Texts {
		axes[i] = b.Snapshot(func(other string) bool { return other == t })
		b.Add(t, i)
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			var rs rowSoftmax
			bank := make([][]float64, 0, bankSize)
			for i := range next {
				bank = bank[:0]
				for _, k := range axes[i] {
					bank = append(bank, dots[k])
				}
				camoe[i], symmetric[i] = rs.first(e.Cosine[i], bank, temp)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, nil
}

// rowSoftmax computes only the first row of query.DualSoftmax's camoe and
// symmetric results for a text axis of own followed by bank: a caption's
// scores need the other rows only through the text-axis softmax. It repeats
// DualSoftmax's arithmetic operation for operation (the same maxima, sums
// in the same order, the same products), so the result is bit-identical,
// at a fraction of the cost: one exp per axis entry instead of two for
// camoe and four for symmetric. TestRowSoftmaxIsDualSoftmax holds it to
// that.
type rowSoftmax struct {
	m, z []float64
}

func (rs *rowSoftmax) first(own []float64, bank [][]float64, temp float64) (camoe, symmetric []float64) {
	cols := len(own)
	if cap(rs.m) < cols {
		rs.m, rs.z = make([]float64, cols), make([]float64, cols)
	}
	m, z := rs.m[:cols], rs.z[:cols]
	// Softmax over the text axis, for each column over the rows: the rows
	// are visited in DualSoftmax's order, so each column's sum is too.
	for j, s := range own {
		m[j] = s / temp
	}
	for _, row := range bank {
		for j, s := range row {
			m[j] = math.Max(m[j], s/temp)
		}
	}
	for j, s := range own {
		z[j] = math.Exp(s/temp - m[j])
	}
	for _, row := range bank {
		for j, s := range row {
			z[j] += math.Exp(s/temp - m[j])
		}
	}
	camoe = make([]float64, cols)
	for j, s := range own {
		camoe[j] = s * (math.Exp(s/temp-m[j]) / z[j])
	}
	// Softmax over the video axis of the first row, applied on top.
	symmetric = append([]float64(nil), camoe...)
	mr := math.Inf(-1)
	for _, s := range own {
		mr = math.Max(mr, s/temp)
	}
	var zr float64
	for _, s := range own {
		zr += math.Exp(s/temp - mr)
	}
	for j, s := range own {
		symmetric[j] *= math.Exp(s/temp-mr) / zr
	}
	return camoe, symmetric
}

// BankDots returns [texts][videos] inner products computed as the query
// stage computes its bank rows: in float64 over the float32 vectors. The
// caption's own row instead comes from the store's search (float32), and the
// two differ in the last bits, enough to reorder near-ties.
func BankDots(texts, videos [][]float32) [][]float64 {
	out := make([][]float64, len(texts))
	var wg sync.WaitGroup
	next := make(chan int)
	for range max(1, min(runtime.GOMAXPROCS(0), len(texts))) {
		wg.Go(func() {
			for i := range next {
				row := make([]float64, len(videos))
				for j, v := range videos {
					row[j] = query.Dot(texts[i], v)
				}
				out[i] = row
			}
		})
	}
	for i := range texts {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}
