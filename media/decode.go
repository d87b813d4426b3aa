package media

import (
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

	ffmpeg "github.com/u2takey/ffmpeg-go"

	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/sourceguard"
)

// ErrTimeout is wrapped by errors from a Probe or Clips call that ran past
// Options.Timeout. It is retryable for remote sources (a slow server may
// recover) and unclassified for local files.
var ErrTimeout = errors.New("video decode timed out")

// Frame is one sampled frame.
type Frame struct {
	TimeS float64 // i / FPS for the i-th sampled frame of the video
	// Image is the Size x Size CLIP crop (preprocess.ResizeCrop). Overlapping
	// windows share the same Image, so treat it as read-only.
	Image *image.RGBA
}

// Clip is a run of selected frames: the whole video or one window.
type Clip struct {
	Index  int     // 0 in whole mode; the window number k in window mode
	StartS float64 // k * StrideS in window mode
	EndS   float64 // window end, clamped to the video's end
	Frames []Frame // in time order, at most MaxFrames
}

// Decoder samples frames from videos with ffmpeg. It is safe for concurrent
// use; each call runs its own ffprobe and ffmpeg processes.
type Decoder struct {
	opts      Options
	rwTimeout time.Duration
}

// NewDecoder applies defaults, validates opts and checks that ffmpeg and
// ffprobe can be found.
func NewDecoder(opts Options) (*Decoder, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	for _, bin := range []string{opts.FFmpegPath, opts.FFprobePath} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("sample: %w", err)
		}
	}
	d := &Decoder{opts: opts, rwTimeout: sourceguard.DefaultIOTimeout}
	if opts.Guard != nil {
		d.rwTimeout = opts.Guard.Policy().IOTimeout
	}
	return d, nil
}

// Options returns the options in effect, defaults applied.
func (d *Decoder) Options() Options { return d.opts }

func (d *Decoder) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.opts.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d.opts.Timeout, ErrTimeout)
}

// ctxError replaces err by the reason ctx ended, if it did: our own timeout
// (see ErrTimeout) or the caller giving up, which is not the input's fault.
func (d *Decoder) ctxError(ctx context.Context, src sourceguard.Source, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if errors.Is(context.Cause(ctx), ErrTimeout) {
		e := fmt.Errorf("%s: %w after %v", src.URI, ErrTimeout, d.opts.Timeout)
		if src.Remote {
			return pipeline.Retryable(e)
		}
		return e
	}
	return fmt.Errorf("%s: %w", src.URI, context.Cause(ctx))
}

// Clips decodes uri and calls fn with each clip as soon as it is complete:
// in window mode while decoding continues, in whole mode once at the end.
// It stops decoding and returns fn's error as soon as fn fails. Inputs may be
// a path, a file:// URI or an http(s):// URL.
func (d *Decoder) Clips(ctx context.Context, uri string, fn func(Clip) error) error {
	return d.clips(ctx, uri, 0, fn)
}

// clips is Clips with the video stream ordinal an early full decode
// guesses.
func (d *Decoder) clips(ctx context.Context, uri string, guess int, fn func(Clip) error) error {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	src, px, err := d.open(ctx, uri)
	if err != nil {
		return d.ctxError(ctx, src, err)
	}
	defer d.release(&src, px)
	// Where ffprobe has to answer, the full decode starts before it does,
	// so that ffmpeg's start-up (loading its libraries takes about as long
	// as the whole probe of a short file) and its first requests overlap
	// ffprobe's instead of following them. It guesses the stream to decode
	// (the first video stream), which the probe confirms or replaces; a
	// sparse decode replaces it too. A local MP4's headers answer in well
	// under a millisecond, so its decode waits for them and never starts
	// in vain.
	p, headers := d.probeHeaders(ctx, src)
	var early *fullRun
	if !headers && d.startsEarly(src) {
		early, _ = d.startFull(ctx, src, px, guess) // a failed start is retried, and explained, below
	}
	if headers {
		p, err = d.admit(src, p)
	} else {
		p, err = d.probeTool(ctx, src, px)
	}
	if err != nil {
		early.abort()
		return d.ctxError(ctx, src, err)
	}
	if ok, why := d.sparse(src, px, p); ok {
		early.abort()
		err := d.decodeSparse(ctx, src, px, p, fn)
		if !errors.Is(err, errSparseFallback) {
			return err
		}
		d.opts.Logger.DebugContext(ctx, "sample: full decode", "uri", src.URI, "reason", err)
		early = nil
	} else {
		d.opts.Logger.DebugContext(ctx, "sample: full decode", "uri", src.URI, "reason", why)
	}
	if early != nil && early.ordinal != p.videoOrdinal {
		early.abort()
		early = nil
	}
	return d.decode(ctx, src, px, p, early, fn)
}

// startsEarly says whether the full decode of src starts before the
// probe answers. A local file's always does: a run the probe replaces has
// cost a process start. A remote one's only where no sparse decode can
// replace it, since a run thrown away has fetched data for nothing.
func (d *Decoder) startsEarly(src sourceguard.Source) bool {
	if src.Local != "" {
		return true
	}
	seek, _ := d.maySeek(src)
	return src.Remote && !seek
}

