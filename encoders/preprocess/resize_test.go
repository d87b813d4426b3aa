package preprocess

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"math"
	"testing"
)

// testPattern must match pattern() in testdata/pil_ref.py. Its sharp edges
// make the bicubic filter overshoot, exercising the clipping between passes.
func testPattern(x, y, c int) uint8 {
	return uint8((x*x*7 + y*13 + x*y*5 + c*71 + ((x*31+y*17)%11)*19) % 256)
}

func patternRGBA(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, color.RGBA{testPattern(x, y, 0), testPattern(x, y, 1), testPattern(x, y, 2), 0xff})
		}
	}
	return img
}

// asFormats returns the same picture in every layout with a fast path, plus
// one (Paletted-free generic) that goes through image.Image.At.
func asFormats(src *image.RGBA) map[string]image.Image {
	b := src.Bounds()
	nrgba := image.NewNRGBA(b)
	rgb := NewRGB24(make([]uint8, 3*b.Dx()*b.Dy()), b.Dx(), b.Dy())
	generic := image.NewRGBA64(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := src.RGBAAt(x, y)
			nrgba.SetNRGBA(x, y, color.NRGBA{c.R, c.G, c.B, 0xff})
			i := rgb.PixOffset(x, y)
			rgb.Pix[i], rgb.Pix[i+1], rgb.Pix[i+2] = c.R, c.G, c.B
			generic.Set(x, y, c)
		}
	}
	return map[string]image.Image{"RGBA": src, "NRGBA": nrgba, "RGB24": rgb, "generic": generic}
}

func TestPILReference(t *testing.T) {
	for _, tc := range pilReference {
		want, err := hex.DecodeString(tc.rgb)
		if err != nil {
			t.Fatal(err)
		}
		for name, src := range asFormats(patternRGBA(tc.w, tc.h)) {
			t.Run(fmt.Sprintf("%dx%d_%d_%s", tc.w, tc.h, tc.size, name), func(t *testing.T) {
				got := ResizeCrop(src, tc.size)
				if got.Bounds() != image.Rect(0, 0, tc.size, tc.size) {
					t.Fatalf("bounds %v", got.Bounds())
				}
				maxDiff, worst := 0, ""
				for y := range tc.size {
					for x := range tc.size {
						for c := range 3 {
							g := int(got.Pix[got.PixOffset(x, y)+c])
							w := int(want[(y*tc.size+x)*3+c])
							if d := abs(g - w); d > maxDiff {
								maxDiff, worst = d, fmt.Sprintf("(%d,%d,c%d) got %d want %d", x, y, c, g, w)
							}
						}
						if a := got.Pix[got.PixOffset(x, y)+3]; a != 0xff {
							t.Fatalf("alpha %d at (%d,%d)", a, x, y)
						}
					}
				}
				// Pillow's fixed-point arithmetic is reproduced exactly, so
				// anything but 0 means the algorithm drifted.
				if maxDiff > 0 {
					t.Errorf("max abs diff vs Pillow %d at %s", maxDiff, worst)
				}
			})
		}
	}
}

