package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	mp4 "github.com/abema/go-mp4"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/sourceguard"
)

// TestProbeMP4MatchesFFprobe holds the in-process reading of MP4 headers
// to what ffprobe reports, field for field, on the layouts it accepts,
// and checks that it leaves the others to ffprobe.
func TestProbeMP4MatchesFFprobe(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	h264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	if !hasEncoder(t, "libx264") {
		t.Skip("ffmpeg has no libx264: the accepted layouts need H.264")
	}
	// render makes dir/name with ffmpeg from args (inputs included).
	render := func(name string, args ...string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		full := append([]string{"-hide_banner", "-v", "error", "-y"}, args...)
		if out, err := exec.Command("ffmpeg", append(full, path)...).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(full, " "), err, out)
		}
		return path
	}
	lavfi := func(graph string) []string { return []string{"-f", "lavfi", "-i", graph} }
	src := "testsrc2=size=320x240:rate=25:duration=6"
	base := render("base.mp4", append(lavfi(src), h264...)...)
	copyOf := func(name string, args ...string) func() string {
		return func() string { return render(name, append(append([]string{}, args...), "-c", "copy")...) }
	}
	encode := func(name, graph string, extra ...string) func() string {
		return func() string { return render(name, append(append(lavfi(graph), h264...), extra...)...) }
	}
	type probeCase struct {
		name    string
		make    func() string
		decline string // "" when the headers must answer, else part of the reason
	}
	cases := []probeCase{
		{"h264 with B-frames and an edit", func() string { return base }, ""},
		{"no B-frames", encode("nob.mp4", src, "-bf", "0"), ""},
		{"moov first", encode("fast.mp4", src, "-movflags", "+faststart"), ""},
		{"cropped odd size", encode("odd.mp4", "testsrc2=size=322x182:rate=30:duration=4"), ""},
		{"ntsc rate", encode("ntsc.mp4", "testsrc2=size=320x240:rate=30000/1001:duration=5"), ""},
		{"rotated 90", copyOf("r90.mp4", "-i", base, "-metadata:s:v:0", "rotate=90"), ""},
		{"rotated 180", copyOf("r180.mp4", "-i", base, "-metadata:s:v:0", "rotate=180"), ""},
		{"rotated 270", copyOf("r270.mp4", "-i", base, "-metadata:s:v:0", "rotate=270"), ""},
		{"cut start", copyOf("cut.mp4", "-ss", "1.3", "-i", base), ""},
		{"cut end", copyOf("short.mp4", "-i", base, "-t", "2.5"), ""},
		{"variable frame rate", encode("vfr.mp4", src, "-vf", "setpts='if(lt(N,40),N,N*3)/25/TB'", "-fps_mode", "vfr"), ""},
		{"longer audio", func() string {
			return render("audio.mp4", append(append(lavfi(src), lavfi("sine=duration=8")...), append(h264, "-c:a", "aac")...)...)
		}, ""},
		{"audio track first", func() string {
			return render("afirst.mp4", append(append(lavfi("sine=duration=5"), "-i", base), "-map", "0:a", "-map", "1:v", "-c:v", "copy", "-c:a", "aac")...)
		}, ""},
		{"two video tracks", func() string {
			return render("twov.mp4", "-i", base, "-i", base, "-map", "0:v", "-map", "1:v", "-c", "copy")
		}, ""},
		{"quicktime", copyOf("qt.mov", "-i", base), ""},
		{"fragmented", copyOf("frag.mp4", "-i", base, "-movflags", "frag_keyframe+empty_moov"), "fragmented"},
		{"mpeg-4 part 2", func() string {
			return render("mp4v.mp4", append(lavfi(src), "-c:v", "mpeg4")...)
		}, "sample entry mp4v"},
		{"cover art", func() string {
			png := render("cover.png", append(lavfi("color=c=red:s=64x64"), "-frames:v", "1")...)
			return render("covr.mp4", "-i", base, "-i", png, "-map", "0", "-map", "1", "-c", "copy", "-disposition:v:1", "attached_pic")
		}, "cover art"},
		{"late start", func() string {
			return render("late.mp4", append([]string{"-itsoffset", "1", "-i", base}, append(lavfi("sine=duration=7"), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac")...)...)
		}, "2 edits"},
		{"matroska", copyOf("mkv.mkv", "-i", base), "ftyp"},
		{"skewed matrix", func() string {
			return withMatrix(t, copyFileTo(t, base, filepath.Join(dir, "skew.mp4")), [9]int32{0x10000, 0x4000, 0, 0, 0x10000, 0, 0, 0, 0x40000000})
		}, "display matrix"},
		{"flipped", func() string {
			return withMatrix(t, copyFileTo(t, base, filepath.Join(dir, "flip.mp4")), [9]int32{-0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000})
		}, ""},
		{"transposed", func() string {
			return withMatrix(t, copyFileTo(t, base, filepath.Join(dir, "transpose.mp4")), [9]int32{0, 0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000})
		}, ""},
	}
	if hasEncoder(t, "libx265") {
		cases = append(cases,
			probeCase{name: "hevc hvc1", make: encode("hvc1.mp4", "testsrc2=size=322x182:rate=25:duration=3", "-c:v", "libx265", "-x265-params", "log-level=error", "-tag:v", "hvc1")},
			probeCase{name: "hevc hev1", make: encode("hev1.mp4", src, "-c:v", "libx265", "-x265-params", "log-level=error")},
		)
	}
	ff := newTestDecoder(t, Options{Probe: ProbeFFprobe, Logger: testLog(t)})
	auto := newTestDecoder(t, Options{Logger: testLog(t)})
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.make()
			src, err := parseSource(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ff.probe(ctx, src, nil)
			if err != nil {
				t.Fatalf("ffprobe: %v", err)
			}
			got, err := probeMP4Path(path)
			switch {
			case c.decline == "" && err != nil:
				t.Fatalf("headers declined: %v (ffprobe read %+v)", err, want)
			case c.decline == "" && got != want:
				t.Fatalf("headers read\n %+v\nffprobe read\n %+v", got, want)
			case c.decline != "" && err == nil:
				t.Fatalf("headers answered %+v; want them left to ffprobe (%s)", got, c.decline)
			case c.decline != "" && (!errors.Is(err, errMP4Declined) || !strings.Contains(err.Error(), c.decline)):
				t.Fatalf("declined with %v; want a reason with %q", err, c.decline)
			}
			// Whatever reads it, the decoder sees ffprobe's figures.
			if p, err := auto.probe(ctx, src, nil); err != nil || p != want {
				t.Fatalf("auto probe = %+v, %v; want %+v", p, err, want)
			}
		})
	}
}

