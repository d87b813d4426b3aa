package app_test

import (
	"context"
	"image"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/pool"
)

// TestKafkaPathParity indexes a 15 s patterned video (12 frames after 1 fps
// sampling and uniform selection) with the small ViT bundle and checks that
// the vector that went through JPEG frames on Kafka matches the one computed
// straight from the decoded frames, and that the clip message fits kafka-go's
// 1 MiB defaults.
func TestKafkaPathParity(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	video := filepath.Join(t.TempDir(), "pattern.mp4")
	if err := ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=15", "-c:v", "libx264", "-pix_fmt", "yuv420p", video); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, ctx, f, "tiny-clip")
	clips := kafka.NewTap(a.Kafka(), a.Config.Topics.Clips, true)
	defer clips.Close()
	publish(t, ctx, a, "pattern", job("pattern", video))
	waitCount(t, ctx, a.Store(), a.Config.Store.Collection, 1)

	m, err := clips.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clip, err := schemas.DecodeClip(m.Value)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(clip.Frames); n != 12 {
		t.Errorf("clip has %d frames, want 12", n)
	}
	if len(m.Value) > 1<<20 {
		t.Errorf("clip message is %d bytes, over 1 MiB", len(m.Value))
	}
	t.Logf("clip message: %d frames, %d bytes (%.1f KiB per frame, %s)", len(clip.Frames), len(m.Value), float64(len(m.Value))/1024/float64(len(clip.Frames)), clip.Header.Codec)

	dec, err := media.NewDecoder(media.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var direct []float32
	err = dec.Clips(ctx, video, func(c media.Clip) error {
		imgs := make([]*image.RGBA, len(c.Frames))
		for i, fr := range c.Frames {
			imgs[i] = fr.Image
		}
		vecs, err := a.Encode.Embed(ctx, imgs)
		if err != nil {
			return err
		}
		direct, err = pool.MeanPool(vecs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	hits, err := a.Store().Search(ctx, a.Config.Store.Collection, sinks.SearchRequest{Vector: direct, TopK: 1, WithVectors: true})
	if err != nil || len(hits) != 1 {
		t.Fatalf("search: %v %v", hits, err)
	}
	var cos float64
	for i := range direct {
		cos += float64(direct[i]) * float64(hits[0].Vector[i])
	}
	t.Logf("cosine(Kafka path, decoded frames) = %.6f", cos)
	if cos < 0.999 || math.IsNaN(cos) {
		t.Errorf("cosine between the Kafka path and the decoded frames is %.6f, want >= 0.999", cos)
	}
}