// open checks uri: with Options.Guard against the source policy (live
// sources are refused: they are streams, not jobs), otherwise as a path or
// an http(s) URL.
func (d *Decoder) open(ctx context.Context, uri string) (sourceguard.Source, *sourceguard.Proxy, error) {
	g := d.opts.Guard
	if g == nil {
		src, err := parseSource(uri)
		return src, nil, err
	}
	src, err := g.Open(ctx, uri, d.opts.Size)
	if err == nil && src.Live() {
		err = pipeline.Poisonf("%s is a live source: register it on the streams topic instead of sending a video job", src.URI)
	}
	if err != nil {
		src.Close()
		return src, nil, err
	}
	var px *sourceguard.Proxy
	if src.Proxied {
		if px, err = g.StartProxy(src.URI, d.opts.Logger); err != nil {
			src.Close()
			return src, nil, err
		}
	}
	return src, px, nil
}

func (d *Decoder) release(src *sourceguard.Source, px *sourceguard.Proxy) {
	if px != nil {
		px.Close()
	}
	src.Close()
}

// failure explains a failed ffmpeg or ffprobe run: a request the source
// proxy refused is the reason when there is one.
func failure(src sourceguard.Source, px *sourceguard.Proxy, tool string, runErr error, stderr string) error {
	if px != nil {
		if r := px.Refusal(); r != nil {
			return r
		}
	}
	return classifyFailure(src, tool, runErr, src.Scrub(stderr))
}

func proxyURL(px *sourceguard.Proxy) string {
	if px == nil {
		return ""
	}
	return px.URL()
}

// ffmpegArgs builds the full decode's command: video stream ordinal,
// sampled by the fps filter, as PPM images on stdout. Each image carries
// its size, so the command needs nothing the probe finds but the stream,
// and a size change part way through reaches the sampler as it is. Where
// a source policy bounds the frame size, the decoder refuses larger
// frames itself, since it may start before the probe has checked them.
func (d *Decoder) ffmpegArgs(src sourceguard.Source, px *sourceguard.Proxy, ordinal int) []string {
	out := ffmpeg.KwArgs{"format": "image2pipe", "c:v": "ppm", "pix_fmt": "rgb24"}
	if d.opts.Mode == ModeWhole && d.opts.Selection == SelectHead {
		out["frames:v"] = strconv.Itoa(d.opts.MaxFrames) // nothing after them is used
	}
	in := d.decodeInput(src, px)
	if g := d.opts.Guard; g != nil {
		if pol := g.Policy(); pol.MaxWidth > 0 && pol.MaxHeight > 0 {
			in["max_pixels"] = strconv.FormatInt(min(int64(pol.MaxWidth)*int64(pol.MaxHeight), math.MaxInt32), 10)
		}
	}
	stream := ffmpeg.Input(src.Input, in).
		Get("v:"+strconv.Itoa(ordinal)).
		Filter("fps", ffmpeg.Args{d.fpsArg()}).
		Output("pipe:", out)
	return append([]string{"-hide_banner", "-nostdin", "-v", "error"}, stream.GetArgs()...)
}

// fullRun is a started full decode.
type fullRun struct {
	cmd     *exec.Cmd
	stdout  io.Reader
	stderr  *tailBuffer
	stop    context.CancelFunc
	ordinal int // the video stream it decodes
}

func (d *Decoder) startFull(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, ordinal int) (*fullRun, error) {
	runCtx, stop := context.WithCancel(ctx)
	args := d.ffmpegArgs(src, px, ordinal)
	cmd := command(runCtx, d.opts.FFmpegPath, args)
	src.Prepare(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stop()
		return nil, fmt.Errorf("%s: ffmpeg stdout: %w", src.URI, err)
	}
	stderr := newTailBuffer(stderrLimit)
	cmd.Stderr = stderr
	d.opts.Logger.DebugContext(ctx, "sample: exec", "uri", src.URI, "cmd", d.opts.FFmpegPath, "args", src.Scrub(strings.Join(args, " ")))
	if err := cmd.Start(); err != nil {
		stop()
		return nil, fmt.Errorf("%s: %w", src.URI, &execStartError{tool: d.opts.FFmpegPath, err: err})
	}
	return &fullRun{cmd: cmd, stdout: stdout, stderr: stderr, stop: stop, ordinal: ordinal}, nil
}

// abort kills the run, if there is one, and waits for it to go.
func (r *fullRun) abort() {
	if r == nil {
		return
	}
	r.stop()
	_ = r.cmd.Wait() // killed on purpose: its exit status says nothing
}

