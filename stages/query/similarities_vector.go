//go:build goexperiment.simd && amd64

package query

import (
	"runtime"
	"simd/archsimd"
	"sync"
)

// textLanes is how many texts one pass over a vector serves: four
// accumulators of four float64 lanes, enough independent sums to cover
// the latency of a fused multiply-add.
const textLanes = 16

// similaritiesVector fills rows with AVX2: each lane of an accumulator is
// one text's sum, taken in index order like Dot's. The product of two
// float32 values is exact in float64, so the fused multiply-add rounds
// once where Dot rounds its addition once: the same bits. It reports
// false, leaving rows alone, where the CPU lacks AVX2 or FMA, or the
// texts and vectors disagree on length.
func similaritiesVector(texts, vecs [][]float32, rows [][]float64) bool {
	if !archsimd.X86.AVX2() || !archsimd.X86.FMA() || len(texts) == 0 || len(vecs) == 0 {
		return false
	}
	dim := len(vecs[0])
	for _, v := range vecs {
		if len(v) != dim {
			return false
		}
	}
	for _, t := range texts {
		if len(t) < dim {
			return false
		}
	}
	// Texts interleaved by index, textLanes at a time: block[k*textLanes+l]
	// is text l's k-th value, so one load feeds four texts' sums. Missing
	// texts of the last block stay zero and their sums are dropped.
	// Each vector in float64 once, not once per block of texts.
	vd := make([]float64, len(vecs)*dim)
	for j, v := range vecs {
		for k, x := range v {
			vd[j*dim+k] = float64(x)
		}
	}
	// Blocks of texts are independent: a full text axis is split across
	// the cores, a small one (a few hundred thousand multiply-adds, well
	// under a millisecond) stays on the caller's.
	blocks := (len(texts) + textLanes - 1) / textLanes
	workers := 1
	if len(texts)*len(vecs)*dim >= 1<<20 {
		workers = min(runtime.GOMAXPROCS(0), blocks)
	}
	var wg sync.WaitGroup
	for w := range workers {
		run := func() {
			for b := w; b < blocks; b += workers {
				similarityBlock(texts, vd, dim, b*textLanes, rows)
			}
		}
		if w == workers-1 {
			run()
			break
		}
		wg.Go(run)
	}
	wg.Wait()
	return true
}

// similarityBlock fills the rows of texts [i, i+textLanes) for every
// vector of vd.
func similarityBlock(texts [][]float32, vd []float64, dim, i int, rows [][]float64) {
	// Texts interleaved by index: block[k*textLanes+l] is text l's k-th
	// value, so one load feeds four texts' sums. Missing texts of the last
	// block stay zero and their sums are dropped.
	block := make([]float64, dim*textLanes)
	n := min(textLanes, len(texts)-i)
	for l, t := range texts[i : i+n] {
		for k, x := range t[:dim] {
			block[k*textLanes+l] = float64(x)
		}
	}
	var out, out2 [textLanes]float64
	nv := len(vd) / max(1, dim)
	j := 0
	for ; j+2 <= nv; j += 2 {
		dot16x2(block, vd[j*dim:(j+1)*dim], vd[(j+1)*dim:(j+2)*dim], &out, &out2)
		for l := range n {
			rows[i+l][j], rows[i+l][j+1] = out[l], out2[l]
		}
	}
	if j < nv {
		dot16x2(block, vd[j*dim:(j+1)*dim], vd[j*dim:(j+1)*dim], &out, &out2)
		for l := range n {
			rows[i+l][j] = out[l]
		}
	}
}

// dot16x2 computes the sixteen sums of block's lanes times v, and times
// w. Two vectors a pass give eight independent chains of fused
// multiply-adds, enough to hide their latency, and share each load of
// block.
func dot16x2(block, v, w []float64, out, out2 *[textLanes]float64) {
	var a0, a1, a2, a3, b0, b1, b2, b3 archsimd.Float64x4
	block = block[:len(v)*textLanes]
	w = w[:len(v)]
	for k, x := range v {
		bv := archsimd.BroadcastFloat64x4(x)
		bw := archsimd.BroadcastFloat64x4(w[k])
		row := (*[textLanes]float64)(block[k*textLanes : (k+1)*textLanes])
		r0 := archsimd.LoadFloat64x4((*[4]float64)(row[0:4]))
		r1 := archsimd.LoadFloat64x4((*[4]float64)(row[4:8]))
		r2 := archsimd.LoadFloat64x4((*[4]float64)(row[8:12]))
		r3 := archsimd.LoadFloat64x4((*[4]float64)(row[12:16]))
		a0, b0 = r0.MulAdd(bv, a0), r0.MulAdd(bw, b0)
		a1, b1 = r1.MulAdd(bv, a1), r1.MulAdd(bw, b1)
		a2, b2 = r2.MulAdd(bv, a2), r2.MulAdd(bw, b2)
		a3, b3 = r3.MulAdd(bv, a3), r3.MulAdd(bw, b3)
	}
	a0.Store((*[4]float64)(out[0:4]))
	a1.Store((*[4]float64)(out[4:8]))
	a2.Store((*[4]float64)(out[8:12]))
	a3.Store((*[4]float64)(out[12:16]))
	b0.Store((*[4]float64)(out2[0:4]))
	b1.Store((*[4]float64)(out2[4:8]))
	b2.Store((*[4]float64)(out2[8:12]))
	b3.Store((*[4]float64)(out2[12:16]))
	// Leave the upper halves of the vector registers clean: the caller's
	// float64 arithmetic is SSE code, which stalls on dirty ones.
	archsimd.ClearAVXUpperBits()
}
