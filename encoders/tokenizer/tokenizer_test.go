package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// sharedDir finds the real CLIP tokenizer files: $VIDX_SHARED_DIR (either the
// shared root or the clip-tokenizer folder itself), else the shared folder
// beside the repository.
func sharedDir(t testing.TB) string {
	t.Helper()
	var candidates []string
	if env := os.Getenv("VIDX_SHARED_DIR"); env != "" {
		candidates = append(candidates, filepath.Join(env, "clip-tokenizer"), env)
	}
	candidates = append(candidates, filepath.Join("..", "..", "..", "shared", "clip-tokenizer"))
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "vocab.json")); err == nil {
			return dir
		}
	}
	t.Skipf("CLIP tokenizer files not found (tried %v); set VIDX_SHARED_DIR to the shared folder", candidates)
	return ""
}

type loaded struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

var (
	fromVocab, fromGz, fromJSON loaded
)

func (l *loaded) get(t testing.TB, load func(dir string) (*Tokenizer, error)) *Tokenizer {
	t.Helper()
	dir := sharedDir(t)
	l.once.Do(func() { l.tok, l.err = load(dir) })
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.tok
}

func vocabTokenizer(t testing.TB) *Tokenizer {
	return fromVocab.get(t, func(dir string) (*Tokenizer, error) {
		return Load(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"))
	})
}

func gzTokenizer(t testing.TB) *Tokenizer {
	return fromGz.get(t, func(dir string) (*Tokenizer, error) {
		return LoadBPEGz(filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz"))
	})
}

// jsonTokenizer writes a tokenizer.json from vocab.json and merges.txt, with
// the merges alternating between the "a b" and ["a","b"] spellings, and loads
// it.
func jsonTokenizer(t testing.TB) *Tokenizer {
	return fromJSON.get(t, func(dir string) (*Tokenizer, error) {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("vidx-tokenizer-%d.json", os.Getpid()))
		defer os.Remove(path)
		if err := writeTokenizerJSON(dir, path); err != nil {
			return nil, err
		}
		return LoadTokenizerJSON(path)
	})
}

func writeTokenizerJSON(dir, path string) error {
	vocabData, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
	if err != nil {
		return err
	}
	mergesData, err := os.ReadFile(filepath.Join(dir, "merges.txt"))
	if err != nil {
		return err
	}
	var merges []any
	for i, line := range strings.Split(string(mergesData), "\n") {
		if line == "" || (i == 0 && strings.HasPrefix(line, "#")) {
			continue
		}
		if len(merges)%2 == 0 {
			merges = append(merges, line)
		} else {
			a, b, _ := strings.Cut(line, " ")
			merges = append(merges, []string{a, b})
		}
	}
	doc := map[string]any{
		"version": "1.0",
		"added_tokens": []map[string]any{
			{"id": 49406, "content": sotToken, "special": true},
			{"id": 49407, "content": eotToken, "special": true},
		},
		"model": map[string]any{
			"type":               "BPE",
			"vocab":              json.RawMessage(vocabData),
			"merges":             merges,
			"end_of_word_suffix": endOfWord,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

type namedLoader struct {
	name string
	get  func(testing.TB) *Tokenizer
}

var allLoaders = []namedLoader{
	{"vocab+merges", vocabTokenizer},
	{"bpe.gz", gzTokenizer},
	{"tokenizer.json", jsonTokenizer},
}

func readJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExamples(t *testing.T) {
	examples := readJSONL[struct {
		Text string  `json:"text"`
		IDs  []int64 `json:"ids"`
	}](t, filepath.Join(sharedDir(t), "examples.jsonl"))
	if len(examples) == 0 {
		t.Fatal("examples.jsonl is empty")
	}
	for _, l := range allLoaders {
		tok := l.get(t)
		for _, ex := range examples {
			if got := tok.Tokenize(ex.Text, len(ex.IDs), 0); !reflect.DeepEqual(got, ex.IDs) {
				t.Errorf("%s: Tokenize(%q)\n got %v\nwant %v", l.name, ex.Text, got, ex.IDs)
			}
		}
	}
}

// TestReference compares Encode with ids produced by CLIP's own
// simple_tokenizer (see testdata/gen_reference.py) on entities, odd
// whitespace, case mappings, contractions, special tokens and random Unicode.
func TestReference(t *testing.T) {
	cases := readJSONL[struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	}](t, filepath.Join("testdata", "reference.jsonl"))
	if len(cases) < 100 {
		t.Fatalf("only %d reference cases", len(cases))
	}
	for _, l := range allLoaders {
		tok := l.get(t)
		bad := 0
		for _, c := range cases {
			got := tok.Encode(c.Text)
			if len(got) == 0 && len(c.IDs) == 0 {
				continue
			}
			if !reflect.DeepEqual(got, c.IDs) {
				if bad++; bad <= 5 {
					t.Errorf("%s: Encode(%q)\n got %v\nwant %v", l.name, c.Text, got, c.IDs)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d reference cases differ", l.name, bad, len(cases))
		}
	}
}

func TestRealVocabBasics(t *testing.T) {
	for _, l := range allLoaders {
		tok := l.get(t)
		if tok.SOT() != 49406 || tok.EOT() != 49407 {
			t.Errorf("%s: sot/eot = %d/%d, want 49406/49407", l.name, tok.SOT(), tok.EOT())
		}
		if tok.VocabSize() != 49408 {
			t.Errorf("%s: VocabSize = %d, want 49408", l.name, tok.VocabSize())
		}
		for token, want := range map[string]int{"!": 0, "a": 64, "a</w>": 320, "dog</w>": 1929, "<|endoftext|>": 49407} {
			if got, ok := tok.ID(token); !ok || got != want {
				t.Errorf("%s: ID(%q) = %d, %v; want %d", l.name, token, got, ok, want)
			}
		}
		if _, ok := tok.ID("no such token"); ok {
			t.Errorf("%s: ID of an unknown token reported ok", l.name)
		}
	}
}

// TestEncodeHandCases spells the expected BPE tokens out, so each case can be
// checked by eye against the vocabulary.
func TestEncodeHandCases(t *testing.T) {
	tok := vocabTokenizer(t)
	cases := []struct {
		name, in string
		want     []string
	}{
		{"plain", "a dog", []string{"a</w>", "dog</w>"}},
		{"case and punctuation", "A DOG.", []string{"a</w>", "dog</w>", ".</w>"}},
		{"plural is one token", "dogs", []string{"dogs</w>"}},
		{"contraction", "don't", []string{"don</w>", "'t</w>"}},
		{"contractions", "I'm here, they're OK", []string{"i</w>", "'m</w>", "here</w>", ",</w>", "they</w>", "'re</w>", "ok</w>"}},
		{"double-escaped entity", "rock &amp;amp; roll", []string{"rock</w>", "&</w>", "roll</w>"}},
		{"entity without semicolon", "&lt3", []string{"<</w>", "3</w>"}},
		{"digits split one by one", "2024", []string{"2</w>", "0</w>", "2</w>", "4</w>"}},
		{"digits after letters", "route66", []string{"route</w>", "6</w>", "6</w>"}},
		{"punctuation run", "hello!!!", []string{"hello</w>", "!!!</w>"}},
		{"hyphen", "e-mail", []string{"e</w>", "-</w>", "mail</w>"}},
		{"whitespace collapsed", "  multiple   spaces\t\tand\nnewlines  ", []string{"multiple</w>", "spaces</w>", "and</w>", "new", "lines</w>"}},
		{"accented letter", "café", []string{"cafÃ©</w>"}},
		{"accent inside word", "naïve", []string{"na", "Ã¯", "ve</w>"}},
		{"decomposed accent composes", "Cafe\u0301", []string{"cafÃ©</w>"}},
		{"full-width word", "ｄｏｇ", []string{"dog</w>"}},
		{"curly apostrophe", "don’t", []string{"don</w>", "'t</w>"}},
		{"CJK", "東京", []string{"æĿ±", "äº", "¬</w>"}},
		{"emoji", "🙂", []string{"ðŁĻĤ</w>"}},
		{"emoji with skin tone", "👍🏽", []string{"ðŁĳįðŁı½</w>"}},
		{"dotted capital I lowercases to i + U+0307", "İstanbul", []string{"i</w>", "Ìĩ</w>", "stanbul</w>"}},
		{"final sigma", "ΟΔΟΣ", []string{"Î", "¿", "Î", "´", "Î", "¿", "Ï", "Ĥ</w>"}},
		{"literal special tokens", "hi<|startoftext|>there<|EndOfText|>", []string{"hi</w>", sotToken, "there</w>", eotToken}},
		{"U+0345 matches no pattern alternative", "x\u0345y", []string{"x</w>", "y</w>"}},
		{"empty", "", nil},
		{"only whitespace", " \t\u3000\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []int
			for _, s := range tc.want {
				id, ok := tok.ID(s)
				if !ok {
					t.Fatalf("token %q not in vocabulary", s)
				}
				want = append(want, id)
			}
			got := tok.Encode(tc.in)
			if len(got) == 0 && len(want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Encode(%q) = %v, want %v (%q)", tc.in, got, want, tc.want)
			}
		})
	}
}

func TestTokenizeLayout(t *testing.T) {
	tok := vocabTokenizer(t)
	const sot, eot = 49406, 49407

	got := tok.Tokenize("a dog", 6, -1)
	if want := []int64{sot, 320, 1929, eot, -1, -1}; !reflect.DeepEqual(got, want) {
		t.Errorf("padding: got %v, want %v", got, want)
	}

	// 100 words cannot fit: the result keeps the first 75 and ends in eot.
	long := strings.Repeat("a ", 100)
	got = tok.Tokenize(long, 77, 0)
	if len(got) != 77 || got[0] != sot || got[76] != eot {
		t.Fatalf("truncation: len %d, first %d, last %d", len(got), got[0], got[76])
	}
	for i := 1; i < 76; i++ {
		if got[i] != 320 {
			t.Fatalf("truncation: got[%d] = %d, want 320", i, got[i])
		}
	}

	// Exactly full: 75 words plus sot and eot, no truncation needed.
	got = tok.Tokenize(strings.Repeat("a ", 75), 77, 0)
	if got[75] != 320 || got[76] != eot {
		t.Errorf("exact fit: tail %v", got[74:])
	}

	for _, tc := range []struct {
		n    int
		want []int64
	}{
		{0, []int64{}},
		{-3, []int64{}},
		{1, []int64{eot}},
		{2, []int64{sot, eot}},
		{3, []int64{sot, 320, eot}},
	} {
		if got := tok.Tokenize("a dog", tc.n, 0); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Tokenize(contextLength=%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestCleanText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Hello World", "hello world"},
		{"  a \t\n b  ", "a b"},
		{"a\u3000\u00a0b", "a b"},
		{"a\x1cb", "a\x1cb"},       // isspace but not \s: kept inside
		{"\x1c a \x1f", "a"},       // ...and stripped at the ends
		{"&amp;amp;", "&"},         // unescaped twice
		{"&amp;amp;amp;", "&amp;"}, // but only twice
		{"&AMP;", "&"},
		{"&ampx", "&x"},
		{"&notit;", "¬it;"},
		{"&notin;", "∉"},
		{"&#65;&#x42;&#X43", "abc"},
		{"&#9", ""},        // a tab, then stripped
		{"x&#1;y", "xy"},   // invalid code points vanish
		{"&#0;", "\ufffd"}, // NUL becomes U+FFFD
		{"&#128;", "€"},    // C1 range read as windows-1252
		{"&#xd800;", "\ufffd"},
		{"&#99999999999;", "\ufffd"},
		{"&#x;", "&#x;"},
		{"&nLt;", "\u226a\u20d2"},
		{"İ", "i\u0307"},
		{"ΣΑΣ Σ ΑΣ.", "σας σ ας."},
		{"ǅ", "ǆ"},
		{"Cafe\u0301", "caf\u00e9"},        // NFC composes the accent
		{"e\u0301\u0301", "\u00e9\u0301"},  // ...once; the second mark stays
		{"q\u0307\u0323", "q\u0323\u0307"}, // canonical reordering
		{"\u212b", "\u00e5"},               // singleton: Angstrom sign to Å, then lower
		{"ＡＢＣ１２３！", "abc123!"},             // full-width forms to ASCII
		{"ﾀﾞ", "\u30c0"},                   // half-width katakana + sound mark compose
		{"a\u3000b", "a b"},                // ideographic space
		{"don’t “x” ‛y‟ ʼn", "don't \"x\" 'y\" 'n"}, // quotes uncurled
		{"e&#x301;", "e\u0301"},                     // entities decode after NFC, as in clip
		{"&#xFF21;", "\uff41"},                      // ...and after the width fix
		{"\ufb01", "\ufb01"},                        // ligatures are not ftfy-fixed here
	}
	for _, tc := range cases {
		if got := cleanText(tc.in); got != tc.want {
			t.Errorf("cleanText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSplitMatchesRegexp checks the hand-written pre-tokenizer against CLIP's
// pattern compiled with Go's regexp, on ASCII text where Go and Python agree.
func TestSplitMatchesRegexp(t *testing.T) {
	pat := regexp.MustCompile(`(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`)
	alphabet := []string{"a", "b", "s", "t", "r", "e", "v", "m", "l", "d", "'", "'", " ", "1", "9", "!", ".", "<", "|", ">", "-",
		"<|startoftext|>", "<|endoftext|>", "<|start", "endoftext|>", "'ll", "'re"}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for n := rng.Intn(20); n > 0; n-- {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		s := b.String()
		var got []string
		splitPieces(s, func(p string) { got = append(got, p) })
		want := pat.FindAllString(s, -1)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("splitPieces(%q) = %q, regexp gives %q", s, got, want)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := vocabTokenizer(t)
	texts := []string{"a man is playing a guitar", "two dogs run across a snowy field", "東京 café 🙂", "don't stop"}
	want := make([][]int64, len(texts))
	for i, s := range texts {
		want[i] = tok.Tokenize(s, 77, 0)
	}
	tok.mu.Lock()
	tok.cache = map[string][]int32{}
	tok.cacheLimit = 3 // force evictions while goroutines race
	tok.mu.Unlock()
	defer func() {
		tok.mu.Lock()
		tok.cacheLimit = defaultCacheSize
		tok.mu.Unlock()
	}()

	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := (g + i) % len(texts)
				if got := tok.Tokenize(texts[k], 77, 0); !reflect.DeepEqual(got, want[k]) {
					errs <- fmt.Sprintf("goroutine %d: Tokenize(%q) = %v", g, texts[k], got)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	tok.mu.RLock()
	n := len(tok.cache)
	tok.mu.RUnlock()
	if n > 3 {
		t.Errorf("cache grew to %d entries, limit 3", n)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vocab, merges := TrainBPE([]string{"ab"})
	if err := WriteFiles(dir, vocab, merges); err != nil {
		t.Fatal(err)
	}
	goodVocab := filepath.Join(dir, "vocab.json")
	goodMerges := filepath.Join(dir, "merges.txt")

	cases := []struct {
		name        string
		load        func() (*Tokenizer, error)
		errContains string
	}{
		{"missing vocab", func() (*Tokenizer, error) { return Load(filepath.Join(dir, "nope.json"), goodMerges) }, "nope.json"},
		{"missing merges", func() (*Tokenizer, error) { return Load(goodVocab, filepath.Join(dir, "nope.txt")) }, "nope.txt"},
		{"bad json", func() (*Tokenizer, error) { return Load(write("bad.json", "{"), goodMerges) }, "bad.json"},
		{"malformed merge", func() (*Tokenizer, error) { return Load(goodVocab, write("m1.txt", "#version: 0.2\na b c\n")) }, "m1.txt:2"},
		{"unknown merge token", func() (*Tokenizer, error) { return Load(goodVocab, write("m2.txt", "q zz\n")) }, `"q zz"`},
		{"no special tokens", func() (*Tokenizer, error) {
			v := map[string]int{}
			for i, s := range baseTokens() {
				v[s] = i
			}
			data, _ := json.Marshal(v)
			return Load(write("nospecial.json", string(data)), write("empty.txt", "#version: 0.2\n"))
		}, sotToken},
		{"missing gz", func() (*Tokenizer, error) { return LoadBPEGz(filepath.Join(dir, "nope.gz")) }, "nope.gz"},
		{"not gzip", func() (*Tokenizer, error) { return LoadBPEGz(write("plain.gz", "hello")) }, "plain.gz"},
		{"tokenizer.json not BPE", func() (*Tokenizer, error) {
			return LoadTokenizerJSON(write("wp.json", `{"model":{"type":"WordPiece","vocab":{"a":0}}}`))
		}, "WordPiece"},
		{"tokenizer.json bad merge", func() (*Tokenizer, error) {
			return LoadTokenizerJSON(write("tj.json", `{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a"]]}}`))
		}, "tj.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.load()
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tc.errContains) {
				t.Errorf("error %q does not mention %q", err, tc.errContains)
			}
		})
	}
}

func BenchmarkTokenize(b *testing.B) {
	tok := vocabTokenizer(b)
	text := "A woman slices tomatoes in the kitchen while a man plays the guitar on stage."
	b.ReportAllocs()
	for b.Loop() {
		tok.Tokenize(text, 77, 0)
	}
}

func BenchmarkTokenizeParallel(b *testing.B) {
	tok := vocabTokenizer(b)
	text := "two dogs run across a snowy field, then a cartoon character talks about cars"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok.Tokenize(text, 77, 0)
		}
	})
}

// BenchmarkEncodeUncached measures the BPE merge loop itself.
func BenchmarkEncodeUncached(b *testing.B) {
	tok := vocabTokenizer(b)
	text := "Someone is cooking pasta, then adds salt; the news anchor reports the weather"
	b.ReportAllocs()
	for b.Loop() {
		tok.mu.Lock()
		clear(tok.cache)
		tok.mu.Unlock()
		tok.Encode(text)
	}
}

func BenchmarkTrainBPE(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	words := make([]string, 2000)
	for i := range words {
		w := make([]byte, 3+rng.Intn(8))
		for j := range w {
			w[j] = 'a' + byte(rng.Intn(26))
		}
		words[i] = string(w)
	}
	for b.Loop() {
		TrainBPE(words)
	}
}
