package embedded

import (
	"math"
	"slices"
	"strings"

	"github.com/viterin/vek"
	"github.com/viterin/vek/vek32"

	"github.com/vidx/vidx/sinks"
)

// normalize returns an L2-normalised copy of v after checking it with
// sinks.CheckVector, the rule both stores share. The norm is accumulated in
// float64 so that large-but-finite components cannot overflow and the result
// is as close to unit length as float32 allows.
func normalize(v []float32, dim int) ([]float32, error) {
	if err := sinks.CheckVector(v, dim); err != nil {
		return nil, err
	}
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	norm := math.Sqrt(sum)
	out := make([]float32, dim)
	for i, x := range v {
		out[i] = float32(float64(x) / norm)
	}
	return out, nil
}

// dotFunc scores a stored vector against the query. Every point of one
// search is scored by the same function, so a point's score does not depend
// on which shard of a parallel scan reads it.
type dotFunc func(a, b []float32) float32

// pickDot chooses the scan kernel once per collection. vek's AVX2+FMA dot
// product keeps 32 lanes of multiply-adds in flight, about three times the
// unrolled loop when the vectors are in cache and enough to make a scan
// memory bound when they are not. Without those instructions vek falls back
// to a single-accumulator loop, slower than dotUnrolled, so that one is kept.
func pickDot() dotFunc {
	if vek.Info().Acceleration {
		return vek32.Dot
	}
	return dotUnrolled
}

// dotUnrolled is the portable kernel. Four independent accumulators break
// the dependency chain on a single sum so the CPU can overlap the
// multiply-adds; the slice re-slicing lets the compiler drop bounds checks.
func dotUnrolled(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		aa, bb := a[i:i+4:i+4], b[i:i+4:i+4]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

type candidate struct {
	score float32
	slot  int32
}

// topK keeps the best k candidates in a min-heap whose root is the worst
// kept one, so each scanned point costs one comparison unless it qualifies.
// Equal scores are ordered by id so results do not depend on slot order,
// which changes with deletes and compaction.
type topK struct {
	k    int
	ids  []string
	heap []candidate
}

// worse reports whether a ranks below b.
func (t *topK) worse(a, b candidate) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return t.ids[a.slot] > t.ids[b.slot]
}

func newTopK(k int, ids []string) *topK {
	return &topK{k: k, ids: ids, heap: make([]candidate, 0, k)}
}

func (t *topK) offer(c candidate) {
	if t.k == 0 {
		return
	}
	if len(t.heap) < t.k {
		t.heap = append(t.heap, c)
		t.up(len(t.heap) - 1)
		return
	}
	if c.score < t.heap[0].score || !t.worse(t.heap[0], c) {
		return
	}
	t.heap[0] = c
	t.down(0)
}

func (t *topK) up(i int) {
	h := t.heap
	for i > 0 {
		p := (i - 1) / 2
		if !t.worse(h[i], h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (t *topK) down(i int) {
	h := t.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && t.worse(h[r], h[l]) {
			m = r
		}
		if !t.worse(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// sorted returns the kept candidates best first.
func (t *topK) sorted() []candidate {
	out := t.heap
	slices.SortFunc(out, func(a, b candidate) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return strings.Compare(t.ids[a.slot], t.ids[b.slot])
	})
	return out
}
