package media

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/sourceguard"
)

// ErrStalled is wrapped by a stream run that the watchdog stopped because
// no frame arrived for StreamOptions.StallTimeout. It is retryable.
var ErrStalled = errors.New("stream stalled: no frame within the stall timeout")

// ErrSourceEnded is wrapped when a live source closed the stream. It is
// retryable: a camera or publisher that went away may come back.
var ErrSourceEnded = errors.New("live source ended the stream")

// StreamOptions configures a StreamDecoder.
type StreamOptions struct {
	// FPS, MaxFrames, Selection, WindowS and StrideS cut the stream as in
	// window mode; Size is the crop side. Defaults as in Options, and
	// WindowS 10.
	FPS       float64
	MaxFrames int
	Selection string
	WindowS   float64
	StrideS   float64
	Size      int

	FFmpegPath string
	// Guard checks the source; required.
	Guard *sourceguard.Guard
	// StallTimeout is how long the watchdog waits for a frame before it
	// kills ffmpeg; default 30s.
	StallTimeout time.Duration
	// Started, when set, is called at the first frame of every Run.
	Started func()
	Logger  *slog.Logger
}

// WindowOptions returns the window settings as decoder Options, defaults
// applied: what Validate checks of a stream's segment settings.
func (o StreamOptions) WindowOptions() Options {
	w := o.WindowS
	if w == 0 {
		w = 10
	}
	return Options{FPS: o.FPS, MaxFrames: o.MaxFrames, Selection: o.Selection, Mode: ModeWindow,
		WindowS: w, StrideS: o.StrideS, Size: o.Size, FFmpegPath: o.FFmpegPath, Logger: o.Logger}.WithDefaults()
}

// StreamDecoder decodes a source continuously and cuts it into windows of
// stream time. It is safe for concurrent use.
type StreamDecoder struct {
	o     StreamOptions
	win   Options
	guard *sourceguard.Guard
	log   *slog.Logger
}

// NewStreamDecoder validates the options.
func NewStreamDecoder(o StreamOptions) (*StreamDecoder, error) {
	win := o.WindowOptions()
	if err := win.Validate(); err != nil {
		return nil, err
	}
	if o.Guard == nil {
		return nil, errors.New("sample: a stream decoder needs a source Guard")
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 30 * time.Second
	}
	if o.StallTimeout < 0 {
		return nil, fmt.Errorf("sample: stall timeout %v must be positive", o.StallTimeout)
	}
	if _, err := exec.LookPath(win.FFmpegPath); err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	return &StreamDecoder{o: o, win: win, guard: o.Guard, log: win.Logger}, nil
}

// Resume is where an earlier run of a stream stopped: its last emitted
// window.
type Resume struct {
	Live    bool
	Index   int
	StartS  float64
	EndS    float64
	WallEnd time.Time
}

// RunResult describes a finished run.
type RunResult struct {
	Live    bool // stream time was the source's clock
	Frames  int  // sampled frames decoded
	Windows int  // windows emitted
	// Ended is true when the source was read to its end (a file, a VOD
	// playlist, a live playlist that ended): there is nothing left to index.
	Ended bool
}

// resumeSlack is how much more of a live HLS playlist a resumed stream
// reads than the time since its last window strictly needs.
const resumeSlack = 10 * time.Second

// seekMargin is how far before the resume point a file is sought: some
// demuxers (MPEG-TS) land after the requested time otherwise. Frames before
// the resume point only fill windows that were emitted and are dropped.
const seekMargin = 5.0

