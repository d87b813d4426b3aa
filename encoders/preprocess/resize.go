// Package preprocess turns decoded frames into CLIP model input with the same
// numbers the reference Python pipeline produces: torchvision's
// Resize(size, BICUBIC) on a PIL image, CenterCrop(size), ToTensor and
// Normalize. Embeddings are compared against ones computed in Python, so the
// resampler reproduces Pillow's ImagingResample (fixed-point, two passes)
// rather than using a generic Go scaler.
package preprocess

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"math"
)

// Pillow's 8-bit resampler keeps coefficients as fixed point with this many
// fractional bits (Resample.c: PRECISION_BITS = 32 - 8 - 2), leaving room for
// 8-bit samples times coefficients that may sum to more than one.
const precisionBits = 22

// bicubicSupport is the radius of Pillow's bicubic filter before scaling.
const bicubicSupport = 2.0

// bicubic is Pillow's cubic convolution kernel with a = -0.5. The explicit
// float64 conversions stop the compiler from fusing multiply-adds, which would
// change the last bits of the coefficients compared with Pillow's C build.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64((a+2)*x)-(a+3))*x*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

// OutputSize is the size torchvision's Resize(size) gives a w x h image: the
// short side becomes size and the long side int(size * long / short).
func OutputSize(w, h, size int) (int, int) {
	if w <= h {
		return size, int(float64(size*h) / float64(w))
	}
	return int(float64(size*w) / float64(h)), size
}

// CropOffset is torchvision's CenterCrop offset along one axis:
// int(round((n - size) / 2.0)), where Python rounds halves to even.
func CropOffset(n, size int) int {
	return int(math.RoundToEven(float64(n-size) / 2.0))
}

// axisPlan holds the fixed-point filter for the output positions of one axis
// that survive the center crop.
type axisPlan struct {
	resample bool    // false when the axis keeps its size: Pillow skips the pass
	offset   int     // first kept output position (crop offset)
	ksize    int     // coefficient slots per output position
	bounds   []int   // per kept output: first input index, number of taps
	coeffs   []int32 // per kept output: ksize fixed-point weights
}

