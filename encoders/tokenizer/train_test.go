package tokenizer

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var trainWords = []string{
	"a", "man", "is", "playing", "guitar", "on", "stage", "woman", "slices",
	"tomatoes", "in", "the", "kitchen", "dog", "dogs", "running", "run",
	"Snowy", "field", "café", "naïve", "東京", "🙂", "banana", "bananas",
	"aaaa", "aaaaa", "abab", "ababab", "zz", "x", "mississippi",
}

func trainAndLoad(t *testing.T, words []string) (*Tokenizer, map[string]int, []string) {
	t.Helper()
	vocab, merges := TrainBPE(words)
	dir := t.TempDir()
	if err := WriteFiles(dir, vocab, merges); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return tok, vocab, merges
}

// spell maps UTF-8 bytes through bytes_to_unicode, the form vocabulary
// tokens are written in.
func spell(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRunes[s[i]])
	}
	return b.String()
}

func TestTrainBPELayout(t *testing.T) {
	vocab, merges := TrainBPE(trainWords)
	if got, want := len(vocab), 512+len(merges)+2; got != want {
		t.Fatalf("len(vocab) = %d, want %d (512 + %d merges + 2)", got, want, len(merges))
	}
	base := baseTokens()
	for id, tok := range base {
		if vocab[tok] != id {
			t.Fatalf("vocab[%q] = %d, want %d", tok, vocab[tok], id)
		}
	}
	// Same leading entries as CLIP: '!' is id 0, 'a' is 64, "a</w>" 320.
	for tok, want := range map[string]int{"!": 0, "a": 64, "a</w>": 320, "Ā": 188} {
		if vocab[tok] != want {
			t.Errorf("vocab[%q] = %d, want %d", tok, vocab[tok], want)
		}
	}
	if got, want := vocab[sotToken], len(vocab)-2; got != want {
		t.Errorf("sot id = %d, want %d", got, want)
	}
	if got, want := vocab[eotToken], len(vocab)-1; got != want {
		t.Errorf("eot id = %d, want %d", got, want)
	}
	seen := map[int]string{}
	for tok, id := range vocab {
		if prev, dup := seen[id]; dup {
			t.Errorf("id %d used by %q and %q", id, prev, tok)
		}
		seen[id] = tok
	}
	for i, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			t.Fatalf("merge %d %q has no space", i, m)
		}
		if _, ok := vocab[a+b]; !ok {
			t.Errorf("merge %d %q: joined token missing from vocab", i, m)
		}
	}
}

func TestTrainBPERoundTrip(t *testing.T) {
	tok, vocab, _ := trainAndLoad(t, trainWords)
	for _, w := range trainWords {
		ids := tok.Encode(w)
		if len(ids) != 1 {
			t.Errorf("Encode(%q) = %v, want one id", w, ids)
			continue
		}
		sym := spell(lowerPy(w)) + "</w>"
		if want, ok := vocab[sym]; !ok || ids[0] != want {
			t.Errorf("Encode(%q) = %d, want id of %q (%d, %v)", w, ids[0], sym, want, ok)
		}
	}
	if id, ok := tok.ID("kitchen</w>"); !ok || id < 512 {
		t.Errorf("ID(kitchen</w>) = %d, %v", id, ok)
	}
	got := tok.Tokenize("A man, on stage!", 8, 0)
	want := []int64{int64(tok.SOT()), int64(vocab["a</w>"]), int64(vocab["man</w>"]), int64(vocab[",</w>"]),
		int64(vocab["on</w>"]), int64(vocab["stage</w>"]), int64(vocab["!</w>"]), int64(tok.EOT())}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Tokenize = %v, want %v", got, want)
	}
	if tok.VocabSize() != len(vocab) {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), len(vocab))
	}
}

