// Package sample is the sample stage: it turns video jobs into clip
// messages (and clip thumbnails) with media's decoder, every source checked
// by sourceguard, and runs the live streams registered on the streams
// topic, cutting each into windows that travel as clips.
//
// It imports of vidx media, sourceguard, pipeline, schemas and telemetry.
package sample

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/telemetry"
)

// flushClips is how many clips of one video the stage holds before
// producing them: at most 8 x 1000 KiB.
const flushClips = 8

// MaxMessageBytes is the largest clip message the stage produces: kafka-go's
// default writer batch and reader fetch sizes are 1 MiB, and a message must
// fit in both with room for the record overhead.
const MaxMessageBytes = 1000 * 1024

// StageConfig configures the sample stage.
type StageConfig struct {
	// Options are the defaults; a job's segment settings override them.
	Options media.Options
	// Codec and Quality say how frames travel: JPEG at Quality, or PNG when
	// lossless frames are wanted.
	Codec       string
	Quality     int
	OutputTopic string
	// ThumbnailTopic, when set, receives a small JPEG of each clip's middle
	// frame (compacted, keyed by ThumbnailKey).
	ThumbnailTopic string
}

// Stage turns video jobs into clip messages.
type Stage struct {
	cfg StageConfig
	now func() time.Time
}

// NewStage validates the configuration.
func NewStage(cfg StageConfig) (*Stage, error) {
	cfg.Options = cfg.Options.WithDefaults()
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	def := Settings{}.WithDefaults()
	cfg.Codec = cmp.Or(cfg.Codec, def.Codec)
	cfg.Quality = cmp.Or(cfg.Quality, def.Quality)
	if cfg.Codec != schemas.CodecJPEG && cfg.Codec != schemas.CodecPNG {
		return nil, fmt.Errorf("sample: codec %q is not jpeg or png", cfg.Codec)
	}
	if cfg.Quality < 1 || cfg.Quality > 100 {
		return nil, fmt.Errorf("sample: quality %d out of range [1, 100]", cfg.Quality)
	}
	if cfg.OutputTopic == "" {
		cfg.OutputTopic = "clips"
	}
	if g := cfg.Options.Guard; g != nil && len(g.Policy().FileRoots) == 0 && g.Allows(sourceguard.SchemeFile) {
		cfg.Options.Logger.Warn("sample: jobs and streams may read any local file; set stages.sample.sources.file_roots to confine them")
	}
	return &Stage{cfg: cfg, now: time.Now}, nil
}

// Handle implements pipeline.Handler, one job at a time: decoding a video
// already keeps ffmpeg busy.
func (s *Stage) Handle(ctx context.Context, batch []pipeline.Message) []pipeline.Result {
	res := make([]pipeline.Result, len(batch))
	for i, m := range batch {
		res[i].Outputs, res[i].Err = s.handle(ctx, m)
	}
	return res
}

// JobOptions merges a job's segment settings over the stage defaults.
func (s *Stage) JobOptions(job *schemas.VideoJob) (media.Options, error) {
	o := s.cfg.Options
	if seg := job.Segment; seg != nil {
		if seg.Mode != "" {
			o.Mode = seg.Mode
		}
		if seg.FPS != 0 {
			o.FPS = seg.FPS
		}
		if seg.MaxFrames != 0 {
			o.MaxFrames = seg.MaxFrames
		}
		if seg.Selection != "" {
			o.Selection = seg.Selection
		}
		if seg.WindowS != 0 {
			o.WindowS = seg.WindowS
		}
		if seg.StrideS != 0 {
			o.StrideS = seg.StrideS
		}
		if seg.SceneThreshold != 0 {
			o.SceneThreshold = seg.SceneThreshold
		}
		if seg.MinShotS != 0 {
			o.MinShotS = seg.MinShotS
		}
		if seg.MaxShotS != 0 {
			o.MaxShotS = seg.MaxShotS
		}
	}
	o = o.WithDefaults()
	if err := o.Validate(); err != nil {
		return o, pipeline.Poison(fmt.Errorf("video %s: segment: %w", job.VideoID, err))
	}
	return o, nil
}