// planAxis mirrors Pillow's precompute_coeffs and normalize_coeffs_8bpc for
// an inSize -> outSize resample, keeping only outputs [offset, offset+keep).
func planAxis(inSize, outSize, offset, keep int) axisPlan {
	p := axisPlan{resample: inSize != outSize, offset: offset}
	if !p.resample {
		return p
	}
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := bicubicSupport * filterscale
	p.ksize = int(math.Ceil(support))*2 + 1
	p.bounds = make([]int, 2*keep)
	p.coeffs = make([]int32, keep*p.ksize)
	w := make([]float64, p.ksize)
	for i := range keep {
		xx := offset + i
		center := float64(float64(xx)+0.5) * scale
		ss := 1 / filterscale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		ww := 0.0
		for x := range xmax {
			w[x] = bicubic(float64(float64(x+xmin)-center+0.5) * ss)
			ww += w[x]
		}
		k := p.coeffs[i*p.ksize : (i+1)*p.ksize]
		for x := range xmax {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			// C's (int) truncates toward zero, as Go's conversion does.
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		p.bounds[2*i] = xmin
		p.bounds[2*i+1] = xmax
	}
	return p
}

// span is the range of input indices the kept outputs read.
func (p *axisPlan) span(keep int) (first, last int) {
	if !p.resample {
		return p.offset, p.offset + keep
	}
	n := len(p.bounds) / 2
	return p.bounds[0], p.bounds[2*(n-1)] + p.bounds[2*(n-1)+1]
}

// clip8 is Pillow's clip8: drop the fraction, saturate to a byte.
func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// Resizer does ResizeCrop while reusing coefficients and scratch memory across
// calls with the same source size, which is the common case for the frames of
// one video. A Resizer is not safe for concurrent use; the zero value is not
// usable, call NewResizer.
type Resizer struct {
	size int

	srcW, srcH int
	h, v       axisPlan
	rowFirst   int     // first source row read by the vertical filter
	rowLast    int     // one past the last source row read
	colFirst   int     // first source column read by the horizontal filter
	colLast    int     // one past the last source column read
	tmp        []uint8 // horizontal pass output: RGB rows of size pixels
	row        []uint8 // one source row converted to RGB for slow paths
	acc        []int32 // vertical pass accumulators for one output row
	line       []uint8 // one output row as RGB
	wide       *widePlan
	planes     []uint8 // one source row's read columns, a plane per channel
}

// NewResizer returns a Resizer producing size x size crops.
func NewResizer(size int) *Resizer {
	if size <= 0 {
		panic(fmt.Sprintf("preprocess: crop size %d must be positive", size))
	}
	return &Resizer{size: size}
}

// Size is the side of the square crops the Resizer produces.
func (r *Resizer) Size() int { return r.size }

func (r *Resizer) prepare(w, h int) {
	if w == r.srcW && h == r.srcH && r.tmp != nil {
		return
	}
	s := r.size
	ow, oh := OutputSize(w, h, s)
	r.srcW, r.srcH = w, h
	r.h = planAxis(w, ow, CropOffset(ow, s), s)
	r.v = planAxis(h, oh, CropOffset(oh, s), s)
	r.rowFirst, r.rowLast = r.v.span(s)
	r.colFirst, r.colLast = r.h.span(s)
	r.tmp = make([]uint8, (r.rowLast-r.rowFirst)*s*3)
	r.row = make([]uint8, w*3)
	r.acc = make([]int32, s*3)
	r.line = make([]uint8, s*3)
	r.wide, r.planes = nil, nil
	if horizontalKernel != nil && r.h.resample {
		r.wide = newWidePlan(&r.h, r.colFirst, r.colLast)
		r.planes = make([]uint8, 3*r.wide.planeLen)
	}
}

// ResizeCrop is torchvision's Resize(size, BICUBIC) followed by
// CenterCrop(size) on src converted to RGB, returning a size x size opaque
// image. Only the output pixels that survive the crop are computed; each is
// bit-identical to what the full resize would give.
func ResizeCrop(src image.Image, size int) *image.RGBA {
	return NewResizer(size).ResizeCrop(src)
}

// ResizeCrop is the package-level ResizeCrop with the Resizer's size. The
// returned image is newly allocated and owned by the caller.
func (r *Resizer) ResizeCrop(src image.Image) *image.RGBA {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		panic(fmt.Sprintf("preprocess: empty source image %v", b))
	}
	r.prepare(w, h)
	rows := newRowReader(src, r.row)

	// Horizontal pass over only the rows the vertical filter reads.
	s := r.size
	for y := r.rowFirst; y < r.rowLast; y++ {
		px, bpp := rows.row(y, r.colFirst, r.colLast)
		dst := r.tmp[(y-r.rowFirst)*s*3 : (y-r.rowFirst+1)*s*3]
		switch {
		case !r.h.resample:
			copyCols(dst, px[r.h.offset*bpp:], bpp)
		case r.wide != nil:
			horizontalKernel(dst, px, bpp, r.wide, r.planes)
		case bpp == 4:
			resampleRow4(dst, px, &r.h)
		default:
			resampleRow3(dst, px, &r.h)
		}
	}

	out := image.NewRGBA(image.Rect(0, 0, s, s))
	for yy := range s {
		o := out.Pix[yy*out.Stride : yy*out.Stride+4*s]
		if !r.v.resample {
			y := r.v.offset + yy - r.rowFirst
			src := r.tmp[y*s*3 : (y+1)*s*3]
			for x := range s {
				o[4*x], o[4*x+1], o[4*x+2], o[4*x+3] = src[3*x], src[3*x+1], src[3*x+2], 0xff
			}
			continue
		}
		ymin, n := r.v.bounds[2*yy], r.v.bounds[2*yy+1]
		line := r.line
		verticalKernel(line, r.acc, r.tmp, (ymin-r.rowFirst)*s*3, s*3, r.v.coeffs[yy*r.v.ksize:yy*r.v.ksize+n])
		for x := range s {
			o[4*x], o[4*x+1], o[4*x+2], o[4*x+3] = line[3*x], line[3*x+1], line[3*x+2], 0xff
		}
	}
	return out
}

// verticalRowPortable computes len(dst) bytes of one output row of the
// vertical pass: byte i sums tmp[off+i+j*stride] times k[j] over the taps,
// in Pillow's fixed point, and is clipped. acc is scratch of len(dst).
func verticalRowPortable(dst []uint8, acc []int32, tmp []uint8, off, stride int, k []int32) {
	acc = acc[:len(dst)]
	for i := range acc {
		acc[i] = 1 << (precisionBits - 1)
	}
	// Row-at-a-time accumulation reads the temporary image sequentially;
	// integer sums make the result identical to Pillow's pixel order.
	for j, c := range k {
		src := tmp[off+j*stride:]
		src = src[:len(acc)]
		for i, v := range src {
			acc[i] += int32(v) * c
		}
	}
	for i, v := range acc {
		dst[i] = clip8(v)
	}
}

