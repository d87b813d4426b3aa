//go:build goexperiment.simd && amd64

package embedded

import "simd/archsimd"

// codeKernel returns the widest vector code kernel the CPU runs, and
// reports whether there was one.
func codeKernel() (codeDotFunc, bool) {
	ks := vectorCodeKernels()
	if len(ks) == 0 {
		return dotCodesPortable, false
	}
	return ks[len(ks)-1].dot, true
}

// vectorCodeKernels lists the vector code kernels this CPU runs, narrowest
// first; the tests check each against the portable one.
func vectorCodeKernels() []namedCodeKernel {
	var ks []namedCodeKernel
	if archsimd.X86.AVX2() {
		ks = append(ks, namedCodeKernel{"avx2", dotCodesAVX2})
	}
	if archsimd.X86.AVX512() {
		ks = append(ks, namedCodeKernel{"avx512", dotCodesAVX512})
	}
	return ks
}

// dotCodesAVX2 is dotCodesPortable with sixteen codes at a time widened to
// int16 and multiplied pairwise into int32 (VPMADDWD). Four accumulators
// cover the instruction's latency. Integer sums are exact in any order, so
// it returns dotCodesPortable's value.
func dotCodesAVX2(q []int16, c []int8) int32 {
	n := len(q)
	c = c[:n]
	var a0, a1, a2, a3 archsimd.Int32x8
	i := 0
	for ; i+64 <= n; i += 64 {
		cc := (*[64]int8)(c[i : i+64])
		qq := (*[64]int16)(q[i : i+64])
		a0 = a0.Add(archsimd.LoadInt8x16((*[16]int8)(cc[0:16])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x16((*[16]int16)(qq[0:16]))))
		a1 = a1.Add(archsimd.LoadInt8x16((*[16]int8)(cc[16:32])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x16((*[16]int16)(qq[16:32]))))
		a2 = a2.Add(archsimd.LoadInt8x16((*[16]int8)(cc[32:48])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x16((*[16]int16)(qq[32:48]))))
		a3 = a3.Add(archsimd.LoadInt8x16((*[16]int8)(cc[48:64])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x16((*[16]int16)(qq[48:64]))))
	}
	acc := a0.Add(a1).Add(a2.Add(a3))
	return finishCodes(acc, q, c, i)
}

// dotCodesAVX512 is dotCodesAVX2 with 32 codes an instruction: half the
// instructions per point, which is what the scan is bound by where the
// codes stream from cache fast enough. Two accumulators suffice, since
// only the adds depend on each other.
func dotCodesAVX512(q []int16, c []int8) int32 {
	n := len(q)
	c = c[:n]
	var a0, a1 archsimd.Int32x16
	i := 0
	for ; i+64 <= n; i += 64 {
		cc := (*[64]int8)(c[i : i+64])
		qq := (*[64]int16)(q[i : i+64])
		a0 = a0.Add(archsimd.LoadInt8x32((*[32]int8)(cc[0:32])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x32((*[32]int16)(qq[0:32]))))
		a1 = a1.Add(archsimd.LoadInt8x32((*[32]int8)(cc[32:64])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x32((*[32]int16)(qq[32:64]))))
	}
	acc := a0.Add(a1)
	return finishCodes(acc.GetLo().Add(acc.GetHi()), q, c, i)
}

// finishCodes adds the codes from i on, sixteen at a time and then one by
// one, to the eight lanes of acc and returns their sum.
func finishCodes(acc archsimd.Int32x8, q []int16, c []int8, i int) int32 {
	n := len(q)
	for ; i+16 <= n; i += 16 {
		acc = acc.Add(archsimd.LoadInt8x16((*[16]int8)(c[i : i+16])).ExtendToInt16().DotProductPairs(archsimd.LoadInt16x16((*[16]int16)(q[i : i+16]))))
	}
	var lanes [8]int32
	acc.Store(&lanes)
	s := lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7]
	// Leave the upper halves of the vector registers clean: the caller's
	// float64 arithmetic is SSE code, which stalls on dirty ones.
	archsimd.ClearAVXUpperBits()
	for ; i < n; i++ {
		s += int32(q[i]) * int32(c[i])
	}
	return s
}
