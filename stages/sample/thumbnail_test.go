package sample

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
)

// TestStageThumbnails checks that each clip comes with a thumbnail of its
// middle frame on the thumbnail topic: the step video's red level says
// which second a frame is from.
func TestStageThumbnails(t *testing.T) {
	requireFFmpeg(t)
	video := stepVideo(t, t.TempDir(), 6)
	cases := []struct {
		name   string
		topic  string
		thumbs int
	}{
		{"with a thumbnail topic", "thumbnails", 3},
		{"without", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewStage(StageConfig{Options: Options{Mode: schemas.ModeWindow, WindowS: 2, StrideS: 2}, ThumbnailTopic: tc.topic})
			if err != nil {
				t.Fatal(err)
			}
			value, err := schemas.Encode(&schemas.VideoJob{VideoID: "steps", URI: video})
			if err != nil {
				t.Fatal(err)
			}
			res := s.Handle(context.Background(), []pipeline.Message{{Value: value}})
			if res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			var thumbs, clips int
			for _, o := range res[0].Outputs {
				if o.Topic == "clips" {
					clips++
					continue
				}
				if o.Topic != tc.topic {
					t.Fatalf("output to %q", o.Topic)
				}
				id, idx, err := ParseThumbnailKey(string(o.Key))
				if err != nil || id != "steps" || idx != thumbs {
					t.Fatalf("thumbnail key %q (%v), want steps/%d", o.Key, err, thumbs)
				}
				img, err := jpeg.Decode(bytes.NewReader(o.Value))
				if err != nil {
					t.Fatalf("thumbnail %d is not a JPEG: %v", idx, err)
				}
				if b := img.Bounds(); b.Dx() != 224 || b.Dy() != 224 {
					t.Errorf("thumbnail %d is %v, want the 224x224 crop", idx, b)
				}
				// Window k holds the frames of seconds 2k and 2k+1; the
				// middle one (index 1) is second 2k+1.
				r, _, _, _ := img.At(112, 112).RGBA()
				if want := 16 * (2*idx + 1); absInt(int(r>>8)-want) > 6 {
					t.Errorf("thumbnail %d has red %d, want about %d (the middle frame)", idx, r>>8, want)
				}
				if len(o.Value) > 16<<10 {
					t.Errorf("thumbnail %d is %d bytes, want a small JPEG", idx, len(o.Value))
				}
				thumbs++
			}
			if clips != 3 || thumbs != tc.thumbs {
				t.Errorf("%d clips and %d thumbnails, want 3 and %d", clips, thumbs, tc.thumbs)
			}
		})
	}
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "videos")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	inside := writeFile(t, filepath.Join(root, "in.mp4"), []byte("video"))
	outside := writeFile(t, filepath.Join(dir, "secret.mp4"), []byte("secret"))
	link := filepath.Join(root, "link.mp4")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "empty.mp4"), nil)
	rooted, err := NewGuard(SourcePolicy{FileRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	open, err := NewGuard(SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	var refused *RefusedError
	cases := []struct {
		name  string
		guard *Guard
		uri   string
		want  string // file content, or "" for an error
		check func(error) bool
	}{
		{"path inside", rooted, inside, "video", nil},
		{"file URI inside", rooted, "file://" + inside, "video", nil},
		{"outside the roots", rooted, outside, "", func(err error) bool { return errors.As(err, &refused) }},
		{"link out of the roots", rooted, link, "", func(err error) bool { return errors.As(err, &refused) }},
		{"dot-dot out of the roots", rooted, root + "/../secret.mp4", "", func(err error) bool { return errors.As(err, &refused) }},
		{"no roots configured", open, inside, "", func(err error) bool { return errors.As(err, &refused) }},
		{"a directory", rooted, root, "", func(err error) bool { return err != nil }},
		{"empty file", rooted, filepath.Join(root, "empty.mp4"), "", func(err error) bool { return err != nil }},
		{"missing file", rooted, filepath.Join(root, "nope.mp4"), "", func(err error) bool { return err != nil }},
		{"http source", rooted, "https://example.com/v.mp4", "", func(err error) bool { return errors.Is(err, ErrNotLocal) }},
		{"file URI of another host", rooted, "file://other/v.mp4", "", func(err error) bool { return errors.Is(err, ErrNotLocal) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.guard.OpenLocal(tc.uri)
			if tc.want == "" {
				if err == nil {
					f.Close()
					t.Fatal("opened")
				}
				if !tc.check(err) {
					t.Fatalf("error %v of the wrong kind", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			data, err := os.ReadFile(f.Name())
			if err != nil || string(data) != tc.want {
				t.Fatalf("read %q %v", data, err)
			}
		})
	}
}
