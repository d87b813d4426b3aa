//go:build goexperiment.simd && amd64

package preprocess

import "simd/archsimd"

// horizontalKernel is the horizontal pass for one row on AVX2, or nil
// where the CPU lacks it and the scalar passes run.
var horizontalKernel = func() func(dst, src []uint8, bpp int, w *widePlan, planes []uint8) {
	if archsimd.X86.AVX2() {
		return horizontalRowAVX2
	}
	return nil
}()

// horizontalRowAVX2 computes len(dst)/3 kept outputs of one row of
// bpp-byte pixels. Each output's taps are one dot product per channel
// over eight-column blocks of its plane; eight outputs' products are
// summed across lanes together (VPHADDD). Integer sums are exact in any
// order, so every byte is resampleRow3's.
func horizontalRowAVX2(dst, src []uint8, bpp int, w *widePlan, planes []uint8) {
	w.split(planes, src, bpp)
	n := len(dst) / 3
	half := archsimd.BroadcastInt32x8(1 << (precisionBits - 1))
	cl := newClipper()
	i := 0
	for ; i+8 <= n; i += 8 {
		start := (*[8]int)(w.start[i : i+8])
		k := w.coeffs[i*w.taps : (i+8)*w.taps]
		for c := range 3 {
			plane := planes[c*w.planeLen : (c+1)*w.planeLen]
			a0 := dotTaps(plane, start[0], k[0*w.taps:1*w.taps])
			a1 := dotTaps(plane, start[1], k[1*w.taps:2*w.taps])
			a2 := dotTaps(plane, start[2], k[2*w.taps:3*w.taps])
			a3 := dotTaps(plane, start[3], k[3*w.taps:4*w.taps])
			a4 := dotTaps(plane, start[4], k[4*w.taps:5*w.taps])
			a5 := dotTaps(plane, start[5], k[5*w.taps:6*w.taps])
			a6 := dotTaps(plane, start[6], k[6*w.taps:7*w.taps])
			a7 := dotTaps(plane, start[7], k[7*w.taps:8*w.taps])
			// Lane l of the sum is output i+l: two rounds of pairwise
			// adds leave each output's sum split over the two halves.
			g0 := a0.AddPairsGrouped(a1).AddPairsGrouped(a2.AddPairsGrouped(a3))
			g1 := a4.AddPairsGrouped(a5).AddPairsGrouped(a6.AddPairsGrouped(a7))
			s := g0.Select128FromPair(0, 2, g1).Add(g0.Select128FromPair(1, 3, g1))
			b := cl.bytes(s.Add(half))
			d := (*[22]uint8)(dst[3*i+c : 3*i+c+22])
			d[0], d[3], d[6], d[9] = uint8(b), uint8(b>>8), uint8(b>>16), uint8(b>>24)
			d[12], d[15], d[18], d[21] = uint8(b>>32), uint8(b>>40), uint8(b>>48), uint8(b>>56)
		}
	}
	// The callers' float code is SSE, which stalls on dirty upper halves.
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		w.pixel(dst, planes, i)
	}
}

// dotTaps is one output's weighted sum over plane from column s, as eight
// int32 partial sums.
func dotTaps(plane []uint8, s int, k []int32) archsimd.Int32x8 {
	a := archsimd.LoadUint8x16((*[16]uint8)(plane[s : s+16])).ExtendLo8ToUint32().AsInt32x8().Mul(archsimd.LoadInt32x8((*[8]int32)(k[0:8])))
	for q := 8; q < len(k); q += 8 {
		a = a.Add(archsimd.LoadUint8x16((*[16]uint8)(plane[s+q : s+q+16])).ExtendLo8ToUint32().AsInt32x8().Mul(archsimd.LoadInt32x8((*[8]int32)(k[q : q+8]))))
	}
	return a
}
