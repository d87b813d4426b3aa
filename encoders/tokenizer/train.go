package tokenizer

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// TrainBPE learns a small vocabulary with CLIP's layout from a word list, so
// tests and generated model bundles can carry a self-contained tokenizer.
//
// Words are cleaned, lowercased and split exactly as Encode does; every
// resulting piece is a training word (so "don't" trains "don" and "'t", and
// digits stay single characters). Ids 0..255 are the bytes_to_unicode
// symbols and 256..511 the same with "</w>", in CLIP's order. Merges are
// learned greedily: the most frequent adjacent pair, ties broken by the
// lexicographic order of the two symbols, until every piece is one symbol.
// Each merge gets the next id unless its joined string already exists (then
// it reuses that id and a pair producing a new string is preferred);
// <|startoftext|> and <|endoftext|> come last. Encoding any training piece
// with the result yields exactly one id.
//
// The merges are returned as "a b" lines in rank order.
func TrainBPE(words []string) (vocab map[string]int, merges []string) {
	freq := map[string]int{}
	for _, w := range words {
		splitPieces(cleanText(w), func(p string) {
			if p != sotToken && p != eotToken {
				freq[p]++
			}
		})
	}
	pieces := make([]string, 0, len(freq))
	for p := range freq {
		pieces = append(pieces, p)
	}
	sort.Strings(pieces) // independent of input order and map iteration

	tr := &trainer{
		symbols: baseTokens(),
		vocab:   map[string]int{},
		merges:  map[uint64]mergeInfo{},
		counts:  map[uint64]int{},
	}
	for id, s := range tr.symbols {
		tr.vocab[s] = id
	}
	var byteID [256]int32
	for id, b := range byteOrder {
		byteID[b] = int32(id)
	}
	for _, p := range pieces {
		syms := make([]int32, len(p))
		for i := 0; i < len(p); i++ {
			syms[i] = byteID[p[i]]
		}
		syms[len(syms)-1] += 256 // the "</w>" variant
		tr.words = append(tr.words, trainWord{syms: syms, freq: freq[p]})
	}
	for i := range tr.words {
		tr.addPairs(&tr.words[i], 1)
	}

	for {
		a, b, ok := tr.best()
		if !ok {
			break
		}
		tr.merge(a, b)
	}

	tr.vocab[sotToken] = len(tr.symbols)
	tr.vocab[eotToken] = len(tr.symbols) + 1
	return tr.vocab, tr.mergeLines
}

type trainWord struct {
	syms []int32
	freq int
}

type trainer struct {
	symbols    []string // id -> token
	vocab      map[string]int
	merges     map[uint64]mergeInfo
	mergeLines []string
	words      []trainWord
	counts     map[uint64]int // weighted count of each adjacent pair
	queue      pairQueue
}

// addPairs adds sign*freq for every adjacent pair of w and queues the new
// counts.
func (tr *trainer) addPairs(w *trainWord, sign int) {
	for i := 0; i+1 < len(w.syms); i++ {
		k := pairKey(w.syms[i], w.syms[i+1])
		tr.counts[k] += sign * w.freq
		if c := tr.counts[k]; c > 0 {
			heap.Push(&tr.queue, pairEntry{count: c, a: w.syms[i], b: w.syms[i+1], tr: tr})
		} else {
			delete(tr.counts, k)
		}
	}
}

// best pops the highest-priority pair whose queued count is current,
// preferring pairs whose joined string is not yet a token.
func (tr *trainer) best() (a, b int32, ok bool) {
	var dups []pairEntry
	defer func() {
		for _, e := range dups {
			heap.Push(&tr.queue, e)
		}
	}()
	for tr.queue.Len() > 0 {
		e := heap.Pop(&tr.queue).(pairEntry)
		if tr.counts[pairKey(e.a, e.b)] != e.count {
			continue // stale entry
		}
		if _, exists := tr.vocab[tr.symbols[e.a]+tr.symbols[e.b]]; exists {
			dups = append(dups, e)
			continue
		}
		return e.a, e.b, true
	}
	if len(dups) > 0 {
		e := dups[0]
		dups = dups[1:]
		return e.a, e.b, true
	}
	return 0, 0, false
}

