package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// exampleVideo is one generated video of the example dataset: a lavfi
// filter graph producing 320x240 at 10 fps, and captions a person would
// write for it.
type exampleVideo struct {
	id       string
	graph    string
	captions []string
}

const (
	exampleSize = "320x240"
	exampleRate = "10"
	// exampleNoise keeps the videos from being flat colour: the encoder sees
	// compressed, noisy frames as it would from a camera.
	exampleNoise = "noise=alls=12:allf=t"
)

// solid is a single-colour source of d seconds. ffmpeg's "green" is
// 0x008000, half dark; the examples use pure colours.
func solid(colour, d string) string {
	return fmt.Sprintf("color=c=%s:s=%s:r=%s:d=%s", colour, exampleSize, exampleRate, d)
}

// exampleVideos is ordered so that any prefix is a usable smaller dataset
// (the tests use the first few). The colour bundle (`vidx models testdata`)
// sees each frame's mean colour, so the later entries are deliberately hard
// for it: a spatial split averages to another colour, a small moving square
// barely moves the mean, and such captions rank their video lower.
var exampleVideos = []exampleVideo{
	{"red", solid("red", "3"), []string{"a red screen", "a solid red video with some noise"}},
	{"green", solid("0x00FF00", "3"), []string{"a bright green image", "green"}},
	{"blue", solid("blue", "3"), []string{"a blue frame", "something blue fills the screen"}},
	{"red-then-blue", solid("red", "2") + "[a];" + solid("blue", "2") + "[b];[a][b]concat=n=2:v=1:a=0",
		[]string{"a red screen turns blue", "red then blue"}},
	{"yellow", solid("yellow", "2"), []string{"a yellow picture"}},
	{"orange", solid("0xFF8000", "3"), []string{"an orange screen", "bright orange"}},
	{"purple", solid("0x800080", "3"), []string{"a dark purple video"}},
	{"cyan", solid("cyan", "2"), []string{"a cyan screen"}},
	{"white", solid("white", "3"), []string{"a white screen", "a blank white image"}},
	{"black", solid("black", "3"), []string{"a black screen"}},
	{"grey", solid("0x808080", "3"), []string{"a grey image", "a flat gray picture"}},
	{"green-then-yellow", solid("0x00FF00", "2") + "[a];" + solid("yellow", "2") + "[b];[a][b]concat=n=2:v=1:a=0",
		[]string{"green changing to yellow"}},
	{"cyan-wipe-orange", solid("cyan", "2") + "[a];" + solid("0xFF8000", "2") + "[b];[a][b]xfade=transition=wipeleft:duration=1:offset=1",
		[]string{"orange wiping across a cyan screen"}},
	{"red-blue-split", solid("red", "3") + ",crop=160:240:0:0[l];" + solid("blue", "3") + ",crop=160:240:0:0[r];[l][r]hstack",
		[]string{"left half red and right half blue"}},
	{"white-square", solid("black", "4") + "[bg];" +
		fmt.Sprintf("color=c=white:s=80x80:r=%s:d=4", exampleRate) + "[fg];[bg][fg]overlay=x='mod(t*80,240)':y=80:shortest=1",
		[]string{"a white square moving across a black background"}},
}

// ExampleVideos is the number of videos WriteExample makes by default.
func ExampleVideos() int { return len(exampleVideos) }

// ExampleOptions configures WriteExample.
type ExampleOptions struct {
	// Videos is how many of the example videos to write (all when 0).
	Videos int
	// FFmpeg is the ffmpeg binary ("ffmpeg" from PATH when empty).
	FFmpeg string
}

// ExampleFile is the dataset file WriteExample writes.
const ExampleFile = "dataset.jsonl"

// WriteExample writes a small dataset of generated videos (solid colours,
// colour sequences, a wipe, a split screen, a moving square; 2-4 s,
// with noise) under dir/videos and its captions to dir/dataset.jsonl, and
// returns the dataset file's path. It is meant for the colour test bundle.
func WriteExample(ctx context.Context, dir string, o ExampleOptions) (string, error) {
	n := o.Videos
	if n <= 0 || n > len(exampleVideos) {
		n = len(exampleVideos)
	}
	ffmpeg := o.FFmpeg
	if ffmpeg == "" {
		ffmpeg = "ffmpeg"
	}
	if err := os.MkdirAll(filepath.Join(dir, "videos"), 0o755); err != nil {
		return "", fmt.Errorf("example: %w", err)
	}
	var lines strings.Builder
	for _, v := range exampleVideos[:n] {
		rel := filepath.ToSlash(filepath.Join("videos", v.id+".mp4"))
		cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", v.graph+","+exampleNoise,
			"-c:v", "libx264", "-pix_fmt", "yuv420p", filepath.Join(dir, rel))
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("example: ffmpeg for %s: %w: %s", v.id, err, strings.TrimSpace(string(out)))
		}
		line, err := json.Marshal(Video{VideoID: v.id, Path: rel, Captions: v.captions})
		if err != nil {
			return "", err
		}
		lines.Write(line)
		lines.WriteByte('\n')
	}
	file := filepath.Join(dir, ExampleFile)
	if err := os.WriteFile(file, []byte(lines.String()), 0o644); err != nil {
		return "", fmt.Errorf("example: %w", err)
	}
	return file, nil
}
