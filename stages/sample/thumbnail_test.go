package sample

import (
	"bytes"
	"context"
	"image/jpeg"
	"testing"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
)

// TestStageThumbnails checks that each clip comes with a thumbnail of its
// middle frame on the thumbnail topic: the step video's red level says
// which second a frame is from.
func TestStageThumbnails(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	video := mediatest.StepVideo(t, t.TempDir(), 6)
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
			s, err := NewStage(StageConfig{Options: media.Options{Mode: schemas.ModeWindow, WindowS: 2, StrideS: 2}, ThumbnailTopic: tc.topic})
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
