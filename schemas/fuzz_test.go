package schemas_test

import (
	"bytes"
	"testing"

	"github.com/vidx/vidx/schemas"
)

// FuzzDecodeClip checks that DecodeClip never panics and that whatever it
// accepts re-encodes to a message that decodes to the same encoding.
func FuzzDecodeClip(f *testing.F) {
	f.Add(validClipMsg(f, 1))
	f.Add(validClipMsg(f, 3))
	f.Add([]byte("VIDX\x01\x00\x01\x00\x00\x00\x02{}"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := schemas.DecodeClip(data)
		if err != nil {
			return
		}
		enc, err := schemas.EncodeClip(&c)
		if err != nil {
			t.Fatalf("decoded clip does not re-encode: %v", err)
		}
		c2, err := schemas.DecodeClip(enc)
		if err != nil {
			t.Fatalf("re-encoded clip does not decode: %v", err)
		}
		enc2, err := schemas.EncodeClip(&c2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable (err %v)", err)
		}
	})
}

// FuzzDecodeVideoJob checks that DecodeVideoJob never panics and that
// whatever it accepts re-encodes to a job it accepts again.
func FuzzDecodeVideoJob(f *testing.F) {
	job, minimal := validJob(), schemas.VideoJob{VideoID: "v", URI: "/v.mp4"}
	for _, j := range []*schemas.VideoJob{&job, &minimal} {
		b, err := schemas.Encode(j)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"schema_version":1,"video_id":"v","uri":"u","segment":{}}`))
	f.Add([]byte(`{"schema_version":2}`))
	f.Add([]byte(`{"schema_version":1,"video_id":"v","uri":"u"} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := schemas.DecodeVideoJob(data)
		if err != nil {
			return
		}
		enc, err := schemas.Encode(&j)
		if err != nil {
			t.Fatalf("decoded job does not re-encode: %v", err)
		}
		j2, err := schemas.DecodeVideoJob(enc)
		if err != nil {
			t.Fatalf("re-encoded job %s is rejected: %v", enc, err)
		}
		enc2, err := schemas.Encode(&j2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %s then %s (err %v)", enc, enc2, err)
		}
	})
}