// Run decodes uri once: from its live edge (or from resume for live
// sources that keep their clock), or for files and VOD from resume's end,
// calling emit with each window as soon as it is complete. It returns when
// the source ends, fails, stalls, emit fails or ctx ends. Errors wrapping a
// *sourceguard.RefusedError are the source policy's verdict.
func (d *StreamDecoder) Run(ctx context.Context, uri string, resume *Resume, emit func(Window) error) (res RunResult, err error) {
	src, err := d.guard.Open(ctx, uri, d.win.Size)
	defer src.Close()
	if err != nil {
		return res, err
	}
	var px *sourceguard.Proxy
	if src.Proxied {
		if px, err = d.guard.StartProxy(src.URI, d.log); err != nil {
			return res, err
		}
		defer px.Close()
	}
	if resume == nil || resume.Live {
		return d.run(ctx, src, px, resume, 0, 0, emit)
	}
	// A file resumes at the first window not emitted. Some demuxers
	// (MPEG-TS) seek to a packet rather than a keyframe and frames are lost
	// up to the next keyframe; then seek again from further back.
	from := d.nextWindowStart(resume.EndS)
	for margin := seekMargin; ; margin *= 4 {
		seek := max(0, from-margin)
		res, err := d.run(ctx, src, px, resume, seek, from, emit)
		if !errors.Is(err, errOvershot) {
			return res, err
		}
		d.log.DebugContext(ctx, "sample: seek landed after the resume point; seeking from further back", "uri", src.URI, "seek", seek)
	}
}

// nextWindowStart is the start of the first window ending after end: where
// a file resumes. It is computed from the end rather than the window number
// so that a stream whose windows were resized resumes at the right place.
func (d *StreamDecoder) nextWindowStart(end float64) float64 {
	s, w := d.win.StrideS, d.win.WindowS
	k := max(0, int(math.Floor((end-w)/s+timeEps))+1)
	return float64(k) * s
}

// errOvershot stops a run whose seek landed after the resume point.
var errOvershot = errors.New("seek landed after the resume point")

// run runs ffmpeg once over an opened source. seek > 0 starts a file
// there; from is the stream time the run must not start after.
func (d *StreamDecoder) run(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, resume *Resume, seek, from float64, emit func(Window) error) (res RunResult, err error) {
	args := d.args(src, px, resume, seek)
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	cmd := command(runCtx, d.win.FFmpegPath, args)
	src.Prepare(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("%s: ffmpeg stdout: %w", src.URI, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, fmt.Errorf("%s: ffmpeg stderr: %w", src.URI, err)
	}
	log := d.log.With("uri", src.URI)
	log.DebugContext(ctx, "sample: exec stream", "cmd", d.win.FFmpegPath, "args", src.Scrub(strings.Join(args, " ")))
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%s: %w", src.URI, &execStartError{tool: d.win.FFmpegPath, err: err})
	}
	diag := newTailBuffer(stderrLimit)
	events := make(chan logEvent, 256)
	go readLog(stderr, events, diag)

	watchdog := time.AfterFunc(d.o.StallTimeout, func() { stop(ErrStalled) })
	defer watchdog.Stop()

	r := &streamRun{d: d, src: src, px: px, resume: resume, seek: seek, from: from, log: log, emit: emit,
		resizer: preprocess.NewResizer(d.win.Size)}
	runErr := r.loop(runCtx, bufio.NewReaderSize(stdout, 64<<10), events, watchdog)
	if runErr != nil {
		stop(runErr)
	}
	for range events { // let the log reader finish before Wait closes the pipe
	}
	waitErr := cmd.Wait()
	res = RunResult{Live: r.live, Frames: r.frames, Windows: r.windows}
	switch {
	case runErr != nil:
		return res, runErr
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s: %w", src.URI, context.Cause(ctx))
	case errors.Is(context.Cause(runCtx), ErrStalled):
		return res, pipeline.Retryable(fmt.Errorf("%s: %w (%v)", src.URI, ErrStalled, d.o.StallTimeout))
	}
	if waitErr != nil {
		err := failure(src, px, "ffmpeg", waitErr, diag.String())
		if r.frames == 0 && !pipeline.IsRetryable(err) && pipeline.Classify(err) != pipeline.ClassPoison {
			return res, pipeline.Poison(fmt.Errorf("no video frames decoded: %w", err))
		}
		return res, err
	}
	if r.frames == 0 && !r.live {
		return res, pipeline.Poisonf("%s: no video frames decoded", src.URI)
	}
	if r.live && (src.HLS == nil || src.HLS.Live) {
		return res, pipeline.Retryable(fmt.Errorf("%s: %w", src.URI, ErrSourceEnded))
	}
	// The end of a file or VOD playlist, or of a live playlist that ended:
	// the open windows are all there will be.
	end := r.lastT + 1/d.win.FPS
	if !r.live && r.header.durationS > 0 {
		end = r.header.durationS
	}
	for _, w := range r.w.flush(end) {
		if err := r.send(w); err != nil {
			return res, err
		}
	}
	res.Windows, res.Ended = r.windows, true
	return res, nil
}

