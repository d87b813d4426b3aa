package embedded

import (
	"math"
	"slices"
)

// codebook keeps an int8 copy of every stored vector, a quarter of the
// bytes, so that a scan can first bound every score from the codes and
// then compute exactly only the few points whose bound reaches the top k
// (see scanCoded). The float vectors stay the truth: each search returns
// the very scores and order of the plain scan.
//
// A point is coded with one scale per vector, s = max|v|/127, so code
// c = round(v/s), and keeps errs, an upper bound on ||v - s*c||, which is
// what bounds the error of its approximate score.
type codebook struct {
	dim    int
	codes  []int8 // slot i is codes[i*dim : (i+1)*dim]
	scales []float32
	errs   []float32
}

func newCodebook(dim int) *codebook { return &codebook{dim: dim} }

// reserve makes room for n points, so that loading a collection does not
// regrow the slab (and leave the old copies to the collector) point by
// point.
func (b *codebook) reserve(n int) {
	if b == nil || n <= cap(b.scales) {
		return
	}
	b.codes = append(make([]int8, 0, n*b.dim), b.codes...)
	b.scales = append(make([]float32, 0, n), b.scales...)
	b.errs = append(make([]float32, 0, n), b.errs...)
}

// put codes vec into slot, which is either an existing slot or the next
// one.
func (b *codebook) put(slot int, vec []float32) {
	if b == nil {
		return
	}
	if slot == len(b.scales) {
		b.codes = slices.Grow(b.codes, b.dim)[:len(b.codes)+b.dim]
		b.scales = append(b.scales, 0)
		b.errs = append(b.errs, 0)
	}
	b.scales[slot], b.errs[slot] = encodeVector(vec, b.codes[slot*b.dim:(slot+1)*b.dim])
}

// move copies slot src over slot dst, as the collection's swap-delete does
// with its vectors.
func (b *codebook) move(dst, src int) {
	if b == nil {
		return
	}
	copy(b.codes[dst*b.dim:(dst+1)*b.dim], b.codes[src*b.dim:(src+1)*b.dim])
	b.scales[dst], b.errs[dst] = b.scales[src], b.errs[src]
}

// truncate keeps the first n slots.
func (b *codebook) truncate(n int) {
	if b == nil {
		return
	}
	b.codes, b.scales, b.errs = b.codes[:n*b.dim], b.scales[:n], b.errs[:n]
}

// shrink releases memory after large deletes, as the collection's slab
// does.
func (b *codebook) shrink() {
	if b == nil {
		return
	}
	b.codes = append([]int8(nil), b.codes...)
	b.scales = append([]float32(nil), b.scales...)
	b.errs = append([]float32(nil), b.errs...)
}

// encodeVector writes vec's codes to dst and returns its scale and an
// upper bound on the norm of what the codes miss. The bound is computed
// in float64 from the stored float32 scale, then rounded up to float32, so
// it holds for the values a scan reads.
func encodeVector(vec []float32, dst []int8) (scale, errNorm float32) {
	var m float64
	for _, x := range vec {
		m = max(m, math.Abs(float64(x)))
	}
	if m == 0 {
		clear(dst)
		return 0, 0
	}
	scale = float32(m / 127)
	s := float64(scale)
	var e float64
	for i, x := range vec {
		c := math.Round(float64(x) / s)
		c = max(-127, min(127, c))
		dst[i] = int8(c)
		d := float64(x) - c*s
		e += d * d
	}
	return scale, roundUp(math.Sqrt(e))
}

// roundUp returns the smallest float32 not below x, plus one step so that
// the float64 square root's own rounding cannot leave it short.
func roundUp(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return math.Nextafter32(f, float32(math.Inf(1)))
}

// codedQuery is a query vector in the form the code kernel takes: int16
// values q ~ scale*ints, and what that rounding misses.
type codedQuery struct {
	ints  []int16
	scale float64
	// err bounds ||q - scale*ints||; norm bounds ||scale*ints||.
	err, norm float64
}

// encodeQuery codes a unit query vector. Its largest value maps to the
// largest int16 for which no dot product with dim int8 codes can overflow
// the kernel's int32 sums: dim * 127 * limit < 2^31.
func encodeQuery(q []float32) codedQuery {
	limit := min(math.MaxInt16, (math.MaxInt32/(127*max(1, len(q))))-1)
	var m float64
	for _, x := range q {
		m = max(m, math.Abs(float64(x)))
	}
	cq := codedQuery{ints: make([]int16, len(q))}
	if m == 0 || limit < 1 {
		return cq
	}
	cq.scale = m / float64(limit)
	var e, n float64
	for i, x := range q {
		c := math.Round(float64(x) / cq.scale)
		c = max(-float64(limit), min(float64(limit), c))
		cq.ints[i] = int16(c)
		d := float64(x) - c*cq.scale
		e += d * d
		n += c * cq.scale * c * cq.scale
	}
	// A relative 1e-9 covers the float64 rounding of these sums many
	// times over.
	cq.err = math.Sqrt(e)*(1+1e-9) + 1e-12
	cq.norm = math.Sqrt(n) * (1 + 1e-9)
	return cq
}

// dotCodesPortable is the code kernel in plain Go: exact, in int32.
func dotCodesPortable(q []int16, c []int8) int32 {
	c = c[:len(q)]
	var s int32
	for i, x := range q {
		s += int32(x) * int32(c[i])
	}
	return s
}
