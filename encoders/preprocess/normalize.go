package preprocess

import (
	"fmt"
	"image"
)

// CLIPMean is the per-channel RGB mean CLIP was trained with. It is a
// function so callers cannot change the shared values.
func CLIPMean() [3]float32 { return [3]float32{0.48145466, 0.4578275, 0.40821073} }

// CLIPStd is the per-channel RGB standard deviation CLIP was trained with.
func CLIPStd() [3]float32 { return [3]float32{0.26862954, 0.26130258, 0.27577711} }

// Normalize writes imgs as float32 NCHW into dst: torchvision's ToTensor
// (x / 255) followed by Normalize(mean, std), evaluated in float32 in the same
// order so values match PyTorch bit for bit. All images must have the same
// bounds and len(dst) must be len(imgs)*3*w*h; anything else is a caller bug
// and panics.
func Normalize(dst []float32, imgs []*image.RGBA, mean, std [3]float32) {
	if len(imgs) == 0 {
		if len(dst) != 0 {
			panic(fmt.Sprintf("preprocess: Normalize: no images but len(dst) = %d", len(dst)))
		}
		return
	}
	b := imgs[0].Bounds()
	w, h := b.Dx(), b.Dy()
	plane := w * h
	if want := len(imgs) * 3 * plane; len(dst) != want {
		panic(fmt.Sprintf("preprocess: Normalize: len(dst) = %d, want %d (%d images of %dx%d)", len(dst), want, len(imgs), w, h))
	}
	// A lookup table per channel: 768 divisions instead of three per pixel,
	// with identical float32 results.
	var lut [3][256]float32
	for c := range 3 {
		for v := range 256 {
			x := float32(v) / 255
			x -= mean[c]
			lut[c][v] = x / std[c]
		}
	}
	for n, img := range imgs {
		if img.Bounds().Dx() != w || img.Bounds().Dy() != h {
			panic(fmt.Sprintf("preprocess: Normalize: image %d is %v, want %dx%d", n, img.Bounds(), w, h))
		}
		r := dst[(3*n+0)*plane : (3*n+1)*plane]
		g := dst[(3*n+1)*plane : (3*n+2)*plane]
		bl := dst[(3*n+2)*plane : (3*n+3)*plane]
		for y := range h {
			i := img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y)
			px := img.Pix[i : i+4*w]
			o := y * w
			for x := range w {
				r[o+x] = lut[0][px[4*x]]
				g[o+x] = lut[1][px[4*x+1]]
				bl[o+x] = lut[2][px[4*x+2]]
			}
		}
	}
}
