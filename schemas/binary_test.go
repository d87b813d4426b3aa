package schemas_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
)

const clipSize = 224

// patternFrame draws a deterministic colourful pattern: smooth gradients with
// a shift per frame, plus a few hard edges.
func patternFrame(size, shift int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			c := color.RGBA{
				R: uint8((x + shift) * 255 / (size + shift)),
				G: uint8(y * 255 / size),
				B: uint8(128 + 100*math.Sin(float64(x+y+shift)/20)),
				A: 255,
			}
			if (x/56+y/56)%2 == 0 {
				c.B /= 2
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

// naturalFrame is a smooth gradient with deterministic noise, closer to
// camera content than a synthetic pattern.
func naturalFrame(size int, rng *rand.Rand) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	noise := func(base float64) uint8 {
		return uint8(max(0, min(255, base+rng.NormFloat64()*6)))
	}
	for y := range size {
		for x := range size {
			fx, fy := float64(x)/float64(size), float64(y)/float64(size)
			img.SetRGBA(x, y, color.RGBA{
				R: noise(40 + 170*fx),
				G: noise(60 + 120*fy + 30*math.Sin(6*fx)),
				B: noise(200 - 150*fx*fy),
				A: 255,
			})
		}
	}
	return img
}

func clipHeader(n int, codec string) schemas.ClipHeader {
	times := make([]float64, n)
	for i := range times {
		times[i] = 30 + float64(i)*0.5
	}
	return schemas.ClipHeader{
		VideoID:    "video7",
		URI:        "s3://bucket/video7.mp4",
		Source:     "msrvtt",
		ClipIndex:  3,
		StartS:     30,
		EndS:       40,
		FrameTimes: times,
		Metadata:   map[string]string{"title": "cooking"},
		SampledAt:  time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		Codec:      codec,
		Size:       clipSize,
	}
}

func embHeader(n, dim int) schemas.ClipHeader {
	h := clipHeader(n, "")
	h.Size, h.Dim, h.Model = 0, dim, "clip-vit-b32"
	return h
}

func encodeFrames(t testing.TB, codec string, quality int, imgs ...*image.RGBA) [][]byte {
	t.Helper()
	out := make([][]byte, len(imgs))
	for i, img := range imgs {
		b, err := schemas.EncodeFrame(img, codec, quality)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func TestClipRoundTrip(t *testing.T) {
	imgs := []*image.RGBA{patternFrame(clipSize, 0), patternFrame(clipSize, 37), patternFrame(clipSize, 91)}
	for _, c := range []struct {
		codec string
		// maximum mean and per-channel absolute error after decoding
		meanTol, maxTol float64
	}{
		{schemas.CodecPNG, 0, 0},
		{schemas.CodecJPEG, 2, 24},
	} {
		t.Run(c.codec, func(t *testing.T) {
			in := schemas.Clip{Header: clipHeader(len(imgs), c.codec), Frames: encodeFrames(t, c.codec, 95, imgs...)}
			msg, err := schemas.EncodeClip(&in)
			if err != nil {
				t.Fatal(err)
			}
			if k, err := schemas.PeekKind(msg); err != nil || k != schemas.KindClip {
				t.Fatalf("PeekKind = %v, %v", k, err)
			}
			out, err := schemas.DecodeClip(msg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, in) {
				t.Fatalf("clip round trip differs:\n got header %+v\nwant header %+v", out.Header, in.Header)
			}
			for i, f := range out.Frames {
				img, err := schemas.DecodeFrame(f, c.codec, clipSize)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if img.Bounds() != image.Rect(0, 0, clipSize, clipSize) {
					t.Fatalf("frame %d bounds %v", i, img.Bounds())
				}
				mean, worst := pixelError(imgs[i], img)
				t.Logf("frame %d: %d bytes, mean abs error %.3f, worst %v", i, len(f), mean, worst)
				if mean > c.meanTol || worst > c.maxTol {
					t.Errorf("frame %d: mean abs error %.3f (max %v), worst %v (max %v)", i, mean, c.meanTol, worst, c.maxTol)
				}
				if c.codec == schemas.CodecPNG && !bytes.Equal(img.Pix, imgs[i].Pix) {
					t.Errorf("frame %d: PNG round trip is not pixel-exact", i)
				}
			}
		})
	}
}

// pixelError returns the mean and the largest absolute RGB difference.
func pixelError(a, b *image.RGBA) (mean, worst float64) {
	var sum float64
	var n int
	for i := 0; i < len(a.Pix); i += 4 {
		for c := range 3 {
			d := math.Abs(float64(a.Pix[i+c]) - float64(b.Pix[i+c]))
			sum += d
			worst = max(worst, d)
			n++
		}
		if b.Pix[i+3] != 255 {
			return math.Inf(1), math.Inf(1)
		}
	}
	return sum / float64(n), worst
}

func TestClipSizeBudget(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	imgs := make([]*image.RGBA, 12)
	for i := range imgs {
		imgs[i] = naturalFrame(clipSize, rng)
	}
	c := schemas.Clip{Header: clipHeader(len(imgs), schemas.CodecJPEG), Frames: encodeFrames(t, schemas.CodecJPEG, 95, imgs...)}
	msg, err := schemas.EncodeClip(&c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("12-frame %dpx clip at JPEG quality 95: %d bytes (%.1f KiB per frame)", clipSize, len(msg), float64(len(msg))/12/1024)
	if len(msg) > 1<<20 {
		t.Fatalf("clip message is %d bytes, over the 1 MiB budget", len(msg))
	}
	// Guard against a degenerate test image that compresses to nothing.
	if len(msg) < 12*4<<10 {
		t.Fatalf("clip message is only %d bytes; the test frames are too simple", len(msg))
	}
}

func TestEmbeddingsRoundTrip(t *testing.T) {
	special := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, -math.MaxFloat32, math.MaxFloat32, 1e-30, -0.1, float32(math.Pi)}
	for _, c := range []struct {
		kind schemas.Kind
		rows int
	}{
		{schemas.KindFrameEmbeddings, 5},
		{schemas.KindFrameEmbeddings, 1},
		{schemas.KindClipEmbedding, 1},
	} {
		t.Run(c.kind.String(), func(t *testing.T) {
			frames := 5
			if c.kind == schemas.KindFrameEmbeddings {
				frames = c.rows
			}
			dim := len(special)
			rng := rand.New(rand.NewPCG(3, 4))
			vecs := make([][]float32, c.rows)
			for r := range vecs {
				vecs[r] = make([]float32, dim)
				for j := range vecs[r] {
					vecs[r][j] = float32(rng.NormFloat64())
				}
			}
			copy(vecs[0], special)
			in := schemas.Embeddings{Header: embHeader(frames, dim), Vectors: vecs}
			if c.kind == schemas.KindClipEmbedding {
				in.Header.Pooling = "meanP"
			}
			msg, err := schemas.EncodeEmbeddings(c.kind, &in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := schemas.DecodeEmbeddings(c.kind, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out.Header, in.Header) {
				t.Fatalf("header:\n got %+v\nwant %+v", out.Header, in.Header)
			}
			if len(out.Vectors) != c.rows {
				t.Fatalf("%d rows, want %d", len(out.Vectors), c.rows)
			}
			for r := range vecs {
				for j := range vecs[r] {
					if math.Float32bits(out.Vectors[r][j]) != math.Float32bits(vecs[r][j]) {
						t.Fatalf("vector[%d][%d] = %v, want %v (bit-exact)", r, j, out.Vectors[r][j], vecs[r][j])
					}
				}
			}
			// Floats are little-endian float32 right after the header.
			tail := msg[len(msg)-c.rows*dim*4:]
			if got := math.Float32frombits(binary.LittleEndian.Uint32(tail[4:])); math.Float32bits(got) != math.Float32bits(special[1]) {
				t.Fatalf("second float of the body is %v, want -0", got)
			}
			// Appending to one row must not clobber the next.
			if c.rows > 1 {
				_ = append(out.Vectors[0], 42)
				if out.Vectors[1][0] != vecs[1][0] {
					t.Fatal("rows alias each other's capacity")
				}
			}
		})
	}
}

// prefix patches the fixed binary prefix of a message copy.
func patch(msg []byte, fn func(b []byte)) []byte {
	b := bytes.Clone(msg)
	fn(b)
	return b
}

func validClipMsg(t testing.TB, frames int) []byte {
	t.Helper()
	imgs := make([]*image.RGBA, frames)
	for i := range imgs {
		imgs[i] = patternFrame(16, i)
	}
	c := schemas.Clip{Header: clipHeader(frames, schemas.CodecPNG), Frames: encodeFrames(t, schemas.CodecPNG, 0, imgs...)}
	c.Header.Size = 16
	msg, err := schemas.EncodeClip(&c)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func validEmbMsg(t *testing.T, kind schemas.Kind, frames, dim int) []byte {
	t.Helper()
	rows := frames
	if kind == schemas.KindClipEmbedding {
		rows = 1
	}
	e := schemas.Embeddings{Header: embHeader(frames, dim), Vectors: make([][]float32, rows)}
	for r := range e.Vectors {
		e.Vectors[r] = make([]float32, dim)
		for j := range dim {
			e.Vectors[r][j] = float32(r*dim+j) / 10
		}
	}
	msg, err := schemas.EncodeEmbeddings(kind, &e)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// withHeader rebuilds msg with the header JSON replaced by fn(header).
func withHeader(t *testing.T, msg []byte, fn func(h string) string) []byte {
	t.Helper()
	hl := binary.BigEndian.Uint32(msg[7:11])
	h := fn(string(msg[11 : 11+hl]))
	out := append([]byte{}, msg[:7]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(h)))
	out = append(out, h...)
	return append(out, msg[11+hl:]...)
}

func TestDecodeBinaryRejects(t *testing.T) {
	clip := validClipMsg(t, 2)
	frameEmb := validEmbMsg(t, schemas.KindFrameEmbeddings, 3, 4)
	clipEmb := validEmbMsg(t, schemas.KindClipEmbedding, 3, 4)
	decClip := func(b []byte) error { _, err := schemas.DecodeClip(b); return err }
	decFrames := func(b []byte) error { _, err := schemas.DecodeEmbeddings(schemas.KindFrameEmbeddings, b); return err }
	decClipEmb := func(b []byte) error { _, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, b); return err }
	for name, c := range map[string]struct {
		msg    []byte
		decode func([]byte) error
	}{"clip": {clip, decClip}, "frame embeddings": {frameEmb, decFrames}, "clip embedding": {clipEmb, decClipEmb}} {
		if err := c.decode(c.msg); err != nil {
			t.Fatalf("valid %s rejected: %v", name, err)
		}
	}
	replace := func(old, new string) func(string) string {
		return func(h string) string {
			if !strings.Contains(h, old) {
				t.Fatalf("header %s has no %q", h, old)
			}
			return strings.Replace(h, old, new, 1)
		}
	}
	nan := patch(frameEmb, func(b []byte) {
		binary.LittleEndian.PutUint32(b[len(b)-8:], math.Float32bits(float32(math.NaN())))
	})
	inf := patch(clipEmb, func(b []byte) {
		binary.LittleEndian.PutUint32(b[len(b)-4:], math.Float32bits(float32(math.Inf(-1))))
	})
	cases := []struct {
		name    string
		msg     []byte
		decode  func([]byte) error
		wantErr error
		want    string
	}{
		{"empty", nil, decClip, schemas.ErrInvalid, "magic"},
		{"JSON instead of binary", []byte(`{"schema_version":1,"video_id":"v"}`), decClip, schemas.ErrInvalid, "magic"},
		{"wrong magic", patch(clip, func(b []byte) { copy(b, "VIDY") }), decClip, schemas.ErrInvalid, "magic"},
		{"lowercase magic", patch(frameEmb, func(b []byte) { copy(b, "vidx") }), decFrames, schemas.ErrInvalid, "magic"},
		{"clip as frame embeddings", clip, decFrames, schemas.ErrInvalid, "got a clip message"},
		{"frame embeddings as clip", frameEmb, decClip, schemas.ErrInvalid, "got a frame embeddings message"},
		{"clip embedding as frame embeddings", clipEmb, decFrames, schemas.ErrInvalid, "got a clip embedding message"},
		{"frame embeddings as clip embedding", frameEmb, decClipEmb, schemas.ErrInvalid, "got a frame embeddings message"},
		{"unknown kind", patch(clip, func(b []byte) { b[4] = 9 }), decClip, schemas.ErrInvalid, "kind 9"},
		{"future version", patch(clip, func(b []byte) { binary.BigEndian.PutUint16(b[5:], 2) }), decClip, schemas.ErrVersion, "got 2"},
		{"version zero", patch(clipEmb, func(b []byte) { binary.BigEndian.PutUint16(b[5:], 0) }), decClipEmb, schemas.ErrVersion, "got 0"},
		{"header length overflow", patch(clip, func(b []byte) { binary.BigEndian.PutUint32(b[7:], math.MaxUint32) }), decClip, schemas.ErrInvalid, "header length"},
		{"header length past end", patch(frameEmb, func(b []byte) { binary.BigEndian.PutUint32(b[7:], uint32(len(b)-11+1)) }), decFrames, schemas.ErrInvalid, "header length"},
		{"header length too short", patch(clip, func(b []byte) { binary.BigEndian.PutUint32(b[7:], binary.BigEndian.Uint32(b[7:])-1) }), decClip, schemas.ErrInvalid, "header"},
		{"header not JSON", withHeader(t, clipEmb, func(string) string { return "not json" }), decClipEmb, schemas.ErrInvalid, "header"},
		{"header missing video_id", withHeader(t, clip, replace(`"video_id":"video7"`, `"video_id":""`)), decClip, schemas.ErrInvalid, "video_id is required"},
		{"header without frames", withHeader(t, clipEmb, replace(`"frame_times":[30,30.5,31]`, `"frame_times":[]`)), decClipEmb, schemas.ErrInvalid, "frame count 0"},
		{"header segment reversed", withHeader(t, frameEmb, replace(`"end_s":40`, `"end_s":20`)), decFrames, schemas.ErrInvalid, "bad segment"},
		{"header negative start", withHeader(t, frameEmb, replace(`"start_s":30`, `"start_s":-1`)), decFrames, schemas.ErrInvalid, "bad segment"},
		{"clip with bad codec", withHeader(t, clip, replace(`"codec":"png"`, `"codec":"webp"`)), decClip, schemas.ErrInvalid, `codec "webp"`},
		{"clip with zero size", withHeader(t, clip, replace(`"size":16`, `"size":0`)), decClip, schemas.ErrInvalid, "frame size 0"},
		{"embedding without dim", withHeader(t, clipEmb, replace(`"dim":4`, `"dim":0`)), decClipEmb, schemas.ErrInvalid, "dim 0"},
		{"dim mismatch", withHeader(t, frameEmb, replace(`"dim":4`, `"dim":6`)), decFrames, schemas.ErrInvalid, "body has 48 bytes"},
		{"frame count mismatch", withHeader(t, frameEmb, replace(`"frame_times":[30,30.5,31]`, `"frame_times":[30,30.5]`)), decFrames, schemas.ErrInvalid, "body has 48 bytes"},
		{"clip frame count mismatch", withHeader(t, clip, replace(`"frame_times":[30,30.5]`, `"frame_times":[30,30.5,31]`)), decClip, schemas.ErrInvalid, "truncated before frame 2"},
		{"clip frame length past end", patch(clip, func(b []byte) {
			hl := binary.BigEndian.Uint32(b[7:])
			binary.BigEndian.PutUint32(b[11+hl:], uint32(len(b)))
		}), decClip, schemas.ErrInvalid, "frame 0 length"},
		{"NaN vector", nan, decFrames, schemas.ErrInvalid, "non-finite"},
		{"infinite vector", inf, decClipEmb, schemas.ErrInvalid, "non-finite"},
		{"clip trailing bytes", append(bytes.Clone(clip), 0), decClip, schemas.ErrInvalid, "1 trailing bytes"},
		{"embedding trailing bytes", append(bytes.Clone(frameEmb), 0, 0, 0, 0), decFrames, schemas.ErrInvalid, "body has 52 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.decode(c.msg)
			if err == nil {
				t.Fatal("decoded")
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("error %q does not wrap %q", err, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestDecodeTruncated cuts valid messages at every length: each prefix must
// be refused with ErrInvalid, never decoded and never panic.
func TestDecodeTruncated(t *testing.T) {
	for _, c := range []struct {
		name   string
		msg    []byte
		decode func([]byte) error
	}{
		{"clip", validClipMsg(t, 3), func(b []byte) error { _, err := schemas.DecodeClip(b); return err }},
		{"frame embeddings", validEmbMsg(t, schemas.KindFrameEmbeddings, 3, 5), func(b []byte) error {
			_, err := schemas.DecodeEmbeddings(schemas.KindFrameEmbeddings, b)
			return err
		}},
		{"clip embedding", validEmbMsg(t, schemas.KindClipEmbedding, 2, 7), func(b []byte) error {
			_, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, b)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.decode(c.msg); err != nil {
				t.Fatalf("full message rejected: %v", err)
			}
			for n := range len(c.msg) {
				// A copy with exact capacity so reads past the end cannot
				// silently see the rest of the original.
				cut := bytes.Clone(c.msg[:n])
				if err := c.decode(cut); !errors.Is(err, schemas.ErrInvalid) {
					t.Fatalf("prefix of %d/%d bytes: error %v, want ErrInvalid", n, len(c.msg), err)
				}
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	frame := encodeFrames(t, schemas.CodecPNG, 0, patternFrame(16, 0))[0]
	okClip := func() schemas.Clip {
		h := clipHeader(1, schemas.CodecPNG)
		h.Size = 16
		return schemas.Clip{Header: h, Frames: [][]byte{frame}}
	}
	clipCases := []struct {
		name string
		edit func(c *schemas.Clip)
	}{
		{"frames without times", func(c *schemas.Clip) { c.Frames = append(c.Frames, frame) }},
		{"no frames", func(c *schemas.Clip) { c.Frames, c.Header.FrameTimes = nil, nil }},
		{"no video id", func(c *schemas.Clip) { c.Header.VideoID = "" }},
		{"no codec", func(c *schemas.Clip) { c.Header.Codec = "" }},
		{"size too large", func(c *schemas.Clip) { c.Header.Size = 5000 }},
		{"segment reversed", func(c *schemas.Clip) { c.Header.StartS, c.Header.EndS = 5, 4 }},
		{"NaN start", func(c *schemas.Clip) { c.Header.StartS = math.NaN() }},
		{"negative generation", func(c *schemas.Clip) { c.Header.Generation = -1 }},
		{"negative generation clips", func(c *schemas.Clip) { c.Header.Generation, c.Header.GenerationClips = 5, -1 }},
		{"generation clips without generation", func(c *schemas.Clip) { c.Header.GenerationClips = 4 }},
		{"generation clips on a stream window", func(c *schemas.Clip) {
			c.Header.StreamID, c.Header.Generation, c.Header.GenerationClips = "cam", 5, 4
		}},
	}
	for _, c := range clipCases {
		t.Run("clip/"+c.name, func(t *testing.T) {
			clip := okClip()
			c.edit(&clip)
			if _, err := schemas.EncodeClip(&clip); err == nil {
				t.Fatal("encoded")
			}
		})
	}
	okEmb := func() schemas.Embeddings {
		return schemas.Embeddings{Header: embHeader(2, 3), Vectors: [][]float32{{1, 2, 3}, {4, 5, 6}}}
	}
	embCases := []struct {
		name string
		kind schemas.Kind
		edit func(e *schemas.Embeddings)
	}{
		{"clip kind", schemas.KindClip, func(e *schemas.Embeddings) {}},
		{"unknown kind", schemas.Kind(7), func(e *schemas.Embeddings) {}},
		{"row count", schemas.KindFrameEmbeddings, func(e *schemas.Embeddings) { e.Vectors = e.Vectors[:1] }},
		{"two rows for a clip", schemas.KindClipEmbedding, func(e *schemas.Embeddings) {}},
		{"ragged row", schemas.KindFrameEmbeddings, func(e *schemas.Embeddings) { e.Vectors[1] = e.Vectors[1][:2] }},
		{"NaN", schemas.KindFrameEmbeddings, func(e *schemas.Embeddings) { e.Vectors[1][2] = float32(math.NaN()) }},
		{"Inf", schemas.KindFrameEmbeddings, func(e *schemas.Embeddings) { e.Vectors[0][0] = float32(math.Inf(1)) }},
		{"zero dim", schemas.KindFrameEmbeddings, func(e *schemas.Embeddings) { e.Header.Dim = 0 }},
	}
	for _, c := range embCases {
		t.Run("embeddings/"+c.name, func(t *testing.T) {
			e := okEmb()
			c.edit(&e)
			if _, err := schemas.EncodeEmbeddings(c.kind, &e); err == nil {
				t.Fatal("encoded")
			}
		})
	}
	if _, err := schemas.EncodeFrame(patternFrame(8, 0), "webp", 90); err == nil {
		t.Error("EncodeFrame accepted an unknown codec")
	}
}

func TestDecodeFrame(t *testing.T) {
	img := patternFrame(32, 5)
	png := encodeFrames(t, schemas.CodecPNG, 0, img)[0]
	jpg := encodeFrames(t, schemas.CodecJPEG, 90, img)[0]
	cases := []struct {
		name  string
		data  []byte
		codec string
		size  int
		want  string // empty: valid
	}{
		{"png", png, schemas.CodecPNG, 32, ""},
		{"jpeg", jpg, schemas.CodecJPEG, 32, ""},
		{"png declared jpeg", png, schemas.CodecJPEG, 32, "frame:"},
		{"jpeg declared png", jpg, schemas.CodecPNG, 32, "frame:"},
		{"wrong size", png, schemas.CodecPNG, 224, "frame is 32x32, want 224x224"},
		{"truncated jpeg", jpg[:len(jpg)/2], schemas.CodecJPEG, 32, "frame:"},
		{"garbage", []byte("not an image at all"), schemas.CodecJPEG, 32, "frame:"},
		{"unknown codec", png, "gif", 32, `unknown frame codec "gif"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := schemas.DecodeFrame(c.data, c.codec, c.size)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if out.Bounds() != image.Rect(0, 0, c.size, c.size) {
					t.Fatalf("bounds %v", out.Bounds())
				}
				return
			}
			if !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[schemas.Kind]string{
		schemas.KindClip: "clip", schemas.KindFrameEmbeddings: "frame embeddings", schemas.KindClipEmbedding: "clip embedding", 0: "kind 0",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}

// TestGenerationFields checks the re-ingest fields travel through the
// embedding messages and that headers without them, as producers before
// them wrote, still decode, with zero values.
func TestGenerationFields(t *testing.T) {
	h := embHeader(1, 3)
	h.Generation, h.GenerationClips = 1733500000123456, 4
	value, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{Header: h, Vectors: [][]float32{{1, 2, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(value, []byte(`"generation":1733500000123456,"generation_clips":4`)) {
		t.Errorf("header JSON lacks the generation fields: %s", value)
	}
	got, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, value)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Generation != h.Generation || got.Header.GenerationClips != 4 {
		t.Errorf("decoded generation %d/%d, want %d/4", got.Header.Generation, got.Header.GenerationClips, h.Generation)
	}

	// A header as written before the fields existed: the same prefix and
	// body, a JSON header without generation keys.
	old := []byte(`{"video_id":"video7","clip_index":0,"start_s":0,"end_s":2,"frame_times":[1],"sampled_at":"2024-05-06T07:08:09Z","dim":3,"model":"clip-vit-b32"}`)
	var msg bytes.Buffer
	msg.WriteString("VIDX")
	msg.WriteByte(byte(schemas.KindClipEmbedding))
	_ = binary.Write(&msg, binary.BigEndian, uint16(schemas.Version))
	_ = binary.Write(&msg, binary.BigEndian, uint32(len(old)))
	msg.Write(old)
	for _, f := range []float32{1, 2, 3} {
		_ = binary.Write(&msg, binary.LittleEndian, math.Float32bits(f))
	}
	e, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, msg.Bytes())
	if err != nil {
		t.Fatalf("header without generation fields: %v", err)
	}
	if e.Header.Generation != 0 || e.Header.GenerationClips != 0 || e.Header.VideoID != "video7" {
		t.Errorf("header without generation fields decoded as %+v", e.Header)
	}
}
