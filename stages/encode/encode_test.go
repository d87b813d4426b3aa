package encode_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vidx/vidx/encoders"
	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/encode"
)

const (
	size  = 16
	model = "tiny-clip"
)

// meanEncoder embeds each image as the mean of its three normalised
// channels, read from the NCHW pixels it is given.
type meanEncoder struct {
	mu    sync.Mutex
	calls []int // n of every EncodeImages call
	err   error
}

var _ encoders.ImageEncoder = (*meanEncoder)(nil)

func (e *meanEncoder) ImageSize() int { return size }
func (e *meanEncoder) Dim() int       { return 3 }

func (e *meanEncoder) EncodeImages(_ context.Context, pixels []float32, n int) ([][]float32, error) {
	e.mu.Lock()
	e.calls = append(e.calls, n)
	e.mu.Unlock()
	if e.err != nil {
		return nil, e.err
	}
	plane := size * size
	if len(pixels) != n*3*plane {
		return nil, fmt.Errorf("got %d floats for %d images", len(pixels), n)
	}
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, 3)
		for c := range 3 {
			var s float64
			for _, v := range pixels[(3*i+c)*plane : (3*i+c+1)*plane] {
				s += float64(v)
			}
			out[i][c] = float32(s / float64(plane))
		}
	}
	return out, nil
}

func solid(px int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, px, px))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	return img
}

// frameColour gives every frame of a test batch a distinct colour.
func frameColour(clip, frame int) color.RGBA {
	return color.RGBA{R: uint8(20 + 40*clip), G: uint8(10 + 30*frame), B: uint8(200 - 50*clip - 10*frame), A: 255}
}

type clipSpec struct {
	index  int
	frames int
	codec  string
	px     int      // size of the drawn frames; defaults to size
	header int      // Size in the clip header; defaults to px
	raw    [][]byte // frame bytes used as they are
}

func clipMsg(t *testing.T, c clipSpec) pipeline.Message {
	t.Helper()
	if c.codec == "" {
		c.codec = schemas.CodecPNG
	}
	if c.px == 0 {
		c.px = size
	}
	if c.header == 0 {
		c.header = c.px
	}
	frames := c.raw
	if frames == nil {
		for f := range c.frames {
			b, err := schemas.EncodeFrame(solid(c.px, frameColour(c.index, f)), c.codec, 100)
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, b)
		}
	}
	times := make([]float64, len(frames))
	for i := range times {
		times[i] = float64(c.index*10 + i)
	}
	clip := schemas.Clip{
		Header: schemas.ClipHeader{
			VideoID:    fmt.Sprint("video", c.index),
			Source:     "msrvtt",
			ClipIndex:  c.index,
			StartS:     float64(c.index * 10),
			EndS:       float64(c.index*10 + 10),
			FrameTimes: times,
			Metadata:   map[string]string{"title": "t"},
			Codec:      c.codec,
			Size:       c.header,
		},
		Frames: frames,
	}
	value, err := schemas.EncodeClip(&clip)
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.Message{Topic: "clips", Key: []byte(clip.Header.VideoID), Value: value}
}

// normalised is what the handler must feed the encoder for one channel
// value: ToTensor then Normalize, in float32.
func normalised(v uint8, mean, std float32) float32 {
	x := float32(v) / 255
	x -= mean
	return x / std
}

func expected(c color.RGBA, mean, std [3]float32) []float32 {
	return []float32{normalised(c.R, mean[0], std[0]), normalised(c.G, mean[1], std[1]), normalised(c.B, mean[2], std[2])}
}

func near(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i])-float64(b[i])) > tol {
			return false
		}
	}
	return true
}

func TestNew(t *testing.T) {
	if _, err := encode.New(encode.Config{}, &meanEncoder{}); err == nil {
		t.Fatal("New accepted a config without a model")
	}
}

