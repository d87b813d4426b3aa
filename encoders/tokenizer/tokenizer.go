// Package tokenizer is a byte-level BPE tokenizer with the exact behaviour of
// OpenAI CLIP's simple_tokenizer / clip.tokenize (without ftfy), as used by
// CLIP4Clip and CLIP2TV text towers.
package tokenizer

import (
	"fmt"
	"math"
	"strings"
	"sync"
)

const endOfWord = "</w>"

// byteRunes is GPT-2/CLIP's bytes_to_unicode: every byte maps to a printable
// rune so BPE can work on strings without whitespace or control characters.
// byteOrder lists the bytes in the order the dict is built, which is the
// order of ids 0..255 in CLIP's vocabulary.
var byteRunes, byteOrder = func() (runes [256]rune, order [256]byte) {
	var printable [256]bool
	n := 0
	add := func(lo, hi int) {
		for b := lo; b <= hi; b++ {
			printable[b] = true
			runes[b] = rune(b)
			order[n] = byte(b)
			n++
		}
	}
	add('!', '~')
	add(0xa1, 0xac)
	add(0xae, 0xff)
	extra := 0
	for b := 0; b < 256; b++ {
		if !printable[b] {
			runes[b] = rune(256 + extra)
			order[n] = byte(b)
			extra++
			n++
		}
	}
	return runes, order
}()

// baseTokens returns the 512 initial CLIP vocabulary entries in id order:
// the 256 byte symbols, then the same with the end-of-word marker.
func baseTokens() []string {
	out := make([]string, 0, 512)
	for _, b := range byteOrder {
		out = append(out, string(byteRunes[b]))
	}
	for _, b := range byteOrder {
		out = append(out, string(byteRunes[b])+endOfWord)
	}
	return out
}

type mergeInfo struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// applyMerges runs CLIP's bpe() loop on symbol ids in place: repeatedly take
// the lowest-ranked adjacent pair and merge all of its non-overlapping
// occurrences left to right.
func applyMerges(word []int32, merges map[uint64]mergeInfo) []int32 {
	for len(word) > 1 {
		best := mergeInfo{rank: math.MaxInt32}
		var first, second int32
		found := false
		for i := 0; i+1 < len(word); i++ {
			if m, ok := merges[pairKey(word[i], word[i+1])]; ok && m.rank < best.rank {
				best, first, second, found = m, word[i], word[i+1], true
			}
		}
		if !found {
			break
		}
		out := word[:0]
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				out = append(out, best.id)
				i += 2
				continue
			}
			out = append(out, word[i])
			i++
		}
		word = out
	}
	return word
}

// defaultCacheSize bounds the per-tokenizer word cache; CLIP keeps an
// unbounded dict, which would grow without limit on a long-running server.
const defaultCacheSize = 1 << 16

// Tokenizer is a CLIP BPE tokenizer. It is safe for concurrent use.
type Tokenizer struct {
	vocab     map[string]int
	vocabSize int
	byteIDs   [256]int32 // symbol id of each byte inside a word
	byteEnds  [256]int32 // symbol id of each byte ending a word ("</w>")
	merges    map[uint64]mergeInfo
	sot, eot  int

	mu         sync.RWMutex
	cache      map[string][]int32
	cacheLimit int
}

// newTokenizer builds a tokenizer from a token->id vocabulary and merges in
// rank order. A zero pair only occupies a rank. src names the file(s) for
// error messages.
func newTokenizer(vocab map[string]int, merges [][2]string, src string) (*Tokenizer, error) {
	t := &Tokenizer{
		vocab:      vocab,
		merges:     make(map[uint64]mergeInfo, len(merges)),
		cache:      make(map[string][]int32),
		cacheLimit: defaultCacheSize,
	}
	for _, id := range vocab {
		if id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("tokenizer: %s: token id %d out of range", src, id)
		}
		if id+1 > t.vocabSize {
			t.vocabSize = id + 1
		}
	}
	missing := func(tok string) error {
		return fmt.Errorf("tokenizer: %s: token %q missing from vocabulary", src, tok)
	}
	for b := 0; b < 256; b++ {
		sym := string(byteRunes[b])
		id, ok := vocab[sym]
		if !ok {
			return nil, missing(sym)
		}
		end, ok := vocab[sym+endOfWord]
		if !ok {
			return nil, missing(sym + endOfWord)
		}
		t.byteIDs[b], t.byteEnds[b] = int32(id), int32(end)
	}
	for rank, m := range merges {
		if m == ([2]string{}) {
			continue
		}
		a, okA := vocab[m[0]]
		b, okB := vocab[m[1]]
		id, okID := vocab[m[0]+m[1]]
		if !okA || !okB || !okID {
			return nil, fmt.Errorf("tokenizer: %s: merge %d %q: token missing from vocabulary", src, rank, m[0]+" "+m[1])
		}
		// A repeated pair keeps its last rank, as dict(zip(merges, range(...)))
		// does in CLIP.
		t.merges[pairKey(int32(a), int32(b))] = mergeInfo{rank: int32(rank), id: int32(id)}
	}
	sot, ok := vocab[sotToken]
	if !ok {
		return nil, missing(sotToken)
	}
	eot, ok := vocab[eotToken]
	if !ok {
		return nil, missing(eotToken)
	}
	t.sot, t.eot = int(sot), int(eot)
	return t, nil
}

