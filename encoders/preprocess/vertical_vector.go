//go:build goexperiment.simd && amd64

package preprocess

import (
	"encoding/binary"
	"simd/archsimd"
)

// verticalKernel is the vertical pass for one output row: AVX2 where the
// CPU has it.
var verticalKernel = func() func(dst []uint8, acc []int32, tmp []uint8, off, stride int, k []int32) {
	if archsimd.X86.AVX2() {
		return verticalRowAVX2
	}
	return verticalRowPortable
}()

// verticalRowAVX2 is verticalRowPortable with eight bytes of the row at a
// time widened to int32 (VPMOVZXBD), each block summed over all taps in a
// register. Integer sums are exact in any order, so every byte is the one
// the portable code (and Pillow) gives.
func verticalRowAVX2(dst []uint8, acc []int32, tmp []uint8, off, stride int, k []int32) {
	n := len(dst)
	half := archsimd.BroadcastInt32x8(1 << (precisionBits - 1))
	cl := newClipper()
	i := 0
	// Each load reads sixteen bytes and widens the low eight, so a load
	// at i needs i+16 <= n; the last bytes of a row go to the scalar tail.
	for ; i+40 <= n; i += 32 {
		a0, a1, a2, a3 := half, half, half, half
		p := off + i
		for _, c := range k {
			cv := archsimd.BroadcastInt32x8(c)
			row := (*[40]uint8)(tmp[p : p+40])
			a0 = a0.Add(archsimd.LoadUint8x16((*[16]uint8)(row[0:16])).ExtendLo8ToUint32().AsInt32x8().Mul(cv))
			a1 = a1.Add(archsimd.LoadUint8x16((*[16]uint8)(row[8:24])).ExtendLo8ToUint32().AsInt32x8().Mul(cv))
			a2 = a2.Add(archsimd.LoadUint8x16((*[16]uint8)(row[16:32])).ExtendLo8ToUint32().AsInt32x8().Mul(cv))
			a3 = a3.Add(archsimd.LoadUint8x16((*[16]uint8)(row[24:40])).ExtendLo8ToUint32().AsInt32x8().Mul(cv))
			p += stride
		}
		d := dst[i : i+32]
		binary.LittleEndian.PutUint64(d[0:8], cl.bytes(a0))
		binary.LittleEndian.PutUint64(d[8:16], cl.bytes(a1))
		binary.LittleEndian.PutUint64(d[16:24], cl.bytes(a2))
		binary.LittleEndian.PutUint64(d[24:32], cl.bytes(a3))
	}
	for ; i+16 <= n; i += 8 {
		a := half
		p := off + i
		for _, c := range k {
			a = a.Add(archsimd.LoadUint8x16((*[16]uint8)(tmp[p : p+16])).ExtendLo8ToUint32().AsInt32x8().Mul(archsimd.BroadcastInt32x8(c)))
			p += stride
		}
		binary.LittleEndian.PutUint64(dst[i:i+8], cl.bytes(a))
	}
	// The callers' float code is SSE, which stalls on dirty upper halves.
	archsimd.ClearAVXUpperBits()
	verticalRowPortable(dst[i:], acc[i:], tmp, off+i, stride, k)
}