func TestHandleBatchesFramesAcrossClips(t *testing.T) {
	enc := &meanEncoder{}
	h, err := encode.New(encode.Config{Model: model}, enc)
	if err != nil {
		t.Fatal(err)
	}
	specs := []clipSpec{
		{index: 0, frames: 3},
		{index: 1, frames: 1},
		{index: 2, frames: 4, codec: schemas.CodecJPEG},
		{index: 3, frames: 2},
	}
	var batch []pipeline.Message
	for _, s := range specs {
		batch = append(batch, clipMsg(t, s))
	}
	res := h.Handle(context.Background(), batch)
	if !slices.Equal(enc.calls, []int{10}) {
		t.Fatalf("EncodeImages calls %v, want one call with all 10 frames", enc.calls)
	}
	if len(res) != len(batch) {
		t.Fatalf("%d results for %d messages", len(res), len(batch))
	}
	mean, std := preprocess.CLIPMean(), preprocess.CLIPStd()
	for i, s := range specs {
		r := res[i]
		if r.Err != nil || len(r.Outputs) != 1 {
			t.Fatalf("clip %d: err %v, %d outputs", i, r.Err, len(r.Outputs))
		}
		o := r.Outputs[0]
		in, _ := schemas.DecodeClip(batch[i].Value)
		if o.Topic != "frame-embeddings" || string(o.Key) != in.Header.VideoID {
			t.Errorf("clip %d: output to %q keyed %q", i, o.Topic, o.Key)
		}
		out, err := schemas.DecodeEmbeddings(schemas.KindFrameEmbeddings, o.Value)
		if err != nil {
			t.Fatalf("clip %d: output is not frame embeddings: %v", i, err)
		}
		want := in.Header
		want.Codec, want.Size, want.Dim, want.Model = "", 0, 3, model
		if out.Header.Codec != "" || out.Header.Size != 0 || out.Header.Dim != 3 || out.Header.Model != model ||
			out.Header.VideoID != want.VideoID || out.Header.ClipIndex != s.index ||
			!slices.Equal(out.Header.FrameTimes, want.FrameTimes) || out.Header.Metadata["title"] != "t" {
			t.Errorf("clip %d: header %+v, want %+v", i, out.Header, want)
		}
		if len(out.Vectors) != s.frames {
			t.Fatalf("clip %d: %d vectors for %d frames", i, len(out.Vectors), s.frames)
		}
		// JPEG may move a solid colour by a level or two.
		tol := 1e-5
		if s.codec == schemas.CodecJPEG {
			tol = 3.0 / 255 / 0.26
		}
		for f, v := range out.Vectors {
			if w := expected(frameColour(s.index, f), mean, std); !near(v, w, tol) {
				t.Errorf("clip %d frame %d: vector %v, want %v", i, f, v, w)
			}
		}
	}
}

func TestHandleAppliesNormalize(t *testing.T) {
	c := color.RGBA{R: 255, G: 0, B: 51, A: 255}
	img := solid(size, c)
	for _, tc := range []struct {
		name      string
		cfg       encode.Config
		mean, std [3]float32
		byHand    []float32
	}{
		{"CLIP defaults", encode.Config{Model: model}, preprocess.CLIPMean(), preprocess.CLIPStd(), nil},
		{"custom", encode.Config{Model: model, Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.25, 0.25, 0.25}, OutputTopic: "fe"},
			[3]float32{0.5, 0.5, 0.5}, [3]float32{0.25, 0.25, 0.25}, []float32{2, -2, -1.2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := &meanEncoder{}
			h, err := encode.New(tc.cfg, enc)
			if err != nil {
				t.Fatal(err)
			}
			// Reference: preprocess.Normalize over the same solid frame.
			ref := make([]float32, 3*size*size)
			preprocess.Normalize(ref, []*image.RGBA{img}, tc.mean, tc.std)
			want := []float32{ref[0], ref[size*size], ref[2*size*size]}
			if tc.byHand != nil && !near(want, tc.byHand, 1e-6) {
				t.Fatalf("preprocess.Normalize gives %v, by hand %v", want, tc.byHand)
			}
			frame, err := schemas.EncodeFrame(img, schemas.CodecPNG, 0)
			if err != nil {
				t.Fatal(err)
			}
			res := h.Handle(context.Background(), []pipeline.Message{clipMsg(t, clipSpec{raw: [][]byte{frame}})})
			if res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			wantTopic := tc.cfg.OutputTopic
			if wantTopic == "" {
				wantTopic = "frame-embeddings"
			}
			if res[0].Outputs[0].Topic != wantTopic {
				t.Errorf("output topic %q, want %q", res[0].Outputs[0].Topic, wantTopic)
			}
			out, err := schemas.DecodeEmbeddings(schemas.KindFrameEmbeddings, res[0].Outputs[0].Value)
			if err != nil {
				t.Fatal(err)
			}
			if !near(out.Vectors[0], want, 1e-6) {
				t.Fatalf("encoder saw %v, want normalised %v", out.Vectors[0], want)
			}
			// Unnormalised pixels (x/255 only) would give (1, 0, 0.2).
			if near(out.Vectors[0], []float32{1, 0, 0.2}, 0.05) {
				t.Fatal("pixels reached the encoder without mean/std normalisation")
			}
		})
	}
}

