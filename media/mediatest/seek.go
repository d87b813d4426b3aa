package mediatest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Videos for seeking: what makes a seek land somewhere other than where a
// full decode passes is reordering (B-frames), keyframes far apart, uneven
// frame times and a clock that does not start at zero.

// LongGOPVideo is a testsrc2 video with up to 3 B-frames in a row and a
// keyframe every 250 frames (10 s), x264's default for real footage, in
// the container that name's extension says (mp4, mkv).
func LongGOPVideo(tb testing.TB, dir, name string, seconds float64) string {
	return MakeVideo(tb, dir, name,
		"testsrc2=size=160x120:rate=25:duration="+strconv.FormatFloat(seconds, 'f', -1, 64),
		"-bf", "3", "-g", "250")
}

// VFRVideo is 45 s of variable frame rate with B-frames: frame times
// jittered by up to 12 ms, three of every seven frames kept except from 10
// s to 17 s (all of them, 30 fps), and nothing from 30 s to 31.2 s.
func VFRVideo(tb testing.TB, dir string) string {
	return MakeVideo(tb, dir, "vfr.mp4",
		"testsrc2=size=160x120:rate=30:duration=45,settb=1/1000,setpts='PTS+12*sin(N)',"+
			`select='lt(mod(n\,7)\,3)+between(t\,10\,17)',select='not(between(t\,30\,31.2))'`,
		"-bf", "3", "-g", "300", "-fps_mode", "vfr")
}

// OffsetVideo is a 44 s long-GOP video whose container clock starts at
// about 7 s (an audio track starts there) and whose video starts 1.3 s
// after the audio, so the first sampled frame is not at time zero.
func OffsetVideo(tb testing.TB, dir string) string {
	tb.Helper()
	plain := LongGOPVideo(tb, dir, "offset-plain.mp4", 44)
	return WithAudio(tb, plain, filepath.Join(dir, "offset.mp4"), 46, 1.3, 7)
}

// WithAudio copies video's stream to path next to audioS seconds of tone,
// the video delayed by delayS after the audio and the whole file's clock
// starting at startS.
func WithAudio(tb testing.TB, video, path string, audioS, delayS, startS float64) string {
	tb.Helper()
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	args := []string{"-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=" + f(audioS),
		"-itsoffset", f(delayS), "-i", video, "-map", "1:v", "-map", "0:a", "-c:v", "copy", "-c:a", "aac",
		"-output_ts_offset", f(startS), path}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path
}
