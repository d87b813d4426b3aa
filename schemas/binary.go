package schemas

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"
	"time"
)

// Binary layout of the internal topics (clips, frame embeddings, clip
// embeddings). All integers are big-endian; floats are IEEE-754 float32
// little-endian, the layout ONNX Runtime reads and writes, so vectors move
// without conversion.
//
//	offset  size  field
//	0       4     magic "VIDX"
//	4       1     kind (1 clip, 2 frame embeddings, 3 clip embedding)
//	5       2     schema version (uint16)
//	7       4     header length H (uint32)
//	11      H     header, JSON (ClipHeader)
//	11+H    ...   body
//
// The header is JSON so that fields can be added without a version bump:
// readers ignore keys they do not know, and a field's absence means its zero
// value. generation and generation_clips were added this way; a producer
// that does not set them makes clips that never replace older ones.
//
// Clip body: for each of header.frames frames, uint32 length then the
// encoded image (JPEG or PNG of the size x size CLIP crop).
// Embedding bodies: rows x dim float32 values, row-major (rows = number of
// frames for frame embeddings, 1 for a clip embedding).

// Kind identifies a binary message.
type Kind uint8

// Binary message kinds.
const (
	KindClip            Kind = 1
	KindFrameEmbeddings Kind = 2
	KindClipEmbedding   Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindClip:
		return "clip"
	case KindFrameEmbeddings:
		return "frame embeddings"
	case KindClipEmbedding:
		return "clip embedding"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

const (
	magic      = "VIDX"
	prefixLen  = 11
	maxHeader  = 1 << 20
	maxFrames  = 1024
	maxDim     = 8192
	maxImgSize = 4 << 20
)

// Frame codecs.
const (
	CodecJPEG = "jpeg"
	CodecPNG  = "png"
)

// ClipHeader identifies a clip and travels with it through every stage.
type ClipHeader struct {
	VideoID    string            `json:"video_id"`
	URI        string            `json:"uri,omitempty"`
	Source     string            `json:"source,omitempty"`
	ClipIndex  int               `json:"clip_index"`
	StartS     float64           `json:"start_s"`
	EndS       float64           `json:"end_s"`
	FrameTimes []float64         `json:"frame_times"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	SampledAt  time.Time         `json:"sampled_at"`
	// StreamID names the registered stream a clip was cut from (its
	// VideoID is the stream id too); empty for clips of video jobs. For
	// streams ClipIndex is the window number and StartS/EndS are stream time.
	StreamID string `json:"stream_id,omitempty"`
	// WallStart and WallEnd are when a live stream's window bounds were
	// seen; zero for files.
	WallStart time.Time `json:"wall_start,omitzero"`
	WallEnd   time.Time `json:"wall_end,omitzero"`
	// Generation identifies the run of a video job that produced the clip:
	// microseconds since the Unix epoch when the sample stage began the job
	// (later runs have larger generations; microseconds stay exact in
	// Qdrant's float64 ranges). Zero for stream windows, which append, and
	// for clips of producers that predate it.
	Generation int64 `json:"generation,omitempty"`
	// GenerationClips is set on the last clip of a generation only: how
	// many clips the job produced. Once that many clips of the generation
	// are indexed, the index stage deletes the video's clips of older
	// generations, so a re-ingested video replaces its old clips.
	GenerationClips int `json:"generation_clips,omitempty"`
	// Codec and Size describe the frames of a clip message.
	Codec string `json:"codec,omitempty"`
	Size  int    `json:"size,omitempty"`
	// Dim, Model and Pooling describe an embedding message.
	Dim     int    `json:"dim,omitempty"`
	Model   string `json:"model,omitempty"`
	Pooling string `json:"pooling,omitempty"`
}

func (h *ClipHeader) validate(kind Kind) error {
	k := kind.String()
	if err := checkID(k, "video_id", h.VideoID); err != nil {
		return err
	}
	if h.StreamID != "" {
		if err := checkID(k, "stream_id", h.StreamID); err != nil {
			return err
		}
	}
	if h.Generation < 0 {
		return invalidf(k, "generation %d is negative", h.Generation)
	}
	if h.GenerationClips < 0 {
		return invalidf(k, "generation_clips %d is negative", h.GenerationClips)
	}
	if h.GenerationClips > 0 {
		switch {
		case h.Generation == 0:
			return invalidf(k, "generation_clips %d without a generation", h.GenerationClips)
		case h.StreamID != "":
			return invalidf(k, "generation_clips on a window of stream %q: streams append windows, they never replace them", h.StreamID)
		}
	}
	n := len(h.FrameTimes)
	if n == 0 || n > maxFrames {
		return invalidf(k, "frame count %d out of range [1, %d]", n, maxFrames)
	}
	if h.StartS < 0 || h.EndS < h.StartS || math.IsNaN(h.StartS) || math.IsNaN(h.EndS) {
		return invalidf(k, "bad segment [%v, %v]", h.StartS, h.EndS)
	}
	if kind == KindClip {
		if h.Codec != CodecJPEG && h.Codec != CodecPNG {
			return invalidf(k, "codec %q is not jpeg or png", h.Codec)
		}
		if h.Size <= 0 || h.Size > 4096 {
			return invalidf(k, "frame size %d out of range", h.Size)
		}
	} else if h.Dim <= 0 || h.Dim > maxDim {
		return invalidf(k, "dim %d out of range [1, %d]", h.Dim, maxDim)
	}
	return nil
}

// Clip is a sampled clip: CLIP crops of its frames, compressed.
type Clip struct {
	Header ClipHeader
	// Frames holds the encoded images (Header.Codec), one per FrameTimes entry.
	Frames [][]byte
}

// Embeddings is a frame-embedding matrix or a single clip embedding.
type Embeddings struct {
	Header ClipHeader
	// Vectors has one row of Header.Dim floats per frame (frame embeddings)
	// or exactly one row (clip embedding).
	Vectors [][]float32
}

func writePrefix(buf *bytes.Buffer, kind Kind, h *ClipHeader) error {
	hj, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("schemas: encode %s header: %w", kind, err)
	}
	buf.WriteString(magic)
	buf.WriteByte(byte(kind))
	_ = binary.Write(buf, binary.BigEndian, uint16(Version))
	_ = binary.Write(buf, binary.BigEndian, uint32(len(hj)))
	buf.Write(hj)
	return nil
}

// EncodeClip serialises a clip message.
func EncodeClip(c *Clip) ([]byte, error) {
	if len(c.Frames) != len(c.Header.FrameTimes) {
		return nil, fmt.Errorf("schemas: clip has %d frames but %d frame times", len(c.Frames), len(c.Header.FrameTimes))
	}
	if err := c.Header.validate(KindClip); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writePrefix(&buf, KindClip, &c.Header); err != nil {
		return nil, err
	}
	for _, f := range c.Frames {
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(f)))
		buf.Write(f)
	}
	return buf.Bytes(), nil
}

// EncodeEmbeddings serialises a frame-embeddings or clip-embedding message.
func EncodeEmbeddings(kind Kind, e *Embeddings) ([]byte, error) {
	if kind != KindFrameEmbeddings && kind != KindClipEmbedding {
		return nil, fmt.Errorf("schemas: %s is not an embedding kind", kind)
	}
	if err := checkRows(kind, &e.Header, e.Vectors); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(prefixLen + 512 + len(e.Vectors)*e.Header.Dim*4)
	if err := writePrefix(&buf, kind, &e.Header); err != nil {
		return nil, err
	}
	var b [4]byte
	for _, row := range e.Vectors {
		for _, v := range row {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			buf.Write(b[:])
		}
	}
	return buf.Bytes(), nil
}

func checkRows(kind Kind, h *ClipHeader, rows [][]float32) error {
	if err := h.validate(kind); err != nil {
		return err
	}
	want := len(h.FrameTimes)
	if kind == KindClipEmbedding {
		want = 1
	}
	if len(rows) != want {
		return invalidf(kind.String(), "%d vectors, want %d", len(rows), want)
	}
	for _, r := range rows {
		if len(r) != h.Dim {
			return invalidf(kind.String(), "vector of %d floats, want dim %d", len(r), h.Dim)
		}
		for _, v := range r {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return invalidf(kind.String(), "vector holds a non-finite value")
			}
		}
	}
	return nil
}

// PeekKind returns the kind of a binary message without decoding it.
func PeekKind(data []byte) (Kind, error) {
	if len(data) < prefixLen || string(data[:4]) != magic {
		return 0, invalidf("binary message", "missing VIDX magic (not a vidx binary message)")
	}
	if v := binary.BigEndian.Uint16(data[5:7]); v != Version {
		return 0, fmt.Errorf("%w: binary message: got %d, this build reads %d", ErrVersion, v, Version)
	}
	return Kind(data[4]), nil
}

func readPrefix(want Kind, data []byte) (ClipHeader, []byte, error) {
	var h ClipHeader
	kind, err := PeekKind(data)
	if err != nil {
		return h, nil, err
	}
	if kind != want {
		return h, nil, invalidf(want.String(), "got a %s message", kind)
	}
	hl := binary.BigEndian.Uint32(data[7:11])
	if hl > maxHeader || int(hl) > len(data)-prefixLen {
		return h, nil, invalidf(want.String(), "header length %d exceeds message", hl)
	}
	if err := json.Unmarshal(data[prefixLen:prefixLen+int(hl)], &h); err != nil {
		return h, nil, invalidf(want.String(), "header: %v", err)
	}
	if err := h.validate(want); err != nil {
		return h, nil, err
	}
	return h, data[prefixLen+int(hl):], nil
}

// DecodeClip parses a clip message.
func DecodeClip(data []byte) (Clip, error) {
	h, body, err := readPrefix(KindClip, data)
	if err != nil {
		return Clip{}, err
	}
	frames := make([][]byte, 0, len(h.FrameTimes))
	for i := range h.FrameTimes {
		if len(body) < 4 {
			return Clip{}, invalidf("clip", "truncated before frame %d", i)
		}
		n := binary.BigEndian.Uint32(body)
		body = body[4:]
		if n > maxImgSize || int(n) > len(body) {
			return Clip{}, invalidf("clip", "frame %d length %d exceeds message", i, n)
		}
		frames = append(frames, body[:n:n])
		body = body[n:]
	}
	if len(body) != 0 {
		return Clip{}, invalidf("clip", "%d trailing bytes", len(body))
	}
	return Clip{Header: h, Frames: frames}, nil
}

// DecodeEmbeddings parses a frame-embeddings or clip-embedding message.
func DecodeEmbeddings(kind Kind, data []byte) (Embeddings, error) {
	h, body, err := readPrefix(kind, data)
	if err != nil {
		return Embeddings{}, err
	}
	rows := len(h.FrameTimes)
	if kind == KindClipEmbedding {
		rows = 1
	}
	if len(body) != rows*h.Dim*4 {
		return Embeddings{}, invalidf(kind.String(), "body has %d bytes, want %d x %d float32", len(body), rows, h.Dim)
	}
	flat := make([]float32, rows*h.Dim)
	for i := range flat {
		flat[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[i*4:]))
	}
	vecs := make([][]float32, rows)
	for r := range vecs {
		vecs[r] = flat[r*h.Dim : (r+1)*h.Dim : (r+1)*h.Dim]
	}
	if err := checkRows(kind, &h, vecs); err != nil {
		return Embeddings{}, err
	}
	return Embeddings{Header: h, Vectors: vecs}, nil
}

// EncodeFrame compresses one CLIP crop with the given codec. quality is the
// JPEG quality (1-100) and ignored for PNG.
func EncodeFrame(img image.Image, codec string, quality int) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch codec {
	case CodecJPEG:
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality})
	case CodecPNG:
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		err = enc.Encode(&buf, img)
	default:
		return nil, fmt.Errorf("schemas: unknown frame codec %q", codec)
	}
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s frame: %w", codec, err)
	}
	return buf.Bytes(), nil
}

// DecodeFrame decompresses one frame and checks it is size x size.
func DecodeFrame(data []byte, codec string, size int) (*image.RGBA, error) {
	var img image.Image
	var err error
	// The declared size is checked before decoding: the decoders allocate
	// the whole image from the header, so a few hundred bytes declaring
	// 60000x60000 would otherwise cost gigabytes.
	var cfg image.Config
	switch codec {
	case CodecJPEG:
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(data))
	case CodecPNG:
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
	default:
		return nil, invalidf("clip", "unknown frame codec %q", codec)
	}
	if err != nil {
		return nil, invalidf("clip", "frame: %v", err)
	}
	if cfg.Width != size || cfg.Height != size {
		return nil, invalidf("clip", "frame is %dx%d, want %dx%d", cfg.Width, cfg.Height, size, size)
	}
	switch codec {
	case CodecJPEG:
		img, err = jpeg.Decode(bytes.NewReader(data))
	case CodecPNG:
		img, err = png.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, invalidf("clip", "frame: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != size || b.Dy() != size {
		return nil, invalidf("clip", "frame is %dx%d, want %dx%d", b.Dx(), b.Dy(), size, size)
	}
	if rgba, ok := img.(*image.RGBA); ok && b.Min == (image.Point{}) {
		return rgba, nil
	}
	out := image.NewRGBA(image.Rect(0, 0, size, size))
	draw.Draw(out, out.Bounds(), img, b.Min, draw.Src)
	return out, nil
}