func TestHandlePoison(t *testing.T) {
	jpg := clipMsg(t, clipSpec{index: 0, frames: 1, codec: schemas.CodecJPEG})
	in, _ := schemas.DecodeClip(jpg.Value)
	good := in.Frames[0]
	corrupt := append([]byte{}, good[:len(good)/2]...)
	cases := []struct {
		name string
		msg  pipeline.Message
		want string
	}{
		{"garbage", pipeline.Message{Value: []byte("garbage")}, "magic"},
		{"header size differs from the encoder", clipMsg(t, clipSpec{index: 1, frames: 2, px: 32}), "32px frames, the image encoder takes 16px"},
		{"frames larger than the header says", clipMsg(t, clipSpec{index: 1, frames: 2, px: 32, header: size}), "frame 0"},
		{"frames smaller than the header says", clipMsg(t, clipSpec{index: 1, frames: 1, px: 8, header: size}), "frame is 8x8, want 16x16"},
		{"corrupt jpeg", clipMsg(t, clipSpec{index: 2, codec: schemas.CodecJPEG, raw: [][]byte{good, corrupt}}), "frame 1"},
		{"not an image", clipMsg(t, clipSpec{index: 2, codec: schemas.CodecJPEG, raw: [][]byte{[]byte("\xff\xd8 not a jpeg")}}), "frame 0"},
		{"png declared as jpeg", clipMsg(t, clipSpec{index: 3, codec: schemas.CodecJPEG, raw: [][]byte{mustPNG(t)}}), "frame 0"},
	}
	enc := &meanEncoder{}
	h, err := encode.New(encode.Config{Model: model}, enc)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc.calls = nil
			// A valid clip on each side must be unaffected.
			batch := []pipeline.Message{clipMsg(t, clipSpec{index: 4, frames: 2}), c.msg, clipMsg(t, clipSpec{index: 5, frames: 1})}
			res := h.Handle(context.Background(), batch)
			if !pipeline.IsPoison(res[1].Err) || len(res[1].Outputs) != 0 {
				t.Fatalf("err %v, %d outputs; want poison", res[1].Err, len(res[1].Outputs))
			}
			if !strings.Contains(res[1].Err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", res[1].Err, c.want)
			}
			for _, i := range []int{0, 2} {
				if res[i].Err != nil || len(res[i].Outputs) != 1 {
					t.Fatalf("valid clip %d: err %v, %d outputs", i, res[i].Err, len(res[i].Outputs))
				}
			}
			if !slices.Equal(enc.calls, []int{3}) {
				t.Fatalf("EncodeImages calls %v, want one with the 3 valid frames", enc.calls)
			}
		})
	}
	t.Run("only poison", func(t *testing.T) {
		enc.calls = nil
		res := h.Handle(context.Background(), []pipeline.Message{{Value: nil}})
		if !pipeline.IsPoison(res[0].Err) || len(enc.calls) != 0 {
			t.Fatalf("err %v, encoder calls %v", res[0].Err, enc.calls)
		}
	})
}

func mustPNG(t *testing.T) []byte {
	t.Helper()
	b, err := schemas.EncodeFrame(solid(size, color.RGBA{1, 2, 3, 255}), schemas.CodecPNG, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandleEncoderError(t *testing.T) {
	boom := errors.New("onnxruntime: CUDA out of memory")
	enc := &meanEncoder{err: boom}
	h, err := encode.New(encode.Config{Model: model}, enc)
	if err != nil {
		t.Fatal(err)
	}
	batch := []pipeline.Message{
		clipMsg(t, clipSpec{index: 0, frames: 2}),
		{Value: []byte("junk")},
		clipMsg(t, clipSpec{index: 1, frames: 3}),
		clipMsg(t, clipSpec{index: 2, frames: 1}),
	}
	res := h.Handle(context.Background(), batch)
	if !slices.Equal(enc.calls, []int{6}) {
		t.Fatalf("EncodeImages calls %v, want one call of 6 frames", enc.calls)
	}
	for _, i := range []int{0, 2, 3} {
		if !errors.Is(res[i].Err, boom) || pipeline.IsPoison(res[i].Err) || len(res[i].Outputs) != 0 {
			t.Errorf("clip %d: err %v (poison %v), want the encoder error, not poison", i, res[i].Err, pipeline.IsPoison(res[i].Err))
		}
	}
	if !pipeline.IsPoison(res[1].Err) {
		t.Errorf("junk message: %v, want poison", res[1].Err)
	}
}

// shortEncoder returns one vector too few.
type shortEncoder struct{ meanEncoder }

func (e *shortEncoder) EncodeImages(ctx context.Context, pixels []float32, n int) ([][]float32, error) {
	v, err := e.meanEncoder.EncodeImages(ctx, pixels, n)
	if err != nil {
		return nil, err
	}
	return v[:len(v)-1], nil
}

func TestHandleEncoderShortAnswer(t *testing.T) {
	h, err := encode.New(encode.Config{Model: model}, &shortEncoder{})
	if err != nil {
		t.Fatal(err)
	}
	res := h.Handle(context.Background(), []pipeline.Message{clipMsg(t, clipSpec{index: 0, frames: 2}), clipMsg(t, clipSpec{index: 1, frames: 2})})
	for i, r := range res {
		if r.Err == nil || pipeline.IsPoison(r.Err) || !strings.Contains(r.Err.Error(), "3 vectors for 4 frames") {
			t.Errorf("clip %d: err %v, want a non-poison count mismatch", i, r.Err)
		}
	}
}
