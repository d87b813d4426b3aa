package media

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	ffmpeg "github.com/u2takey/ffmpeg-go"

	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/sourceguard"
)

// Sparse decoding: a whole-mode clip of a long video keeps MaxFrames of
// thousands of sampled frames, so decoding every frame wastes nearly all of
// the work. The sparse path decodes only from the keyframe before each kept
// frame and reproduces exactly the frames the full decode would give.
//
// What the full decode gives (ffmpeg -i IN -vf fps=F,scale to rawvideo):
//   - Timestamps are the input's minus the container's start time.
//   - The fps filter rounds each frame's time to its 1/F grid (nearest,
//     half away from zero) and fills grid slot n with the last frame whose
//     rounded slot is <= n, starting at the first frame's slot n0 and
//     ending, at end of input, at the rounded end of the last frame.
//   - The rawvideo output runs ffmpeg's constant-frame-rate sync from time
//     0, so slots 0..n0-1 repeat slot n0's frame: output frame g is slot g,
//     and the video has N = last slot + 1 frames.
//
// The sparse path therefore:
//  1. decodes the tail (seek a little before the end) through the same fps
//     filter with -copyts -start_at_zero, so slot numbers stay absolute,
//     and reads the last slot from showinfo: that gives N and the last
//     frame;
//  2. picks the kept frames of N exactly as the full decode would;
//  3. decodes every other kept frame g with one ffmpeg input per frame:
//     -ss (g-0.5)/F -noaccurate_seek starts decoding at the keyframe at or
//     before that time and feeds every frame from there to the fps filter.
//     A keyframe at or before (g+0.5)/F falls in slot g or earlier, so
//     slot g is then exactly the full decode's; trim keeps slot g only.
//     Where a demuxer lands after the target anyway, the input yields no
//     frame, the count comes up short and the full decode runs instead.
//     Frame 0 is the first slot the filter emits, decoded without seeking.
//
// N is nearly always round(duration*F), so step 3 runs for that count's
// selection beside step 1, and a different N only adds the frames its
// selection changes.
//
// Anything the sparse path cannot vouch for falls back to the full decode.

// sparseMinGapS is how far apart, in seconds of video, the kept frames must
// be for seeking to pay. Each kept frame costs a seek that decodes from the
// keyframe before it, on average half a GOP (x264's default GOP is 250
// frames, 10 s at 25 fps), while the full decode costs the whole gap
// between kept frames. BenchmarkWholeSparse, 240 s of 640x360 H.264 with
// 250-frame GOPs on 2 shared cores (load 6): gap 4 s: full 5.1 s, sparse
// 7.1 s; 8 s: 4.1 s vs 4.6 s; 12 s: 3.5 s vs 2.6 s; 20 s: 3.6 s vs 1.6 s.
// The break-even lies near 10 s for such GOPs; shorter GOPs move it down.
// Small frames move it up, as process start-up then weighs as much as
// decoding: 120 s of 320x180 at a 10 s gap costs the same either way.
const sparseMinGapS = 10.0

// sparseProcs is how many ffmpeg processes decode seeks at once. On 2
// shared cores, 11 seeks in a 10-minute 720p video took 4.2 s two at a
// time against 8.2 s one at a time in one run; in later runs at load 4-6,
// 1 to 4 at a time all took 7.9-8.6 s. Two never cost more, and match the
// cores a full decode's threads would use here.
const sparseProcs = 2

// seeksPerRun bounds the inputs of one ffmpeg process: each input opens
// the file and its own decoder with its reference frames, so memory grows
// with them, while a new process costs only its start-up (tens of ms).
const seeksPerRun = 16

// tailS is how far before the probed end the tail decode seeks; the demuxer
// goes back to the keyframe before it anyway.
const tailS = 1.0

// errSparseFallback means the sparse path could not reproduce the full
// decode for this source; the full decode runs instead.
var errSparseFallback = errors.New("sparse decode not exact for this source")

// seekableFormat reports demuxers whose seeks use a complete index and land
// on a keyframe at or before the requested time. Others (MPEG-TS, raw
// streams) seek by byte offset and may start mid-GOP.
func seekableFormat(names string) bool {
	for name := range strings.SplitSeq(names, ",") {
		switch name {
		case "mov", "mp4", "matroska", "webm":
			return true
		}
	}
	return false
}

