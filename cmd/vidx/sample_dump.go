package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/vidx/vidx/media"
)

// samplingFlags are the sample stage's settings as flags, shared by
// `vidx sample` and `vidx embed-video`; zero values mean the stage defaults.
type samplingFlags struct {
	fps       float64
	maxFrames int
	selection string
	mode      string
	window    float64
	stride    float64
}

func (s *samplingFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&s.fps, "fps", 0, "frames sampled per second of video (default 1)")
	fs.IntVar(&s.maxFrames, "max-frames", 0, "frames kept per clip (default 12)")
	fs.StringVar(&s.selection, "selection", "", "which frames a clip keeps when it has more: uniform (default), head or tail")
	fs.StringVar(&s.mode, "mode", "", "whole (one clip per video, default) or window")
	fs.Float64Var(&s.window, "window", 0, "window length in seconds (window mode)")
	fs.Float64Var(&s.stride, "stride", 0, "window stride in seconds (window mode; default the window length)")
}

// decoder builds the decoder; size 0 means the stage's 224.
func (s *samplingFlags) decoder(size int) (*media.Decoder, error) {
	return media.NewDecoder(media.Options{
		FPS: s.fps, MaxFrames: s.maxFrames, Selection: s.selection, Mode: s.mode,
		WindowS: s.window, StrideS: s.stride, Size: size,
	})
}

// samplingJSON records the options in effect, defaults applied.
type samplingJSON struct {
	FPS       float64 `json:"fps"`
	MaxFrames int     `json:"max_frames"`
	Selection string  `json:"selection"`
	Mode      string  `json:"mode"`
	WindowS   float64 `json:"window_s,omitempty"`
	StrideS   float64 `json:"stride_s,omitempty"`
	Size      int     `json:"size"`
}

func samplingOf(o media.Options) samplingJSON {
	return samplingJSON{FPS: o.FPS, MaxFrames: o.MaxFrames, Selection: o.Selection, Mode: o.Mode,
		WindowS: o.WindowS, StrideS: o.StrideS, Size: o.Size}
}

// frameIndex is the number of the sampled frame in the whole video (the
// i of TimeS = i / FPS).
func frameIndex(timeS, fps float64) int { return int(math.Round(timeS * fps)) }

// sourceJSON is what ffprobe says about the input.
type sourceJSON struct {
	Width     int     `json:"width"`
	Height    int     `json:"height"`
	DurationS float64 `json:"duration_s"`
	FPS       float64 `json:"fps"`
	Codec     string  `json:"codec"`
}

// framesFile is frames.json, written by `vidx sample --dump`.
type framesFile struct {
	File     string       `json:"file"`
	Source   sourceJSON   `json:"source"`
	Sampling samplingJSON `json:"sampling"`
	Frames   []dumpFrame  `json:"frames"`
}

type dumpFrame struct {
	Clip       int     `json:"clip"`         // clip index: 0 in whole mode, the window number in window mode
	ClipStartS float64 `json:"clip_start_s"` // clip bounds in seconds
	ClipEndS   float64 `json:"clip_end_s"`
	Position   int     `json:"position"` // position of the frame in its clip
	Frame      int     `json:"frame"`    // index among the video's sampled frames: time_s = frame / fps
	TimeS      float64 `json:"time_s"`
	Width      int     `json:"width"` // source frame size, before the resize and crop
	Height     int     `json:"height"`
	PNG        string  `json:"png,omitempty"` // file name in the dump folder
}

func cmdSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sample", stderr, "sample [--dump DIR] [sampling flags] FILE\n\n"+
		"Samples FILE as the sample stage does and lists the frames; with --dump, writes each\n"+
		"224x224 crop as clipCCCC_frameFFFFFF.png plus frames.json into DIR.")
	dump := fs.String("dump", "", "folder to write the crops (PNG) and frames.json into")
	asJSON := fs.Bool("json", false, "print frames.json to stdout instead of a table")
	var sf samplingFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	uri := fs.Arg(0)
	d, err := sf.decoder(0)
	if err != nil {
		return err
	}
	info, err := d.Probe(ctx, uri)
	if err != nil {
		return err
	}
	o := d.Options()
	out := framesFile{
		File:     uri,
		Source:   sourceJSON{Width: info.Width, Height: info.Height, DurationS: info.DurationS, FPS: info.FPS, Codec: info.Codec},
		Sampling: samplingOf(o),
		Frames:   []dumpFrame{},
	}
	if *dump != "" {
		if err := os.MkdirAll(*dump, 0o755); err != nil {
			return fmt.Errorf("sample: --dump: %w", err)
		}
	}
	err = d.Clips(ctx, uri, func(c media.Clip) error {
		for pos, f := range c.Frames {
			df := dumpFrame{
				Clip: c.Index, ClipStartS: c.StartS, ClipEndS: c.EndS, Position: pos,
				Frame: frameIndex(f.TimeS, o.FPS), TimeS: f.TimeS, Width: info.Width, Height: info.Height,
			}
			if *dump != "" {
				df.PNG = fmt.Sprintf("clip%04d_frame%06d.png", c.Index, df.Frame)
				if err := writePNG(filepath.Join(*dump, df.PNG), f); err != nil {
					return err
				}
			}
			out.Frames = append(out.Frames, df)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *dump != "" {
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*dump, "frames.json"), append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("sample: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "%s: %dx%d %s, %.3fs at %.3g fps; sampled at %g fps, %s mode, up to %d %s frames per clip\n",
		uri, info.Width, info.Height, info.Codec, info.DurationS, info.FPS, o.FPS, o.Mode, o.MaxFrames, o.Selection)
	fmt.Fprintln(w, "clip  start_s    end_s  pos  frame   time_s  png")
	for _, f := range out.Frames {
		fmt.Fprintf(w, "%4d %8.3f %8.3f %4d %6d %8.3f  %s\n", f.Clip, f.ClipStartS, f.ClipEndS, f.Position, f.Frame, f.TimeS, f.PNG)
	}
	if *dump != "" {
		fmt.Fprintf(w, "wrote %d crops and frames.json to %s\n", len(out.Frames), *dump)
	}
	return w.Flush()
}

func writePNG(path string, f media.Frame) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	bw := bufio.NewWriter(file)
	// The crop is opaque, so the encoder writes 8-bit RGB.
	if err := png.Encode(bw, f.Image); err != nil {
		file.Close()
		return fmt.Errorf("sample: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		file.Close()
		return fmt.Errorf("sample: write %s: %w", path, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("sample: write %s: %w", path, err)
	}
	return nil
}
