package media

import (
	"image"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseFrameLine(t *testing.T) {
	cases := []struct {
		line string
		want frameLine
		ok   bool
	}{
		{"[Parsed_showinfo_1 @ 0x55ff1a23fb40] n:   2 pts: 180000 pts_time:2       pos:    42864 fmt:yuv444p sar:1/1 s:320x240 i:P iskey:0 type:P",
			frameLine{ptsS: 2, w: 320, h: 240}, true},
		{"[Parsed_showinfo_1 @ 0x1] n:  11 pts:1080000 pts_time:12.04   pos: -1 fmt:rgb24 sar:0/1 s:1920x1080 i:P", frameLine{ptsS: 12.04, w: 1920, h: 1080}, true},
		{"[Parsed_showinfo_1 @ 0x1] n:   0 pts: -9000 pts_time:-0.1 pos: 1 fmt:gray s:64x48 i:P", frameLine{ptsS: -0.1, w: 64, h: 48}, true},
		// showinfo's other lines and anything else are not frames.
		{"[Parsed_showinfo_1 @ 0x1] config in time_base: 1/1, frame_rate: 1/1", frameLine{}, false},
		{"[Parsed_showinfo_1 @ 0x1] color_range:unknown color_space:unknown", frameLine{}, false},
		{"[Parsed_showinfo_1 @ 0x1] n:   0 pts: 0 pts_time:nan pos: 1 s:64x48", frameLine{}, false},
		{"[Parsed_showinfo_1 @ 0x1] n:   0 pts: 0 pts_time:1 pos: 1 s:0x48", frameLine{}, false},
		{"[hls @ 0x1] Opening 'http://x/seg1.ts' for reading", frameLine{}, false},
	}
	for _, c := range cases {
		got, ok := parseFrameLine(c.line)
		if ok != c.ok || got != c.want {
			t.Errorf("parseFrameLine(%q) = %+v, %v; want %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestParseHeaderLine(t *testing.T) {
	cases := []struct {
		line string
		want inputHeader
	}{
		{"  Duration: 00:00:20.00, start: 1.400000, bitrate: 201 kb/s", inputHeader{durationS: 20, startS: 1.4, bitrate: 201000}},
		{"  Duration: N/A, start: 5.400000, bitrate: N/A", inputHeader{startS: 5.4}},
		{"  Duration: 01:02:03.50, bitrate: N/A", inputHeader{durationS: 3723.5}},
		{"  Duration: N/A, start: -0.080000, bitrate: 1500 kb/s", inputHeader{startS: -0.08, bitrate: 1.5e6}},
	}
	for _, c := range cases {
		got, ok := parseHeaderLine(c.line)
		if !ok || math.Abs(got.durationS-c.want.durationS) > 1e-9 || math.Abs(got.startS-c.want.startS) > 1e-9 || got.bitrate != c.want.bitrate {
			t.Errorf("parseHeaderLine(%q) = %+v, %v; want %+v", c.line, got, ok, c.want)
		}
	}
	if _, ok := parseHeaderLine("Stream #0:0: Video: h264"); ok {
		t.Error("a stream line parsed as the header")
	}
}

// readLog must pair the header and frames in order and keep the rest as
// diagnostics, whatever the line endings.
func TestReadLog(t *testing.T) {
	log := "Input #0, hls, from 'http://x/live.m3u8':\r\n" +
		"  Duration: N/A, start: 5.400000, bitrate: N/A\n" +
		"  Stream #0:0: Video: h264\n" +
		"[Parsed_showinfo_1 @ 0x1] config in time_base: 1/90000\n" +
		"[Parsed_showinfo_1 @ 0x1] n:   0 pts: 0 pts_time:0 pos: 1 fmt:yuv420p s:96x64 i:P\n" +
		"[hls @ 0x2] Opening 'http://x/seg4.ts' for reading\r" +
		"[Parsed_showinfo_1 @ 0x1] n:   1 pts: 90000 pts_time:1 pos: 2 fmt:yuv420p s:96x64 i:P\n" +
		"[http @ 0x3] HTTP error 404 Not Found"
	events := make(chan logEvent, 16)
	var diag strings.Builder
	readLog(strings.NewReader(log), events, &diag)
	var got []logEvent
	for ev := range events {
		got = append(got, ev)
	}
	if len(got) != 3 || got[0].header == nil || got[0].header.startS != 5.4 || got[1].frame.ptsS != 0 || got[2].frame.ptsS != 1 {
		t.Fatalf("events %+v", got)
	}
	for _, want := range []string{"Input #0", "Opening 'http://x/seg4.ts'", "HTTP error 404"} {
		if !strings.Contains(diag.String(), want) {
			t.Errorf("diagnostics lack %q:\n%s", want, diag.String())
		}
	}
	if strings.Contains(diag.String(), "pts_time") {
		t.Error("frame lines kept as diagnostics")
	}
}

// feed runs frames at the given stream times through w, as a sampler at
// fps would deliver them, and returns the windows emitted.
func feed(w *windower, fps float64, times ...float64) []Window {
	var out []Window
	wall := time.Unix(1000, 0)
	for _, t := range times {
		next := (math.Floor(t*fps+timeEps) + 1) / fps
		img := image.NewRGBA(image.Rect(0, 0, 1, 1))
		out = append(out, w.add(t, next, wall.Add(seconds(t)), func() *image.RGBA { return img })...)
	}
	return out
}

func frameTimes(w Window) []float64 {
	var out []float64
	for _, f := range w.Frames {
		out = append(out, f.TimeS)
	}
	return out
}

func TestWindower(t *testing.T) {
	opts := func(window, stride float64, maxFrames int) Options {
		return Options{FPS: 1, MaxFrames: maxFrames, Selection: SelectUniform, Mode: ModeWindow, WindowS: window, StrideS: stride}.WithDefaults()
	}
	seq := func(from, to float64) []float64 {
		var out []float64
		for t := from; t < to; t++ {
			out = append(out, t)
		}
		return out
	}
	type win struct {
		index      int
		start, end float64
		frames     []float64
	}
	cases := []struct {
		name  string
		o     Options
		skip  float64
		times []float64
		flush float64 // > 0: the source ends here
		want  []win
	}{
		{"tumbling", opts(4, 0, 12), math.Inf(-1), seq(0, 9), 0, []win{
			{0, 0, 4, []float64{0, 1, 2, 3}},
			{1, 4, 8, []float64{4, 5, 6, 7}},
		}},
		{"emitted as soon as the last frame arrives", opts(4, 0, 12), math.Inf(-1), seq(0, 8), 0, []win{
			{0, 0, 4, []float64{0, 1, 2, 3}},
			{1, 4, 8, []float64{4, 5, 6, 7}},
		}},
		{"overlapping", opts(4, 2, 12), math.Inf(-1), seq(0, 8), 0, []win{
			{0, 0, 4, []float64{0, 1, 2, 3}},
			{1, 2, 6, []float64{2, 3, 4, 5}},
			{2, 4, 8, []float64{4, 5, 6, 7}},
		}},
		{"source clock off the grid", opts(4, 0, 12), math.Inf(-1), []float64{5.4, 6.4, 7.4, 8.4, 9.4, 10.4, 11.4, 12.4}, 0, []win{
			{1, 4, 8, []float64{5.4, 6.4, 7.4}},
			{2, 8, 12, []float64{8.4, 9.4, 10.4, 11.4}},
		}},
		{"a gap leaves windows out", opts(4, 0, 12), math.Inf(-1), []float64{0, 1, 2, 3, 13, 14, 15, 16}, 0, []win{
			{0, 0, 4, []float64{0, 1, 2, 3}},
			{3, 12, 16, []float64{13, 14, 15}},
		}},
		{"resume skips emitted windows", opts(4, 0, 12), 8, seq(5, 17), 0, []win{
			{2, 8, 12, []float64{8, 9, 10, 11}},
			{3, 12, 16, []float64{12, 13, 14, 15}},
		}},
		{"resume with overlap", opts(4, 2, 12), 8, seq(5, 12), 0, []win{
			{3, 6, 10, []float64{6, 7, 8, 9}},
			{4, 8, 12, []float64{8, 9, 10, 11}},
		}},
		{"max frames thins uniformly", opts(10, 0, 4), math.Inf(-1), seq(0, 10), 0, []win{
			{0, 0, 10, []float64{0, 3, 6, 9}},
		}},
		{"end of a file cuts the last window", opts(4, 0, 12), math.Inf(-1), seq(0, 6), 6, []win{
			{0, 0, 4, []float64{0, 1, 2, 3}},
			{1, 4, 6, []float64{4, 5}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWindower(c.o, newTimeGrid(c.o, c.skip))
			got := feed(w, c.o.FPS, c.times...)
			if c.flush > 0 {
				got = append(got, w.flush(c.flush)...)
			}
			if len(got) != len(c.want) {
				var idx []int
				for _, g := range got {
					idx = append(idx, g.Index)
				}
				t.Fatalf("windows %v, want %d", idx, len(c.want))
			}
			for i, g := range got {
				want := c.want[i]
				if g.Index != want.index || g.StartS != want.start || math.Abs(g.EndS-want.end) > 1e-9 || !floatsEqual(frameTimes(g), want.frames) {
					t.Errorf("window %d [%v, %v) frames %v; want %d [%v, %v) frames %v",
						g.Index, g.StartS, g.EndS, frameTimes(g), want.index, want.start, want.end, want.frames)
				}
				if got, want := g.WallEnd.Sub(g.WallStart), seconds(g.EndS-g.StartS); (got - want).Abs() > time.Millisecond {
					t.Errorf("window %d wall span %v, want %v (frames arrived in real time)", g.Index, got, want)
				}
			}
		})
	}
}

func floatsEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9 {
			return false
		}
	}
	return true
}
