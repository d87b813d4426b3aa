package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/scripts"
)

func cmdModelsQuantize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("models quantize", stderr, "models quantize [--name NAME] [--python PYTHON] SRC DST\n\n"+
		"Writes a copy of bundle SRC to DST with int8 image and text models, made by ONNX Runtime's\n"+
		"dynamic quantizer (scripts/quantize.py; onnxruntime from PyPI, installed on first use into\n"+
		"~/.cache/vidx/py-quantize). The temporal model and tokenizer files are copied unchanged.")
	name := fs.String("name", "", "name of the new bundle (default: SRC's name plus -int8)")
	python := fs.String("python", "python3", "Python 3 interpreter that runs the script")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errUsage
	}
	script, cleanup, err := writeQuantizeScript()
	if err != nil {
		return err
	}
	defer cleanup()
	m, err := bundle.Quantize(ctx, fs.Arg(0), fs.Arg(1), bundle.QuantizeOptions{
		Script: script, Python: *python, Name: *name, Stderr: stderr,
	})
	if err != nil {
		return err
	}
	var before, after int64
	for _, f := range []string{m.Image.ONNX, m.Text.ONNX} {
		if fi, err := os.Stat(m.Path(f)); err == nil {
			after += fi.Size()
		}
	}
	if src, err := bundle.Load(fs.Arg(0)); err == nil {
		for _, f := range []string{src.Image.ONNX, src.Text.ONNX} {
			if fi, err := os.Stat(src.Path(f)); err == nil {
				before += fi.Size()
			}
		}
	}
	fmt.Fprintf(stdout, "wrote %s: model %s, image and text models int8 (%.1f MB, from %.1f MB)\n",
		m.Dir, m.Name, float64(after)/1e6, float64(before)/1e6)
	return nil
}

// writeQuantizeScript puts the script the binary carries in a temporary
// file, so the command works without a source checkout.
func writeQuantizeScript() (string, func(), error) {
	dir, err := os.MkdirTemp("", "vidx-quantize-")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "quantize.py")
	if err := os.WriteFile(path, scripts.QuantizePy(), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return path, func() { os.RemoveAll(dir) }, nil
}
