package media

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/sourceguard"
)

// TestDecodeThreadsReachEveryDecode: the decoder's thread count goes before
// every input of every command that decodes (full, tail, seeks, shot cuts),
// and no thread option is given when ffmpeg is left to choose.
func TestDecodeThreadsReachEveryDecode(t *testing.T) {
	src := sourceguard.Source{URI: "/v.mp4", Local: "/v.mp4", Input: "file:/v.mp4"}
	p := probed{Info: Info{DurationS: 600, Width: 64, Height: 48}, format: "mov,mp4,m4a,3gp,3g2,mj2"}
	for _, threads := range []int{0, 1, 3} {
		d := &Decoder{opts: Options{DecodeThreads: threads}.WithDefaults()}
		for name, args := range map[string][]string{
			"full":  d.ffmpegArgs(src, nil, 0),
			"tail":  d.tailArgs(src, nil, p, 600),
			"seeks": d.sparseArgs(src, nil, p, []int{0, 50, 300}),
			"cuts":  d.cutArgs(src, nil, p),
		} {
			inputs := 0
			for i, a := range args {
				if a != "-i" {
					continue
				}
				// The options of this input are those after the previous one.
				from := 0
				for k := i - 1; k >= 0; k-- {
					if args[k] == "-i" {
						from = k + 2
						break
					}
				}
				opts := args[from:i]
				inputs++
				j := slices.Index(opts, "-threads")
				switch {
				case threads == 0 && j >= 0:
					t.Errorf("threads 0, %s: -threads given: %q", name, args)
				case threads > 0 && (j < 0 || opts[j+1] != strconv.Itoa(threads)):
					t.Errorf("threads %d, %s: input %d lacks -threads %d: %q", threads, name, inputs, threads, strings.Join(args, " "))
				}
			}
			if inputs == 0 {
				t.Errorf("%s: no input in %q", name, args)
			}
		}
	}
}

// TestDecodeThreadsSameFrames: one decoder thread gives the frames of
// ffmpeg's own thread choice, on B-frames and a long GOP, in the full
// decode and in the seeking one.
func TestDecodeThreadsSameFrames(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	ctx := context.Background()
	video := mediatest.LongGOPVideo(t, t.TempDir(), "gop.mp4", 50.3)
	want := collect(t, newTestDecoder(t, Options{MaxFrames: 4, Logger: testLog(t)}), video)
	d := newTestDecoder(t, Options{MaxFrames: 4, DecodeThreads: 1, Logger: testLog(t)})
	src, px, p := openProbed(t, d, video)
	var full, sparse []Clip
	if err := d.decode(ctx, src, px, p, nil, func(c Clip) error { full = append(full, c); return nil }); err != nil {
		t.Fatal(err)
	}
	sameClips(t, "full decode, one thread", full, want)
	if err := d.decodeSparse(ctx, src, px, p, func(c Clip) error { sparse = append(sparse, c); return nil }); err != nil {
		t.Fatal(err)
	}
	sameClips(t, "seeking decode, one thread", sparse, want)
}

func TestDecodeThreadsValidate(t *testing.T) {
	for _, tc := range []struct {
		threads int
		ok      bool
	}{{0, true}, {1, true}, {maxDecodeThreads, true}, {-1, false}, {maxDecodeThreads + 1, false}} {
		err := Options{DecodeThreads: tc.threads}.WithDefaults().Validate()
		if (err == nil) != tc.ok {
			t.Errorf("DecodeThreads %d: err %v, want ok %v", tc.threads, err, tc.ok)
		}
	}
}