// sparse reports whether the whole-mode clip of p should be decoded
// sparsely, and why not when it should not.
func (d *Decoder) sparse(src sourceguard.Source, px *sourceguard.Proxy, p probed) (bool, string) {
	if ok, why := d.maySeek(src); !ok {
		return false, why
	}
	o := d.opts
	switch {
	case !seekableFormat(p.format):
		return false, "container " + p.format + " has no reliable seek index"
	case !(p.DurationS > 0):
		return false, "unknown duration"
	case p.DurationS/float64(o.MaxFrames) < sparseMinGapS:
		return false, "kept frames too close together for seeking to pay"
	case int(math.Round(p.DurationS*o.FPS)) <= 2*o.MaxFrames:
		return false, "few sampled frames"
	}
	return true, ""
}

// maySeek is the part of the sparse choice made before probing: the mode
// and the source.
func (d *Decoder) maySeek(src sourceguard.Source) (bool, string) {
	o := d.opts
	switch {
	case o.Mode != ModeWhole || o.Selection != SelectUniform:
		// Head stops the full decode early already; tail keeps a run of
		// adjacent frames, which a sequential decode of the end does best.
		return false, "not whole mode with uniform selection"
	case src.Local == "" && !(src.Remote && src.Ranges && src.HLS == nil):
		// A remote file seeks by byte-range requests (through the source
		// proxy where there is one), which only a server that takes them
		// answers without sending everything before the range.
		return false, "not a local file or a remote one whose server takes byte ranges"
	}
	return true, ""
}

// decodeSparse decodes the whole-mode clip of p by seeking; it returns
// errSparseFallback, having called nothing, where the full decode must run.
func (d *Decoder) decodeSparse(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, p probed, fn func(Clip) error) error {
	o := d.opts
	size := 3 * p.Width * p.Height
	crop := newCropper(o.Size, p)
	est := max(1, int(math.Round(p.DurationS*o.FPS)))
	if est <= o.MaxFrames {
		return fmt.Errorf("%w: %d sampled frames expected", errSparseFallback, est)
	}
	// The kept frames depend on the count the tail decode finds, which is
	// almost always the estimate: the seeks for the estimate's selection
	// run alongside the tail, and only another count costs a second round.
	guess := SelectIndices(est, o.MaxFrames, SelectUniform)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg               sync.WaitGroup
		lastSlot         int
		last             *image.RGBA
		tailErr, seekErr error
		got              map[int]*image.RGBA
	)
	wg.Go(func() {
		if lastSlot, last, tailErr = d.sparseTail(runCtx, src, px, p, size, est, crop); tailErr != nil {
			cancel()
		}
	})
	if got, seekErr = d.seekFrames(runCtx, src, px, p, size, guess[:len(guess)-1], crop); seekErr != nil {
		cancel()
	}
	wg.Wait()
	if err := d.sparseError(ctx, src, tailErr, seekErr); err != nil {
		return err
	}
	n := lastSlot + 1
	if n <= o.MaxFrames || n < est-countSlack || n > est+countSlack {
		// Beyond the slack the full decode approximates its selection;
		// only running it gives the same frames.
		return fmt.Errorf("%w: %d sampled frames, %d expected", errSparseFallback, n, est)
	}
	kept := SelectIndices(n, o.MaxFrames, SelectUniform)
	var missing []int
	for _, g := range kept[:len(kept)-1] {
		if got[g] == nil {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		more, err := d.seekFrames(ctx, src, px, p, size, missing, crop)
		if err := d.sparseError(ctx, src, err); err != nil {
			return err
		}
		maps.Copy(got, more)
	}
	frames := make([]Frame, 0, len(kept))
	for _, g := range kept[:len(kept)-1] {
		frames = append(frames, Frame{TimeS: float64(g) / o.FPS, Image: got[g]})
	}
	frames = append(frames, Frame{TimeS: float64(lastSlot) / o.FPS, Image: last})
	o.Logger.DebugContext(ctx, "sample: sparse decode", "uri", src.URI, "frames", n, "kept", len(frames), "second_round", len(missing))
	return fn(Clip{Index: 0, StartS: 0, EndS: p.DurationS, Frames: frames})
}

