package schemas_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"math"
	"runtime"
	"testing"

	"github.com/vidx/vidx/schemas"
)

// FuzzDecodeEmbeddings checks both embedding decoders never panic, that
// whatever they accept holds finite vectors of the declared shape, and that
// it re-encodes to the same bytes.
func FuzzDecodeEmbeddings(f *testing.F) {
	for _, kind := range []schemas.Kind{schemas.KindFrameEmbeddings, schemas.KindClipEmbedding} {
		f.Add(uint8(kind), validEmbMsgF(f, kind, 2, 3))
		nan := validEmbMsgF(f, kind, 1, 2)
		binary.LittleEndian.PutUint32(nan[len(nan)-4:], math.Float32bits(float32(math.NaN())))
		f.Add(uint8(kind), nan)
		f.Add(uint8(kind), nan[:len(nan)-1])
	}
	f.Add(uint8(0), []byte("VIDX"))
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		kind := schemas.KindFrameEmbeddings
		if k%2 == 1 {
			kind = schemas.KindClipEmbedding
		}
		e, err := schemas.DecodeEmbeddings(kind, data)
		if err != nil {
			return
		}
		for _, v := range e.Vectors {
			if len(v) != e.Header.Dim {
				t.Fatalf("vector of %d values, header dim %d", len(v), e.Header.Dim)
			}
			for _, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					t.Fatalf("accepted a non-finite value")
				}
			}
		}
		enc, err := schemas.EncodeEmbeddings(kind, &e)
		if err != nil {
			t.Fatalf("decoded embeddings do not re-encode: %v", err)
		}
		e2, err := schemas.DecodeEmbeddings(kind, enc)
		if err != nil {
			t.Fatalf("re-encoded embeddings do not decode: %v", err)
		}
		enc2, err := schemas.EncodeEmbeddings(kind, &e2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable (err %v)", err)
		}
	})
}

// FuzzDecodeQuery checks DecodeQuery never panics and that accepted
// queries re-encode to a query it accepts again, byte for byte.
func FuzzDecodeQuery(f *testing.F) {
	q := validQuery()
	b, err := schemas.Encode(&q)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"schema_version":1,"query_id":"q","text":"a red car"}`))
	f.Add([]byte(`{"schema_version":1,"query_id":"q","text":"x","top_k":-1}`))
	f.Add([]byte(`{"schema_version":9,"query_id":"q","text":"x"}`))
	f.Add([]byte(`{"schema_version":1,"query_id":"q","text":"x","filters":{"start_min":1e309}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := schemas.DecodeQuery(data)
		if err != nil {
			return
		}
		roundTrip(t, &q, func(b []byte) (any, error) { q2, err := schemas.DecodeQuery(b); return &q2, err })
	})
}

// FuzzDecodeResult is FuzzDecodeQuery for results.
func FuzzDecodeResult(f *testing.F) {
	r := validResult()
	b, err := schemas.Encode(&r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"schema_version":1,"query_id":"q","hits":[]}`))
	f.Add([]byte(`{"schema_version":1,"query_id":"q","hits":[{"video_id":"v","score":"NaN"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := schemas.DecodeResult(data)
		if err != nil {
			return
		}
		roundTrip(t, &r, func(b []byte) (any, error) { r2, err := schemas.DecodeResult(b); return &r2, err })
	})
}

// FuzzDecodeStreamSpec checks the stream registry decoder: no panic, and
// an accepted spec re-encodes to one it accepts again under the same key.
func FuzzDecodeStreamSpec(f *testing.F) {
	s := validSpec()
	b, err := schemas.EncodeStream(&s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(s.StreamID), b, false)
	f.Add([]byte("cam-1"), []byte(nil), true)
	f.Add([]byte("other"), b, false)
	f.Add([]byte(""), []byte(`{"schema_version":1,"stream_id":"x","action":"add","uri":"rtsp://h/x","segment":{"window_s":-1}}`), false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		}
		s, err := schemas.DecodeStreamSpec(key, value)
		if err != nil {
			return
		}
		enc, err := schemas.EncodeStream(&s)
		if err != nil {
			t.Fatalf("decoded spec does not re-encode: %v", err)
		}
		s2, err := schemas.DecodeStreamSpec(key, enc)
		if err != nil {
			t.Fatalf("re-encoded spec %s is rejected: %v", enc, err)
		}
		enc2, err := schemas.EncodeStream(&s2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %s then %s (err %v)", enc, enc2, err)
		}
	})
}

// FuzzDecodeStreamState checks the stream-state decoder the same way.
func FuzzDecodeStreamState(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"stream_id":"cam-1","state":"running","live":true,"windows":3,"last_window":{"index":2,"start_s":20,"end_s":30,"frames":10},"updated_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"schema_version":1,"stream_id":"cam-1","state":"bogus","updated_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"schema_version":1,"stream_id":"c","state":"ended","last_window":{"index":0,"start_s":5,"end_s":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := schemas.DecodeStreamState(data)
		if err != nil {
			return
		}
		roundTrip(t, &s, func(b []byte) (any, error) { s2, err := schemas.DecodeStreamState(b); return &s2, err }, schemas.EncodeStream)
	})
}

