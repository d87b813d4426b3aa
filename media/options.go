// Package media decodes videos with ffmpeg and picks the frames a CLIP-style
// video encoder sees: frames sampled at a fixed rate, thinned to at most
// MaxFrames per clip the way CLIP4Clip does, each resized and center-cropped
// with encoders/preprocess. It holds probing (a local MP4's moov box read
// in-process, ffprobe for everything else, ffmpeg's showinfo log),
// decoding of files and URLs into clips (whole video, windows or shots;
// the whole-video clip of a long file, local or on a server that takes
// byte ranges, by seeking to the kept frames only; a full decode starting
// while ffprobe runs, where ffprobe has to), frame selection, the
// windowing that cuts clips, and the StreamDecoder that decodes a live
// source continuously into windows of stream time.
//
// It imports of vidx only sourceguard (every source is checked and read
// through it), encoders/preprocess and pipeline, for the Poison and
// Retryable error classes; no Kafka client.
package media

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/vidx/vidx/sourceguard"
)

// Frame selections, applied when a clip has more than MaxFrames frames.
const (
	SelectUniform = "uniform" // np.linspace(0, n-1, MaxFrames, dtype=int), CLIP4Clip's default
	SelectHead    = "head"    // the first MaxFrames
	SelectTail    = "tail"    // the last MaxFrames
)

// Clip modes.
const (
	ModeWhole  = "whole"  // one clip per video
	ModeWindow = "window" // clips of WindowS seconds every StrideS seconds
	ModeShots  = "shots"  // one clip per shot (ffmpeg's scene score), long shots split
)

// How a local file's stream properties are read.
const (
	ProbeAuto    = "auto"    // an MP4's own headers where their layout allows, ffprobe otherwise
	ProbeFFprobe = "ffprobe" // always ffprobe
)

// maxDecodeThreads bounds DecodeThreads, far above the cores one sample
// replica gets, so that a typo does not start thousands of threads.
const maxDecodeThreads = 64

// Options configures a Decoder. The zero value of every field means its
// default; see WithDefaults.
type Options struct {
	FPS       float64 // frames sampled per second of video; default 1
	MaxFrames int     // frames kept per clip; default 12
	Selection string  // SelectUniform (default), SelectHead or SelectTail
	Mode      string  // ModeWhole (default), ModeWindow or ModeShots

	// Window mode: clip k covers [k*StrideS, k*StrideS+WindowS) seconds.
	// WindowS is required; StrideS defaults to WindowS (no overlap).
	WindowS, StrideS float64

	// Shots mode: a frame whose scene-change score (ffmpeg's select
	// filter, 0..1) exceeds SceneThreshold (default 0.3) starts a shot;
	// shots shorter than MinShotS (default 1 s) join the next, shots
	// longer than MaxShotS (default 10 s) are split into equal windows.
	SceneThreshold, MinShotS, MaxShotS float64

	Size int // side of the square crops; default 224

	FFmpegPath, FFprobePath string // default "ffmpeg" and "ffprobe" on PATH

	// DecodeThreads is the threads ffmpeg's video decoder runs (its
	// -threads input option); zero leaves the choice to ffmpeg, about one
	// frame thread per core. One thread decodes a video with about 10% less
	// CPU than several, which pays where other work (an encoder in the same
	// process, a second video) keeps the cores busy anyway.
	DecodeThreads int

	// Probe is ProbeAuto (default) or ProbeFFprobe. ProbeAuto answers a
	// local MP4 from its moov box in-process, with the figures ffprobe
	// would print, and saves ffprobe's start-up (about 0.1 CPU-second a
	// video); remote sources and other layouts still go to ffprobe.
	Probe string

	// Timeout bounds a whole Probe or Clips call, ffprobe and ffmpeg
	// included; zero means no limit beyond the caller's context.
	Timeout time.Duration

	// Logger receives warnings such as a probed duration that disagreed
	// with the decoded frame count; nil means slog.Default().
	Logger *slog.Logger

	// Guard checks every source against a sourceguard.SourcePolicy; nil reads any
	// path or http(s) URL (for tools and tests, not for jobs from a topic).
	Guard *sourceguard.Guard
}

