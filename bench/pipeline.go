package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
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
	// SampleReplicas overrides stages.sample.replicas when above zero.
	SampleReplicas int
	// DecodeThreads overrides stages.sample.decode_threads when above zero.
	DecodeThreads int
	// Probe overrides stages.sample.probe when set.
	Probe string
	Work  string
}

// pipelineFigures time whole-mode indexing of a batch of videos end to end
// (first job published to last clip stored) and compare the frames it
// embeds per second with the bare fp32 encoder loop: the best the encoder
// alone could do. Decoding shares the same cores, so the bound is the
// encoder's share of the CPU time decoding and encoding take together
// (about 0.55 for fp32 at B/32 on 2 cores, BENCHMARKS.md).
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
	type variant struct {
		m        *bundle.Manifest
		spin     bool
		threads  int
		samplers int
		decoders int
		probe    string
		label    string
	}
	// cpu keeps, per variant, the CPU time of its fastest run: this
	// process (the stages, ONNX Runtime) and the ffmpeg and ffprobe
	// children it waited for.
	cpu := map[string]cpuTime{}
	best := map[string]float64{}
	run := func(v variant) error {
		dir := filepath.Join(work, v.label)
		before := cpuNow()
		el, err := c.Pipeline(ctx, PipelineRun{Bundle: v.m.Dir, Videos: videos, AllowSpinning: v.spin,
			IntraOpThreads: v.threads, SampleReplicas: v.samplers, DecodeThreads: v.decoders, Probe: v.probe, Work: dir})
		if err != nil {
			return fmt.Errorf("pipeline %s: %w", v.label, err)
		}
		used := cpuNow().sub(before)
		os.RemoveAll(dir)
		c.Logger.Info("pipeline", "run", v.label, "seconds", el.Seconds(), "frames", frames,
			"cpu_self_s", used.self, "cpu_children_s", used.children)
		if fps := frames / el.Seconds(); fps > best[v.label] {
			best[v.label], cpu[v.label] = fps, used
		}
		return nil
	}
	note := fmt.Sprintf("%d whole-mode videos (%dx%d, %.0f s, %d frames kept each), first job published to last clip stored; default settings",
		n, info.Width, info.Height, info.DurationS, perVideo)
	// What ffmpeg's decoder picks when left to itself: a thread per core
	// and one more, at most 16.
	ffmpegThreads := min(runtime.NumCPU()+1, 16)
	variants := []variant{
		{m: fp32, label: "fp32"},
		{m: fp32, spin: true, label: "fp32-spinning"},
		{m: fp32, threads: 1, label: "fp32-1thread"},
		{m: fp32, samplers: 1, label: "fp32-1sampler"},
		{m: fp32, decoders: ffmpegThreads, label: "fp32-decoder-threads"},
	}
	if int8 != nil {
		variants = append(variants, variant{m: int8, label: "int8"}, variant{m: int8, probe: media.ProbeFFprobe, label: "int8-ffprobe"})
	}
	// Two rounds, the second in reverse order, so that load that comes and
	// goes during the run does not favour whichever variant ran first; each
	// variant keeps its better round.
	rounds := 2
	if c.Quick {
		rounds = 1
	}
	for r := range rounds {
		order := slices.Clone(variants)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			if err := run(v); err != nil {
				return nil, err
			}
		}
	}
	noSpin, spin, one, oneSampler, decoders := best["fp32"], best["fp32-spinning"], best["fp32-1thread"], best["fp32-1sampler"], best["fp32-decoder-threads"]
	figs := []Figure{
		{Name: "pipeline_fp32", Unit: "frames/s", Vidx: noSpin, Baseline: bareFP32, Against: "bare fp32 onnxruntime_go loop, the faster of spinning on and off (images/s)", Ratio: noSpin / bareFP32,
			Note: note + "; " + cpu["fp32"].String()},
		{Name: "pipeline_fp32_nospin", Unit: "frames/s", Vidx: noSpin, Baseline: spin, Against: "same run with model.allow_spinning: true", Ratio: noSpin / spin},
		{Name: "pipeline_fp32_threads", Unit: "frames/s", Vidx: noSpin, Baseline: one, Against: "same run with model.intra_op_threads: 1", Ratio: noSpin / one,
			Note: "default model.intra_op_threads: 2"},
		{Name: "pipeline_fp32_samplers", Unit: "frames/s", Vidx: noSpin, Baseline: oneSampler, Against: "same run with stages.sample.replicas: 1", Ratio: noSpin / oneSampler,
			Note: "default stages.sample.replicas: 2 (two videos decode at once)"},
		{Name: "pipeline_fp32_decode_threads", Unit: "frames/s", Vidx: noSpin, Baseline: decoders,
			Against: fmt.Sprintf("same run with stages.sample.decode_threads: %d (ffmpeg's own choice here)", ffmpegThreads), Ratio: noSpin / decoders,
			Note: "default: one decoder thread beside the encode stage; " + cpu["fp32"].String() + " against " + cpu["fp32-decoder-threads"].String()},
	}
	if int8 != nil {
		q := best["int8"]
		figs = append(figs, Figure{Name: "pipeline_int8", Unit: "frames/s", Vidx: q, Baseline: bareFP32, Against: "bare fp32 onnxruntime_go loop, the faster of spinning on and off (images/s)", Ratio: q / bareFP32,
			Note: "int8 bundle; " + note + "; " + cpu["int8"].String()},
			Figure{Name: "pipeline_int8_probe", Unit: "frames/s", Vidx: q, Baseline: best["int8-ffprobe"], Against: "same run with stages.sample.probe: ffprobe", Ratio: q / best["int8-ffprobe"],
				Note: "default: each MP4's headers read in-process; " + cpu["int8"].String() + " against " + cpu["int8-ffprobe"].String()})
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