// ID returns the id of a vocabulary token (e.g. "dog</w>").
func (t *Tokenizer) ID(token string) (int, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// SOT is the id of <|startoftext|>.
func (t *Tokenizer) SOT() int { return t.sot }

// EOT is the id of <|endoftext|>.
func (t *Tokenizer) EOT() int { return t.eot }

// VocabSize is one more than the largest token id, i.e. the number of rows
// an embedding table for this vocabulary needs.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// Encode returns the BPE ids of text without start/end tokens, like
// SimpleTokenizer.encode.
func (t *Tokenizer) Encode(text string) []int {
	return t.appendEncode(make([]int, 0, len(text)/3+4), text)
}

func (t *Tokenizer) appendEncode(dst []int, text string) []int {
	splitPieces(cleanText(text), func(piece string) {
		// CLIP seeds its bpe cache with the two special tokens, so they map
		// to their own ids when they appear literally in the text.
		switch piece {
		case sotToken:
			dst = append(dst, t.sot)
			return
		case eotToken:
			dst = append(dst, t.eot)
			return
		}
		for _, id := range t.bpe(piece) {
			dst = append(dst, int(id))
		}
	})
	return dst
}

// bpe returns the ids of one pre-tokenized piece. The returned slice is
// shared with the cache and must not be modified.
func (t *Tokenizer) bpe(piece string) []int32 {
	t.mu.RLock()
	ids, ok := t.cache[piece]
	t.mu.RUnlock()
	if ok {
		return ids
	}

	word := make([]int32, len(piece))
	for i := 0; i < len(piece); i++ {
		word[i] = t.byteIDs[piece[i]]
	}
	word[len(word)-1] = t.byteEnds[piece[len(piece)-1]]
	ids = applyMerges(word, t.merges)

	t.mu.Lock()
	if len(t.cache) >= t.cacheLimit {
		// Evict an arbitrary entry; map iteration order is randomised, so
		// this approximates random replacement without extra bookkeeping.
		for k := range t.cache {
			delete(t.cache, k)
			break
		}
	}
	// Clone so the cache does not pin the caller's whole input string.
	t.cache[strings.Clone(piece)] = ids
	t.mu.Unlock()
	return ids
}

// Tokenize returns exactly contextLength ids: SOT, the BPE ids, EOT, then
// padID. Text that does not fit is truncated with EOT kept in the last slot,
// as clip.tokenize(..., truncate=True) does.
func (t *Tokenizer) Tokenize(text string, contextLength int, padID int64) []int64 {
	if contextLength <= 0 {
		return []int64{}
	}
	out := make([]int64, contextLength)
	out[0] = int64(t.sot)
	n := 1
	splitPieces(cleanText(text), func(piece string) {
		if n >= contextLength {
			return
		}
		var ids []int32
		switch piece {
		case sotToken:
			ids = []int32{int32(t.sot)}
		case eotToken:
			ids = []int32{int32(t.eot)}
		default:
			ids = t.bpe(piece)
		}
		for _, id := range ids {
			if n >= contextLength {
				return
			}
			out[n] = int64(id)
			n++
		}
	})
	if n >= contextLength {
		n = contextLength - 1
	}
	out[n] = int64(t.eot)
	for i := n + 1; i < contextLength; i++ {
		out[i] = padID
	}
	return out
}
