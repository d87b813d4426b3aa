package preprocess

import (
	"image"
	"image/color"
)

// RGB24 is an opaque image stored as packed 8-bit R, G, B samples, the layout
// ffmpeg writes for pix_fmt rgb24. Wrapping decoder output in it lets
// ResizeCrop read frames in place instead of expanding them to RGBA first.
type RGB24 struct {
	Pix    []uint8
	Stride int
	Rect   image.Rectangle
}

// NewRGB24 returns an RGB24 image over pix, which must hold at least
// 3*w*h bytes laid out row after row without padding.
func NewRGB24(pix []uint8, w, h int) *RGB24 {
	return &RGB24{Pix: pix[:3*w*h], Stride: 3 * w, Rect: image.Rect(0, 0, w, h)}
}

func (m *RGB24) ColorModel() color.Model { return color.RGBAModel }

func (m *RGB24) Bounds() image.Rectangle { return m.Rect }

func (m *RGB24) At(x, y int) color.Color {
	if !(image.Point{x, y}.In(m.Rect)) {
		return color.RGBA{}
	}
	i := m.PixOffset(x, y)
	return color.RGBA{m.Pix[i], m.Pix[i+1], m.Pix[i+2], 0xff}
}

// PixOffset is the index of the first byte of pixel (x, y) in Pix.
func (m *RGB24) PixOffset(x, y int) int {
	return (y-m.Rect.Min.Y)*m.Stride + (x-m.Rect.Min.X)*3
}

// Opaque reports true: the format has no alpha.
func (m *RGB24) Opaque() bool { return true }