func TestTrainBPEDeterministic(t *testing.T) {
	v1, m1 := TrainBPE(trainWords)
	rev := make([]string, len(trainWords))
	for i, w := range trainWords {
		rev[len(rev)-1-i] = w
	}
	v2, m2 := TrainBPE(rev)
	if !reflect.DeepEqual(v1, v2) || !reflect.DeepEqual(m1, m2) {
		t.Fatal("TrainBPE depends on word order")
	}
}

func TestTrainBPEMultiPieceWords(t *testing.T) {
	words := []string{"don't", "rock&amp;roll", "route 66", "hello   world"}
	tok, vocab, _ := trainAndLoad(t, words)
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"don't", []string{"don</w>", "'t</w>"}},
		{"rock&roll", []string{"rock</w>", "&</w>", "roll</w>"}},
		{"route 66", []string{"route</w>", "6</w>", "6</w>"}},
		{"hello world", []string{"hello</w>", "world</w>"}},
	} {
		var want []int
		for _, s := range tc.want {
			want = append(want, vocab[s])
		}
		if got := tok.Encode(tc.in); !reflect.DeepEqual(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.in, got, want)
		}
	}
}

func TestTrainBPEEmpty(t *testing.T) {
	tok, vocab, merges := trainAndLoad(t, nil)
	if len(merges) != 0 || len(vocab) != 514 {
		t.Fatalf("got %d merges, %d tokens; want 0, 514", len(merges), len(vocab))
	}
	if tok.SOT() != 512 || tok.EOT() != 513 {
		t.Errorf("sot/eot = %d/%d, want 512/513", tok.SOT(), tok.EOT())
	}
	// Unknown words still encode, byte by byte.
	if got := tok.Encode("ab"); !reflect.DeepEqual(got, []int{64, 256 + 65}) {
		t.Errorf("Encode(ab) = %v", got)
	}
}

func TestWriteFilesFormat(t *testing.T) {
	vocab, merges := TrainBPE([]string{"ab", "<tag>"})
	dir := filepath.Join(t.TempDir(), "sub")
	if err := WriteFiles(dir, vocab, merges); err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(filepath.Join(dir, "merges.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := "#version: 0.2\n" + strings.Join(merges, "\n") + "\n"
	if string(m) != want {
		t.Errorf("merges.txt = %q, want %q", m, want)
	}
	v, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v), `"<|endoftext|>":`) {
		t.Errorf("vocab.json escapes special tokens: %.200s", v)
	}
	var back map[string]int
	if err := json.Unmarshal(v, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, vocab) {
		t.Error("vocab.json does not round-trip")
	}
}

// TestTrainBPESingleTokenProperty trains on random words over small
// alphabets (which provoke overlapping and repeated pairs) and multi-byte
// characters, and checks every word encodes to exactly one id.
func TestTrainBPESingleTokenProperty(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	alphabets := [][]string{
		{"a", "b"},
		{"a", "b", "c"},
		{"é", "e", "ß"},
		{"東", "京", "x"},
		{"🙂", "a"},
	}
	for trial := 0; trial < 300; trial++ {
		alpha := alphabets[trial%len(alphabets)]
		words := make([]string, 2+rng.Intn(20))
		for i := range words {
			var b strings.Builder
			for n := 1 + rng.Intn(10); n > 0; n-- {
				b.WriteString(alpha[rng.Intn(len(alpha))])
			}
			words[i] = b.String()
		}
		vocab, merges := TrainBPE(words)
		if len(vocab) != 512+len(merges)+2 {
			t.Fatalf("%q: %d tokens for %d merges", words, len(vocab), len(merges))
		}
		ms := make([][2]string, len(merges))
		for i, m := range merges {
			a, b, _ := strings.Cut(m, " ")
			ms[i] = [2]string{a, b}
		}
		tok, err := newTokenizer(vocab, ms, "trained")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range words {
			var pieces []string
			splitPieces(cleanText(w), func(p string) { pieces = append(pieces, p) })
			if ids := tok.Encode(w); len(ids) != len(pieces) {
				t.Fatalf("words %q: Encode(%q) = %v, want one id per piece %q", words, w, ids, pieces)
			}
		}
	}
}
