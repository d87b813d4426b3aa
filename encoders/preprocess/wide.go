package preprocess

// widePlan is the horizontal filter laid out for a vector kernel: each
// kept output's taps padded with zero weights to a multiple of eight
// slots, over the source columns split into one plane per channel.
type widePlan struct {
	first    int     // first source column read
	cols     int     // source columns read
	taps     int     // weight slots per output, a multiple of 8
	start    []int   // per output: its first source column, from first
	coeffs   []int32 // per output: taps weights, zero past its own taps
	planeLen int     // bytes per channel plane: cols plus room for a whole block past the last
}

func newWidePlan(p *axisPlan, first, last int) *widePlan {
	keep := len(p.bounds) / 2
	most := 0
	for i := range keep {
		most = max(most, p.bounds[2*i+1])
	}
	w := &widePlan{first: first, cols: last - first, taps: (most + 7) &^ 7}
	w.planeLen = w.cols + w.taps + 8
	w.start = make([]int, keep)
	w.coeffs = make([]int32, keep*w.taps)
	for i := range keep {
		w.start[i] = p.bounds[2*i] - first
		copy(w.coeffs[i*w.taps:], p.coeffs[i*p.ksize:i*p.ksize+p.bounds[2*i+1]])
	}
	return w
}

// split copies the read columns of a row of bpp-byte pixels into the
// three channel planes.
func (w *widePlan) split(planes, src []uint8, bpp int) {
	r := planes[:w.cols]
	g := planes[w.planeLen : w.planeLen+w.cols]
	b := planes[2*w.planeLen : 2*w.planeLen+w.cols]
	px := src[bpp*w.first : bpp*(w.first+w.cols)]
	for x := range r {
		p := px[bpp*x : bpp*x+3]
		r[x], g[x], b[x] = p[0], p[1], p[2]
	}
}

// pixel computes output i's three bytes from the planes, as the kernel's
// scalar tail.
func (w *widePlan) pixel(dst []uint8, planes []uint8, i int) {
	k := w.coeffs[i*w.taps : (i+1)*w.taps]
	for c := range 3 {
		plane := planes[c*w.planeLen+w.start[i]:]
		s := int32(1 << (precisionBits - 1))
		for t, v := range k {
			s += int32(plane[t]) * v
		}
		dst[3*i+c] = clip8(s)
	}
}
