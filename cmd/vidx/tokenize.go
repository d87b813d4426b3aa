package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/tokenizer"
)

// tokenizeLine is one line of `vidx tokenize --json`, the format of
// clip-tokenizer/examples.jsonl, so outputs can be diffed against ids from
// clip.tokenize directly.
type tokenizeLine struct {
	Text string  `json:"text"`
	IDs  []int64 `json:"ids"`
}

func cmdTokenize(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", stderr, "tokenize (--bundle DIR | --vocab DIR|FILE) [--json] [--context-length N] [--pad-id N] < texts\n\n"+
		"Reads one text per line on stdin and prints its CLIP token ids: start-of-text, the BPE ids,\n"+
		"end-of-text, then padding, context_length ids in all (truncated with end-of-text kept last).")
	bundleDir := fs.String("bundle", "", "model bundle directory: its tokenizer, text.context_length and text.pad_id (env VIDX_BUNDLE)")
	vocab := fs.String("vocab", "", "tokenizer files alone: a folder with tokenizer.json, vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz, or one such file")
	asJSON := fs.Bool("json", false, `print one {"text": ..., "ids": [...]} object per line`)
	ctxLen := fs.Int("context-length", 0, "ids per text (default: the bundle's text.context_length, or 77 with --vocab)")
	padID := fs.Int64("pad-id", -1, "padding id (default: the bundle's text.pad_id, or 0 with --vocab, as clip.tokenize)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	if *bundleDir == "" && *vocab == "" {
		*bundleDir = os.Getenv("VIDX_BUNDLE")
	}
	if (*bundleDir == "") == (*vocab == "") {
		fmt.Fprintln(stderr, "vidx tokenize: give exactly one of --bundle and --vocab")
		fs.Usage()
		return errUsage
	}
	if *ctxLen < 0 {
		return fmt.Errorf("tokenize: --context-length %d must be positive", *ctxLen)
	}

	var (
		tok    *tokenizer.Tokenizer
		length = bundle.DefaultContextLength
		pad    int64
		err    error
	)
	if *bundleDir != "" {
		m, err := bundle.Load(*bundleDir)
		if err != nil {
			return err
		}
		if tok, err = m.LoadTokenizer(); err != nil {
			return err
		}
		length, pad = m.Text.ContextLength, m.Text.PadID
	} else if tok, err = loadVocab(*vocab); err != nil {
		return err
	}
	if *ctxLen > 0 {
		length = *ctxLen
	}
	if *padID >= 0 {
		pad = *padID
	}

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "<" in a caption stays readable
	r := bufio.NewReader(stdin)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, rerr := r.ReadString('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return fmt.Errorf("tokenize: read stdin: %w", rerr)
		}
		if line == "" && rerr != nil {
			break
		}
		text := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		ids := tok.Tokenize(text, length, pad)
		if *asJSON {
			if err := enc.Encode(tokenizeLine{Text: text, IDs: ids}); err != nil {
				return err
			}
		} else {
			writeReadableIDs(w, text, ids, pad, tok.EOT())
		}
		if rerr != nil {
			break
		}
	}
	return w.Flush()
}

// writeReadableIDs prints the text and its ids up to end-of-text, with the
// padding summarised.
func writeReadableIDs(w io.Writer, text string, ids []int64, pad int64, eot int) {
	n := len(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == int64(eot) {
			n = i + 1
			break
		}
	}
	parts := make([]string, n)
	for i, id := range ids[:n] {
		parts[i] = fmt.Sprint(id)
	}
	fmt.Fprintf(w, "%q\n  %d tokens: %s", text, n, strings.Join(parts, " "))
	if rest := len(ids) - n; rest > 0 {
		fmt.Fprintf(w, " + %d x pad %d", rest, pad)
	}
	fmt.Fprintln(w)
}

// loadVocab reads tokenizer files without a bundle: a folder holding one of
// the three forms (tried in the order bundles prefer them), or one file.
func loadVocab(path string) (*tokenizer.Tokenizer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenize: --vocab: %w", err)
	}
	if !fi.IsDir() {
		switch {
		case strings.HasSuffix(path, ".gz"):
			return tokenizer.LoadBPEGz(path)
		case filepath.Base(path) == bundle.HFVocab:
			return tokenizer.Load(path, filepath.Join(filepath.Dir(path), bundle.HFMerges))
		case strings.HasSuffix(path, ".json"):
			return tokenizer.LoadTokenizerJSON(path)
		}
		return nil, fmt.Errorf("tokenize: --vocab %s: want a folder, tokenizer.json, vocab.json or a .txt.gz BPE file", path)
	}
	exists := func(name string) bool {
		fi, err := os.Stat(filepath.Join(path, name))
		return err == nil && !fi.IsDir()
	}
	switch {
	case exists(bundle.HFTokenizerJSON):
		return tokenizer.LoadTokenizerJSON(filepath.Join(path, bundle.HFTokenizerJSON))
	case exists(bundle.HFVocab) && exists(bundle.HFMerges):
		return tokenizer.Load(filepath.Join(path, bundle.HFVocab), filepath.Join(path, bundle.HFMerges))
	case exists(bundle.OpenAIBPE):
		return tokenizer.LoadBPEGz(filepath.Join(path, bundle.OpenAIBPE))
	}
	return nil, fmt.Errorf("tokenize: --vocab %s: no %s, %s + %s or %s in the folder",
		path, bundle.HFTokenizerJSON, bundle.HFVocab, bundle.HFMerges, bundle.OpenAIBPE)
}