// sparseError is the reason the sparse runs failed: ctx's end, or else a
// fallback to the full decode, which explains a bad input better.
func (d *Decoder) sparseError(ctx context.Context, src sourceguard.Source, errs ...error) error {
	if ctx.Err() != nil {
		return d.ctxError(ctx, src, ctx.Err())
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			if errors.Is(err, errSparseFallback) {
				return err
			}
			return fmt.Errorf("%w: %w", errSparseFallback, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", errSparseFallback, err)
	}
	return nil
}

func newCropper(size int, p probed) func([]byte) *image.RGBA {
	return func(raw []byte) *image.RGBA {
		// A Resizer keeps scratch buffers: one per call keeps the
		// concurrent runs apart.
		return preprocess.NewResizer(size).ResizeCrop(preprocess.NewRGB24(raw, p.Width, p.Height))
	}
}

// seekFrames decodes the given slots (none the last), sparseProcs ffmpeg
// processes at a time, each taking up to seeksPerRun slots.
func (d *Decoder) seekFrames(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, p probed, size int, slots []int, crop func([]byte) *image.RGBA) (map[int]*image.RGBA, error) {
	got := make(map[int]*image.RGBA, len(slots))
	if len(slots) == 0 {
		return got, nil
	}
	// Consecutive slots in one run, so that each process reads its part
	// of the file in order.
	per := min(seeksPerRun, (len(slots)+sparseProcs-1)/sparseProcs)
	runs := slices.Collect(slices.Chunk(slices.Clone(slots), per))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next int
		errs = make([]error, len(runs))
	)
	for range min(sparseProcs, len(runs)) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(runs) || ctx.Err() != nil {
					return
				}
				run := runs[i]
				k := 0
				err := d.readFrames(ctx, src, d.sparseArgs(src, px, p, run), size, nil, func(raw []byte) error {
					if k < len(run) {
						img := crop(raw)
						mu.Lock()
						got[run[k]] = img
						mu.Unlock()
					}
					k++
					return nil
				})
				if err == nil && k != len(run) {
					err = fmt.Errorf("%w: %d of %d seeks gave their frame", errSparseFallback, k, len(run))
				}
				if errs[i] = err; err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return got, errors.Join(errs...)
}