// decode runs the full decode, on run if it was started early.
func (d *Decoder) decode(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy, p probed, run *fullRun, fn func(Clip) error) error {
	if run == nil {
		var err error
		if run, err = d.startFull(ctx, src, px, p.videoOrdinal); err != nil {
			return d.ctxError(ctx, src, err) // a start the deadline stopped is the deadline's doing
		}
	}
	defer run.stop()
	log := d.opts.Logger.With("uri", src.URI)
	var segs []segment
	if d.opts.Mode == ModeShots {
		var err error
		if segs, err = d.shotsFor(ctx, src, px, p); err != nil {
			run.abort()
			return err
		}
	}
	s := newSampler(ctx, d.opts, p, segs, log)
	rd := newPPMReader(run.stdout)
	var readErr error
	for {
		f := s.buffer()
		if err := rd.read(f); err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		if err := s.push(f, fn); err != nil {
			run.abort()
			return err
		}
	}
	if readErr != nil && !errors.Is(readErr, io.ErrUnexpectedEOF) {
		run.stop() // ffmpeg may still be writing to a pipe nobody reads
	}
	waitErr := run.cmd.Wait()
	if ctx.Err() != nil {
		return d.ctxError(ctx, src, ctx.Err())
	}
	if waitErr != nil {
		cerr := failure(src, px, "ffmpeg", waitErr, run.stderr.String())
		if s.count == 0 && !pipeline.IsRetryable(cerr) {
			return pipeline.Poison(fmt.Errorf("no video frames decoded: %w", cerr))
		}
		return cerr
	}
	switch {
	case errors.Is(readErr, io.ErrUnexpectedEOF):
		// ffmpeg succeeded but left a partial frame. Drop the fragment;
		// the full frames are good.
		log.WarnContext(ctx, "sample: ignoring partial frame at end of ffmpeg output", "err", readErr, "frames", s.count)
	case readErr != nil:
		return fmt.Errorf("%s: reading ffmpeg's frames: %w", src.URI, readErr)
	}
	if s.count == 0 {
		return pipeline.Poisonf("%s: no video frames decoded (probed duration %.3fs)", src.URI, p.DurationS)
	}
	return s.finish(fn)
}

// lateFrames is how many of the most recent raw frames stay available after
// decoding ends, for a selection that needs frames past the probed length.
const lateFrames = 2

// sampler feeds the frames ffmpeg decodes to the windowing engine, keeping
// the last few raw frames so that a selection needing a frame no clip kept
// can still crop it.
type sampler struct {
	o       Options
	p       probed
	resizer *preprocess.Resizer
	ring    [lateFrames + 1]rawFrame // the newest at count-1
	est     int                      // expected frame count from the probe; -1 unknown
	count   int                      // frames decoded so far
	w       *windower
}

// newSampler plans the clips of a probed video; segs are the clips' spans
// in shots mode. A clip whose selection is approximated is logged to log.
func newSampler(ctx context.Context, o Options, p probed, segs []segment, log *slog.Logger) *sampler {
	s := &sampler{o: o, p: p, resizer: preprocess.NewResizer(o.Size), est: -1}
	for i := range s.ring {
		s.ring[i].pix = make([]byte, 3*p.Width*p.Height) // the size the probe expects; read grows it
	}
	if p.DurationS > 0 {
		// The fps filter emits round(duration * fps) frames.
		s.est = max(1, int(math.Round(p.DurationS*o.FPS)))
	}
	s.w = newWindower(o, &frameSpans{o: o, est: s.est, segs: segs})
	// Frames the picker skipped may still be in the ring: the selection
	// always includes the clip's last frame, which the estimate can miss.
	s.w.late = func(g int) (Frame, bool) {
		if g >= s.count || g < s.count-lateFrames {
			return Frame{}, false
		}
		return Frame{TimeS: float64(g) / s.o.FPS, Image: s.crop(&s.ring[g%len(s.ring)])}, true
	}
	s.w.approx = func(c Clip, n int) {
		log.WarnContext(ctx, "sample: decoded frame count far from the probed duration; frame selection approximated",
			"clip", c.Index, "frames", n, "expected", s.est, "duration_s", s.p.DurationS)
	}
	return s
}

// buffer is where the next frame should be read.
func (s *sampler) buffer() *rawFrame { return &s.ring[s.count%len(s.ring)] }

func (s *sampler) crop(f *rawFrame) *image.RGBA {
	return s.resizer.ResizeCrop(preprocess.NewRGB24(f.pix, f.w, f.h))
}

// push files the frame just read into f, emitting the clips it completes.
func (s *sampler) push(f *rawFrame, fn func(Clip) error) error {
	g := s.count
	s.count++
	t, next := float64(g)/s.o.FPS, float64(g+1)/s.o.FPS
	return s.emit(s.w.add(t, next, time.Time{}, func() *image.RGBA { return s.crop(f) }), fn)
}

// finish emits the clips still open when the video ends.
func (s *sampler) finish(fn func(Clip) error) error {
	end := float64(s.count) / s.o.FPS
	if s.p.DurationS > 0 {
		end = s.p.DurationS
	}
	return s.emit(s.w.flush(end), fn)
}

func (s *sampler) emit(wins []Window, fn func(Clip) error) error {
	for _, w := range wins {
		if err := fn(w.Clip); err != nil {
			return err
		}
	}
	return nil
}
