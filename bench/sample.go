package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/sourceguard"
)

// sampleFigures time vidx's sampler (ffprobe, ffmpeg at 1 fps, PIL-exact
// resize and crop in Go) against plain ffmpeg decoding at 1 fps to raw RGB
// that is thrown away, the least any sampler has to do. Both count the
// frames the fps filter emits, so the rates compare the same work.
func (c *Config) sampleFigures(ctx context.Context, video string) ([]Figure, error) {
	rounds := 3
	if c.Quick {
		rounds = 1
	}
	long, err := c.longVideo(ctx)
	if err != nil {
		return nil, err
	}
	// The long video again from an HTTP server that takes byte ranges, as
	// a remote job reads it: vidx seeks with range requests through its
	// source proxy, plain ffmpeg reads the whole file.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, long)
	}))
	defer srv.Close()
	guard, err := sourceguard.NewGuard(sourceguard.SourcePolicy{AllowNetworks: []string{"127.0.0.1/32"}})
	if err != nil {
		return nil, err
	}
	var figs []Figure
	for _, tc := range []struct {
		name, note, video string
		opts              media.Options
	}{
		{"sample_dense_1fps", "every 1 fps frame resized and cropped to 224", video, media.Options{MaxFrames: 1 << 20}},
		{"sample_whole_12", "whole mode, 12 frames kept (the default job)", video, media.Options{}},
		// Whole mode on a long video seeks to the 12 kept frames instead
		// of decoding all of them; the baseline still decodes everything,
		// which is what sampling at 1 fps costs without seeking.
		{"sample_whole_12_long", "whole mode, 12 frames kept, decoded by seeking", long, media.Options{}},
		{"sample_whole_12_long_http", "as sample_whole_12_long, served over loopback HTTP with byte ranges; vidx seeks with range requests through its source proxy", srv.URL + "/" + filepath.Base(long), media.Options{Guard: guard}},
	} {
		fig, err := c.sampleFigure(ctx, tc.video, tc.opts, rounds)
		if err != nil {
			return nil, err
		}
		fig.Name = tc.name
		fig.Note = tc.note + "; " + fig.Note
		figs = append(figs, fig)
	}
	return figs, nil
}

// sampleFigure times one decoder configuration on video against plain
// ffmpeg, turn about, and reports the medians.
func (c *Config) sampleFigure(ctx context.Context, video string, opts media.Options, rounds int) (Figure, error) {
	d, err := media.NewDecoder(opts)
	if err != nil {
		return Figure{}, err
	}
	info, err := d.Probe(ctx, video)
	if err != nil {
		return Figure{}, err
	}
	plain := func() (int, error) {
		cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", video,
			"-vf", "fps=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:")
		// The environment vidx gives ffmpeg, so the ratio is vidx's own
		// work and not the idle threads of a library ffmpeg links.
		cmd.Env = media.ToolEnv(os.Environ())
		out, err := cmd.StdoutPipe()
		if err != nil {
			return 0, err
		}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, out)
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
		return int(n / int64(info.Width*info.Height*3)), err
	}
	var vr, br []float64
	for range rounds {
		frames := 0
		r, err := rate(ctx, 1, 1, func() error {
			var err error
			frames, err = plain()
			return err
		})
		if err != nil {
			return Figure{}, fmt.Errorf("plain ffmpeg: %w", err)
		}
		br = append(br, r*float64(frames))
		r, err = rate(ctx, 1, 1, func() error {
			return d.Clips(ctx, video, func(media.Clip) error { return nil })
		})
		if err != nil {
			return Figure{}, err
		}
		vr = append(vr, r*float64(frames))
	}
	v, b := median(vr), median(br)
	return Figure{Unit: "frames/s", Vidx: v, Baseline: b,
		Against: "plain ffmpeg -vf fps=1 to raw RGB", Ratio: v / b,
		Note: fmt.Sprintf("%dx%d %s, %.0f s", info.Width, info.Height, info.Codec, info.DurationS)}, nil
}
