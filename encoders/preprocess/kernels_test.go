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

// TestHorizontalKernel compares the horizontal pass in use with the
// scalar one byte for byte, for 3- and 4-byte pixels: downscales whose
// taps fit one block of eight and ones that need several, upscales, and
// kept widths that leave a scalar tail.
func TestHorizontalKernel(t *testing.T) {
	if horizontalKernel == nil {
		t.Skip("no vector horizontal pass in this build or on this CPU: the scalar pass is the one in use")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ in, size int }{
		{640, 224}, {1280, 224}, {1920, 224}, {3840, 224}, {300, 224}, {100, 224},
		{640, 13}, {97, 21}, {225, 224}, {500, 7},
	} {
		for _, bpp := range []int{3, 4} {
			t.Run(fmt.Sprintf("%d->%d/bpp=%d", tc.in, tc.size, bpp), func(t *testing.T) {
				out := tc.in * tc.size / min(tc.in, 360) // the long side of a 360-high frame
				out = max(out, tc.size)
				p := planAxis(tc.in, out, CropOffset(out, tc.size), tc.size)
				if !p.resample {
					t.Skip("same size: no horizontal pass")
				}
				first, last := p.span(tc.size)
				w := newWidePlan(&p, first, last)
				planes := make([]uint8, 3*w.planeLen)
				src := make([]uint8, tc.in*bpp)
				for row := range 4 {
					for i := range src {
						src[i] = uint8(r.IntN(256))
					}
					if row == 0 {
						// Hard edges make the bicubic lobes overshoot both ways.
						for i := range src {
							src[i] = uint8(255 * (i / bpp % 2))
						}
					}
					want := make([]uint8, 3*tc.size)
					if bpp == 3 {
						resampleRow3(want, src, &p)
					} else {
						resampleRow4(want, src, &p)
					}
					got := make([]uint8, 3*tc.size)
					horizontalKernel(got, src, bpp, w, planes)
					if !bytes.Equal(got, want) {
						t.Fatalf("row %d (%d taps): kernel %v\nscalar %v", row, w.taps, got, want)
					}
				}
			})
		}
	}
}
