package onnx

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/testmodels"
)

var dynamicBundle struct {
	once sync.Once
	dir  string
	err  error
}

// dynamicDir is the tiny CLIP bundle with a dynamic-length text tower, next
// to the fixed one from bundleDirs (same weights).
func dynamicDir(t testing.TB) string {
	t.Helper()
	tiny, _ := bundleDirs(t)
	dynamicBundle.once.Do(func() {
		dynamicBundle.dir = filepath.Join(filepath.Dir(tiny), "tiny-dynamic")
		dynamicBundle.err = testmodels.WriteTinyCLIPDynamicBundle(dynamicBundle.dir)
	})
	if dynamicBundle.err != nil {
		t.Fatal(dynamicBundle.err)
	}
	return dynamicBundle.dir
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// longText tokenizes to more than context_length tokens.
var longText = strings.Repeat("a man walking a dog on the street ", 12)

// dynamicTexts cover the lengths that matter: the shortest (only the
// special tokens), short and medium queries, a literal end-of-text token
// typed into the text, and one truncated at context_length.
var dynamicTexts = []string{
	"",
	"a cat",
	"a dog running in the street",
	"a red car driving on the road at night with the sky dark and the sea light",
	"a dog <|endoftext|> a cat",
	longText,
}

// A dynamic-length text tower fed only up to the batch's last end-of-text
// must embed every text as the fixed-length tower does at context_length,
// alone or in a batch with texts of other lengths.
func TestTextDynamicLengthMatchesFixed(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	fixedM, dynM := loadBundle(t, tiny), loadBundle(t, dynamicDir(t))
	if fixedM.Text.DynamicLength || !dynM.Text.DynamicLength {
		t.Fatalf("dynamic_length: fixed bundle %v, dynamic bundle %v", fixedM.Text.DynamicLength, dynM.Text.DynamicLength)
	}
	// The dynamic model with the flag cleared: the same graph fed all 77
	// positions, as a bundle exported before dynamic_length would be.
	padded := *dynM
	padded.Text.DynamicLength = false

	open := func(m *bundle.Manifest, maxBatch int) *TextEncoder {
		e, err := r.NewTextEncoder(m, SessionOptions{IntraOpThreads: 1, MaxBatch: maxBatch})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	fixed := open(fixedM, 1)
	if fixed.DynamicLength() {
		t.Fatal("fixed-length bundle opened as dynamic")
	}
	want, err := fixed.EncodeTexts(t.Context(), dynamicTexts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for j := range i {
			if c := cosine(want[i], want[j]); c > 0.9999 {
				t.Fatalf("texts %q and %q embed alike (cosine %.6f): the comparison would prove nothing", dynamicTexts[i], dynamicTexts[j], c)
			}
		}
	}

	reversed := slices.Clone(dynamicTexts)
	slices.Reverse(reversed)
	cases := []struct {
		name     string
		m        *bundle.Manifest
		maxBatch int
		texts    []string
	}{
		{"dynamic alone", dynM, 1, dynamicTexts},
		{"dynamic batched", dynM, len(dynamicTexts), dynamicTexts},
		{"dynamic batched reversed", dynM, len(dynamicTexts), reversed},
		{"dynamic batches of 2", dynM, 2, dynamicTexts},
		{"dynamic model padded to context_length", &padded, len(dynamicTexts), dynamicTexts},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := open(c.m, c.maxBatch)
			got, err := e.EncodeTexts(t.Context(), c.texts)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range c.texts {
				w := want[slices.Index(dynamicTexts, text)]
				if cs, d := cosine(got[i], w), maxAbsDiff(got[i], w); cs < 0.9999 || d > 1e-5 {
					t.Errorf("%.30q: cosine to fixed length %.7f, max |diff| %.3g", text, cs, d)
				}
			}
		})
	}
}

// batch cuts a dynamic-length batch after its longest text's end-of-text,
// pads the shorter rows, and leaves fixed-length bundles at context_length.
func TestTextBatchLength(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	open := func(dir string) *TextEncoder {
		e, err := r.NewTextEncoder(loadBundle(t, dir), testOpts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	dyn, fixed := open(dynamicDir(t)), open(tiny)
	eot := int64(dyn.tok.EOT())
	// end is one past each text's first end-of-text in its full row,
	// found by scanning the tokenizer's output.
	end := func(text string) int {
		row := dyn.Tokenize(text)
		return slices.Index(row[1:], eot) + 2
	}
	if n := end(longText); n != testmodels.ContextLength {
		t.Fatalf("long text: end-of-text at %d, want truncation to keep it at the last of %d positions", n-1, testmodels.ContextLength)
	}
	cases := []struct {
		name  string
		enc   *TextEncoder
		texts []string
		want  int
	}{
		{"empty text: start and end tokens", dyn, []string{""}, 2},
		{"one short text", dyn, []string{"a cat"}, end("a cat")},
		{"longest text sets the length", dyn, []string{"a cat", "a dog running in the street", ""}, end("a dog running in the street")},
		{"truncated text keeps end-of-text", dyn, []string{"a cat", longText}, testmodels.ContextLength},
		{"typed end-of-text ends the text", dyn, []string{"a dog <|endoftext|> a cat"}, end("a dog")},
		{"fixed-length bundle", fixed, []string{"a cat", ""}, testmodels.ContextLength},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, mask, L, err := c.enc.batch(c.texts)
			if err != nil {
				t.Fatal(err)
			}
			if L != c.want {
				t.Fatalf("length %d, want %d", L, c.want)
			}
			if len(ids) != len(c.texts)*L || len(mask) != len(ids) {
				t.Fatalf("%d ids and %d mask values for %d texts of length %d", len(ids), len(mask), len(c.texts), L)
			}
			for i, text := range c.texts {
				full := c.enc.Tokenize(text)
				row, rowMask := ids[i*L:(i+1)*L], mask[i*L:(i+1)*L]
				if !slices.Equal(row, full[:L]) {
					t.Errorf("text %d: ids %v, want the first %d of %v", i, row, L, full)
				}
				n := min(end(text), L)
				for j, m := range rowMask {
					want := int64(0)
					if j < n {
						want = 1
					}
					if m != want {
						t.Errorf("text %d: mask %v, want %d ones then zeros", i, rowMask, n)
						break
					}
				}
				if row[n-1] != eot {
					t.Errorf("text %d: position %d is %d, want end-of-text %d", i, n-1, row[n-1], eot)
				}
			}
		})
	}
}

// A manifest that claims a dynamic sequence axis for a model that fixes it
// fails at open, naming the field.
func TestTextDynamicLengthOnFixedModel(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	m := editManifest(t, tiny, replace("context_length: 77\n", "context_length: 77\n  dynamic_length: true\n"))
	e, err := r.NewTextEncoder(m, testOpts)
	if err == nil {
		e.Close()
		t.Fatal("no error")
	}
	for _, s := range []string{"text.dynamic_length is true", `"input_ids" has the fixed shape [-1 77]`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
