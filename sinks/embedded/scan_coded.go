package embedded

import (
	"context"
	"math"
)

// codeDotFunc is the exact int32 dot product of a coded query and a
// point's codes.
type codeDotFunc func(q []int16, c []int8) int32

// namedCodeKernel is a code kernel and the instruction set it uses.
type namedCodeKernel struct {
	name string
	dot  codeDotFunc
}

// defaultCodedMinRows is the fewest points for which a scan reads codes
// first: below it the float vectors fit in cache and the plain scan is as
// fast.
const defaultCodedMinRows = 4096

// codedBlock is how many points the kernel scores before their bounds are
// checked.
const codedBlock = 256

// codedCandidate is a point whose score bound reached its shard's floor.
type codedCandidate struct {
	slot  int32
	upper float64
}

// floorHeap keeps the k largest lower bounds seen: its root, once k are
// held, is a score that at least k points are known to reach.
type floorHeap struct {
	k int
	h []float64
}

// floor is the root, or -Inf while fewer than k are held (+Inf where k
// is zero).
func (f *floorHeap) floor() float64 {
	if f.k <= 0 {
		return math.Inf(1) // nothing is wanted
	}
	if len(f.h) < f.k {
		return math.Inf(-1)
	}
	return f.h[0]
}

func (f *floorHeap) offer(x float64) {
	if f.k <= 0 {
		return
	}
	h := f.h
	if len(h) < f.k {
		h = append(h, x)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if h[p] <= h[i] {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
		f.h = h
		return
	}
	if x <= h[0] {
		return
	}
	h[0] = x
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// scanCoded answers the same searches as scan, with the same results, while
// reading a quarter of the bytes for most points.
//
// Each point's score is first bounded from its codes: with the query coded
// as q ~ a*Q and the point as v ~ s*C, the exact dot product q.v lies
// within |q - a*Q| * |v| + |a*Q| * |v - s*C| of a*s*(Q.C), an int32 sum the
// kernel computes exactly, and the float32 score the plain scan computes
// lies within a further dim * 2^-22 of q.v. So every point has a lower and
// an upper bound on the very score the plain scan gives it. If k points
// have lower bounds of at least T, the k best scores are all at least T,
// and a point whose upper bound is below T is beaten by k others: it
// cannot be in the answer. The scan keeps the points whose upper bound
// reaches the running k-th best lower bound (which only rises, so it never
// passes T), drops those below the final T, and scores the rest exactly
// with the plain scan's kernel, ranking them by the plain scan's order. The
// answer is therefore the plain scan's, score for score.
func (c *collection) scanCoded(ctx context.Context, qs []scanQuery, shards int) ([][]candidate, error) {
	n := len(c.ids)
	cqs := make([]codedQuery, len(qs))
	for j := range qs {
		cqs[j] = encodeQuery(qs[j].vec)
	}
	type part struct {
		floors []floorHeap
		cands  [][]codedCandidate
	}
	shards = max(1, min(shards, n))
	parts := make([]part, shards)
	err := runShards(n, shards, func(i, lo, hi int) error {
		parts[i] = part{floors: make([]floorHeap, len(qs)), cands: make([][]codedCandidate, len(qs))}
		for j, q := range qs {
			parts[i].floors[j] = floorHeap{k: q.k, h: make([]float64, 0, min(q.k, hi-lo))}
		}
		return c.codedRange(ctx, qs, cqs, lo, hi, parts[i].floors, parts[i].cands)
	})
	if err != nil {
		return nil, err
	}
	out := make([][]candidate, len(qs))
	for j, q := range qs {
		all := floorHeap{k: q.k, h: make([]float64, 0, q.k)}
		for _, p := range parts {
			for _, x := range p.floors[j].h {
				all.offer(x)
			}
		}
		floor := all.floor()
		t := newTopK(min(q.k, n), c.ids)
		for _, p := range parts {
			for _, cd := range p.cands[j] {
				if cd.upper < floor {
					continue
				}
				slot := int(cd.slot)
				t.offer(candidate{score: c.dot(q.vec, c.vecs[slot*c.dim:(slot+1)*c.dim]), slot: cd.slot})
			}
		}
		out[j] = t.sorted()
	}
	return out, nil
}

// codedRange bounds every point in slots [lo, hi) that passes query j's
// filter, keeps its lower bound in floors[j] and, where its upper bound
// reaches floors[j]'s floor, appends it to cands[j].
func (c *collection) codedRange(ctx context.Context, qs []scanQuery, cqs []codedQuery, lo, hi int, floors []floorHeap, cands [][]codedCandidate) error {
	b, dim, payloads, kernel := c.book, c.dim, c.payloads, c.codeDot
	// The plain scan's float32 sum of dim products of two unit vectors is
	// within dim * 2^-24 of the exact dot product; four times that covers
	// the vectors being unit only up to rounding and the float64 sums
	// here.
	slack := 4*float64(dim)*0x1p-24 + 1e-9
	// The kernel runs over a block of points before any of their bounds
	// is looked at, so the loads of one point's codes are not held up
	// behind the heap and branch work of the last.
	var (
		dots [codedBlock]int32
		pass [codedBlock]bool
	)
	for start := lo; start < hi; start += codedBlock {
		end := min(hi, start+codedBlock)
		if start > lo && (start-lo)%scanCheckEvery < codedBlock {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		for j := range qs {
			q, cq := &qs[j], &cqs[j]
			// A filter is checked before the kernel runs: a selective
			// one leaves most points unscored, as in the float scan.
			for slot := start; slot < end; slot++ {
				i := slot - start
				if pass[i] = !q.filtered || q.filter.Match(payloads[slot]); pass[i] {
					dots[i] = kernel(cq.ints, b.codes[slot*dim:(slot+1)*dim])
				}
			}
			// |v| is 1 up to float32 rounding.
			qbound := cq.err*(1+1e-6) + slack
			f := &floors[j]
			for slot := start; slot < end; slot++ {
				i := slot - start
				if !pass[i] {
					continue
				}
				approx := float64(dots[i]) * cq.scale * float64(b.scales[slot])
				bound := qbound + cq.norm*float64(b.errs[slot])
				if lower := approx - bound; lower > f.floor() {
					f.offer(lower)
				}
				if upper := approx + bound; upper >= f.floor() {
					cands[j] = append(cands[j], codedCandidate{slot: int32(slot), upper: upper})
				}
			}
		}
	}
	return nil
}