// TestProbeMP4BrokenFiles feeds the header reader cut and scrambled MP4s:
// it declines each, and the decoder's answer stays ffprobe's.
func TestProbeMP4BrokenFiles(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	good := mediatest.MakeVideo(t, dir, "good.mp4", "testsrc2=size=160x120:rate=25:duration=3", "-movflags", "+faststart")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	moov := bytes.Index(data, []byte("moov"))
	if moov < 4 {
		t.Fatal("no moov box in the test video")
	}
	cases := map[string][]byte{
		"cut in moov":  data[:moov+200],
		"moov only":    data[:moov+int(binary.BigEndian.Uint32(data[moov-4:]))],
		"ftyp only":    data[:moov-4],
		"zeroed table": zeroBox(data, "stts"),
		"huge box":     bigBox(data, "trak"),
	}
	ff := newTestDecoder(t, Options{Probe: ProbeFFprobe, Logger: testLog(t)})
	auto := newTestDecoder(t, Options{Logger: testLog(t)})
	ctx := context.Background()
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".mp4"), b)
			src, err := parseSource(path)
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := ff.probe(ctx, src, nil)
			got, gotErr := auto.probe(ctx, src, nil)
			if got != want || (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("auto probe = %+v, %v; ffprobe = %+v, %v", got, gotErr, want, wantErr)
			}
			if p, err := probeMP4Path(path); err == nil && wantErr != nil {
				t.Fatalf("headers answered %+v where ffprobe failed: %v", p, wantErr)
			}
		})
	}
}

// TestHeadersReadThroughGuard: a guarded local file's headers are read
// through the descriptor the guard opened, so a file put in its place
// after the check is not what the probe describes.
func TestHeadersReadThroughGuard(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	checked := mediatest.MakeVideo(t, dir, "v.mp4", "testsrc2=size=160x120:rate=25:duration=3")
	other := mediatest.MakeVideo(t, t.TempDir(), "other.mp4", "testsrc2=size=320x240:rate=25:duration=5")
	d := newTestDecoder(t, Options{Guard: mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{FileRoots: []string{dir}}), Logger: testLog(t)})
	src, px, err := d.open(context.Background(), checked)
	if err != nil {
		t.Fatal(err)
	}
	defer d.release(&src, px)
	if src.LocalFile() == nil {
		t.Fatal("the guard opened no file")
	}
	if err := os.Rename(other, checked); err != nil {
		t.Fatal(err)
	}
	p, ok := d.probeHeaders(context.Background(), src)
	if !ok || p.Width != 160 || p.DurationS != 3 {
		t.Fatalf("probe read %+v (ok %v); want the checked 160x120, 3 s file", p, ok)
	}
}

