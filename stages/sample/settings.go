package sample

import (
	"fmt"
	"time"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/schemas"
)

// Settings are the sample stage's tunables as a deployment sets them: how
// a job's video is decoded unless the job says otherwise, and how frames
// travel to the encode stage.
type Settings struct {
	FPS       float64 `yaml:"fps"`
	MaxFrames int     `yaml:"max_frames"`
	Selection string  `yaml:"selection"`
	Mode      string  `yaml:"mode"`
	WindowS   float64 `yaml:"window_s"`
	StrideS   float64 `yaml:"stride_s"`
	// Shots mode: scene-score threshold and shot length bounds (seconds).
	SceneThreshold float64 `yaml:"scene_threshold"`
	MinShotS       float64 `yaml:"min_shot_s"`
	MaxShotS       float64 `yaml:"max_shot_s"`
	// Codec and Quality say how frames travel: JPEG at Quality, or PNG when
	// lossless frames are wanted.
	Codec   string `yaml:"codec"`
	Quality int    `yaml:"quality"`
	// Timeout bounds one job's probe and decode.
	Timeout time.Duration `yaml:"timeout"`
	FFmpeg  string        `yaml:"ffmpeg"`
	FFprobe string        `yaml:"ffprobe"`
	// DecodeThreads is the threads ffmpeg's decoder runs per video; 0
	// leaves it to ffmpeg, except where the encode stage runs in the same
	// process (vidx up), which makes it 1: the cores are shared, and one
	// thread decodes with less CPU (BENCHMARKS.md).
	DecodeThreads int `yaml:"decode_threads"`
	// Probe says how a local file's stream properties are read: "auto"
	// (an MP4's own headers, in-process, where their layout allows;
	// ffprobe otherwise) or "ffprobe" (always).
	Probe string `yaml:"probe"`
}

// WithDefaults fills unset fields: 1 fps, up to 12 frames a clip chosen
// uniformly, one clip per video, JPEG at quality 95, a 10-minute bound.
func (s Settings) WithDefaults() Settings {
	o := s.Options().WithDefaults()
	s.FPS, s.MaxFrames, s.Selection, s.Mode = o.FPS, o.MaxFrames, o.Selection, o.Mode
	s.StrideS, s.SceneThreshold, s.MinShotS, s.MaxShotS = o.StrideS, o.SceneThreshold, o.MinShotS, o.MaxShotS
	s.FFmpeg, s.FFprobe, s.Probe = o.FFmpegPath, o.FFprobePath, o.Probe
	if s.Codec == "" {
		s.Codec = schemas.CodecJPEG
	}
	if s.Quality == 0 {
		s.Quality = 95
	}
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Minute
	}
	return s
}

// Validate checks the settings after defaults, naming the first field at
// fault.
func (s Settings) Validate() error {
	switch {
	case !(s.FPS > 0 && s.FPS <= 30):
		return fmt.Errorf("fps %v out of range (0, 30]", s.FPS)
	case s.MaxFrames < 1 || s.MaxFrames > 64:
		return fmt.Errorf("max_frames %d out of range [1, 64]", s.MaxFrames)
	case s.Codec != schemas.CodecJPEG && s.Codec != schemas.CodecPNG:
		return fmt.Errorf("codec %q is not jpeg or png", s.Codec)
	case s.Quality < 1 || s.Quality > 100:
		return fmt.Errorf("quality %d out of range [1, 100]", s.Quality)
	}
	if err := s.Options().WithDefaults().Validate(); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}

// Options are the decoding options the settings give, without the source
// guard and logger a running stage adds.
func (s Settings) Options() media.Options {
	return media.Options{
		FPS: s.FPS, MaxFrames: s.MaxFrames, Selection: s.Selection, Mode: s.Mode,
		WindowS: s.WindowS, StrideS: s.StrideS, Timeout: s.Timeout,
		SceneThreshold: s.SceneThreshold, MinShotS: s.MinShotS, MaxShotS: s.MaxShotS,
		FFmpegPath: s.FFmpeg, FFprobePath: s.FFprobe, DecodeThreads: s.DecodeThreads, Probe: s.Probe,
	}
}
