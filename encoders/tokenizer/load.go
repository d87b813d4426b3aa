package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// Load reads a Hugging Face / CLIP style vocab.json (token -> id) and
// merges.txt (one "a b" pair per line in rank order; a first line starting
// with '#', such as "#version: 0.2", is a header and skipped).
func Load(vocabPath, mergesPath string) (*Tokenizer, error) {
	vocab, err := readVocabJSON(vocabPath)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read merges: %w", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	merges := make([][2]string, 0, len(lines))
	for i, line := range lines {
		if i == 0 && strings.HasPrefix(line, "#") {
			continue
		}
		if line == "" {
			continue
		}
		a, b, ok := strings.Cut(line, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, fmt.Errorf("tokenizer: %s:%d: malformed merge %q", mergesPath, i+1, line)
		}
		merges = append(merges, [2]string{a, b})
	}
	return newTokenizer(vocab, merges, vocabPath+" + "+mergesPath)
}

func readVocabJSON(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read vocab: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: parse %s: %w", path, err)
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: empty vocabulary", path)
	}
	return vocab, nil
}

// clipMergeLines is how many lines of bpe_simple_vocab_16e6.txt CLIP keeps:
// merges = merges[1:49152-256-2+1].
const clipMergeLines = 49152 - 256 - 2 + 1

// LoadBPEGz reads OpenAI's bpe_simple_vocab_16e6.txt.gz and builds the
// vocabulary exactly as simple_tokenizer.py does: the 256 byte symbols, the
// same with "</w>", one entry per merge (the pair joined), then
// <|startoftext|> and <|endoftext|>.
func LoadBPEGz(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: open bpe vocab: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) > clipMergeLines {
		lines = lines[:clipMergeLines]
	}
	if len(lines) > 0 {
		lines = lines[1:]
	}

	list := baseTokens()
	merges := make([][2]string, 0, len(lines))
	for _, line := range lines {
		fields := strings.Fields(line)
		// Python keeps malformed lines as vocabulary entries (the fields
		// joined) that can never match a pair; do the same so ids line up.
		list = append(list, strings.Join(fields, ""))
		if len(fields) == 2 {
			merges = append(merges, [2]string{fields[0], fields[1]})
		} else {
			merges = append(merges, [2]string{}) // keeps later ranks aligned
		}
	}
	list = append(list, sotToken, eotToken)

	vocab := make(map[string]int, len(list))
	for id, tok := range list {
		vocab[tok] = id // later duplicates win, as in dict(zip(vocab, range(...)))
	}
	return newTokenizer(vocab, merges, path)
}

// LoadTokenizerJSON reads a Hugging Face tokenizer.json with a BPE model.
// model.merges may hold "a b" strings or ["a", "b"] pairs. Special tokens
// missing from model.vocab are taken from added_tokens.
func LoadTokenizerJSON(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read tokenizer.json: %w", err)
	}
	var doc struct {
		Model struct {
			Type   string            `json:"type"`
			Vocab  map[string]int    `json:"vocab"`
			Merges []json.RawMessage `json:"merges"`
		} `json:"model"`
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("tokenizer: parse %s: %w", path, err)
	}
	if doc.Model.Type != "" && doc.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer: %s: model type %q, want BPE", path, doc.Model.Type)
	}
	if len(doc.Model.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: model.vocab is empty", path)
	}
	vocab := doc.Model.Vocab
	for _, at := range doc.AddedTokens {
		if _, ok := vocab[at.Content]; !ok && (at.Content == sotToken || at.Content == eotToken) {
			vocab[at.Content] = at.ID
		}
	}
	merges := make([][2]string, 0, len(doc.Model.Merges))
	for i, raw := range doc.Model.Merges {
		raw = bytes.TrimSpace(raw)
		var m [2]string
		switch {
		case len(raw) > 0 && raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("tokenizer: %s: merge %d: %w", path, i, err)
			}
			a, b, ok := strings.Cut(s, " ")
			if !ok || a == "" || b == "" || strings.Contains(b, " ") {
				return nil, fmt.Errorf("tokenizer: %s: merge %d: malformed %q", path, i, s)
			}
			m = [2]string{a, b}
		default:
			var pair []string
			if err := json.Unmarshal(raw, &pair); err != nil {
				return nil, fmt.Errorf("tokenizer: %s: merge %d: %w", path, i, err)
			}
			if len(pair) != 2 {
				return nil, fmt.Errorf("tokenizer: %s: merge %d: want 2 tokens, got %d", path, i, len(pair))
			}
			m = [2]string{pair[0], pair[1]}
		}
		merges = append(merges, m)
	}
	return newTokenizer(vocab, merges, path)
}
