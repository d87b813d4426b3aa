package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vidx/vidx/media"
)

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (run make setup)", bin)
		}
	}
}

// testVideo renders a lavfi source (e.g. "testsrc2=size=320x240:rate=10:duration=3")
// to an MPEG-4 file, an encoder every ffmpeg build has.
func testVideo(t *testing.T, name, graph string) string {
	t.Helper()
	requireFFmpeg(t)
	path := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-f", "lavfi", "-i", graph,
		"-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p", "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	return path
}

func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// decodedCrops is what the sample stage's decoder gives for the same
// settings, keyed by clip and frame time.
func decodedCrops(t *testing.T, uri string, o media.Options) map[string]*image.RGBA {
	t.Helper()
	d, err := media.NewDecoder(o)
	if err != nil {
		t.Fatal(err)
	}
	crops := map[string]*image.RGBA{}
	err = d.Clips(context.Background(), uri, func(c media.Clip) error {
		for _, f := range c.Frames {
			crops[fmt.Sprintf("%d@%g", c.Index, f.TimeS)] = f.Image
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return crops
}

func TestSampleDump(t *testing.T) {
	video := testVideo(t, "v.mp4", "testsrc2=size=320x240:rate=10:duration=5")
	cases := []struct {
		name   string
		args   []string
		opts   media.Options
		frames []string // clip@time_s of each dumped frame, in order
	}{
		{"whole", nil, media.Options{}, []string{"0@0", "0@1", "0@2", "0@3", "0@4"}},
		{"windows at 2 fps", []string{"--mode", "window", "--window", "2", "--stride", "2", "--fps", "2", "--max-frames", "2", "--selection", "tail"},
			media.Options{Mode: "window", WindowS: 2, StrideS: 2, FPS: 2, MaxFrames: 2, Selection: "tail"},
			[]string{"0@1", "0@1.5", "1@3", "1@3.5", "2@4", "2@4.5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dump")
			out, stderr, err := runCmd(t, append(append([]string{"sample", "--dump", dir}, c.args...), video)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			var ff framesFile
			if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "frames.json")), &ff); err != nil {
				t.Fatal(err)
			}
			if ff.Source.Width != 320 || ff.Source.Height != 240 || ff.Sampling.Size != 224 || ff.File != video {
				t.Errorf("frames.json header: %+v %+v %s", ff.Source, ff.Sampling, ff.File)
			}
			want := decodedCrops(t, video, c.opts)
			var got []string
			for i, f := range ff.Frames {
				key := fmt.Sprintf("%d@%g", f.Clip, f.TimeS)
				got = append(got, key)
				if f.Width != 320 || f.Height != 240 || f.Frame != int(f.TimeS*ff.Sampling.FPS+0.5) {
					t.Errorf("frame %d: %+v", i, f)
				}
				if wantName := fmt.Sprintf("clip%04d_frame%06d.png", f.Clip, f.Frame); f.PNG != wantName {
					t.Errorf("frame %d png %q, want %q", i, f.PNG, wantName)
				}
				file, err := os.Open(filepath.Join(dir, f.PNG))
				if err != nil {
					t.Fatal(err)
				}
				img, err := png.Decode(file)
				file.Close()
				if err != nil {
					t.Fatal(err)
				}
				ref := want[key]
				if ref == nil {
					t.Fatalf("frame %s was not sampled by the stage's decoder", key)
				}
				if img.Bounds() != ref.Bounds() {
					t.Fatalf("frame %s: %v, want %v", key, img.Bounds(), ref.Bounds())
				}
				// The PNG is lossless: every pixel must be the stage's crop.
				for y := 0; y < 224; y++ {
					for x := 0; x < 224; x++ {
						r, g, b, _ := img.At(x, y).RGBA()
						px := ref.RGBAAt(x, y)
						if uint8(r>>8) != px.R || uint8(g>>8) != px.G || uint8(b>>8) != px.B {
							t.Fatalf("frame %s pixel (%d,%d) differs from the decoder's crop", key, x, y)
						}
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(c.frames, " ") {
				t.Errorf("frames %v, want %v", got, c.frames)
			}
			if !strings.Contains(out, fmt.Sprintf("wrote %d crops and frames.json", len(c.frames))) {
				t.Errorf("output %q", out)
			}
		})
	}
}

func TestSampleListAndErrors(t *testing.T) {
	video := testVideo(t, "v.mp4", "testsrc2=size=480x640:rate=5:duration=2")
	out, stderr, err := runCmd(t, "sample", "--json", video)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var ff framesFile
	if err := json.Unmarshal([]byte(out), &ff); err != nil {
		t.Fatal(err)
	}
	if len(ff.Frames) != 2 || ff.Frames[1].TimeS != 1 || ff.Frames[0].PNG != "" || ff.Source.Width != 480 || ff.Source.Height != 640 {
		t.Errorf("frames.json %+v", ff)
	}

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"sample", filepath.Join(t.TempDir(), "missing.mp4")}, "missing.mp4"},
		{[]string{"sample", "--selection", "middle", video}, "Selection"},
		{[]string{"sample", "--mode", "window", video}, "WindowS"},
		{[]string{"sample", "--dump", filepath.Join(video, "sub"), video}, "--dump"},
	}
	for _, c := range cases {
		if _, _, err := runCmd(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
	if _, _, err := runCmd(t, "sample"); err != errUsage {
		t.Errorf("no file: err = %v", err)
	}
}
