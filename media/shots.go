package media

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	ffmpeg "github.com/u2takey/ffmpeg-go"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/sourceguard"
)

// Shot detection defaults.
const (
	DefaultSceneThreshold = 0.3
	DefaultMinShotS       = 1.0
	DefaultMaxShotS       = 10.0
)

// segment is one clip's span in shots mode.
type segment struct{ start, end float64 }

// shotSegments turns cut times into clip spans over [0, duration]: a shot
// shorter than minS joins the next one (the last joins the one before), and
// a shot longer than maxS is split into equal windows of at most maxS, so
// a hit is a whole shot where shots are short and a piece of one where
// they are long.
func shotSegments(cuts []float64, duration, minS, maxS float64) []segment {
	bounds := []float64{0}
	for _, c := range slices.Sorted(slices.Values(cuts)) {
		if c-bounds[len(bounds)-1] >= minS && duration-c >= minS {
			bounds = append(bounds, c)
		}
	}
	bounds = append(bounds, duration)
	var out []segment
	for i := 0; i+1 < len(bounds); i++ {
		start, end := bounds[i], bounds[i+1]
		n := max(1, int(math.Ceil((end-start)/maxS-1e-9)))
		step := (end - start) / float64(n)
		for k := range n {
			s := start + float64(k)*step
			e := s + step
			if k == n-1 {
				e = end
			}
			out = append(out, segment{s, e})
		}
	}
	return out
}

// cutArgs builds the command that logs the frames scoring above the
// scene threshold.
func (d *Decoder) cutArgs(src sourceguard.Source, px *sourceguard.Proxy, p probed) []string {
	// The comma inside the expression is escaped for the filter graph.
	expr := "gt(scene\\," + strconv.FormatFloat(d.opts.SceneThreshold, 'f', -1, 64) + ")"
	stream := ffmpeg.Input(src.Input, d.decodeInput(src, px)).
		Get("v:"+strconv.Itoa(p.videoOrdinal)).
		Filter("select", ffmpeg.Args{expr}).
		Filter("showinfo", ffmpeg.Args{}).
		Output("-", ffmpeg.KwArgs{"f": "null"})
	return append([]string{"-hide_banner", "-nostdin", "-v", "info"}, stream.GetArgs()...)
}

// detectCuts runs ffmpeg's scene-change score over the chosen video stream
// and returns the times (seconds from the start) of frames scoring above
// the threshold: the first frame of each new shot.
func (d *Decoder) detectCuts(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, p probed) ([]float64, error) {
	cmd := command(ctx, d.opts.FFmpegPath, d.cutArgs(src, px, p))
	src.Prepare(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: ffmpeg stderr: %w", src.URI, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", src.URI, &execStartError{tool: d.opts.FFmpegPath, err: err})
	}
	cuts, diag := parseCuts(stderr)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, d.ctxError(ctx, src, ctx.Err())
		}
		return nil, failure(src, px, "ffmpeg", err, diag)
	}
	return cuts, nil
}

// parseCuts reads the showinfo frame times from ffmpeg's log, keeping the
// tail of the other lines for error messages.
func parseCuts(r io.Reader) ([]float64, string) {
	var cuts []float64
	diag := newTailBuffer(stderrLimit)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := parseFrameLine(line); ok {
			cuts = append(cuts, f.ptsS)
			continue
		}
		if !strings.Contains(line, "Parsed_showinfo") {
			_, _ = diag.Write([]byte(line + "\n"))
		}
	}
	_, _ = io.Copy(io.Discard, r)
	return cuts, diag.String()
}

// shotsFor detects the shots of a probed source and returns its clip spans.
func (d *Decoder) shotsFor(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, p probed) ([]segment, error) {
	if !(p.DurationS > 0) {
		return nil, pipeline.Poisonf("%s: shots mode needs the video's duration, which the container does not give", src.URI)
	}
	cuts, err := d.detectCuts(ctx, src, px, p)
	if err != nil {
		return nil, err
	}
	segs := shotSegments(cuts, p.DurationS, d.opts.MinShotS, d.opts.MaxShotS)
	d.opts.Logger.DebugContext(ctx, "sample: shots", "uri", src.URI, "cuts", len(cuts), "clips", len(segs))
	return segs, nil
}