// args builds the ffmpeg command: per-protocol I/O timeouts and reconnects,
// the protocol whitelist, one video stream sampled to at most FPS frames a
// second by keeping the first frame of each 1/FPS interval (real frames:
// a gap in the source stays a gap, where the fps filter would repeat the
// last frame), and showinfo logging each frame's time and size.
func (d *StreamDecoder) args(src sourceguard.Source, px *sourceguard.Proxy, resume *Resume, seek float64) []string {
	rw := strconv.FormatInt(d.guard.Policy().IOTimeout.Microseconds(), 10)
	args := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "info"}
	switch src.Scheme {
	case sourceguard.SchemeFile:
		args = append(args, "-protocol_whitelist", "file")
	case sourceguard.SchemeHTTP, sourceguard.SchemeHTTPS:
		args = append(args, "-protocol_whitelist", "http,https,tcp,tls,crypto,httpproxy", "-http_proxy", px.URL(),
			"-rw_timeout", rw, "-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_on_network_error", "1",
			"-reconnect_delay_max", "5")
		if h := src.HLS; h != nil && h.Live && resume != nil && resume.Live && !resume.WallEnd.IsZero() {
			// Go back far enough in the playlist to cover the time since the
			// last window, plus slack for the time until ffmpeg fetches the
			// playlist (seconds on a busy machine, while segments keep
			// coming); windows already emitted are skipped.
			target := max(h.Target, 1)
			back := int(math.Ceil((time.Since(resume.WallEnd)+resumeSlack).Seconds()/target)) + 2
			args = append(args, "-live_start_index", strconv.Itoa(-min(max(back, 3), max(h.Count, 1))))
		}
	case sourceguard.SchemeRTSP:
		args = append(args, "-protocol_whitelist", "rtsp,rtp,srtp,udp,tcp,tls", "-rtsp_transport", "tcp", "-timeout", rw)
	case sourceguard.SchemeRTMP, sourceguard.SchemeRTMPS:
		// Not -timeout: for RTMP it means "listen for a publisher".
		args = append(args, "-protocol_whitelist", "rtmp,rtmps,tcp,tls", "-rw_timeout", rw)
	case sourceguard.SchemeSRT:
		args = append(args, "-protocol_whitelist", "srt,udp", "-rw_timeout", rw)
	}
	if seek > 0 {
		args = append(args, "-ss", strconv.FormatFloat(seek, 'f', 3, 64))
	}
	fps := strconv.FormatFloat(d.win.FPS, 'f', -1, 64)
	sel := fmt.Sprintf(`select='isnan(prev_selected_t)+gte(floor(t*%s)-floor(prev_selected_t*%s)\,1)'`, fps, fps)
	return append(args, "-i", src.Input, "-map", "0:v:0", "-vf", sel+",showinfo=checksum=0",
		"-fps_mode", "passthrough", "-flush_packets", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:")
}

// streamRun is the state of one Run.
type streamRun struct {
	d       *StreamDecoder
	src     sourceguard.Source
	px      *sourceguard.Proxy
	resume  *Resume
	seek    float64
	from    float64
	log     *slog.Logger
	emit    func(Window) error
	resizer *preprocess.Resizer

	header  inputHeader
	live    bool
	offset  float64 // added to the source clock (live) or the seek point (files)
	w       *windower
	buf     []byte
	frames  int
	windows int
	firstT  float64
	lastT   float64
}

// resetTolerance is how far behind the resume point a live source's clock
// may start and still be taken as the same clock (a reconnect joins a few
// segments back); further behind, the source restarted its clock.
func (r *streamRun) resetTolerance() float64 { return 60 + r.d.win.WindowS }