// FuzzParseDeadLetter checks dead-letter headers from any producer parse
// without panicking, and that a parsed dead letter renders headers that
// parse back to the same description.
func FuzzParseDeadLetter(f *testing.F) {
	f.Add("poison", "sample", "videos", "3", "17", "1", "2026-01-02T03:04:05.123Z", "not a video")
	f.Add("unknown", "index", "clip-embeddings", "x", "1", "", "", "boom")
	f.Add("", "", "", "", "", "", "", "")
	f.Add("poison", "s", "t", "-1", "-9223372036854775808", "99999999999999999999", "yesterday", "r")
	f.Fuzz(func(t *testing.T, class, stage, topic, part, offset, attempts, failedAt, reason string) {
		h := map[string]string{
			schemas.HeaderErrorClass: class, schemas.HeaderStage: stage, schemas.HeaderOriginTopic: topic,
			schemas.HeaderOriginPart: part, schemas.HeaderOriginOffset: offset, schemas.HeaderAttempts: attempts,
			schemas.HeaderFailedAt: failedAt, schemas.HeaderError: reason,
		}
		d, err := schemas.ParseDeadLetter([]byte("k"), []byte("v"), h)
		if err != nil {
			return
		}
		d2, err := schemas.ParseDeadLetter(d.Key, d.Value, d.Headers())
		if err != nil {
			t.Fatalf("rendered headers do not parse: %v", err)
		}
		if d2.Reason != d.Reason || d2.Class != d.Class || d2.Stage != d.Stage || d2.Topic != d.Topic ||
			d2.Partition != d.Partition || d2.Offset != d.Offset || d2.Attempts != d.Attempts || !d2.FailedAt.Equal(d.FailedAt) {
			t.Fatalf("round trip changed the dead letter: %+v then %+v", d, d2)
		}
	})
}

// FuzzDecodeFrame checks frame decoding never panics and accepts only
// size x size images. Seeds include headers that declare huge images: the
// decoder must refuse them before allocating.
func FuzzDecodeFrame(f *testing.F) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 16, 16))); err != nil {
		f.Fatal(err)
	}
	good := buf.Bytes()
	f.Add(good, true)
	huge := bytes.Clone(good)
	binary.BigEndian.PutUint32(huge[16:], 1<<30) // IHDR width
	binary.BigEndian.PutUint32(huge[20:], 1<<30) // IHDR height
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29]))
	f.Add(huge, true)
	f.Add(giantFrame(f, schemas.CodecJPEG), false)
	f.Add(giantFrame(f, schemas.CodecPNG), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, isPNG bool) {
		codec := schemas.CodecJPEG
		if isPNG {
			codec = schemas.CodecPNG
		}
		img, err := schemas.DecodeFrame(data, codec, 16)
		if err != nil {
			return
		}
		if b := img.Bounds(); b.Dx() != 16 || b.Dy() != 16 {
			t.Fatalf("accepted a %dx%d frame", b.Dx(), b.Dy())
		}
	})
}

// roundTrip re-encodes v with encode, decodes it with dec and checks the
// second encoding equals the first.
func roundTrip(t *testing.T, v any, dec func([]byte) (any, error), encode ...func(any) ([]byte, error)) {
	t.Helper()
	enc1 := schemas.Encode
	if len(encode) > 0 {
		enc1 = encode[0]
	}
	enc, err := enc1(v)
	if err != nil {
		t.Fatalf("decoded message does not re-encode: %v", err)
	}
	v2, err := dec(enc)
	if err != nil {
		t.Fatalf("re-encoded message %s is rejected: %v", enc, err)
	}
	enc2, err := enc1(v2)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not stable: %s then %s (err %v)", enc, enc2, err)
	}
}

func validEmbMsgF(f *testing.F, kind schemas.Kind, frames, dim int) []byte {
	f.Helper()
	rows := frames
	if kind == schemas.KindClipEmbedding {
		rows = 1
	}
	e := schemas.Embeddings{Header: embHeader(frames, dim), Vectors: make([][]float32, rows)}
	for r := range e.Vectors {
		e.Vectors[r] = make([]float32, dim)
		for j := range dim {
			e.Vectors[r][j] = float32(r*dim+j+1) / 10
		}
	}
	b, err := schemas.EncodeEmbeddings(kind, &e)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// TestDecodeFrameRefusesDeclaredGiants checks a tiny frame whose header
// declares a huge image is refused without allocating it (found by
// FuzzDecodeFrame's seeds: 5 GB for a 600-byte JPEG before the fix).
func TestDecodeFrameRefusesDeclaredGiants(t *testing.T) {
	for _, codec := range []string{schemas.CodecJPEG, schemas.CodecPNG} {
		data := giantFrame(t, codec)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := schemas.DecodeFrame(data, codec, 16)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: a 60000x60000 frame was accepted", codec)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
			t.Errorf("%s: refusing a %d-byte frame allocated %d MiB", codec, len(data), got>>20)
		}
	}
}

// giantFrame encodes a 16x16 frame and patches its header to declare
// 60000x60000.
func giantFrame(t testing.TB, codec string) []byte {
	t.Helper()
	data, err := schemas.EncodeFrame(image.NewRGBA(image.Rect(0, 0, 16, 16)), codec, 90)
	if err != nil {
		t.Fatal(err)
	}
	if codec == schemas.CodecPNG {
		binary.BigEndian.PutUint32(data[16:], 60000)
		binary.BigEndian.PutUint32(data[20:], 60000)
		binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
		return data
	}
	for i := 0; i+8 < len(data); i++ {
		if data[i] == 0xff && data[i+1] == 0xc0 { // SOF0: length(2) precision(1) height(2) width(2)
			binary.BigEndian.PutUint16(data[i+5:], 60000)
			binary.BigEndian.PutUint16(data[i+7:], 60000)
			return data
		}
	}
	t.Fatal("no SOF0 marker in the encoded JPEG")
	return nil
}
