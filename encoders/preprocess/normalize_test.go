package preprocess

import (
	"image"
	"image/color"
	"math"
	"testing"
)

func solid(size int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func TestNormalizePureColours(t *testing.T) {
	mean, std := CLIPMean(), CLIPStd()
	imgs := []*image.RGBA{
		solid(3, color.RGBA{255, 0, 0, 255}),
		solid(3, color.RGBA{0, 255, 0, 255}),
		solid(3, color.RGBA{255, 255, 255, 255}),
		solid(3, color.RGBA{0, 0, 0, 255}),
	}
	// (x/255 - mean) / std, hand-evaluated in float64.
	hi := [3]float64{(1 - 0.48145466) / 0.26862954, (1 - 0.4578275) / 0.26130258, (1 - 0.40821073) / 0.27577711}
	lo := [3]float64{-0.48145466 / 0.26862954, -0.4578275 / 0.26130258, -0.40821073 / 0.27577711}
	want := [][3]float64{
		{hi[0], lo[1], lo[2]},
		{lo[0], hi[1], lo[2]},
		hi,
		lo,
	}
	dst := make([]float32, len(imgs)*3*9)
	Normalize(dst, imgs, mean, std)
	for n := range imgs {
		for c := range 3 {
			for i := range 9 {
				got := float64(dst[(n*3+c)*9+i])
				if math.Abs(got-want[n][c]) > 1e-5 {
					t.Fatalf("image %d channel %d pixel %d: %v want %v", n, c, i, got, want[n][c])
				}
			}
		}
	}
	// Spot values a reader can check: white red channel ≈ 1.9303.
	if v := dst[2*27]; math.Abs(float64(v)-1.9303361) > 1e-5 {
		t.Fatalf("white R = %v", v)
	}
}

func TestNormalizeLayoutNCHW(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(i) // R,G,B,A of pixel p are 4p..4p+3
	}
	dst := make([]float32, 12)
	Normalize(dst, []*image.RGBA{img}, [3]float32{}, [3]float32{1, 1, 1})
	for c := range 3 {
		for p := range 4 {
			if got, want := dst[c*4+p], float32(4*p+c)/255; got != want {
				t.Fatalf("c%d p%d: %v want %v", c, p, got, want)
			}
		}
	}
}

func TestNormalizePanicsOnMismatch(t *testing.T) {
	img := solid(2, color.RGBA{})
	for name, fn := range map[string]func(){
		"short dst": func() { Normalize(make([]float32, 11), []*image.RGBA{img}, CLIPMean(), CLIPStd()) },
		"long dst":  func() { Normalize(make([]float32, 13), []*image.RGBA{img}, CLIPMean(), CLIPStd()) },
		"mixed size": func() {
			Normalize(make([]float32, 24), []*image.RGBA{img, solid(3, color.RGBA{})}, CLIPMean(), CLIPStd())
		},
		"no images": func() { Normalize(make([]float32, 1), nil, CLIPMean(), CLIPStd()) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			fn()
		})
	}
}

func BenchmarkNormalize(b *testing.B) {
	imgs := make([]*image.RGBA, 12)
	for i := range imgs {
		imgs[i] = patternRGBA(224, 224)
	}
	dst := make([]float32, len(imgs)*3*224*224)
	b.ReportAllocs()
	for b.Loop() {
		Normalize(dst, imgs, CLIPMean(), CLIPStd())
	}
	b.ReportMetric(float64(b.N*len(imgs))/b.Elapsed().Seconds(), "frames/s")
}
