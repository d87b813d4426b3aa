package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
)

// tinyBundle writes the tiny CLIP bundle into a fresh directory.
func tinyBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny-clip")
	if err := testmodels.WriteTinyCLIPBundle(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// editBundle applies edits to a copy of the bundle at src: a manifest
// rewrite, and files to replace (nil data deletes the file).
func editBundle(t *testing.T, src string, manifest func(string) string, files map[string][]byte) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if manifest != nil {
		path := filepath.Join(dst, bundle.ManifestFile)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		edited := manifest(string(data))
		if edited == string(data) {
			t.Fatal("manifest edit changed nothing")
		}
		if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		path := filepath.Join(dst, name)
		if data == nil {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func replaceOnce(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func haveORT() bool {
	_, err := os.Stat(onnx.DefaultLibPath())
	return err == nil
}

func inspect(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"models", "inspect"}, args...), &out, &errOut)
	return out.String() + errOut.String(), err
}

// modes are the inspectors to try: the file reader always, ONNX Runtime
// where it is installed.
func inspectModes() [][]string {
	modes := [][]string{{"--no-ort"}}
	if haveORT() {
		modes = append(modes, nil)
	}
	return modes
}

func TestModelsInspect(t *testing.T) {
	tiny := tinyBundle(t)
	hf := editBundle(t, tiny, nil, map[string][]byte{
		bundle.ManifestFile: nil, "temporal.onnx": nil,
		"onnx/vision_model.onnx": mustRead(t, filepath.Join(tiny, "image.onnx")),
		"onnx/text_model.onnx":   mustRead(t, filepath.Join(tiny, "text.onnx")),
		"image.onnx":             nil, "text.onnx": nil,
		"preprocessor_config.json": []byte(`{"crop_size": 224, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}`),
	})
	cases := []struct {
		name string
		dir  string
		want []string
	}{
		{"manifest", tiny, []string{
			"(vidx-model.yaml)", "name: test-tiny-clip", "embedding_dim: 128", "size: 224", "context_length: 77",
			"tokenizer: {vocab: vocab.json, merges: merges.txt}",
			"in   pixel_values float32[N,3,224,224]", "out  image_embeds float32[N,128]",
			"in   input_ids int64[N,77]", "in   attention_mask int64[N,77]", "out  text_embeds float32[N,128]",
			"ir 8, opset 17", "check: OK"}},
		{"hugging face export", hf, []string{
			"Hugging Face export", "onnx: onnx/vision_model.onnx", "mean: [0.5, 0.5, 0.5]",
			"assumed (", "logit_scale 100", "image.mean [0.5 0.5 0.5], image.std [0.5 0.5 0.5] (preprocessor_config.json)",
			"no temporal model", "check: OK"}},
	}
	for _, c := range cases {
		for _, mode := range inspectModes() {
			t.Run(c.name+strings.Join(mode, ""), func(t *testing.T) {
				out, err := inspect(t, append(mode, c.dir)...)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
				if mode == nil && !strings.Contains(out, "as loaded by ONNX Runtime") {
					t.Errorf("output does not say ONNX Runtime loaded the models:\n%s", out)
				}
			})
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// badBundles are the broken bundles of the "Bad input" section, each
// with what every error about it must name.
func badBundles(t *testing.T) []struct {
	name string
	dir  string
	want []string
} {
	tiny := tinyBundle(t)
	rng := rand.New(rand.NewPCG(7, 7))
	random := make([]byte, 2048)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	return []struct {
		name string
		dir  string
		want []string
	}{
		{"missing image model", editBundle(t, tiny, nil, map[string][]byte{"image.onnx": nil}),
			[]string{"image.onnx", "does not exist"}},
		{"missing merges", editBundle(t, tiny, nil, map[string][]byte{"merges.txt": nil}),
			[]string{"text.tokenizer.merges", "merges.txt", "does not exist"}},
		{"wrong image input name", editBundle(t, tiny, replaceOnce("input: pixel_values", "input: pixels"), nil),
			[]string{"image.input", `"pixels"`}},
		{"wrong text output name", editBundle(t, tiny, replaceOnce("output: text_embeds", "output: embeds"), nil),
			[]string{"text.output", `"embeds"`}},
		{"wrong image size", editBundle(t, tiny, replaceOnce("size: 224", "size: 336"), nil),
			[]string{"image.size", "336", "224"}},
		{"wrong embedding dim", editBundle(t, tiny, replaceOnce("embedding_dim: 128", "embedding_dim: 512"), nil),
			[]string{"embedding_dim", "512", "128"}},
		{"wrong context length", editBundle(t, tiny, replaceOnce("context_length: 77", "context_length: 64"), nil),
			[]string{"text.context_length", "64", "77"}},
		{"image model is random bytes", editBundle(t, tiny, nil, map[string][]byte{"image.onnx": random}),
			[]string{"image.onnx"}},
		{"text model is a text file", editBundle(t, tiny, nil, map[string][]byte{"text.onnx": []byte("placeholder, download the model\n")}),
			[]string{"text.onnx"}},
		{"vocab.json does not parse", editBundle(t, tiny, nil, map[string][]byte{"vocab.json": []byte(`{"a": 1,`)}),
			[]string{"text.tokenizer", "vocab.json"}},
		{"merges.txt does not parse", editBundle(t, tiny, nil, map[string][]byte{"merges.txt": []byte("#version: 0.2\na b c\n")}),
			[]string{"text.tokenizer", "merges.txt"}},
	}
}

// Every broken bundle fails `models inspect` with the field named, through
// the file reader and through ONNX Runtime.
func TestModelsInspectBadBundles(t *testing.T) {
	for _, c := range badBundles(t) {
		for _, mode := range inspectModes() {
			t.Run(c.name+strings.Join(mode, ""), func(t *testing.T) {
				out, err := inspect(t, append(mode, c.dir)...)
				if err == nil {
					t.Fatalf("no error:\n%s", out)
				}
				text := out + err.Error()
				for _, w := range c.want {
					if !strings.Contains(text, w) {
						t.Errorf("output and error lack %q:\n%s\n%v", w, out, err)
					}
				}
			})
		}
	}
}

// The same bundles fail start-up as the stages meet them: bundle.Load, the
// header check start-up runs, and, for what gets that far, the ONNX Runtime
// encoders; each error names the file or field, and nothing panics.
func TestBadBundlesAtStartup(t *testing.T) {
	var rt *onnx.Runtime
	if haveORT() {
		var err error
		if rt, err = onnx.NewRuntime(""); err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
	}
	opts := onnx.SessionOptions{IntraOpThreads: 1}
	for _, c := range badBundles(t) {
		t.Run(c.name, func(t *testing.T) {
			check := func(stage string, err error) {
				t.Helper()
				if err == nil {
					t.Errorf("%s: no error", stage)
					return
				}
				named := false
				for _, w := range c.want {
					named = named || strings.Contains(err.Error(), w)
				}
				if !named || !strings.Contains(err.Error(), "model") {
					t.Errorf("%s: error %q names none of %q", stage, err, c.want)
				}
			}
			m, err := bundle.Load(c.dir)
			if err != nil {
				check("bundle.Load", err)
				return
			}
			startErr := m.Check(bundle.ReadModelIO).Err()
			if _, terr := m.LoadTokenizer(); terr != nil {
				startErr = errors.Join(startErr, terr)
			}
			check("start-up check", startErr)
			if rt == nil {
				return
			}
			image, ierr := rt.NewImageEncoder(m, opts)
			if ierr == nil {
				image.Close()
			}
			text, terr := rt.NewTextEncoder(m, opts)
			if terr == nil {
				text.Close()
			}
			check("onnx encoders", errors.Join(ierr, terr))
		})
	}
}

// `vidx up` stops at start-up on a bundle that does not match its models,
// before any stage runs, with the fields named.
func TestUpRefusesBadBundle(t *testing.T) {
	tiny := tinyBundle(t)
	bad := editBundle(t, tiny, replaceOnce("size: 224", "size: 112"), map[string][]byte{"text.onnx": []byte("not a model\n")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"up", "--embedded", "--bundle", bad, "--data-dir", t.TempDir(), "--broker-port", "0", "--log-level", "error"}, &out, &errOut)
	if err == nil {
		t.Fatal("up started with a broken bundle")
	}
	for _, want := range []string{"image.size: is 112", "text.onnx:", "not an ONNX model", bad} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
