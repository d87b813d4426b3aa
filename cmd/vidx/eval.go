package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/vidx/vidx/eval"
)

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr, "eval --bundle DIR --dataset FILE [--json] [--pooling meanP|seqTransf] [--codec jpeg|png] [--bank-size N] [--work DIR]\n"+
		"       vidx eval --example DIR [--bundle DIR]")
	bundleDir := fs.String("bundle", "", "model bundle directory")
	dataset := fs.String("dataset", "", `JSONL dataset: {"video_id": ..., "path": ..., "captions": [...]} per line, paths relative to the file`)
	asJSON := fs.Bool("json", false, "print the metrics as JSON")
	pooling := fs.String("pooling", "", "pool stage mode, meanP or seqTransf (default: seqTransf when the bundle has a temporal head, else meanP)")
	codec := fs.String("codec", "", "how frames travel to the encoder: jpeg (lossy) or png (lossless) (default: the configured stages.sample.codec, jpeg)")
	bankSize := fs.Int("bank-size", eval.DefaultBankSize(), "query bank size of the streaming evaluation (the query stage's bank_size)")
	work := fs.String("work", "", "keep the broker and store data under DIR/data (default: a temporary directory, removed)")
	example := fs.String("example", "", "write the generated example dataset (videos and dataset.jsonl) to DIR; with --bundle, evaluate it")
	ortLib := fs.String("ort-lib", "", "ONNX Runtime shared library (env VIDX_ORT_LIB)")
	logLevel := fs.String("log-level", "warn", "log level of the stages")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *example != "" {
		if *dataset != "" {
			return fmt.Errorf("eval: --example writes its own dataset; leave out --dataset")
		}
		file, err := eval.WriteExample(ctx, *example, eval.ExampleOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d generated videos and %s\n", eval.ExampleVideos(), file)
		if *bundleDir == "" {
			fmt.Fprintf(stderr, "evaluate it with the colour test bundle:\n  vidx models testdata models\n  vidx eval --bundle models/color --dataset %s\n", file)
			return nil
		}
		*dataset = file
	}
	if *bundleDir == "" || *dataset == "" {
		fs.Usage()
		return errUsage
	}
	ds, err := eval.LoadDataset(*dataset)
	if err != nil {
		return err
	}
	log := newLogger(stderr, *logLevel)
	r, err := eval.Evaluate(ctx, eval.Options{
		Bundle:   *bundleDir,
		Dataset:  ds,
		Pooling:  *pooling,
		Codec:    *codec,
		BankSize: *bankSize,
		WorkDir:  *work,
		ORTLib:   *ortLib,
		Log:      log,
		Progress: stderr,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(stdout, "vidx eval %s\n", filepath.Base(*dataset))
	return eval.WriteTable(stdout, r)
}
