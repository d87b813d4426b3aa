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

// scan returns the best q.k candidates among all live points, best first,
// splitting the slab into the given number of contiguous shards scanned in
// parallel. Callers hold mu for reading, which covers the workers too: they
// finish before scan returns.
//
// The result does not depend on the number of shards. Each point's score is
// computed by the same kernel from the same two vectors wherever it is
// read, and candidates are ranked by a strict total order (score, then id,
// and ids are unique), so the k best of the union of each shard's k best are
// exactly the k best overall.
func (c *collection) scan(ctx context.Context, q scanQuery, shards int) ([]candidate, error) {
	n := len(c.ids)
	k := min(q.k, n)
	if k == 0 {
		return nil, nil
	}
	shards = max(1, min(shards, n))
	if shards == 1 {
		t := newTopK(k, c.ids)
		if err := c.scanRange(ctx, q, 0, n, t); err != nil {
			return nil, err
		}
		return t.sorted(), nil
	}

	parts := make([]*topK, shards)
	errs := make([]error, shards)
	var wg sync.WaitGroup
	for i := range shards {
		lo, hi := i*n/shards, (i+1)*n/shards
		parts[i] = newTopK(k, c.ids)
		if i == shards-1 {
			// The calling goroutine takes the last shard instead of idling.
			errs[i] = c.scanRange(ctx, q, lo, hi, parts[i])
			break
		}
		wg.Go(func() { errs[i] = c.scanRange(ctx, q, lo, hi, parts[i]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	t := newTopK(k, c.ids)
	for _, p := range parts {
		for _, cand := range p.heap {
			t.offer(cand)
		}
	}
	return t.sorted(), nil
}

// scanRange offers every point in slots [lo, hi) that passes the filter to t.
// It allocates nothing: the filter reads the payload in place and the heap
// was sized for k up front.
func (c *collection) scanRange(ctx context.Context, q scanQuery, lo, hi int, t *topK) error {
	dim, vecs, dot := c.dim, c.vecs, c.dot
	for slot := lo; slot < hi; slot++ {
		if (slot-lo)%scanCheckEvery == 0 && slot > lo {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if q.filtered && !q.filter.Match(c.payloads[slot]) {
			continue
		}
		score := dot(q.vec, vecs[slot*dim:(slot+1)*dim])
		// Most points fall below the worst kept one once the heap is full;
		// deciding that here keeps the common case free of a call.
		if len(t.heap) == t.k && score < t.heap[0].score {
			continue
		}
		t.offer(candidate{score: score, slot: int32(slot)})
	}
	return nil
}
