package media

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/sourceguard"
)

// TestFullDecodeStartsBeforeProbe runs ffmpeg through a wrapper that
// leaves a mark and ffprobe through one that checks it: where the full
// decode must start early, the probe waits for the mark and gives up
// without it; where it must not (a remote file that may be decoded
// sparsely), the probe fails if the mark is there.
func TestFullDecodeStartsBeforeProbe(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	video := mediatest.MakeVideo(t, dir, "v.mp4", "testsrc=size=160x120:rate=10:duration=4")
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	url := srv.URL + "/v.mp4"
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	mark := filepath.Join(bin, "ffmpeg-started")
	script := func(name, body string) string { return toolScript(t, bin, name, body) }
	markingFFmpeg := script("ffmpeg", fmt.Sprintf(": > %s\nexec %s \"$@\"\n", strconv.Quote(mark), strconv.Quote(ffmpeg)))
	waitingFFprobe := script("ffprobe-waiting", fmt.Sprintf(`for i in $(seq 200); do
	[ -e %[1]s ] && exec %[2]s "$@"
	sleep 0.05
done
echo "ffmpeg was not started during the probe" >&2
exit 1
`, strconv.Quote(mark), strconv.Quote(ffprobe)))
	// Checked once the probe is done: an ffmpeg started alongside it has
	// left its mark by then, one started after it cannot have.
	strictFFprobe := script("ffprobe-strict", fmt.Sprintf(`%[2]s "$@"
rc=$?
if [ -e %[1]s ]; then
	echo "ffmpeg was started during the probe" >&2
	exit 1
fi
exit $rc
`, strconv.Quote(mark), strconv.Quote(ffprobe)))

	guard := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{FileRoots: []string{dir}})
	window := Options{Mode: ModeWindow, WindowS: 2, StrideS: 2}
	for _, tc := range []struct {
		name  string
		uri   string
		opts  Options
		early bool
		clips int
	}{
		{"local whole", video, Options{}, true, 1},
		{"local window", video, window, true, 2},
		{"local guarded", video, Options{Guard: guard}, true, 1},
		{"remote window", url, Options{Mode: ModeWindow, WindowS: 2, StrideS: 2, Guard: guard}, true, 2},
		// Without a guard nothing has asked the server about ranges, so
		// the file cannot be decoded sparsely.
		{"remote whole, ranges unknown", url, Options{}, true, 1},
		{"remote whole, server takes ranges", url, Options{Guard: guard}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Remove(mark); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			o := tc.opts
			// ffprobe, not the MP4's headers, answers: the early start is
			// for the sources it has to read.
			o.FFmpegPath, o.FFprobePath, o.Probe, o.Logger = markingFFmpeg, strictFFprobe, ProbeFFprobe, testLog(t)
			if tc.early {
				o.FFprobePath = waitingFFprobe
			}
			d := newTestDecoder(t, o)
			if got := len(collect(t, d, tc.uri)); got != tc.clips {
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
	d := newTestDecoder(t, Options{Probe: ProbeFFprobe, Logger: testLog(t)})
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
