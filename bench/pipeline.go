package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/media"
)

// PipelineRun asks Config.Pipeline to index Videos (whole mode, the
// defaults otherwise) through every stage in one process, as vidx up
// --embedded does, with a fresh broker and store under Work.
type PipelineRun struct {
	Bundle        string
	Videos        []string
	AllowSpinning bool
	// IntraOpThreads overrides model.intra_op_threads when above zero.
	IntraOpThreads int
	Work           string
}

// pipelineFigures time whole-mode indexing of a batch of videos end to end
// (first job published to last clip stored) and compare the frames it
// embeds per second with the bare fp32 encoder loop: the best the encoder
// alone could do. Decoding shares the same cores, so the bound for
// fp32 is about 0.58.
func (c *Config) pipelineFigures(ctx context.Context, fp32, int8 *bundle.Manifest, bareFP32 float64) ([]Figure, error) {
	if c.Pipeline == nil {
		return nil, nil
	}
	n, name, graph := 12, "testsrc2-640x360-30s.mp4", "testsrc2=size=640x360:rate=25:duration=30"
	if c.Quick {
		n, name, graph = 2, "testsrc2-320x180-8s.mp4", "testsrc2=size=320x180:rate=25:duration=8"
	}
	src, err := c.renderVideo(ctx, name, graph)
	if err != nil {
		return nil, err
	}
	d, err := media.NewDecoder(media.Options{})
	if err != nil {
		return nil, err
	}
	info, err := d.Probe(ctx, src)
	if err != nil {
		return nil, err
	}
	perVideo := min(d.Options().MaxFrames, int(math.Round(info.DurationS*d.Options().FPS)))
	work, err := os.MkdirTemp("", "vidx-bench-pipeline-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	videos, err := videoCopies(filepath.Join(work, "videos"), src, n)
	if err != nil {
		return nil, err
	}
	frames := float64(n * perVideo)
	run := func(m *bundle.Manifest, spin bool, threads int, label string) (float64, error) {
		dir := filepath.Join(work, label)
		el, err := c.Pipeline(ctx, PipelineRun{Bundle: m.Dir, Videos: videos, AllowSpinning: spin, IntraOpThreads: threads, Work: dir})
		if err != nil {
			return 0, fmt.Errorf("pipeline %s: %w", label, err)
		}
		os.RemoveAll(dir)
		c.Logger.Info("pipeline", "run", label, "seconds", el.Seconds(), "frames", frames)
		return frames / el.Seconds(), nil
	}
	note := fmt.Sprintf("%d whole-mode videos (%dx%d, %.0f s, %d frames kept each), first job published to last clip stored; default settings",
		n, info.Width, info.Height, info.DurationS, perVideo)
	type variant struct {
		m       *bundle.Manifest
		spin    bool
		threads int
		label   string
	}
	variants := []variant{{fp32, false, 0, "fp32"}, {fp32, true, 0, "fp32-spinning"}, {fp32, false, 1, "fp32-1thread"}}
	if int8 != nil {
		variants = append(variants, variant{int8, false, 0, "int8"})
	}
	// Two rounds, the second in reverse order, so that load that comes and
	// goes during the run does not favour whichever variant ran first; each
	// variant keeps its better round.
	rounds := 2
	if c.Quick {
		rounds = 1
	}
	best := map[string]float64{}
	for r := range rounds {
		order := slices.Clone(variants)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			fps, err := run(v.m, v.spin, v.threads, v.label)
			if err != nil {
				return nil, err
			}
			best[v.label] = max(best[v.label], fps)
		}
	}
	noSpin, spin, one := best["fp32"], best["fp32-spinning"], best["fp32-1thread"]
	figs := []Figure{
		{Name: "pipeline_fp32", Unit: "frames/s", Vidx: noSpin, Baseline: bareFP32, Against: "bare fp32 onnxruntime_go loop (images/s)", Ratio: noSpin / bareFP32, Note: note},
		{Name: "pipeline_fp32_nospin", Unit: "frames/s", Vidx: noSpin, Baseline: spin, Against: "same run with model.allow_spinning: true", Ratio: noSpin / spin},
		{Name: "pipeline_fp32_threads", Unit: "frames/s", Vidx: noSpin, Baseline: one, Against: "same run with model.intra_op_threads: 1", Ratio: noSpin / one,
			Note: "default model.intra_op_threads: 2"},
	}
	if int8 != nil {
		q := best["int8"]
		figs = append(figs, Figure{Name: "pipeline_int8", Unit: "frames/s", Vidx: q, Baseline: bareFP32, Against: "bare fp32 onnxruntime_go loop (images/s)", Ratio: q / bareFP32, Note: "int8 bundle; " + note})
	}
	return figs, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// videoCopies makes n files of src in dir (hard links where the file
// system allows), so n jobs get n distinct video ids.
func videoCopies(dir, src string, n int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var videos []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("v%02d%s", i, filepath.Ext(src)))
		if err := os.Link(src, p); err != nil {
			if err := copyFile(src, p); err != nil {
				return nil, err
			}
		}
		videos = append(videos, p)
	}
	return videos, nil
}
