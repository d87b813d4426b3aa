package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/embedded"
)

// topK is how many candidates a query asks the store for.
const topK = 100

var benchQueries = []string{
	"a person walking a dog in the park", "a red car driving on a highway at night", "two people talking in a kitchen",
	"a cat jumping onto a table", "children playing football on a sunny field", "a man playing the guitar on stage",
	"waves crashing on a rocky beach", "a woman cooking pasta", "a plane taking off from a runway",
	"a crowd cheering at a concert", "someone typing on a laptop", "a dog catching a frisbee",
	"snow falling on a mountain village", "a chef slicing vegetables", "a cyclist riding through the city",
	"fireworks over a river", "a baby laughing", "a horse running in a field", "rain on a window", "a train arriving at a station",
}

// sceneModifiers vary the benchmark queries past the first len(benchQueries).
var sceneModifiers = []string{"at dawn", "in slow motion", "seen from above", "in black and white", "on a rainy day", "filmed on a phone"}

// benchQuery is the i-th benchmark query: the plain captions first, then
// each with a modifier, so the first len(benchQueries) *
// (len(sceneModifiers)+1) are all distinct.
func benchQuery(i int) string {
	q := benchQueries[i%len(benchQueries)]
	if r := i / len(benchQueries); r > 0 {
		q += " " + sceneModifiers[(r-1)%len(sceneModifiers)]
	}
	return q
}

// queryFigures fill an embedded store with random unit vectors and time a
// query in process (tokenize, text tower, exact search of the top 100), the
// query stage's work without the Kafka hop, against a bare text-tower run on
// prebound tensors plus a plain scan over one flat array.
func (c *Config) queryFigures(ctx context.Context, rt *onnx.Runtime, m *bundle.Manifest) ([]Figure, error) {
	// Two index sizes a decade apart show how latency grows with the index.
	var figs []Figure
	for _, n := range []int{max(1, c.Clips/10), c.Clips} {
		f, err := c.queryAt(ctx, rt, m, n)
		if err != nil {
			return nil, err
		}
		figs = append(figs, f...)
	}
	if m.Text.DynamicLength {
		f, err := c.textLengthFigures(ctx, rt, m)
		if err != nil {
			return nil, err
		}
		figs = append(figs, f...)
	}
	return figs, nil
}