func (r *streamRun) loop(ctx context.Context, stdout io.Reader, events <-chan logEvent, watchdog *time.Timer) error {
	for {
		var ev logEvent
		var ok bool
		select {
		case ev, ok = <-events:
		case <-ctx.Done():
			return nil
		}
		if !ok {
			return nil
		}
		if ev.header != nil {
			if err := r.start(*ev.header); err != nil {
				return err
			}
			continue
		}
		f := ev.frame
		if err := r.d.guard.CheckFrame(r.src.URI, f.w, f.h); err != nil {
			return err
		}
		if n := 3 * f.w * f.h; cap(r.buf) < n {
			r.buf = make([]byte, n)
		} else {
			r.buf = r.buf[:n]
		}
		if _, err := io.ReadFull(stdout, r.buf); err != nil {
			return nil // ffmpeg is gone; Wait says why
		}
		// The watchdog waits for the source, not for the emission of the
		// windows this frame completes.
		watchdog.Stop()
		if err := r.frame(f, time.Now()); err != nil {
			return err
		}
		watchdog.Reset(r.d.o.StallTimeout)
	}
}

// start fixes how the source's clock maps to stream time once ffmpeg has
// opened the input.
func (r *streamRun) start(h inputHeader) error {
	r.header = h
	switch {
	case r.resume != nil:
		r.live = r.resume.Live
	default:
		r.live = h.durationS == 0 || r.src.Live()
	}
	if !r.live {
		if err := r.d.guard.CheckDuration(r.src.URI, h.durationS); err != nil {
			return err
		}
		if err := r.d.guard.CheckBitrate(r.src.URI, h.bitrate); err != nil {
			return err
		}
	}
	skip := math.Inf(-1)
	if r.resume != nil {
		skip = r.resume.EndS
	}
	r.w = newWindower(r.d.win, newTimeGrid(r.d.win, skip))
	return nil
}

// clock is the stream time of a source timestamp, before the live offset.
func (r *streamRun) clock(pts float64) float64 {
	if r.live {
		return r.header.startS + pts
	}
	return r.seek + pts
}

func (r *streamRun) frame(f frameLine, wall time.Time) error {
	if r.w == nil {
		if err := r.start(inputHeader{}); err != nil {
			return err
		}
	}
	base := r.clock(f.ptsS)
	if r.frames == 0 && r.seek > 0 && base > r.from+1/r.d.win.FPS+timeEps {
		return errOvershot
	}
	if r.frames == 0 {
		if r.d.o.Started != nil {
			r.d.o.Started()
		}
		r.firstT = base
		if rs := r.resume; r.live && rs != nil && base < rs.EndS-r.resetTolerance() {
			// The source restarted its clock (an RTSP reconnect starts at 0,
			// an encoder restart resets MPEG-TS time): continue stream time
			// after the last window, leaving the time we were away as a gap.
			away := 0.0
			if !rs.WallEnd.IsZero() {
				away = max(0, wall.Sub(rs.WallEnd).Seconds())
			}
			r.offset = rs.EndS + away - base
			r.log.Info("sample: source clock restarted; continuing stream time", "source_t", base, "stream_t", base+r.offset)
		}
	}
	r.frames++
	t := base + r.offset
	// The sampler keeps the first frame of each 1/FPS interval of the
	// source clock, so no later frame falls before the next interval.
	fps := r.d.win.FPS
	next := r.clock(0) + r.offset + (math.Floor(f.ptsS*fps+timeEps)+1)/fps
	r.lastT = t
	if err := r.checkRate(t); err != nil {
		return err
	}
	buf, w, h := r.buf, f.w, f.h
	crop := func() *image.RGBA { return r.resizer.ResizeCrop(preprocess.NewRGB24(buf, w, h)) }
	for _, win := range r.w.add(t, next, wall, crop) {
		if err := r.send(win); err != nil {
			return err
		}
	}
	return nil
}

// checkRate enforces the bitrate limit on sources read through the proxy,
// over stream time rather than wall time so that catching up on a
// playlist's backlog is not mistaken for a high rate.
func (r *streamRun) checkRate(t float64) error {
	if r.px == nil {
		return nil
	}
	covered := t - r.firstT - r.offset
	if covered < 20 {
		return nil
	}
	return r.d.guard.CheckBitrate(r.src.URI, float64(r.px.Received())*8/covered)
}

func (r *streamRun) send(w Window) error {
	if len(w.Frames) == 0 {
		return nil
	}
	w.Live = r.live
	if !r.live {
		w.WallStart, w.WallEnd = time.Time{}, time.Time{}
	}
	if err := r.emit(w); err != nil {
		return err
	}
	r.windows++
	return nil
}
