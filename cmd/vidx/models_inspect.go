package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
)

func cmdModelsInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("models inspect", stderr, "models inspect [--ort-lib PATH] [--no-ort] DIR\n\n"+
		"Prints the model bundle in DIR (vidx-model.yaml, or what was inferred from a Hugging Face\n"+
		"export), every ONNX model's inputs and outputs, and checks that they agree. Exits non-zero\n"+
		"when they do not, naming the manifest field to fix.")
	ortLib := fs.String("ort-lib", "", "ONNX Runtime shared library (env VIDX_ORT_LIB)")
	noORT := fs.Bool("no-ort", false, "read the model files directly instead of loading them with ONNX Runtime")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	m, err := bundle.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	printManifest(w, m)

	// Tokenizer: loaded here because a file that does not parse should fail
	// inspection, not the first query.
	var problems []string
	fmt.Fprint(w, "\ntokenizer: ")
	if tok, err := m.LoadTokenizer(); err != nil {
		fmt.Fprintln(w, "ERROR")
		problems = append(problems, err.Error())
	} else {
		fmt.Fprintf(w, "%d ids, <|startoftext|> %d, <|endoftext|> %d\n", tok.VocabSize(), tok.SOT(), tok.EOT())
		if m.Text.PadID >= int64(tok.VocabSize()) {
			problems = append(problems, fmt.Sprintf("text.pad_id: %d is not a token id (the vocabulary has %d)", m.Text.PadID, tok.VocabSize()))
		}
	}

	inspect, how := bundle.Inspector(bundle.ReadModelIO), "read from the files"
	if !*noORT {
		rt, err := onnx.NewRuntime(*ortLib)
		switch {
		case errors.Is(err, onnx.ErrLibraryMissing):
			how = "read from the files; ONNX Runtime not found, so not loaded"
		case err != nil:
			return err
		default:
			defer rt.Close()
			inspect, how = ortInspector(rt), "as loaded by ONNX Runtime "+rt.Version()
		}
	}
	rep := m.Check(inspect)
	fmt.Fprintf(w, "\nmodels (%s):\n", how)
	for _, mr := range rep.Models {
		fmt.Fprintf(w, "  %s: %s", mr.Field, mr.File)
		if fi, err := os.Stat(mr.Path); err == nil {
			fmt.Fprintf(w, " (%s", humanBytes(fi.Size()))
			if mr.IO != nil {
				fmt.Fprintf(w, ", ir %d, opset %d", mr.IO.IRVersion, mr.IO.Opset)
				if mr.IO.Producer != "" {
					fmt.Fprintf(w, ", %s", mr.IO.Producer)
				}
			}
			fmt.Fprint(w, ")")
		}
		fmt.Fprintln(w)
		if mr.Err != nil {
			fmt.Fprintf(w, "    cannot read: %v\n", mr.Err)
			continue
		}
		for _, t := range mr.IO.Inputs {
			fmt.Fprintf(w, "    in   %s\n", t)
		}
		for _, t := range mr.IO.Outputs {
			fmt.Fprintf(w, "    out  %s\n", t)
		}
	}
	for _, p := range rep.Problems {
		problems = append(problems, p.String())
	}
	fmt.Fprintln(w)
	nerr := 0
	for _, p := range problems {
		if !strings.HasPrefix(p, "warning: ") {
			nerr++
		}
	}
	if len(problems) == 0 {
		fmt.Fprintln(w, "check: OK, the manifest and the models agree")
		return w.Flush()
	}
	fmt.Fprintf(w, "check: %d problem(s), %d warning(s)\n", nerr, len(problems)-nerr)
	for _, p := range problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if nerr > 0 {
		return fmt.Errorf("model bundle %s: %d problem(s), see above", m.Dir, nerr)
	}
	return nil
}