func (c *Config) queryAt(ctx context.Context, rt *onnx.Runtime, m *bundle.Manifest, n int) ([]Figure, error) {
	dim := m.EmbeddingDim
	queries := 100
	if c.Quick {
		queries = 4
	}
	dir, err := os.MkdirTemp("", "vidx-bench-store-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	store, err := embedded.Open(dir, embedded.Options{NoSync: true, CompactMinDead: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	spec := sinks.CollectionSpec{Name: "bench", Dim: dim, Distance: "cosine", Model: m.Name, Pooling: "meanP"}
	flat, err := fillCollection(ctx, store, spec, n)
	if err != nil {
		return nil, err
	}

	base, err := c.newQueryBaseline(rt, m, flat)
	if err != nil {
		return nil, err
	}
	defer base.close()
	var vl, bl []float64
	for i := range queries {
		q := benchQuery(i)
		start := time.Now()
		vecs, err := base.txt.EncodeTexts(ctx, []string{q})
		if err != nil {
			return nil, err
		}
		hits, err := store.Search(ctx, spec.Name, sinks.SearchRequest{Vector: vecs[0], TopK: topK})
		if err != nil {
			return nil, err
		}
		vl = append(vl, time.Since(start).Seconds()*1000)
		ms, best, err := base.query(q)
		if err != nil {
			return nil, err
		}
		bl = append(bl, ms)
		if len(hits) != len(best) {
			return nil, fmt.Errorf("store returned %d hits, the plain scan %d", len(hits), len(best))
		}
	}
	note := fmt.Sprintf("%d clips of %d-d, top %d, %d queries one at a time, in process (no Kafka hop)", n, dim, topK, queries)
	if m.Text.DynamicLength {
		note += fmt.Sprintf("; vidx feeds the text tower up to the end token, the baseline all %d positions", m.Text.ContextLength)
	}
	p50v, p50b := percentile(vl, 50), percentile(bl, 50)
	p99v, p99b := percentile(vl, 99), percentile(bl, 99)
	against := "bare text-tower run + plain scan of a flat array"
	return []Figure{
		{Name: fmt.Sprintf("query_p50_%d", n), Unit: "ms", Vidx: p50v, Baseline: p50b, Against: against, Ratio: p50b / p50v, Note: note},
		{Name: fmt.Sprintf("query_p99_%d", n), Unit: "ms", Vidx: p99v, Baseline: p99b, Against: against, Ratio: p99b / p99v, Note: note},
	}, nil
}

func unitVector(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	var s float64
	for i := range v {
		x := r.NormFloat64()
		v[i] = float32(x)
		s += x * x
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// scan is the plainest exact search: every dot product, then the k best.
func scan(flat []float32, dim int, q []float32, k int) []int {
	n := len(flat) / dim
	scores := make([]float32, n)
	for i := range n {
		row := flat[i*dim : (i+1)*dim]
		var s float32
		for j, x := range row {
			s += x * q[j]
		}
		scores[i] = s
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	k = min(k, n)
	// Partial selection: keep the k best seen so far in a sorted slice.
	best := make([]int, 0, k+1)
	for _, i := range idx {
		if len(best) == k && scores[i] <= scores[best[k-1]] {
			continue
		}
		at, _ := slices.BinarySearchFunc(best, scores[i], func(b int, s float32) int {
			switch {
			case scores[b] > s:
				return -1
			case scores[b] < s:
				return 1
			}
			return 0
		})
		best = slices.Insert(best, at, i)
		if len(best) > k {
			best = best[:k]
		}
	}
	return best
}

func percentile(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// queryBaseline is the yardstick of the query figures: the bare text
// tower on tensors bound once and a plain scan of the same vectors.
type queryBaseline struct {
	txt  *onnx.TextEncoder // tokenizes for the bare run; vidx's own encoder
	bare *bareText
	flat []float32
	m    *bundle.Manifest
}

func (c *Config) newQueryBaseline(rt *onnx.Runtime, m *bundle.Manifest, flat []float32) (*queryBaseline, error) {
	// Sessions measured turn about must not spin: a session's pool threads
	// would still busy-wait, taking the cores, while the other one runs.
	o := c.sessionOptions(true)
	o.MaxBatch = 1
	txt, err := rt.NewTextEncoder(m, o)
	if err != nil {
		return nil, err
	}
	bare, err := newBareText(m, o, 1)
	if err != nil {
		txt.Close()
		return nil, err
	}
	return &queryBaseline{txt: txt, bare: bare, flat: flat, m: m}, nil
}

// query times one baseline query in milliseconds and returns its top
// points.
func (b *queryBaseline) query(q string) (float64, []int, error) {
	ids := b.txt.Tokenize(q)
	start := time.Now()
	vec, err := b.bare.run(ids, b.m.Text.PadID)
	if err != nil {
		return 0, nil, err
	}
	best := scan(b.flat, b.m.EmbeddingDim, vec, topK)
	return time.Since(start).Seconds() * 1000, best, nil
}

func (b *queryBaseline) close() {
	b.bare.close()
	b.txt.Close()
}

// bareText is the text tower on tensors bound once: [batch, context] ids
// (and mask) in, [batch, dim] out.
type bareText struct {
	s       *ort.AdvancedSession
	ids     *ort.Tensor[int64]
	mask    *ort.Tensor[int64]
	out     *ort.Tensor[float32]
	hasMask bool
}

func newBareText(m *bundle.Manifest, o onnx.SessionOptions, batch int) (*bareText, error) {
	b := &bareText{hasMask: m.Text.AttentionMask != ""}
	so, err := o.ORTOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	shape := ort.NewShape(int64(batch), int64(m.Text.ContextLength))
	if b.ids, err = ort.NewEmptyTensor[int64](shape); err != nil {
		return nil, err
	}
	names, ins := []string{m.Text.InputIDs}, []ort.Value{b.ids}
	if b.hasMask {
		if b.mask, err = ort.NewEmptyTensor[int64](shape); err != nil {
			b.close()
			return nil, err
		}
		names, ins = append(names, m.Text.AttentionMask), append(ins, b.mask)
	}
	if b.out, err = ort.NewEmptyTensor[float32](ort.NewShape(int64(batch), int64(m.EmbeddingDim))); err != nil {
		b.close()
		return nil, err
	}
	if b.s, err = ort.NewAdvancedSession(m.Path(m.Text.ONNX), names, []string{m.Text.Output}, ins, []ort.Value{b.out}, so); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bareText) run(ids []int64, pad int64) ([]float32, error) {
	copy(b.ids.GetData(), ids)
	if b.hasMask {
		mask := b.mask.GetData()
		for i, id := range ids {
			mask[i] = 0
			if id != pad {
				mask[i] = 1
			}
		}
	}
	if err := b.s.Run(); err != nil {
		return nil, err
	}
	return b.out.GetData(), nil
}

func (b *bareText) close() {
	if b.s != nil {
		b.s.Destroy()
	}
	if b.ids != nil {
		b.ids.Destroy()
	}
	if b.mask != nil {
		b.mask.Destroy()
	}
	if b.out != nil {
		b.out.Destroy()
	}
}

// textLengthFigures time the text encoder alone, one benchmark query at a
// time, fed only up to the query's end token (text.dynamic_length) against
// the same model fed all context_length positions, as a fixed-length bundle
// is. The two alternate query by query, so load drift hits both alike.
func (c *Config) textLengthFigures(ctx context.Context, rt *onnx.Runtime, m *bundle.Manifest) ([]Figure, error) {
	o := c.sessionOptions(true) // no spinning, as in newQueryBaseline

	o.MaxBatch = 1
	dyn, err := rt.NewTextEncoder(m, o)
	if err != nil {
		return nil, err
	}
	defer dyn.Close()
	padded := *m
	padded.Text.DynamicLength = false
	fixed, err := rt.NewTextEncoder(&padded, o)
	if err != nil {
		return nil, err
	}
	defer fixed.Close()

	timed := func(e *onnx.TextEncoder, q string) (float64, error) {
		start := time.Now()
		_, err := e.EncodeTexts(ctx, []string{q})
		return time.Since(start).Seconds() * 1000, err
	}
	// One untimed pass: ONNX Runtime plans each new input shape on its
	// first run.
	minTok, maxTok := m.Text.ContextLength, 0
	for _, q := range benchQueries {
		ids := dyn.Tokenize(q)
		n := slices.Index(ids, slices.Max(ids)) + 1 // end-of-text has the largest id
		minTok, maxTok = min(minTok, n), max(maxTok, n)
		for _, e := range []*onnx.TextEncoder{dyn, fixed} {
			if _, err := timed(e, q); err != nil {
				return nil, err
			}
		}
	}
	queries := 40
	if c.Quick {
		queries = 4
	}
	var dl, fl []float64
	for i := range queries {
		q := benchQueries[i%len(benchQueries)]
		d, err := timed(dyn, q)
		if err != nil {
			return nil, err
		}
		f, err := timed(fixed, q)
		if err != nil {
			return nil, err
		}
		dl, fl = append(dl, d), append(fl, f)
	}
	note := fmt.Sprintf("text tower alone, %d queries of %d-%d tokens one at a time", queries, minTok, maxTok)
	against := fmt.Sprintf("the same model fed all %d positions", m.Text.ContextLength)
	p50d, p50f := percentile(dl, 50), percentile(fl, 50)
	p99d, p99f := percentile(dl, 99), percentile(fl, 99)
	return []Figure{
		{Name: "text_p50_to_end_token", Unit: "ms", Vidx: p50d, Baseline: p50f, Against: against, Ratio: p50f / p50d, Note: note},
		{Name: "text_p99_to_end_token", Unit: "ms", Vidx: p99d, Baseline: p99f, Against: against, Ratio: p99f / p99d, Note: note},
	}, nil
}
