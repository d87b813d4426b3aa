package query

import "sync"

// Bank keeps the most recent distinct queries with a value each (their
// embeddings in the query stage). Dual softmax needs a text axis with more
// than one row; a stream of single queries gets one from the queries that
// came before. It is safe for concurrent use.
type Bank[T any] struct {
	mu    sync.Mutex
	size  int
	texts []string // ring, oldest first once full
	vals  []T
	next  int
	index map[string]int
}

// NewBank returns a bank of at most size entries; size <= 0 keeps nothing.
func NewBank[T any](size int) *Bank[T] {
	return &Bank[T]{size: size, index: map[string]int{}}
}

// Add stores a query, replacing the oldest when full. A text seen before
// refreshes its value in place: a bank of repeated texts would otherwise
// skew the text-axis softmax toward popular queries.
func (b *Bank[T]) Add(text string, v T) {
	if b.size <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.index[text]; ok {
		b.vals[i] = v
		return
	}
	if len(b.texts) < b.size {
		b.index[text] = len(b.texts)
		b.texts = append(b.texts, text)
		b.vals = append(b.vals, v)
		return
	}
	delete(b.index, b.texts[b.next])
	b.texts[b.next], b.vals[b.next] = text, v
	b.index[text] = b.next
	b.next = (b.next + 1) % b.size
}

// Snapshot returns the values, in slot order, of the entries whose text
// exclude does not reject (exclude may be nil).
func (b *Bank[T]) Snapshot(exclude func(text string) bool) []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]T, 0, len(b.vals))
	for i, v := range b.vals {
		if exclude == nil || !exclude(b.texts[i]) {
			out = append(out, v)
		}
	}
	return out
}

// Len returns the number of entries.
func (b *Bank[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.vals)
}