func printManifest(w io.Writer, m *bundle.Manifest) {
	src := bundle.ManifestFile
	if m.Layout == bundle.LayoutHuggingFace {
		src = "Hugging Face export, no " + bundle.ManifestFile + ": inferred"
	}
	fmt.Fprintf(w, "bundle %s (%s)\n\n", m.Dir, src)
	fmt.Fprintf(w, "name: %s\nembedding_dim: %d\nlogit_scale: %g\n", m.Name, m.EmbeddingDim, m.LogitScale)
	im := m.Image
	fmt.Fprintf(w, "image:\n  onnx: %s\n  input: %s\n  output: %s\n  size: %d\n  mean: %s\n  std: %s\n",
		im.ONNX, im.Input, im.Output, im.Size, floats(im.Mean), floats(im.Std))
	tx := m.Text
	fmt.Fprintf(w, "text:\n  onnx: %s\n  input_ids: %s\n", tx.ONNX, tx.InputIDs)
	if tx.AttentionMask != "" {
		fmt.Fprintf(w, "  attention_mask: %s\n", tx.AttentionMask)
	} else {
		fmt.Fprintln(w, "  # no attention_mask: the model takes ids only")
	}
	fmt.Fprintf(w, "  output: %s\n  context_length: %d\n  pad_id: %d\n  tokenizer: ", tx.Output, tx.ContextLength, tx.PadID)
	switch t := tx.Tokenizer; {
	case t.TokenizerJSON != "":
		fmt.Fprintf(w, "{tokenizer_json: %s}\n", t.TokenizerJSON)
	case t.BPE != "":
		fmt.Fprintf(w, "{bpe: %s}\n", t.BPE)
	default:
		fmt.Fprintf(w, "{vocab: %s, merges: %s}\n", t.Vocab, t.Merges)
	}
	if tp := m.Temporal; tp != nil {
		fmt.Fprintf(w, "temporal:\n  onnx: %s\n  frames: %s\n  mask: %s\n  output: %s\n  max_frames: %d\n",
			tp.ONNX, tp.Frames, tp.Mask, tp.Output, tp.MaxFrames)
	} else {
		fmt.Fprintln(w, "# no temporal model: clips are pooled with meanP")
	}
	if len(m.Assumptions) > 0 {
		fmt.Fprintf(w, "\nassumed (to pin these choices, save the lines above from name: on as %s):\n", bundle.ManifestFile)
		for _, a := range m.Assumptions {
			fmt.Fprintf(w, "  - %s\n", a)
		}
	}
}

// floats writes a YAML flow list with the shortest exact spelling.
func floats(v []float32) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ortInspector is ONNX Runtime's view of a model in bundle terms. Loading
// the model also proves ONNX Runtime can run it (supported opset and
// operators, intact weights). Symbolic axis names and the header come from
// the file, which ONNX Runtime does not report.
func ortInspector(rt *onnx.Runtime) bundle.Inspector {
	return func(path string) (*bundle.ModelIO, error) {
		file, ferr := bundle.ReadModelIO(path)
		ins, outs, err := rt.InspectModel(path)
		if err != nil {
			if ferr != nil {
				return nil, ferr // "not an ONNX model: ..." says more than a protobuf parse failure
			}
			return nil, err
		}
		mio := &bundle.ModelIO{Inputs: fromORT(ins), Outputs: fromORT(outs)}
		if ferr == nil {
			mio.IRVersion, mio.Opset, mio.Producer = file.IRVersion, file.Opset, file.Producer
			nameDims(mio.Inputs, file.Inputs)
			nameDims(mio.Outputs, file.Outputs)
		}
		return mio, nil
	}
}

func fromORT(infos []ort.InputOutputInfo) []bundle.Tensor {
	ts := make([]bundle.Tensor, len(infos))
	for i, info := range infos {
		t := bundle.Tensor{Name: info.Name, Kind: "tensor", Elem: bundle.ElemType(info.DataType)}
		switch info.OrtValueType {
		case ort.ONNXTypeTensor:
		case ort.ONNXTypeSequence:
			t.Kind = "sequence"
		case ort.ONNXTypeMap:
			t.Kind = "map"
		case ort.ONNXTypeOptional:
			t.Kind = "optional"
		case ort.ONNXTypeSparseTensor:
			t.Kind = "sparse_tensor"
		default:
			t.Kind = info.OrtValueType.String()
		}
		t.Dims = append([]int64{}, info.Dimensions...)
		ts[i] = t
	}
	return ts
}

// nameDims copies symbolic axis names from the file's view where the shapes
// agree.
func nameDims(dst, src []bundle.Tensor) {
	for i := range dst {
		for _, s := range src {
			if s.Name == dst[i].Name && len(s.Dims) == len(dst[i].Dims) {
				dst[i].DimNames = s.DimNames
			}
		}
	}
}
