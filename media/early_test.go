package media

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/sourceguard"
)

// TestFullDecodeStartsBeforeProbe runs ffprobe through a wrapper that
// only probes once ffmpeg has started: a local file's full decode must not
// wait for the probe, or the wrapper gives up and the probe fails.
func TestFullDecodeStartsBeforeProbe(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	video := mediatest.MakeVideo(t, dir, "v.mp4", "testsrc=size=160x120:rate=10:duration=4")
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(dir, "ffmpeg-started")
	script := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	wrappedFFmpeg := script("ffmpeg", fmt.Sprintf(": > %s\nexec %s \"$@\"\n", strconv.Quote(mark), strconv.Quote(ffmpeg)))
	waitingFFprobe := script("ffprobe", fmt.Sprintf(`for i in $(seq 200); do
	[ -e %[1]s ] && exec %[2]s "$@"
	sleep 0.05
done
echo "ffmpeg was not started during the probe" >&2
exit 1
`, strconv.Quote(mark), strconv.Quote(ffprobe)))

	for _, tc := range []struct {
		name  string
		opts  Options
		clips int
	}{
		{"whole", Options{}, 1},
		{"window", Options{Mode: ModeWindow, WindowS: 2, StrideS: 2}, 2},
		{"guarded", Options{Guard: mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{FileRoots: []string{dir}})}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Remove(mark); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			o := tc.opts
			o.FFmpegPath, o.FFprobePath, o.Logger = wrappedFFmpeg, waitingFFprobe, testLog(t)
			d := newTestDecoder(t, o)
			if got := len(collect(t, d, video)); got != tc.clips {
				t.Fatalf("%d clips, want %d", got, tc.clips)
			}
		})
	}
}

// TestEarlyDecodeWrongGuess: where the probe finds the video in another
// stream than the early decode guessed (cover art first), the early run
// is replaced and the clips are the ones a right guess gives.
func TestEarlyDecodeWrongGuess(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	video := mediatest.MakeVideo(t, t.TempDir(), "v.mp4", "testsrc=size=160x120:rate=10:duration=3")
	d := newTestDecoder(t, Options{Logger: testLog(t)})
	var got []Clip
	if err := d.clips(context.Background(), video, 1, func(c Clip) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	sameClips(t, "guessed stream 1", got, collect(t, d, video))
}

// TestFullDecodeBoundsFrameSize: the full decode may start before the
// probe checks the frame size, so the decoder carries the policy's bound.
func TestFullDecodeBoundsFrameSize(t *testing.T) {
	src := sourceguard.Source{URI: "/v.mp4", Local: "/v.mp4", Input: "file:/v.mp4"}
	for _, tc := range []struct {
		name  string
		guard *sourceguard.Guard
		want  string // the -max_pixels value; "" for none
	}{
		{"no policy", nil, ""},
		{"default policy", mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{}), strconv.Itoa(8192 * 8192)},
		{"small frames", mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{MaxWidth: 640, MaxHeight: 480}), strconv.Itoa(640 * 480)},
		{"beyond the option's range", mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{MaxWidth: 1 << 20, MaxHeight: 1 << 20}), strconv.Itoa(1<<31 - 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Decoder{opts: Options{Guard: tc.guard}.WithDefaults()}
			args := d.ffmpegArgs(src, nil, 0)
			i := slices.Index(args, "-max_pixels")
			in := slices.Index(args, "-i")
			switch {
			case tc.want == "" && i >= 0:
				t.Fatalf("-max_pixels without a policy: %q", args)
			case tc.want != "" && (i < 0 || i > in || args[i+1] != tc.want):
				t.Fatalf("want -max_pixels %s before -i: %q", tc.want, args)
			}
		})
	}
}
