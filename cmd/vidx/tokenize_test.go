package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/testmodels"
)

// sharedTokenizerDir finds CLIP's real tokenizer files as the tokenizer
// package's tests do: $VIDX_SHARED_DIR (the shared root or the
// clip-tokenizer folder itself), else the shared folder beside the
// repository.
func sharedTokenizerDir(t *testing.T) string {
	t.Helper()
	var candidates []string
	if env := os.Getenv("VIDX_SHARED_DIR"); env != "" {
		candidates = append(candidates, filepath.Join(env, "clip-tokenizer"), env)
	}
	candidates = append(candidates, filepath.Join("..", "..", "..", "shared", "clip-tokenizer"))
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "examples.jsonl")); err == nil {
			return dir
		}
	}
	t.Skipf("CLIP tokenizer files not found (tried %v); set VIDX_SHARED_DIR to the shared folder", candidates)
	return ""
}

func readJSONLines[T any](t *testing.T, data []byte) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, v)
	}
	return out
}

func tokenize(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cmdTokenize(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	if err != nil && !errors.Is(err, errUsage) {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

// The ids must be clip.tokenize's for the reference examples, whichever
// tokenizer file form is read.
func TestTokenizeMatchesCLIP(t *testing.T) {
	dir := sharedTokenizerDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "examples.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := readJSONLines[tokenizeLine](t, data)
	if len(want) == 0 {
		t.Fatal("examples.jsonl is empty")
	}
	var stdin strings.Builder
	for _, ex := range want {
		if strings.ContainsAny(ex.Text, "\r\n") {
			t.Fatalf("example %q spans lines; it cannot be fed one per line", ex.Text)
		}
		stdin.WriteString(ex.Text + "\n")
	}
	for _, vocab := range []string{dir, filepath.Join(dir, "vocab.json"), filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz")} {
		t.Run(filepath.Base(vocab), func(t *testing.T) {
			out, err := tokenize(t, stdin.String(), "--vocab", vocab, "--json")
			if err != nil {
				t.Fatal(err)
			}
			got := readJSONLines[tokenizeLine](t, []byte(out))
			if !reflect.DeepEqual(got, want) {
				for i := range min(len(got), len(want)) {
					if !reflect.DeepEqual(got[i], want[i]) {
						t.Errorf("line %d: got %v\nwant %v", i, got[i], want[i])
					}
				}
				t.Fatalf("%d lines, want %d", len(got), len(want))
			}
		})
	}
}

func TestTokenizeBundle(t *testing.T) {
	dir := t.TempDir()
	if err := testmodels.WriteTinyCLIPBundle(dir); err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.LoadTokenizer()
	if err != nil {
		t.Fatal(err)
	}
	sot, eot := int64(tok.SOT()), int64(tok.EOT())
	red, _ := tok.ID("red</w>")
	car, _ := tok.ID("car</w>")

	cases := []struct {
		name  string
		stdin string
		args  []string
		want  []tokenizeLine
	}{
		{"bundle context and pad", "red car\n", nil,
			[]tokenizeLine{{"red car", append([]int64{sot, int64(red), int64(car), eot}, make([]int64, 73)...)}}},
		{"crlf, empty line and no final newline", "red\r\n\ncar", []string{"--context-length", "4", "--pad-id", "9"},
			[]tokenizeLine{{"red", []int64{sot, int64(red), eot, 9}}, {"", []int64{sot, eot, 9, 9}}, {"car", []int64{sot, int64(car), eot, 9}}}},
		{"truncation keeps the end token", "red car red car\n", []string{"--context-length", "4"},
			[]tokenizeLine{{"red car red car", []int64{sot, int64(red), int64(car), eot}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := tokenize(t, c.stdin, append([]string{"--bundle", dir, "--json"}, c.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if got := readJSONLines[tokenizeLine](t, []byte(out)); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v\nwant %v", got, c.want)
			}
		})
	}

	out, err := tokenize(t, "red car\n", "--bundle", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("\"red car\"\n  4 tokens: %d %d %d %d + 73 x pad 0\n", sot, red, car, eot)
	if out != want {
		t.Errorf("readable output %q, want %q", out, want)
	}
}

func TestTokenizeErrors(t *testing.T) {
	t.Setenv("VIDX_BUNDLE", "")
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "tokenizer.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"neither", nil, true, ""},
		{"both", []string{"--bundle", dir, "--vocab", dir}, true, ""},
		{"stray argument", []string{"--vocab", dir, "text"}, true, ""},
		{"missing folder", []string{"--vocab", filepath.Join(dir, "nope")}, false, "nope"},
		{"empty folder", []string{"--vocab", dir}, false, "no tokenizer.json, vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz"},
		{"broken tokenizer.json", []string{"--vocab", broken}, false, "tokenizer.json"},
		{"bundle without manifest", []string{"--bundle", dir}, false, "vidx-model.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tokenize(t, "a\n", c.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, errUsage) != c.usage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want usage %v and %q", err, c.usage, c.want)
			}
		})
	}
}