func copyCols(dst, src []uint8, bpp int) {
	n := len(dst) / 3
	if bpp == 3 {
		copy(dst, src[:3*n])
		return
	}
	for x := range n {
		dst[3*x], dst[3*x+1], dst[3*x+2] = src[bpp*x], src[bpp*x+1], src[bpp*x+2]
	}
}

func resampleRow3(dst, src []uint8, p *axisPlan) {
	const half = 1 << (precisionBits - 1)
	for xx := range len(dst) / 3 {
		xmin, n := p.bounds[2*xx], p.bounds[2*xx+1]
		k := p.coeffs[xx*p.ksize : xx*p.ksize+n]
		px := src[3*xmin : 3*(xmin+n)]
		s0, s1, s2 := int32(half), int32(half), int32(half)
		// Advancing px instead of indexing it leaves one bounds check per tap.
		for _, c := range k {
			s0 += int32(px[0]) * c
			s1 += int32(px[1]) * c
			s2 += int32(px[2]) * c
			px = px[3:]
		}
		dst[3*xx], dst[3*xx+1], dst[3*xx+2] = clip8(s0), clip8(s1), clip8(s2)
	}
}

func resampleRow4(dst, src []uint8, p *axisPlan) {
	const half = 1 << (precisionBits - 1)
	for xx := range len(dst) / 3 {
		xmin, n := p.bounds[2*xx], p.bounds[2*xx+1]
		k := p.coeffs[xx*p.ksize : xx*p.ksize+n]
		px := src[4*xmin : 4*(xmin+n)]
		s0, s1, s2 := int32(half), int32(half), int32(half)
		for _, c := range k {
			p := binary.LittleEndian.Uint32(px)
			s0 += int32(p&0xff) * c
			s1 += int32(p>>8&0xff) * c
			s2 += int32(p>>16&0xff) * c
			px = px[4:]
		}
		dst[3*xx], dst[3*xx+1], dst[3*xx+2] = clip8(s0), clip8(s1), clip8(s2)
	}
}

// rowReader yields source rows as packed 8-bit RGB (3 bytes per pixel) or
// RGBX (4 bytes per pixel, the fourth ignored), starting at the image's left
// edge. Formats stored that way are returned without copying; others are
// converted only in the columns the filter reads, since the center crop
// usually discards a good part of the long side.
type rowReader struct {
	src     image.Image
	b       image.Rectangle
	scratch []uint8
}

func newRowReader(src image.Image, scratch []uint8) rowReader {
	return rowReader{src: src, b: src.Bounds(), scratch: scratch}
}

// row returns row y counted from the top of the image; only columns
// [x0, x1) are guaranteed to be filled in.
func (rr *rowReader) row(y, x0, x1 int) ([]uint8, int) {
	b := rr.b
	w := b.Dx()
	yy := b.Min.Y + y
	switch m := rr.src.(type) {
	case *RGB24:
		i := m.PixOffset(b.Min.X, yy)
		return m.Pix[i : i+3*w], 3
	case *image.NRGBA:
		// Pillow's convert("RGB") drops straight alpha, so do the same.
		i := m.PixOffset(b.Min.X, yy)
		return m.Pix[i : i+4*w], 4
	case *image.RGBA:
		i := m.PixOffset(b.Min.X, yy)
		px := m.Pix[i : i+4*w]
		if opaqueRow(px[4*x0 : 4*x1]) {
			return px, 4
		}
		// Premultiplied pixels become straight colour first, which is what
		// Pillow sees for the same picture.
		d := rr.scratch
		for x := x0; x < x1; x++ {
			c := color.NRGBAModel.Convert(color.RGBA{px[4*x], px[4*x+1], px[4*x+2], px[4*x+3]}).(color.NRGBA)
			d[3*x], d[3*x+1], d[3*x+2] = c.R, c.G, c.B
		}
		return d, 3
	case *image.YCbCr:
		d := rr.scratch
		yi := m.YOffset(b.Min.X, yy)
		for x := x0; x < x1; x++ {
			ci := m.COffset(b.Min.X+x, yy)
			d[3*x], d[3*x+1], d[3*x+2] = color.YCbCrToRGB(m.Y[yi+x], m.Cb[ci], m.Cr[ci])
		}
		return d, 3
	default:
		d := rr.scratch
		for x := x0; x < x1; x++ {
			c := color.NRGBAModel.Convert(rr.src.At(b.Min.X+x, yy)).(color.NRGBA)
			d[3*x], d[3*x+1], d[3*x+2] = c.R, c.G, c.B
		}
		return d, 3
	}
}

func opaqueRow(px []uint8) bool {
	for i := 3; i < len(px); i += 4 {
		if px[i] != 0xff {
			return false
		}
	}
	return true
}
