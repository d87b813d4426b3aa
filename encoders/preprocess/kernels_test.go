package preprocess

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestVerticalKernel compares the vertical pass in use (AVX2 where the
// build and the CPU have it) with the portable code byte for byte: row
// lengths around the vector blocks and the scalar tail, up to 20 taps,
// and coefficients large enough to clip at both ends.
func TestVerticalKernel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 7, 8, 15, 16, 17, 24, 39, 40, 41, 48, 71, 72, 73, 672, 675} {
		for _, taps := range []int{1, 2, 5, 8, 20} {
			t.Run(fmt.Sprintf("n=%d/taps=%d", n, taps), func(t *testing.T) {
				stride := n + r.IntN(5)
				rows := taps + 3
				tmp := make([]uint8, rows*stride)
				for i := range tmp {
					tmp[i] = uint8(r.IntN(256))
				}
				k := make([]int32, taps)
				for j := range k {
					// Pillow's coefficients sum to 1<<22; single ones reach past
					// it and below zero, so sums overshoot both ways.
					k[j] = int32(r.IntN(3<<22)) - 1<<22
				}
				for off := range 3 {
					if off*stride+taps*stride > len(tmp) {
						break
					}
					want := make([]uint8, n)
					verticalRowPortable(want, make([]int32, n), tmp, off*stride, stride, k)
					got := make([]uint8, n)
					verticalKernel(got, make([]int32, n), tmp, off*stride, stride, k)
					if !bytes.Equal(got, want) {
						t.Fatalf("offset row %d: kernel %v, portable %v", off, got, want)
					}
				}
			})
		}
	}
}