// WithDefaults returns o with zero fields replaced by their defaults.
func (o Options) WithDefaults() Options {
	if o.FPS == 0 {
		o.FPS = 1
	}
	if o.MaxFrames == 0 {
		o.MaxFrames = 12
	}
	if o.Selection == "" {
		o.Selection = SelectUniform
	}
	if o.Mode == "" {
		o.Mode = ModeWhole
	}
	if o.Probe == "" {
		o.Probe = ProbeAuto
	}
	if o.Mode == ModeWindow && o.StrideS == 0 {
		o.StrideS = o.WindowS
	}
	if o.Mode == ModeShots {
		if o.SceneThreshold == 0 {
			o.SceneThreshold = DefaultSceneThreshold
		}
		if o.MinShotS == 0 {
			o.MinShotS = DefaultMinShotS
		}
		if o.MaxShotS == 0 {
			o.MaxShotS = DefaultMaxShotS
		}
	}
	if o.Size == 0 {
		o.Size = 224
	}
	if o.FFmpegPath == "" {
		o.FFmpegPath = "ffmpeg"
	}
	if o.FFprobePath == "" {
		o.FFprobePath = "ffprobe"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every invalid field of o. It expects defaults applied.
func (o Options) Validate() error {
	var errs []error
	if !(o.FPS > 0) || math.IsInf(o.FPS, 0) {
		errs = append(errs, fmt.Errorf("FPS %v must be positive and finite", o.FPS))
	}
	if o.MaxFrames <= 0 {
		errs = append(errs, fmt.Errorf("MaxFrames %d must be positive", o.MaxFrames))
	}
	if o.DecodeThreads < 0 || o.DecodeThreads > maxDecodeThreads {
		errs = append(errs, fmt.Errorf("DecodeThreads %d out of range [0, %d]", o.DecodeThreads, maxDecodeThreads))
	}
	if o.Probe != ProbeAuto && o.Probe != ProbeFFprobe {
		errs = append(errs, fmt.Errorf("Probe %q must be %q or %q", o.Probe, ProbeAuto, ProbeFFprobe))
	}
	switch o.Selection {
	case SelectUniform, SelectHead, SelectTail:
	default:
		errs = append(errs, fmt.Errorf("Selection %q must be %q, %q or %q", o.Selection, SelectUniform, SelectHead, SelectTail))
	}
	switch o.Mode {
	case ModeWhole:
	case ModeWindow:
		if !(o.WindowS > 0) || math.IsInf(o.WindowS, 0) {
			errs = append(errs, fmt.Errorf("WindowS %v must be positive and finite in window mode", o.WindowS))
		}
		if !(o.StrideS > 0) || math.IsInf(o.StrideS, 0) {
			errs = append(errs, fmt.Errorf("StrideS %v must be positive and finite in window mode", o.StrideS))
		}
	case ModeShots:
		if !(o.SceneThreshold > 0 && o.SceneThreshold < 1) {
			errs = append(errs, fmt.Errorf("SceneThreshold %v must be in (0, 1) in shots mode", o.SceneThreshold))
		}
		if !(o.MaxShotS > 0) || math.IsInf(o.MaxShotS, 0) {
			errs = append(errs, fmt.Errorf("MaxShotS %v must be positive and finite in shots mode", o.MaxShotS))
		}
		if !(o.MinShotS >= 0 && o.MinShotS <= o.MaxShotS) {
			errs = append(errs, fmt.Errorf("MinShotS %v must be in [0, MaxShotS %v] in shots mode", o.MinShotS, o.MaxShotS))
		}
	default:
		errs = append(errs, fmt.Errorf("Mode %q must be %q, %q or %q", o.Mode, ModeWhole, ModeWindow, ModeShots))
	}
	if o.Size <= 0 {
		errs = append(errs, fmt.Errorf("Size %d must be positive", o.Size))
	}
	if o.FFmpegPath == "" || o.FFprobePath == "" {
		errs = append(errs, errors.New("FFmpegPath and FFprobePath must be set"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Timeout %v must not be negative", o.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sample: invalid options: %w", err)
	}
	return nil
}
