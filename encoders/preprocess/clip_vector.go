//go:build goexperiment.simd && amd64

package preprocess

import "simd/archsimd"

// clipper turns eight fixed-point sums into Pillow's clip8 bytes without
// leaving the registers: a store of the vector followed by byte loads of
// it would stall on store forwarding.
type clipper struct {
	zero, top archsimd.Int32x8
	gather    archsimd.Int8x32  // each 128-bit group's four low bytes to its front
	join      archsimd.Uint32x8 // the two groups' fronts side by side
}

func newClipper() clipper {
	g := [32]int8{0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
		0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}
	j := [8]uint32{0, 4, 0, 0, 0, 0, 0, 0}
	return clipper{
		zero:   archsimd.BroadcastInt32x8(0),
		top:    archsimd.BroadcastInt32x8(255),
		gather: archsimd.LoadInt8x32(&g),
		join:   archsimd.LoadUint32x8(&j),
	}
}

// bytes returns clip8 of the eight lanes of s, lane l in byte l.
func (c *clipper) bytes(s archsimd.Int32x8) uint64 {
	v := s.ShiftAllRight(precisionBits).Max(c.zero).Min(c.top)
	return v.AsUint8x32().PermuteOrZeroGrouped(c.gather).AsInt32x8().Permute(c.join).GetLo().AsUint64x2().GetElem(0)
}