// probeMP4Path reads the headers of the file at path, as for a source no
// guard opened.
func probeMP4Path(path string) (probed, error) {
	return probeLocalMP4(sourceguard.Source{Local: path})
}

func hasEncoder(tb testing.TB, name string) bool {
	tb.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	return err == nil && bytes.Contains(out, []byte(" "+name+" "))
}

func copyFileTo(tb testing.TB, from, to string) string {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	return writeFile(tb, to, b)
}

// withMatrix overwrites the display matrix of path's first tkhd box.
func withMatrix(tb testing.TB, path string, m [9]int32) string {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	boxes, err := mp4.ExtractBoxWithPayload(f, nil, mp4.BoxPath{mp4.BoxTypeMoov(), mp4.BoxTypeTrak(), mp4.BoxTypeTkhd()})
	if err != nil || len(boxes) == 0 {
		tb.Fatalf("no tkhd in %s: %v", path, err)
	}
	tk := boxes[0].Payload.(*mp4.Tkhd)
	tk.Matrix = m
	var buf bytes.Buffer
	if _, err := mp4.Marshal(&buf, tk, boxes[0].Info.Context); err != nil {
		tb.Fatal(err)
	}
	if _, err := f.WriteAt(buf.Bytes(), int64(boxes[0].Info.Offset+boxes[0].Info.HeaderSize)); err != nil {
		tb.Fatal(err)
	}
	return path
}

// zeroBox returns data with the payload of the first box of type typ
// zeroed.
func zeroBox(data []byte, typ string) []byte {
	out := bytes.Clone(data)
	if i := bytes.Index(out, []byte(typ)); i >= 4 {
		size := int(binary.BigEndian.Uint32(out[i-4:]))
		clear(out[i+4 : min(len(out), i-4+size)])
	}
	return out
}

// bigBox returns data with the first box of type typ claiming to run far
// past the end of the file.
func bigBox(data []byte, typ string) []byte {
	out := bytes.Clone(data)
	if i := bytes.Index(out, []byte(typ)); i >= 4 {
		binary.BigEndian.PutUint32(out[i-4:], 0x7fffffff)
	}
	return out
}

// TestHeadersSpareFFprobe: a local MP4 is decoded without ffprobe running
// at all, into the clips an ffprobe reading gives; a Matroska file still
// needs it.
func TestHeadersSpareFFprobe(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	mp4File := mediatest.MakeVideo(t, dir, "v.mp4", "testsrc2=size=160x120:rate=25:duration=5")
	mkvFile := mediatest.MakeVideo(t, dir, "v.mkv", "testsrc2=size=160x120:rate=25:duration=5")
	broken := toolScript(t, t.TempDir(), "ffprobe", "echo 'ffprobe must not run' >&2\nexit 1\n")
	for _, mode := range []Options{{}, {Mode: ModeWindow, WindowS: 2}} {
		withHeaders := mode
		withHeaders.FFprobePath, withHeaders.Logger = broken, testLog(t)
		withTool := mode
		withTool.Probe, withTool.Logger = ProbeFFprobe, testLog(t)
		got := collect(t, newTestDecoder(t, withHeaders), mp4File)
		want := collect(t, newTestDecoder(t, withTool), mp4File)
		if len(got) != len(want) || len(got) == 0 {
			t.Fatalf("%s mode: %d clips, %d with ffprobe", mode.Mode, len(got), len(want))
		}
		for i := range got {
			sameClips(t, mode.Mode, got[i:i+1], want[i:i+1])
		}
		err := newTestDecoder(t, withHeaders).Clips(context.Background(), mkvFile, func(Clip) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "ffprobe") {
			t.Fatalf("Matroska decoded without ffprobe (err %v)", err)
		}
	}
}

// FuzzProbeMP4 feeds the header reader mutated MP4s: it never panics out,
// and what it accepts is a usable stream description.
func FuzzProbeMP4(f *testing.F) {
	mediatest.RequireFFmpeg(f)
	dir := f.TempDir()
	for _, extra := range [][]string{nil, {"-movflags", "+faststart"}} {
		path := mediatest.MakeVideo(f, dir, "seed.mp4", "testsrc2=size=64x48:rate=10:duration=1", extra...)
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "f.mp4")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := probeMP4Path(path)
		if err != nil {
			if !errors.Is(err, errMP4Declined) {
				t.Fatalf("error %v does not say the file is left to ffprobe", err)
			}
			return
		}
		if p.Width <= 0 || p.Height <= 0 || !(p.DurationS > 0) || !(p.FPS > 0) || p.BitRate < 0 || p.format != movFormat {
			t.Fatalf("accepted an unusable description: %+v", p)
		}
	})
}
