package media

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"testing"

	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/media/mediatest"
)

// benchVideo is a 60 s 640x360 clip: 60 frames at 1 fps.
func benchVideo(b *testing.B) string {
	b.Helper()
	return mediatest.MakeVideo(b, b.TempDir(), "bench.mp4", "testsrc=size=640x360:rate=25:duration=60")
}

// BenchmarkSample measures Decoder.Clips end to end (ffprobe, ffmpeg decode
// at 1 fps, PIL-exact resize+crop of the frames the selection needs).
// frames/s counts sampled frames decoded, comparable with
// BenchmarkPlainFFmpeg.
func BenchmarkSample(b *testing.B) {
	path := benchVideo(b)
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"uniform12", Options{}},
		{"crop_every_frame", Options{MaxFrames: 1 << 20}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := newTestDecoder(b, bc.opts)
			info, err := d.Probe(context.Background(), path)
			if err != nil {
				b.Fatal(err)
			}
			perRun := math.Round(info.DurationS * d.Options().FPS) // what the fps filter emits
			runs := 0
			for b.Loop() {
				if err := d.Clips(context.Background(), path, func(Clip) error { return nil }); err != nil {
					b.Fatal(err)
				}
				runs++
			}
			b.ReportMetric(float64(runs)*perRun/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkPlainFFmpeg is the floor: ffmpeg alone with the same sampling,
// raw RGB24 drained to io.Discard; "scale_crop" also resizes and crops in
// ffmpeg (bicubic swscale, not PIL-exact) to compare like with like.
func BenchmarkPlainFFmpeg(b *testing.B) {
	path := benchVideo(b)
	ow, oh := preprocess.OutputSize(640, 360, 224)
	for _, bc := range []struct {
		name, filter string
		frameSize    int
	}{
		{"rgb24", "fps=1", 640 * 360 * 3},
		{"scale_crop", fmt.Sprintf("fps=1,scale=%d:%d:flags=bicubic,crop=224:224", ow, oh), 224 * 224 * 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			total := 0
			for b.Loop() {
				cmd := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", path,
					"-vf", bc.filter, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:")
				out, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, out)
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
				total += int(n) / bc.frameSize
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkWholeSparse times one whole-mode clip decoded in one pass
// against decoded by seeking, as the kept frames grow apart: MaxFrames 60,
// 30, 20 and 12 of a 240 s 640x360 video with 250-frame GOPs keep a frame every 4,
// 8, 12 and 20 s. sparseMinGapS comes from here. VIDX_BENCH_VIDEO names
// another video to measure (its length sets the gaps).
func BenchmarkWholeSparse(b *testing.B) {
	path := os.Getenv("VIDX_BENCH_VIDEO")
	if path == "" {
		path = mediatest.MakeVideo(b, b.TempDir(), "long.mp4", "testsrc2=size=640x360:rate=25:duration=240", "-bf", "3", "-g", "250")
	}
	for _, kept := range []int{60, 30, 20, 12} {
		d := newTestDecoder(b, Options{MaxFrames: kept})
		ctx := context.Background()
		src, px, p := openProbed(b, d, path)
		gap := p.DurationS / float64(kept)
		for _, mode := range []string{"full", "sparse"} {
			b.Run(fmt.Sprintf("gap=%.0fs/%s", gap, mode), func(b *testing.B) {
				for b.Loop() {
					var err error
					if mode == "full" {
						err = d.decode(ctx, src, px, p, nil, func(Clip) error { return nil })
					} else {
						err = d.decodeSparse(ctx, src, px, p, func(Clip) error { return nil })
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		d.release(&src, px)
	}
}

// BenchmarkProbe times reading a local MP4's stream properties from its
// headers in-process against starting ffprobe for them, on the 60 s
// video and on a one-hour one whose sample tables run to 90,000 entries.
func BenchmarkProbe(b *testing.B) {
	long := mediatest.MakeVideo(b, b.TempDir(), "hour.mp4", "color=c=gray:s=64x48:rate=25:duration=3600", "-g", "250")
	for _, v := range []struct{ name, path string }{{"60s", benchVideo(b)}, {"1h", long}} {
		for _, probe := range []string{ProbeAuto, ProbeFFprobe} {
			b.Run(v.name+"/"+probe, func(b *testing.B) {
				d := newTestDecoder(b, Options{Probe: probe})
				for b.Loop() {
					if _, err := d.Probe(context.Background(), v.path); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