func (s *Stage) handle(ctx context.Context, m pipeline.Message) (_ []pipeline.Output, err error) {
	if schemas.IsDeleteCommand(m.Value, m.Headers) {
		// The index stage acts on it.
		return nil, nil
	}
	job, err := schemas.DecodeVideoJob(m.Value)
	if err != nil {
		return nil, pipeline.Poison(err)
	}
	opts, err := s.JobOptions(&job)
	if err != nil {
		return nil, err
	}
	dec, err := media.NewDecoder(opts)
	if err != nil {
		return nil, pipeline.Poison(err)
	}
	var outs []pipeline.Output
	// The decode span covers ffmpeg, frame selection, the CLIP crops and
	// the frame encoding of every clip of the video.
	dctx, span := telemetry.Start(m.Context(ctx), "decode", trace.WithAttributes(
		attribute.String("vidx.video_id", job.VideoID), attribute.String("vidx.mode", opts.Mode)))
	defer func() { telemetry.End(span, err) }()
	// A long video in window mode has thousands of clips: inside a running
	// stage they are produced every flushClips clips instead of being held
	// until the end, which bounds memory. Point ids are deterministic, so a
	// redelivered job re-indexes the same points.
	early := pipeline.CanEmit(ctx)
	// Every clip of this run carries its generation, and the last one the
	// number of clips, so that the index stage can replace the video's
	// clips of earlier runs once all of this run's are indexed. The last
	// clip is only known when the decoder is done, so each clip is held
	// back until the next one arrives.
	gen := s.now().UTC().UnixMicro()
	var held *media.Clip
	produced := 0
	send := func(c *media.Clip, total int) error {
		value, err := s.encodeJobClip(&job, *c, gen, total)
		if err != nil {
			return err
		}
		outs = append(outs, pipeline.Output{Topic: s.cfg.OutputTopic, Key: []byte(job.VideoID), Value: value})
		thumb, err := Thumbnail(s.cfg.ThumbnailTopic, job.VideoID, c.Index, c.Frames)
		if err != nil {
			return err
		}
		if thumb != nil {
			outs = append(outs, *thumb)
		}
		telemetry.From(ctx).Instruments().FramesSampled.Add(ctx, int64(len(c.Frames)))
		if early && len(outs) >= flushClips {
			if err := pipeline.Emit(dctx, outs...); err != nil {
				return pipeline.Retryable(fmt.Errorf("produce clips: %w", err))
			}
			outs = outs[:0:0]
		}
		return nil
	}
	err = dec.Clips(dctx, job.URI, func(c media.Clip) error {
		produced++
		if held != nil {
			if err := send(held, 0); err != nil {
				return err
			}
		}
		held = &c
		return nil
	})
	if err == nil && held != nil {
		err = send(held, produced)
	}
	if err != nil {
		return nil, fmt.Errorf("video %s: %w", job.VideoID, err)
	}
	return outs, nil
}

// EncodeClip builds the clip message, without a generation (such clips never
// replace older ones). When JPEG frames at the configured
// quality would not fit in MaxMessageBytes, quality is lowered step by step
// rather than failing the video.
func (s *Stage) EncodeClip(job *schemas.VideoJob, c media.Clip) ([]byte, error) {
	return s.encodeJobClip(job, c, 0, 0)
}

// encodeJobClip is EncodeClip with the job run's generation and, on the
// run's last clip, its clip count (0 on the others).
func (s *Stage) encodeJobClip(job *schemas.VideoJob, c media.Clip, generation int64, clips int) ([]byte, error) {
	h := schemas.ClipHeader{
		Generation:      generation,
		GenerationClips: clips,
		VideoID:         job.VideoID,
		URI:             job.URI,
		Source:          job.Source,
		ClipIndex:       c.Index,
		StartS:          c.StartS,
		EndS:            c.EndS,
		Metadata:        job.Metadata,
		SampledAt:       s.now().UTC(),
		Codec:           s.cfg.Codec,
	}
	return PackClip(h, c.Frames, s.cfg.Codec, s.cfg.Quality)
}

// PackClip fills h's frame fields from frames and encodes the message,
// lowering JPEG quality in steps of 10 (down to 50) until it fits in
// MaxMessageBytes.
func PackClip(h schemas.ClipHeader, frames []media.Frame, codec string, quality int) ([]byte, error) {
	h.Codec = codec
	h.FrameTimes = nil
	for _, f := range frames {
		h.FrameTimes = append(h.FrameTimes, f.TimeS)
	}
	if len(frames) > 0 {
		h.Size = frames[0].Image.Bounds().Dx()
	}
	for q := quality; ; q -= 10 {
		clip := schemas.Clip{Header: h, Frames: make([][]byte, len(frames))}
		for i, f := range frames {
			b, err := schemas.EncodeFrame(f.Image, codec, q)
			if err != nil {
				return nil, err
			}
			clip.Frames[i] = b
		}
		value, err := schemas.EncodeClip(&clip)
		if err != nil {
			return nil, pipeline.Poison(err)
		}
		if len(value) <= MaxMessageBytes {
			return value, nil
		}
		if codec != schemas.CodecJPEG || q-10 < 50 {
			return nil, pipeline.Poisonf("clip %d is %d bytes as %s, over the %d-byte message limit; lower max_frames or use jpeg",
				h.ClipIndex, len(value), codec, MaxMessageBytes)
		}
	}
}
