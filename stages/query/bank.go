package query

import "sync"

// bank keeps the most recent distinct query embeddings. Dual softmax needs
// a text axis with more than one row; a stream of single queries gets one
// from the queries that came before.
type bank struct {
	mu    sync.Mutex
	size  int
	texts []string // ring, oldest first once full
	vecs  [][]float32
	next  int
	index map[string]int
}

func newBank(size int) *bank {
	return &bank{size: size, index: map[string]int{}}
}

// add stores a query embedding, replacing the oldest when full. A text seen
// before refreshes its vector in place: a bank of repeated texts would
// otherwise skew the text-axis softmax toward popular queries.
func (b *bank) add(text string, vec []float32) {
	if b.size <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.index[text]; ok {
		b.vecs[i] = vec
		return
	}
	if len(b.texts) < b.size {
		b.index[text] = len(b.texts)
		b.texts = append(b.texts, text)
		b.vecs = append(b.vecs, vec)
		return
	}
	delete(b.index, b.texts[b.next])
	b.texts[b.next], b.vecs[b.next] = text, vec
	b.index[text] = b.next
	b.next = (b.next + 1) % b.size
}

// snapshot returns the bank's entries whose text is not in exclude.
func (b *bank) snapshot(exclude map[string]bool) [][]float32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]float32, 0, len(b.vecs))
	for i, v := range b.vecs {
		if !exclude[b.texts[i]] {
			out = append(out, v)
		}
	}
	return out
}

func (b *bank) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.vecs)
}