// Full-size frames, where an exact match is checked through a hash.
func TestPILReferenceFullSize(t *testing.T) {
	for _, tc := range pilReferenceSHA256 {
		for name, src := range asFormats(patternRGBA(tc.w, tc.h)) {
			got := ResizeCrop(src, tc.size)
			rgb := make([]byte, 0, 3*tc.size*tc.size)
			for i := 0; i < len(got.Pix); i += 4 {
				rgb = append(rgb, got.Pix[i:i+3]...)
			}
			if sum := sha256.Sum256(rgb); hex.EncodeToString(sum[:]) != tc.sha256 {
				t.Errorf("%dx%d -> %d (%s): output differs from Pillow", tc.w, tc.h, tc.size, name)
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestOutputSizeAndCropOffset(t *testing.T) {
	for _, tc := range []struct {
		w, h, size  int
		ow, oh      int
		offX, offY  int
		description string
	}{
		{320, 240, 224, 298, 224, 37, 0, "landscape: int(224*320/240) = 298"},
		{240, 320, 224, 224, 298, 0, 37, "portrait"},
		{1280, 720, 224, 398, 224, 87, 0, "16:9: (398-224)/2 = 87"},
		{13, 10, 5, 6, 5, 0, 0, "offset round(0.5) = 0 (half to even)"},
		{5, 7, 8, 8, 11, 0, 2, "offset round(1.5) = 2"},
		{7, 16, 7, 7, 16, 0, 4, "offset round(4.5) = 4"},
		{225, 224, 224, 225, 224, 0, 0, "one spare column: round(0.5) = 0"},
		{227, 224, 224, 227, 224, 2, 0, "three spare columns: round(1.5) = 2"},
		{100, 100, 224, 224, 224, 0, 0, "square upsample"},
	} {
		ow, oh := OutputSize(tc.w, tc.h, tc.size)
		if ow != tc.ow || oh != tc.oh {
			t.Errorf("%s: OutputSize(%d,%d,%d) = %dx%d, want %dx%d", tc.description, tc.w, tc.h, tc.size, ow, oh, tc.ow, tc.oh)
		}
		if x, y := CropOffset(ow, tc.size), CropOffset(oh, tc.size); x != tc.offX || y != tc.offY {
			t.Errorf("%s: crop offset (%d,%d), want (%d,%d)", tc.description, x, y, tc.offX, tc.offY)
		}
	}
}

func TestIdentityWhenSizesMatch(t *testing.T) {
	src := patternRGBA(16, 16)
	got := ResizeCrop(src, 16)
	for i := range src.Pix {
		if got.Pix[i] != src.Pix[i] {
			t.Fatalf("byte %d: got %d want %d", i, got.Pix[i], src.Pix[i])
		}
	}
	// Short side already equal: no resampling, only the centred crop.
	src = patternRGBA(21, 8)
	got = ResizeCrop(src, 8)
	off := CropOffset(21, 8) // round(6.5) = 6
	if off != 6 {
		t.Fatalf("offset %d", off)
	}
	for y := range 8 {
		for x := range 8 {
			if g, w := got.RGBAAt(x, y), src.RGBAAt(x+off, y); g != w {
				t.Fatalf("(%d,%d): got %v want %v", x, y, g, w)
			}
		}
	}
}

// A constant image stays constant: the normalised fixed-point weights sum to
// 1 within rounding that the +0.5 bias absorbs.
func TestConstantPreserved(t *testing.T) {
	for _, dims := range [][2]int{{300, 200}, {50, 90}, {7, 5}, {1000, 3}} {
		src := image.NewRGBA(image.Rect(0, 0, dims[0], dims[1]))
		for i := 0; i < len(src.Pix); i += 4 {
			src.Pix[i], src.Pix[i+1], src.Pix[i+2], src.Pix[i+3] = 200, 17, 255, 255
		}
		got := ResizeCrop(src, 24)
		for i := 0; i < len(got.Pix); i += 4 {
			if got.Pix[i] != 200 || got.Pix[i+1] != 17 || got.Pix[i+2] != 255 {
				t.Fatalf("%v: pixel %d = %v", dims, i/4, got.Pix[i:i+4])
			}
		}
	}
}

// Away from the borders the symmetric, normalised kernel reproduces a linear
// ramp exactly, so the output is the ramp sampled at the output pixel
// centres: for scale s, output x maps to input coordinate (x+0.5)*s - 0.5.
func TestGradientByHand(t *testing.T) {
	for _, tc := range []struct {
		name       string
		w, h, size int
		step       float64 // ramp increase per input pixel along x
	}{
		// 2x down: 64x16 -> 32x8 (crop to 8 keeps columns 12..19).
		{"down2x", 64, 16, 8, 3},
		// 2x up: 16x8 -> 32x16 (crop to 16 keeps columns 8..23).
		{"up2x", 16, 8, 16, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := image.NewRGBA(image.Rect(0, 0, tc.w, tc.h))
			for y := range tc.h {
				for x := range tc.w {
					v := uint8(float64(x)*tc.step + 10)
					src.SetRGBA(x, y, color.RGBA{v, v, 255 - v, 255})
				}
			}
			got := ResizeCrop(src, tc.size)
			ow, _ := OutputSize(tc.w, tc.h, tc.size)
			off := CropOffset(ow, tc.size)
			scale := float64(tc.w) / float64(ow)
			for x := range tc.size {
				in := (float64(x+off)+0.5)*scale - 0.5
				want := in*tc.step + 10
				for y := range tc.size {
					c := got.RGBAAt(x, y)
					if math.Abs(float64(c.R)-want) > 0.5 || c.G != c.R || math.Abs(float64(c.B)-(255-want)) > 0.5 {
						t.Fatalf("(%d,%d) = %v, want R=G≈%.2f, B≈%.2f", x, y, c, want, 255-want)
					}
				}
			}
		})
	}
}

func TestYCbCrMatchesConvertedRGB(t *testing.T) {
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio444} {
		src := image.NewYCbCr(image.Rect(0, 0, 37, 23), ratio)
		for i := range src.Y {
			src.Y[i] = uint8(i * 7)
		}
		for i := range src.Cb {
			src.Cb[i], src.Cr[i] = uint8(i*13), uint8(255-i*3)
		}
		ref := image.NewRGBA(src.Bounds())
		for y := range 23 {
			for x := range 37 {
				ref.Set(x, y, src.At(x, y))
			}
		}
		got, want := ResizeCrop(src, 11), ResizeCrop(ref, 11)
		for i := range want.Pix {
			if got.Pix[i] != want.Pix[i] {
				t.Fatalf("%v: byte %d got %d want %d", ratio, i, got.Pix[i], want.Pix[i])
			}
		}
	}
}

// A sub-image must be read from its own bounds, not its parent's origin.
func TestSubImage(t *testing.T) {
	full := patternRGBA(40, 30)
	sub := full.SubImage(image.Rect(5, 3, 29, 21)).(*image.RGBA)
	ref := image.NewRGBA(image.Rect(0, 0, 24, 18))
	for y := range 18 {
		for x := range 24 {
			ref.SetRGBA(x, y, full.RGBAAt(x+5, y+3))
		}
	}
	got, want := ResizeCrop(sub, 9), ResizeCrop(ref, 9)
	for i := range want.Pix {
		if got.Pix[i] != want.Pix[i] {
			t.Fatalf("byte %d got %d want %d", i, got.Pix[i], want.Pix[i])
		}
	}
}

// Premultiplied RGBA with partial alpha is read as its straight colour, the
// picture Pillow would get after convert("RGB") of the equivalent RGBA file.
func TestTranslucentRGBA(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for i := 0; i < len(src.Pix); i += 4 {
		src.Pix[i], src.Pix[i+1], src.Pix[i+2], src.Pix[i+3] = 100, 50, 0, 128
	}
	got := ResizeCrop(src, 4)
	want := color.NRGBAModel.Convert(color.RGBA{100, 50, 0, 128}).(color.NRGBA)
	if c := got.RGBAAt(1, 1); c.R != want.R || c.G != want.G || c.B != want.B || c.A != 255 {
		t.Fatalf("got %v want straight %v", c, want)
	}
}

func TestResizerReuse(t *testing.T) {
	r := NewResizer(12)
	a, b := patternRGBA(40, 30), patternRGBA(30, 40)
	for range 2 {
		for _, src := range []*image.RGBA{a, b} {
			got, want := r.ResizeCrop(src), ResizeCrop(src, 12)
			for i := range want.Pix {
				if got.Pix[i] != want.Pix[i] {
					t.Fatalf("reused resizer differs at byte %d", i)
				}
			}
		}
	}
}

func BenchmarkResizeCrop(b *testing.B) {
	for _, tc := range []struct {
		name string
		img  image.Image
	}{
		{"RGB24_640x360", NewRGB24(patternRGBA(640, 360).Pix[:640*360*3], 640, 360)},
		{"RGBA_1280x720", patternRGBA(1280, 720)},
		{"YCbCr420_1920x1080", image.NewYCbCr(image.Rect(0, 0, 1920, 1080), image.YCbCrSubsampleRatio420)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := NewResizer(224)
			b.ReportAllocs()
			for b.Loop() {
				r.ResizeCrop(tc.img)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