// sparseTail decodes the end of the video and returns its last sampled
// slot and that slot's frame. Only slots from est-countSlack-1 on are
// converted and read: a last slot before them is outside the slack anyway.
func (d *Decoder) sparseTail(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, p probed, size, est int, crop func([]byte) *image.RGBA) (int, *image.RGBA, error) {
	args := d.tailArgs(src, px, p, est)
	bufs := [2][]byte{make([]byte, size), make([]byte, size)}
	count := 0
	var slots []int64
	err := d.readFrames(ctx, src, args, size, &slots, func(raw []byte) error {
		copy(bufs[count%2], raw)
		count++
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if count == 0 || len(slots) != count {
		return 0, nil, fmt.Errorf("%w: tail decode gave %d frames and %d slot times", errSparseFallback, count, len(slots))
	}
	last := slots[len(slots)-1]
	if last < 0 || last > math.MaxInt32 {
		return 0, nil, fmt.Errorf("%w: last slot %d", errSparseFallback, last)
	}
	return int(last), crop(bufs[(count-1)%2]), nil
}

// tailArgs builds the ffmpeg command that decodes the last tailS seconds,
// converting only the slots from est-countSlack-1 on.
func (d *Decoder) tailArgs(src sourceguard.Source, px *sourceguard.Proxy, p probed, est int) []string {
	in := d.decodeInput(src, px)
	in["ss"] = seekArg(max(0, p.DurationS-tailS))
	in["noaccurate_seek"] = ""
	stream := ffmpeg.Input(src.Input, in).
		Get("v:"+strconv.Itoa(p.videoOrdinal)).
		Filter("fps", ffmpeg.Args{d.fpsArg()}).
		Filter("trim", nil, ffmpeg.KwArgs{"start_pts": max(0, est-countSlack-1)}).
		Filter("showinfo", nil).
		Filter("scale", ffmpeg.Args{fmt.Sprintf("%d:%d", p.Width, p.Height)}).
		Output("pipe:", ffmpeg.KwArgs{"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough"})
	// showinfo logs at info level; -nostats keeps the progress line out.
	return append([]string{"-hide_banner", "-nostdin", "-nostats", "-v", "info", "-copyts", "-start_at_zero"}, stream.GetArgs()...)
}

// sparseArgs builds the one ffmpeg command that decodes the kept slots:
// one input per slot, each seeking before it, concatenated in order.
func (d *Decoder) sparseArgs(src sourceguard.Source, px *sourceguard.Proxy, p probed, slots []int) []string {
	segs := make([]*ffmpeg.Stream, 0, len(slots))
	for _, g := range slots {
		in := d.decodeInput(src, px)
		var trim ffmpeg.KwArgs
		if g == 0 {
			// The first slot the filter emits: the full decode repeats
			// it for every slot before it, so it is frame 0 whatever
			// slot it is.
			trim = ffmpeg.KwArgs{"end_frame": 1}
		} else {
			// Any keyframe at or before (g+0.5)/F falls in slot g or
			// earlier, so a demuxer that seeks to the keyframe before
			// the target reaches slot g's frame. Half an interval of
			// margin covers keyframes whose pts is a few frames after
			// their dts, which is what MP4 indexes by.
			in["ss"] = seekArg(max(0, float64(g)-0.5) / d.opts.FPS)
			in["noaccurate_seek"] = ""
			trim = ffmpeg.KwArgs{"start_pts": g, "end_pts": g + 1}
		}
		segs = append(segs, ffmpeg.Input(src.Input, in).
			Get("v:"+strconv.Itoa(p.videoOrdinal)).
			Filter("fps", ffmpeg.Args{d.fpsArg()}).
			Filter("trim", nil, trim))
	}
	stream := ffmpeg.Concat(segs, ffmpeg.KwArgs{"v": 1, "a": 0}).
		Filter("scale", ffmpeg.Args{fmt.Sprintf("%d:%d", p.Width, p.Height)}).
		Output("pipe:", ffmpeg.KwArgs{"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough",
			"frames:v": strconv.Itoa(len(slots))})
	return append([]string{"-hide_banner", "-nostdin", "-v", "error", "-copyts", "-start_at_zero"}, stream.GetArgs()...)
}

func (d *Decoder) fpsArg() string { return strconv.FormatFloat(d.opts.FPS, 'f', -1, 64) }

func seekArg(s float64) string { return strconv.FormatFloat(s, 'f', 6, 64) }

// readFrames runs ffmpeg with args and calls fn with each raw frame of size
// bytes (the buffer is reused). With slots set, stderr is read as a log and
// the pts of every showinfo line is appended to it. A failed run is
// errSparseFallback (the full decode will explain it), unless ctx ended.
func (d *Decoder) readFrames(ctx context.Context, src sourceguard.Source, args []string, size int, slots *[]int64, fn func([]byte) error) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := command(runCtx, d.opts.FFmpegPath, args)
	src.Prepare(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("%s: ffmpeg stdout: %w", src.URI, err)
	}
	diag := newTailBuffer(stderrLimit)
	var logDone chan struct{}
	if slots == nil {
		cmd.Stderr = diag
	} else {
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return fmt.Errorf("%s: ffmpeg stderr: %w", src.URI, err)
		}
		logDone = make(chan struct{})
		go func() {
			defer close(logDone)
			br := bufio.NewReaderSize(stderr, 64<<10)
			for {
				line, err := readLine(br)
				if pts, ok := parseShowinfoPTS(line); ok {
					*slots = append(*slots, pts)
				} else if line != "" {
					_, _ = io.WriteString(diag, line+"\n")
				}
				if err != nil {
					return
				}
			}
		}()
	}
	d.opts.Logger.DebugContext(ctx, "sample: exec", "cmd", d.opts.FFmpegPath, "args", src.Scrub(strings.Join(args, " ")))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", src.URI, &execStartError{tool: d.opts.FFmpegPath, err: err})
	}
	br := bufio.NewReaderSize(stdout, 64<<10)
	buf := make([]byte, size)
	var fnErr error
	for {
		if _, err := io.ReadFull(br, buf); err != nil {
			break
		}
		if fnErr = fn(buf); fnErr != nil {
			stop()
			break
		}
	}
	if logDone != nil {
		<-logDone // before Wait, which closes the pipe
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return d.ctxError(ctx, src, ctx.Err())
	case fnErr != nil:
		return fnErr
	case waitErr != nil:
		return fmt.Errorf("%w: ffmpeg: %v: %s", errSparseFallback, waitErr, lastLines(src.Scrub(diag.String()), 3))
	}
	return nil
}

// parseShowinfoPTS reads the integer pts of a showinfo frame line. After
// the fps filter the time base is 1/F, so the pts is the slot number
// exactly, where pts_time is printed with six significant digits.
func parseShowinfoPTS(line string) (int64, bool) {
	if !strings.Contains(line, "Parsed_showinfo") {
		return 0, false
	}
	i := strings.Index(line, "] n:")
	if i < 0 {
		return 0, false
	}
	rest := line[i:]
	j := strings.Index(rest, " pts:")
	if j < 0 {
		return 0, false
	}
	f := strings.Fields(rest[j+len(" pts:"):])
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	return v, err == nil
}
