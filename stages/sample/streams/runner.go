package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/stages/sample"
	"github.com/vidx/vidx/telemetry"
)

// stopGrace bounds the work a stopping stream still finishes: the window
// being produced and its state record, so that the next owner neither
// misses nor repeats it.
const stopGrace = 10 * time.Second

// healthyRun is how long a run must last for the next failure to start
// the backoff over.
const healthyRun = time.Minute

// runStream keeps one stream running until ctx ends, restarting its
// decoder with backoff, and returns its final state. st is the stream's
// last recorded state: where it resumes.
func (s *Service) runStream(ctx context.Context, spec schemas.StreamSpec, st schemas.StreamState) schemas.StreamState {
	drain := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
	}
	sameSpec := st.URI == sourceguard.Redact(spec.URI) && st.SpecVersion == spec.Version
	if !st.Live && (st.URI != sourceguard.Redact(spec.URI) || (st.State == schemas.StreamEnded && !sameSpec)) {
		// A file stream pointed at another file starts over: its old
		// positions mean nothing in the new file. A new version of a
		// finished one indexes it again.
		st.LastWindow = nil
	}
	st.StreamID, st.URI, st.SpecVersion = spec.StreamID, sourceguard.Redact(spec.URI), spec.Version
	log := s.log.With("stream", spec.StreamID, "uri", st.URI)

	dec, err := s.decoder(spec, func() {
		if st.State != schemas.StreamRunning {
			s.setState(ctx, &st, schemas.StreamRunning, nil)
		}
	})
	if err != nil {
		s.setState(ctx, &st, schemas.StreamFailed, err)
		<-ctx.Done()
		return st
	}
	if st.State == schemas.StreamEnded && st.LastWindow != nil && !st.Live && sameSpec {
		// Indexed to its end already; a new version of the spec restarts it.
		s.setState(ctx, &st, schemas.StreamEnded, nil)
		<-ctx.Done()
		return st
	}
	s.setState(ctx, &st, schemas.StreamStarting, nil)
	for attempt := 0; ; {
		began := s.now()
		res, err := dec.Run(ctx, spec.URI, resumeOf(st), func(w media.Window) error {
			wctx, cancel := drain()
			defer cancel()
			return s.emitWindow(wctx, spec, &st, w)
		})
		if ctx.Err() != nil {
			dctx, cancel := drain()
			s.setState(dctx, &st, schemas.StreamStopped, nil)
			cancel()
			return st
		}
		var refused *sourceguard.RefusedError
		switch {
		case err == nil && res.Ended:
			s.setState(ctx, &st, schemas.StreamEnded, nil)
			<-ctx.Done()
			return st
		case errors.As(err, &refused), pipeline.IsPoison(err) && !res.Live && res.Frames > 0,
			pipeline.IsPoison(err) && st.LastWindow != nil && !st.Live,
			pipeline.IsPoison(err) && isLocal(spec.URI):
			// The policy said no, or a file turned out bad: retrying cannot
			// help until the spec changes.
			s.setState(ctx, &st, schemas.StreamFailed, err)
			<-ctx.Done()
			return st
		}
		if err == nil {
			err = errors.New("decoder stopped without a reason")
		}
		if res.Windows > 0 || s.now().Sub(began) > healthyRun {
			attempt = 0
		}
		st.Restarts++
		s.setState(ctx, &st, schemas.StreamReconnecting, err)
		wait := s.cfg.backoff().Delay(attempt + 1)
		attempt++
		log.Info("stream restarting", "in", wait.Round(time.Millisecond), "err", err)
		if pipeline.Sleep(ctx, wait) != nil {
			dctx, cancel := drain()
			s.setState(dctx, &st, schemas.StreamStopped, nil)
			cancel()
			return st
		}
	}
}

// isLocal reports whether uri names a local file, which a retry cannot fix.
func isLocal(uri string) bool {
	return !strings.Contains(uri, "://") || strings.HasPrefix(strings.ToLower(uri), "file://")
}

func resumeOf(st schemas.StreamState) *media.Resume {
	w := st.LastWindow
	if w == nil {
		return nil
	}
	return &media.Resume{Live: st.Live, Index: w.Index, StartS: w.StartS, EndS: w.EndS, WallEnd: w.WallEnd}
}

// decoder builds the stream's decoder from the spec over the defaults.
func (s *Service) decoder(spec schemas.StreamSpec, started func()) (*media.StreamDecoder, error) {
	o := media.StreamOptions{
		FPS: s.cfg.FPS, MaxFrames: s.cfg.MaxFrames, Selection: s.cfg.Selection,
		WindowS: s.cfg.WindowS, StrideS: s.cfg.StrideS, Size: s.env.Size,
		FFmpegPath: s.env.FFmpegPath, Guard: s.env.Guard, StallTimeout: s.cfg.StallTimeout,
		Logger: s.log.With("stream", spec.StreamID), Started: started,
	}
	if seg := spec.Segment; seg != nil {
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
			if seg.StrideS == 0 {
				o.StrideS = 0 // the window, not the default stride
			}
		}
		if seg.StrideS != 0 {
			o.StrideS = seg.StrideS
		}
	}
	dec, err := media.NewStreamDecoder(o)
	if err != nil {
		return nil, pipeline.Poison(fmt.Errorf("stream %s: %w", spec.StreamID, err))
	}
	return dec, nil
}

// emitWindow produces a window's clip and, once it is acknowledged, the
// stream's state naming it: the resume point never runs ahead of the clips.
func (s *Service) emitWindow(ctx context.Context, spec schemas.StreamSpec, st *schemas.StreamState, w media.Window) error {
	h := schemas.ClipHeader{
		VideoID:   spec.StreamID,
		StreamID:  spec.StreamID,
		URI:       st.URI,
		Source:    spec.Source,
		ClipIndex: w.Index,
		StartS:    w.StartS,
		EndS:      w.EndS,
		Metadata:  spec.Metadata,
		SampledAt: s.now().UTC(),
		Codec:     s.env.Codec,
		WallStart: w.WallStart.UTC(),
		WallEnd:   w.WallEnd.UTC(),
	}
	if w.WallStart.IsZero() {
		h.WallStart, h.WallEnd = time.Time{}, time.Time{}
	}
	value, err := sample.PackClip(h, w.Frames, s.env.Codec, s.env.Quality)
	if err != nil {
		return fmt.Errorf("stream %s window %d: %w", spec.StreamID, w.Index, err)
	}
	if err := s.produce(ctx, pipeline.Output{Topic: s.env.ClipsTopic, Key: []byte(spec.StreamID), Value: value}); err != nil {
		return fmt.Errorf("stream %s window %d: produce clip: %w", spec.StreamID, w.Index, err)
	}
	// A lost thumbnail only costs a picture: it never holds the stream back.
	if thumb, err := sample.Thumbnail(s.env.ThumbnailTopic, spec.StreamID, w.Index, w.Frames); err == nil && thumb != nil {
		if err := s.produce(ctx, *thumb); err != nil {
			s.log.Warn("stream thumbnail not produced", "stream_id", spec.StreamID, "window", w.Index, "err", err)
		}
	}
	telemetry.From(ctx).Instruments().FramesSampled.Add(ctx, int64(len(w.Frames)))
	st.Live = w.Live
	st.Windows++
	st.LastWindow = &schemas.StreamWindow{Index: w.Index, StartS: w.StartS, EndS: w.EndS, Frames: len(w.Frames),
		WallStart: h.WallStart, WallEnd: h.WallEnd}
	st.Error = ""
	s.setState(ctx, st, schemas.StreamRunning, nil)
	return nil
}
