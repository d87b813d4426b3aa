package testmodels_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx/orttest"
	"github.com/vidx/vidx/encoders/testmodels"
)

// cut keeps the first L of every ctxLen-long row.
func cut(rows []int64, L int) []int64 {
	var out []int64
	for i := 0; i < len(rows); i += ctxLen {
		out = append(out, rows[i:i+L]...)
	}
	return out
}

// runTextLen embeds n rows of L ids (and mask values).
func runTextLen(t *testing.T, s *ort.DynamicAdvancedSession, ids, mask []int64, n, L, dim int) [][]float32 {
	t.Helper()
	shape := ort.NewShape(int64(n), int64(L))
	in, err := ort.NewTensor(shape, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	m, err := ort.NewTensor(shape, mask)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Destroy()
	return runOutput(t, s, []ort.Value{in, m}, n, dim)
}

func TestTinyCLIPDynamicBundle(t *testing.T) {
	root := t.TempDir()
	fixedDir, dynDir, again := filepath.Join(root, "fixed"), filepath.Join(root, "dynamic"), filepath.Join(root, "again")
	for dir, write := range map[string]func(string) error{
		fixedDir: testmodels.WriteTinyCLIPBundle, dynDir: testmodels.WriteTinyCLIPDynamicBundle, again: testmodels.WriteTinyCLIPDynamicBundle,
	} {
		if err := write(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{testmodels.TextFile, testmodels.ManifestFile} {
		a, _ := os.ReadFile(filepath.Join(dynDir, name))
		b, _ := os.ReadFile(filepath.Join(again, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: writing the dynamic bundle twice gives %d and %d bytes, not identical", name, len(a), len(b))
		}
	}
	cases := []struct {
		dir     string
		dynamic bool
		seqDim  int64
	}{
		{fixedDir, false, ctxLen},
		{dynDir, true, -1},
	}
	for _, c := range cases {
		m, err := bundle.Load(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		if m.Text.DynamicLength != c.dynamic {
			t.Errorf("%s: text.dynamic_length %v, want %v", filepath.Base(c.dir), m.Text.DynamicLength, c.dynamic)
		}
		if err := m.Check(nil).Err(); err != nil {
			t.Errorf("%s: %v", filepath.Base(c.dir), err)
		}
		mio, err := bundle.ReadModelIO(m.Path(m.Text.ONNX))
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range mio.Inputs {
			if len(in.Dims) != 2 || in.Dims[1] != c.seqDim {
				t.Errorf("%s: input %s, want sequence axis %d", filepath.Base(c.dir), in, c.seqDim)
			}
		}
	}
}

// The dynamic tiny text tower fed only up to the end-of-text (or any length
// past it) embeds like the fixed one at context_length; the weights are the
// same, so this checks the sliced positions and causal mask.
func TestTinyCLIPDynamicText(t *testing.T) {
	orttest.Require(t)
	root := t.TempDir()
	fixedDir, dynDir := filepath.Join(root, "fixed"), filepath.Join(root, "dynamic")
	if err := testmodels.WriteTinyCLIPBundle(fixedDir); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteTinyCLIPDynamicBundle(dynDir); err != nil {
		t.Fatal(err)
	}
	names := []string{testmodels.TextInputIDs, testmodels.TextAttentionMask}
	fixed := orttest.SessionFile(t, filepath.Join(fixedDir, testmodels.TextFile), names, []string{testmodels.TextOutput})
	dyn := orttest.SessionFile(t, filepath.Join(dynDir, testmodels.TextFile), names, []string{testmodels.TextOutput})

	texts := []string{"a cat", "a dog running on the grass", "", "the sky at night with a bright light on the sea"}
	ids, mask := tokenize(t, fixedDir, texts...)
	n, dim := len(texts), testmodels.TinyDim
	want := runText(t, fixed, ids, mask, n, dim)
	longest := 0
	for i := range n {
		longest = max(longest, argmax(ids[i*ctxLen:(i+1)*ctxLen])+1)
	}

	for _, L := range []int{longest, longest + 1, 40, ctxLen} {
		got := runTextLen(t, dyn, cut(ids, L), cut(mask, L), n, L, dim)
		for i := range n {
			if d := maxAbsDiff(got[i], want[i]); d > 1e-5 {
				t.Errorf("%q in a batch of length %d: differs from the fixed model by %g", texts[i], L, d)
			}
		}
	}
	for i, text := range texts {
		row, rowMask := ids[i*ctxLen:(i+1)*ctxLen], mask[i*ctxLen:(i+1)*ctxLen]
		end := argmax(row) + 1
		got := runTextLen(t, dyn, row[:end], rowMask[:end], 1, end, dim)[0]
		if d := maxAbsDiff(got, want[i]); d > 1e-5 {
			t.Errorf("%q alone at length %d: differs from the fixed model by %g", text, end, d)
		}
		if end > 2 {
			// One token short of end-of-text pools elsewhere: the length
			// the model sees does reach the output.
			short := runTextLen(t, dyn, row[:end-1], rowMask[:end-1], 1, end-1, dim)[0]
			if d := maxAbsDiff(short, want[i]); d < 1e-3 {
				t.Errorf("%q cut before its end-of-text: changed the embedding by only %g", text, d)
			}
		}
	}
}
