package embedded

import (
	"context"
	"runtime"
	"sync"

	"github.com/vidx/vidx/sinks"
)

const (
	// scanCheckEvery bounds how long a search ignores cancellation.
	scanCheckEvery = 1 << 14
	// defaultShardMinRows is the fewest points worth a goroutine of their
	// own: 8192 points of 512-d are 16 MiB to read, some milliseconds,
	// against microseconds to start and join a worker.
	defaultShardMinRows = 8192
)

// scanQuery is one search as the scan sees it.
type scanQuery struct {
	vec []float32 // normalised
	k   int
	// filter is consulted only when filtered is set, so an unfiltered scan
	// costs nothing per point beyond the dot product.
	filter   *sinks.Filter
	filtered bool
}

// shards is how many ranges a scan of n points is split into: one per
// worker, but none smaller than the collection's minimum.
func (c *collection) shards(n int) int {
	w := c.opts.ScanWorkers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return max(1, min(w, n/max(1, c.shardMinRows)))
}

// scan returns, for each query, its best q.k candidates among all live
// points, best first. A collection with codes reads them first
// (scanCoded), with the same results. Otherwise it splits the slab into the given number of contiguous
// shards scanned in parallel, and answers all queries in the same pass:
// the scan is bound by reading the vectors from memory, so a second query
// on a vector already in cache costs only its dot product. Callers hold mu
// for reading, which covers the workers too: they finish before scan
// returns.
//
// The result does not depend on the number of shards or on which other
// queries share the pass. Each point's score is computed by the same kernel
// from the same two vectors wherever it is read, and candidates are ranked
// by a strict total order (score, then id, and ids are unique), so the k
// best of the union of each shard's k best are exactly the k best overall.
func (c *collection) scan(ctx context.Context, qs []scanQuery, shards int) ([][]candidate, error) {
	if n := len(c.ids); n > 0 && c.book != nil && n >= c.codedMinRows {
		return c.scanCoded(ctx, qs, shards)
	}
	return c.scanPlain(ctx, qs, shards)
}

// scanPlain is scan over the float vectors alone.
func (c *collection) scanPlain(ctx context.Context, qs []scanQuery, shards int) ([][]candidate, error) {
	n := len(c.ids)
	out := make([][]candidate, len(qs))
	if n == 0 {
		return out, nil
	}
	// A shard never keeps more than it holds, which bounds memory when k
	// is larger than the collection.
	heaps := func(size int) []*topK {
		h := make([]*topK, len(qs))
		for j, q := range qs {
			h[j] = newTopK(min(q.k, size), c.ids)
		}
		return h
	}
	shards = max(1, min(shards, n))
	parts := make([][]*topK, shards)
	err := runShards(n, shards, func(i, lo, hi int) error {
		parts[i] = heaps(hi - lo)
		return c.scanRange(ctx, qs, lo, hi, parts[i])
	})
	if err != nil {
		return nil, err
	}
	if shards == 1 {
		for j, h := range parts[0] {
			out[j] = h.sorted()
		}
		return out, nil
	}
	for j, q := range qs {
		t := newTopK(min(q.k, n), c.ids)
		for _, p := range parts {
			for _, cand := range p[j].heap {
				t.offer(cand)
			}
		}
		out[j] = t.sorted()
	}
	return out, nil
}

// runShards calls scan for each of shards contiguous ranges of n slots,
// the last on the calling goroutine instead of idling, the others each on
// its own, and returns the first error once all are done.
func runShards(n, shards int, scan func(i, lo, hi int) error) error {
	errs := make([]error, shards)
	var wg sync.WaitGroup
	for i := range shards {
		lo, hi := i*n/shards, (i+1)*n/shards
		if i == shards-1 {
			errs[i] = scan(i, lo, hi)
			break
		}
		wg.Go(func() { errs[i] = scan(i, lo, hi) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// scanRange offers every point in slots [lo, hi) that passes query j's
// filter to heaps[j]. It allocates nothing: filters read the payload in
// place and the heaps were sized for k up front.
func (c *collection) scanRange(ctx context.Context, qs []scanQuery, lo, hi int, heaps []*topK) error {
	dim, vecs, payloads, dot := c.dim, c.vecs, c.payloads, c.dot
	heaps = heaps[:len(qs)]
	if len(qs) == 1 {
		return scanRangeOne(ctx, &qs[0], dim, vecs[lo*dim:hi*dim], payloads[lo:hi], lo, dot, heaps[0])
	}
	for slot := lo; slot < hi; slot++ {
		if (slot-lo)%scanCheckEvery == 0 && slot > lo {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		vec := vecs[slot*dim : (slot+1)*dim]
		for j := range qs {
			q, t := &qs[j], heaps[j]
			if t.k == 0 || q.filtered && !q.filter.Match(payloads[slot]) {
				continue
			}
			score := dot(q.vec, vec)
			// Most points fall below the worst kept one once the heap is
			// full; deciding that here keeps the common case free of a
			// call.
			if len(t.heap) == t.k && score < t.heap[0].score {
				continue
			}
			t.offer(candidate{score: score, slot: int32(slot)})
		}
	}
	return nil
}

// scanRangeOne is scanRange for a single query, the common case, with
// everything the loop reads held in locals.
func scanRangeOne(ctx context.Context, q *scanQuery, dim int, vecs []float32, payloads []sinks.Payload, base int, dot dotFunc, t *topK) error {
	if t.k == 0 {
		return nil
	}
	qv, filtered := q.vec, q.filtered
	var f sinks.Filter
	if filtered {
		f = *q.filter
	}
	for i := range payloads {
		if i%scanCheckEvery == 0 && i > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if filtered && !f.Match(payloads[i]) {
			continue
		}
		score := dot(qv, vecs[i*dim:(i+1)*dim])
		if len(t.heap) == t.k && score < t.heap[0].score {
			continue
		}
		t.offer(candidate{score: score, slot: int32(base + i)})
	}
	return nil
}
