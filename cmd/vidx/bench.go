package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/vidx/vidx/bench"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == bench.ProbeCommand {
		// The memory step's baseline process, run by the step itself.
		return bench.MemoryProbe(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("bench", stderr, "bench [--quick] [--json] [flags]\n\n"+
		"Measures vidx next to its floors in one run: the image encoder against a bare onnxruntime_go\n"+
		"loop (fp32 and int8), int8 against fp32, sampling against plain ffmpeg, query latency against\n"+
		"a bare text-tower run plus a plain scan, and each stage's peak RSS (run as a process of this\n"+
		"executable) against a process doing the least that stage must. Generates its inputs on first\n"+
		"use (random B/32-scale models through scripts/export_bundle.py, run from the source checkout)\n"+
		"under ~/.cache/vidx/bench.\n"+
		"The ratio column is above 1 where vidx does better. See BENCHMARKS.md.")
	var cfg bench.Config
	fs.BoolVar(&cfg.Quick, "quick", false, "tiny models and inputs: a smoke test, not a measurement")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.IntVar(&cfg.Threads, "threads", 0, "ONNX Runtime intra-op threads (default: one per CPU)")
	fs.IntVar(&cfg.Clips, "clips", 0, "points in the query benchmark's store (default 100000; quick 2000)")
	fs.StringVar(&cfg.CacheDir, "cache-dir", "", "where generated models and videos are kept (default ~/.cache/vidx/bench)")
	fs.StringVar(&cfg.RepoDir, "repo", "", "source checkout holding scripts/export_bundle.py (default: found above the working directory)")
	fs.StringVar(&cfg.ORTLib, "ort-lib", "", "ONNX Runtime shared library (env VIDX_ORT_LIB)")
	fs.StringVar(&cfg.Python, "python", "python3", "Python 3 interpreter for the int8 quantizer")
	noPipeline := fs.Bool("no-pipeline", false, "skip the whole-pipeline figures (vidx up --embedded in process)")
	fs.StringVar(&cfg.Shape, "shape", "b32", "model shape of a full run: "+strings.Join(bench.Shapes, " or ")+" (random weights at real size)")
	only := fs.String("only", "", "comma-separated steps to measure (of "+strings.Join(bench.Steps, ", ")+"); default all")
	logLevel := fs.String("log-level", "info", "progress on stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	script, cleanup, err := writeQuantizeScript()
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.QuantizeScript = script
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Logger = newLogger(stderr, *logLevel).With("cmd", "bench")
	// The memory step runs each stage in a process of this executable.
	if exe, err := os.Executable(); err == nil {
		cfg.Vidx = exe
	}
	if !*noPipeline {
		cfg.Pipeline = benchPipeline(stderr, "warn")
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printBench(stdout, rep)
}

func printBench(w io.Writer, rep *bench.Report) error {
	m := rep.Machine
	fmt.Fprintf(w, "vidx bench%s: %d CPUs, %d ONNX Runtime threads, %s, ONNX Runtime %s, %s\n",
		map[bool]string{true: " --quick", false: ""}[rep.Quick], m.CPUs, m.Threads, m.OS, m.ORT, m.FFmpeg)
	fmt.Fprintf(w, "load average (1 min) %s before, %s after; %.0f s\n", m.LoadBefore, m.LoadAfter, rep.Seconds)
	for _, s := range rep.Models {
		fmt.Fprintf(w, "model %s\n", s)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvidx\tbaseline\tratio\tunit\tbaseline is\tnote")
	for _, f := range rep.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%s\t%s\t%s\n", f.Name, num(f.Vidx), num(f.Baseline), f.Ratio, f.Unit, f.Against, f.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped: %s\n", s)
	}
	return nil
}

// num prints 4 significant digits, enough for figures that vary by a few
// percent run to run.
func num(v float64) string {
	s := fmt.Sprintf("%.4g", v)
	if strings.Contains(s, "e") {
		return fmt.Sprintf("%.1f", v)
	}
	return s
}