// merge records the pair as the next-ranked merge and re-encodes the words
// containing it. Re-running the full bpe() loop (not just joining the pair)
// keeps each word's state equal to what Encode would produce with the merges
// learned so far, which is what guarantees single-token training words.
func (tr *trainer) merge(a, b int32) {
	joined := tr.symbols[a] + tr.symbols[b]
	id, exists := tr.vocab[joined]
	if !exists {
		id = len(tr.symbols)
		tr.symbols = append(tr.symbols, joined)
		tr.vocab[joined] = id
	}
	rank := len(tr.mergeLines)
	tr.merges[pairKey(a, b)] = mergeInfo{rank: int32(rank), id: int32(id)}
	tr.mergeLines = append(tr.mergeLines, tr.symbols[a]+" "+tr.symbols[b])

	for i := range tr.words {
		w := &tr.words[i]
		if !hasPair(w.syms, a, b) {
			continue
		}
		tr.addPairs(w, -1)
		w.syms = applyMerges(w.syms, tr.merges)
		tr.addPairs(w, 1)
	}
}

func hasPair(syms []int32, a, b int32) bool {
	for i := 0; i+1 < len(syms); i++ {
		if syms[i] == a && syms[i+1] == b {
			return true
		}
	}
	return false
}

type pairEntry struct {
	count int
	a, b  int32
	tr    *trainer
}

// pairQueue is a max-heap on count, then ascending (symbol a, symbol b).
type pairQueue []pairEntry

func (q pairQueue) Len() int { return len(q) }
func (q pairQueue) Less(i, j int) bool {
	if q[i].count != q[j].count {
		return q[i].count > q[j].count
	}
	syms := q[i].tr.symbols
	if sa, sb := syms[q[i].a], syms[q[j].a]; sa != sb {
		return sa < sb
	}
	return syms[q[i].b] < syms[q[j].b]
}
func (q pairQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pairQueue) Push(x any)   { *q = append(*q, x.(pairEntry)) }
func (q *pairQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// WriteFiles writes vocab.json (ordered by id) and merges.txt (with a
// "#version: 0.2" header) into dir, creating it if needed. The pair can be
// read back with Load.
func WriteFiles(dir string, vocab map[string]int, merges []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tokenizer: create %s: %w", dir, err)
	}
	toks := make([]string, 0, len(vocab))
	for tok := range vocab {
		toks = append(toks, tok)
	}
	sort.Slice(toks, func(i, j int) bool {
		if vocab[toks[i]] != vocab[toks[j]] {
			return vocab[toks[i]] < vocab[toks[j]]
		}
		return toks[i] < toks[j]
	})
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, tok := range toks {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := writeJSONString(&buf, tok); err != nil {
			return fmt.Errorf("tokenizer: encode vocab token %q: %w", tok, err)
		}
		fmt.Fprintf(&buf, ":%d", vocab[tok])
	}
	buf.WriteString("}\n")
	vocabPath := filepath.Join(dir, "vocab.json")
	if err := os.WriteFile(vocabPath, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("tokenizer: write %s: %w", vocabPath, err)
	}

	var mb strings.Builder
	mb.WriteString("#version: 0.2\n")
	for _, m := range merges {
		mb.WriteString(m)
		mb.WriteByte('\n')
	}
	mergesPath := filepath.Join(dir, "merges.txt")
	if err := os.WriteFile(mergesPath, []byte(mb.String()), 0o644); err != nil {
		return fmt.Errorf("tokenizer: write %s: %w", mergesPath, err)
	}
	return nil
}

// writeJSONString writes s as a JSON string without HTML escaping, so
// "<|endoftext|>" stays readable in the file.
func writeJSONString(buf *bytes.Buffer, s string) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
	return nil
}
