package query

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"

	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

// meanColour is an image tower that embeds an image as its mean normalised
// colour, so a red picture lands near red clips.
type meanColour struct {
	size   int
	images int
}

func (m *meanColour) ImageSize() int { return m.size }
func (m *meanColour) Dim() int       { return 3 }
func (m *meanColour) EncodeImages(_ context.Context, pixels []float32, n int) ([][]float32, error) {
	plane := m.size * m.size
	out := make([][]float32, n)
	for i := range n {
		v := make([]float32, 3)
		for c := range 3 {
			var s float32
			for _, x := range pixels[(i*3+c)*plane : (i*3+c+1)*plane] {
				s += x
			}
			// Shift so that the vector points at the colour.
			v[c] = s/float32(plane) + 2
		}
		out[i] = v
	}
	m.images += n
	return out, nil
}

func encodeImage(t *testing.T, format string, w, h int, c color.Color) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	var err error
	if format == "png" {
		err = png.Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func colourStore() sliceStore {
	// Each clip's vector is where meanColour puts a picture of its colour.
	red, green, blue := Normalize([]float32{2 + 2.1, 2 - 1.7, 2 - 1.5}), Normalize([]float32{2 - 1.8, 2 + 2.1, 2 - 1.5}), Normalize([]float32{2 - 1.8, 2 - 1.7, 2 + 2.1})
	return sliceStore{
		{ID: "r0", Vector: red, Payload: sinks.Payload{VideoID: "red", ClipIndex: 0}},
		{ID: "r1", Vector: Normalize([]float32{red[0], red[1] + 0.05, red[2]}), Payload: sinks.Payload{VideoID: "red", ClipIndex: 1}},
		{ID: "g0", Vector: green, Payload: sinks.Payload{VideoID: "green", ClipIndex: 0}},
		{ID: "b0", Vector: blue, Payload: sinks.Payload{VideoID: "blue", ClipIndex: 0}},
	}
}

// TestQueryByExample answers image and clip queries in one micro-batch
// with a text query, and refuses bad ones alone.
func TestQueryByExample(t *testing.T) {
	ctx := context.Background()
	tower := &meanColour{size: 8}
	h, err := New(ctx, Config{Settings: Settings{Rerank: RerankSymmetric, BankSize: 8}}, mapEncoder{"x": unit(0.9, 0.1)}, colourStore(), nil,
		WithImageEncoder(tower, [3]float32{}, [3]float32{}))
	if err != nil {
		t.Fatal(err)
	}
	red, blue := color.RGBA{250, 10, 10, 255}, color.RGBA{10, 10, 250, 255}
	queries := []schemas.Query{
		{QueryID: "png", Image: encodeImage(t, "png", 40, 30, blue)},
		{QueryID: "jpeg", Image: encodeImage(t, "jpeg", 30, 50, red)},
		{QueryID: "text", Text: "x"},
		{QueryID: "like", Like: &schemas.ClipRef{VideoID: "red", ClipIndex: 0}, TopK: 2},
		{QueryID: "not-base64", Image: "%%%"},
		{QueryID: "not-an-image", Image: base64.StdEncoding.EncodeToString([]byte("GIF89a but not really"))},
		{QueryID: "unknown-clip", Like: &schemas.ClipRef{VideoID: "red", ClipIndex: 9}},
		{QueryID: "unknown-video", Like: &schemas.ClipRef{VideoID: "mauve", ClipIndex: 0}},
	}
	res, err := h.Answer(ctx, queries)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		first   string // video of the first hit; "" for an error
		errText string
	}{
		{"blue", ""},
		{"red", ""},
		{"", ""}, // text: any answer without error
		{"red", ""},
		{"", "not valid base64"},
		{"", "does not decode as JPEG or PNG"},
		{"", `video "red" clip 9 is not in the index`},
		{"", `video "mauve" clip 0 is not in the index`},
	}
	for i, tt := range tests {
		r := res[i]
		if r.QueryID != queries[i].QueryID {
			t.Fatalf("result %d is for %s", i, r.QueryID)
		}
		if tt.errText != "" {
			if r.Error == nil || r.Error.Code != schemas.ErrCodeInvalidQuery || !strings.Contains(r.Error.Message, tt.errText) {
				t.Errorf("%s: error %+v, want invalid_query mentioning %q", r.QueryID, r.Error, tt.errText)
			}
			continue
		}
		if r.Error != nil || len(r.Hits) == 0 {
			t.Errorf("%s: error %+v, %d hits", r.QueryID, r.Error, len(r.Hits))
			continue
		}
		if tt.first != "" && r.Hits[0].VideoID != tt.first {
			t.Errorf("%s: first hit %s, want %s", r.QueryID, r.Hits[0].VideoID, tt.first)
		}
	}
	// The clip itself is left out; its neighbour comes first.
	like := res[3]
	for _, hit := range like.Hits {
		if hit.VideoID == "red" && hit.ClipIndex == 0 {
			t.Errorf("like query returned the clip itself: %+v", like.Hits)
		}
	}
	if len(like.Hits) != 2 || like.Hits[0].ClipIndex != 1 {
		t.Errorf("like hits %+v, want red/1 first and two hits", like.Hits)
	}
	if tower.images != 2 {
		t.Errorf("the image tower embedded %d images, want the 2 that decode", tower.images)
	}
	// Only the text query joined the bank.
	if n := h.BankLen(); n != 1 {
		t.Errorf("bank holds %d embeddings, want 1 (image and clip queries stay out)", n)
	}
}

func TestImageQueryWithoutImageEncoder(t *testing.T) {
	ctx := context.Background()
	h, err := New(ctx, Config{}, mapEncoder{}, colourStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Answer(ctx, []schemas.Query{{QueryID: "1", Image: encodeImage(t, "png", 4, 4, color.White)}})
	if err != nil {
		t.Fatal(err)
	}
	if e := res[0].Error; e == nil || !strings.Contains(e.Message, "no image encoder") {
		t.Errorf("error %+v, want one saying there is no image encoder", e)
	}
}

// TestQueryImageIsCroppedLikeFrames checks the tower gets the same
// centre crop the sample stage makes: a picture whose left and right
// thirds are another colour embeds like the middle colour alone.
func TestQueryImageIsCroppedLikeFrames(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 90, 30))
	for y := range 30 {
		for x := range 90 {
			c := color.RGBA{250, 10, 10, 255}
			if x < 30 || x >= 60 {
				c = color.RGBA{10, 250, 10, 255}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	crop, err := decodeQueryImage(base64.StdEncoding.EncodeToString(buf.Bytes()), 8)
	if err != nil {
		t.Fatal(err)
	}
	if b := crop.Bounds(); b.Dx() != 8 || b.Dy() != 8 {
		t.Fatalf("crop %v, want 8x8", b)
	}
	for y := range 8 {
		for x := range 8 {
			if c := crop.RGBAAt(x, y); c.R < 200 || c.G > 60 {
				t.Fatalf("crop pixel (%d,%d) = %v, want the red middle only", x, y, c)
			}
		}
	}
}
