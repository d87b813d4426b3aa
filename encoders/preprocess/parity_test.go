package preprocess_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/preprocess"
)

// Debian installs Pillow for the system interpreter only; the python3 found
// first on PATH may be another build without it.
const systemPython = "/usr/bin/python3"

const parityScript = "../../scripts/preprocess_parity.py"

func requireParityTools(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(systemPython); err != nil {
		t.Skipf("skipping: %s not found (Pillow is the reference)", systemPython)
	}
	if out, err := exec.Command(systemPython, "-c", "import PIL").CombinedOutput(); err != nil {
		t.Skipf("skipping: Pillow is not installed for %s (apt-get install python3-pil): %s", systemPython, bytes.TrimSpace(out))
	}
	for _, bin := range []string{"ffmpeg"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: %s not installed (run make setup)", bin)
		}
	}
}

// TestPillowParityOnDecodedFrames measures ResizeCrop against CLIP's
// Resize(224, bicubic) + CenterCrop(224) run by Pillow on the same frames,
// decoded by ffmpeg from encoded test videos of the sizes and aspect
// ratios video arrives in. The bound is a mean absolute difference
// under 1/255 per channel and a maximum under 8/255; the resize reproduces
// Pillow's fixed-point arithmetic, so the expected difference is 0.
func TestPillowParityOnDecodedFrames(t *testing.T) {
	requireParityTools(t)
	const size, frames = 224, 2
	cases := []struct {
		w, h  int
		graph string // lavfi source; %dx%d is the frame size
	}{
		{1920, 1080, "testsrc2=size=%dx%d:rate=5"},
		{1280, 720, "mandelbrot=size=%dx%d:rate=5"},
		{640, 480, "smptehdbars=size=%dx%d:rate=5"},
		{480, 640, "testsrc2=size=%dx%d:rate=5"},
		{320, 240, "cellauto=size=%dx%d:rate=5:rule=110"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	t.Logf("%-10s %-12s %-22s %-10s", "frame", "source", "mean |diff| R G B /255", "max /255")
	for _, c := range cases {
		source := strings.SplitN(c.graph, "=", 2)[0]
		name := fmt.Sprintf("%dx%d-%s", c.w, c.h, source)
		t.Run(name, func(t *testing.T) {
			video := filepath.Join(dir, name+".mp4")
			raw := filepath.Join(dir, name+".rgb")
			crops := filepath.Join(dir, name+".crops")
			// Encode (4:2:0, lossy) and decode again, so the frames are
			// what a real decoder hands the sampler.
			run(ctx, t, "ffmpeg", "-hide_banner", "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf(c.graph, c.w, c.h),
				"-frames:v", fmt.Sprint(frames), "-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p", "-y", video)
			run(ctx, t, "ffmpeg", "-hide_banner", "-v", "error", "-i", video, "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", raw)
			run(ctx, t, systemPython, parityScript, "--width", fmt.Sprint(c.w), "--height", fmt.Sprint(c.h),
				"--size", fmt.Sprint(size), raw, crops)

			rgb, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(crops)
			if err != nil {
				t.Fatal(err)
			}
			frameBytes, cropBytes := 3*c.w*c.h, 3*size*size
			if len(rgb) != frames*frameBytes || len(want) != frames*cropBytes {
				t.Fatalf("got %d raw bytes and %d crop bytes, want %d frames", len(rgb), len(want), frames)
			}
			// A blank frame would make the comparison vacuous.
			if levels := distinct(want); levels < 16 {
				t.Fatalf("reference crops hold only %d distinct values; the test pattern did not render", levels)
			}
			var sum [3]float64
			maxDiff := 0
			for f := range frames {
				got := preprocess.ResizeCrop(preprocess.NewRGB24(rgb[f*frameBytes:(f+1)*frameBytes], c.w, c.h), size)
				ref := want[f*cropBytes : (f+1)*cropBytes]
				for y := range size {
					for x := range size {
						for ch := range 3 {
							d := int(got.Pix[got.PixOffset(x, y)+ch]) - int(ref[(y*size+x)*3+ch])
							d = max(d, -d)
							sum[ch] += float64(d)
							maxDiff = max(maxDiff, d)
						}
					}
				}
			}
			n := float64(frames * size * size)
			mean := [3]float64{sum[0] / n, sum[1] / n, sum[2] / n}
			t.Logf("%-10s %-12s %.4f %.4f %.4f      %d", fmt.Sprintf("%dx%d", c.w, c.h), source, mean[0], mean[1], mean[2], maxDiff)
			for ch, m := range mean {
				if m >= 1 {
					t.Errorf("channel %d: mean absolute difference %.3f/255, want < 1/255", ch, m)
				}
			}
			if maxDiff >= 8 {
				t.Errorf("max absolute difference %d/255, want < 8/255", maxDiff)
			}
		})
	}
}

func run(ctx context.Context, t *testing.T, bin string, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
}

func distinct(b []byte) int {
	var seen [256]bool
	n := 0
	for _, v := range b {
		if !seen[v] {
			seen[v] = true
			n++
		}
	}
	return n
}
