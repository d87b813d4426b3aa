package embedded

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/viterin/vek/vek32"

	"github.com/vidx/vidx/sinks"
)

// benchCollection builds an n-point collection of random unit vectors
// directly in memory; the log plays no part in a scan and writing 1M points
// through it would dominate the benchmark's run time.
func benchCollection(n, dim int) *collection {
	c := &collection{
		dim:          dim,
		dot:          pickDot(),
		shardMinRows: defaultShardMinRows,
		vecs:         make([]float32, n*dim),
		ids:          make([]string, n),
		payloads:     make([]sinks.Payload, n),
	}
	r := rand.New(rand.NewPCG(uint64(n), 9))
	for i := range n {
		v := c.vecs[i*dim : (i+1)*dim]
		var s float64
		for j := range v {
			x := r.Float64()*2 - 1
			v[j] = float32(x)
			s += x * x
		}
		inv := 1 / math.Sqrt(s)
		for j := range v {
			v[j] = float32(float64(v[j]) * inv)
		}
		c.ids[i] = fmt.Sprintf("clip-%07d", i)
		c.payloads[i] = sinks.Payload{VideoID: fmt.Sprintf("video-%d", i/12), ClipIndex: i % 12, StartS: float64(i%12) * 10}
	}
	return c
}

// oldScan is the search loop as it was before sharding and the SIMD kernel:
// one goroutine, the unrolled dot product, every score offered to the heap.
// It is the baseline the new scan is measured against in the same run.
func oldScan(ctx context.Context, c *collection, q []float32, k int, f sinks.Filter) ([]candidate, error) {
	t := topK{k: min(k, len(c.ids)), ids: c.ids}
	t.heap = make([]candidate, 0, t.k)
	filtered := !reflect.ValueOf(f).IsZero()
	for slot := range c.ids {
		if slot%scanCheckEvery == 0 && slot > 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if filtered && !f.Match(c.payloads[slot]) {
			continue
		}
		t.offer(candidate{score: dotUnrolled(q, c.vecs[slot*c.dim:(slot+1)*c.dim]), slot: int32(slot)})
	}
	return t.sorted(), nil
}

var readSink float32

// readSlab sums the slab in parallel with vek's AVX2 sum.
func readSlab(vecs []float32, workers int) {
	var wg sync.WaitGroup
	sums := make([]float32, workers)
	for w := range workers {
		wg.Go(func() {
			sums[w] = vek32.Sum(vecs[w*len(vecs)/workers : (w+1)*len(vecs)/workers])
		})
	}
	wg.Wait()
	readSink = vek32.Sum(sums)
}

// BenchmarkScan times one top-100 query over 512-d points (CLIP ViT-B/32),
// old scan against new in one run, and reports p50/p99 latency:
//
//	go test -run '^$' -bench Scan -benchtime 40x ./sinks/embedded/
func BenchmarkScan(b *testing.B) {
	const dim, k = 512, 100
	ctx := context.Background()
	workers := runtime.GOMAXPROCS(0)
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			c := benchCollection(n, dim)
			r := rand.New(rand.NewPCG(1, 2))
			queries := make([][]float32, 32)
			for i := range queries {
				queries[i], _ = normalize(randVec(r, dim), dim)
			}
			videos := sinks.Filter{VideoIDs: []string{"video-1", "video-2"}}
			// batch pairs q with the next 7 queries.
			batch := func(q []float32) []scanQuery {
				at := slices.IndexFunc(queries, func(v []float32) bool { return &v[0] == &q[0] })
				qs := make([]scanQuery, 8)
				for j := range qs {
					qs[j] = scanQuery{vec: queries[(at+j)%len(queries)], k: k}
				}
				return qs
			}
			// The new scan must agree with the old one before either is
			// timed; the kernels differ only in rounding, so compare
			// ids with scores within scoreTolerance.
			for _, q := range queries[:2] {
				a, _ := oldScan(ctx, c, q, k, sinks.Filter{})
				n, _ := scanOne(ctx, c, scanQuery{vec: q, k: k}, workers)
				for i := range a {
					if a[i].slot != n[i].slot && math.Abs(float64(a[i].score-n[i].score)) > scoreTolerance(dim) {
						b.Fatalf("rank %d: old %s, new %s", i, c.ids[a[i].slot], c.ids[n[i].slot])
					}
				}
			}
			for _, bc := range []struct {
				name string
				run  func(q []float32) ([]candidate, error)
			}{
				{"old", func(q []float32) ([]candidate, error) { return oldScan(ctx, c, q, k, sinks.Filter{}) }},
				{"new/workers=1", func(q []float32) ([]candidate, error) {
					return scanOne(ctx, c, scanQuery{vec: q, k: k}, 1)
				}},
				{fmt.Sprintf("new/workers=%d", workers), func(q []float32) ([]candidate, error) {
					return scanOne(ctx, c, scanQuery{vec: q, k: k}, c.shards(n))
				}},
				// A micro-batch of 8 queries in one pass (SearchBatch);
				// the figures are per batch, so divide by 8 per query.
				{fmt.Sprintf("new/batch=8/workers=%d", workers), func(q []float32) ([]candidate, error) {
					_, err := c.scan(ctx, batch(q), c.shards(n))
					return nil, err
				}},
				// Reading every vector once and doing nothing else with
				// it: the floor for any exact float32 scan, which
				// must read them all.
				{fmt.Sprintf("read-only/workers=%d", workers), func(q []float32) ([]candidate, error) {
					readSlab(c.vecs, workers)
					return nil, nil
				}},
				{"old/videos-filter", func(q []float32) ([]candidate, error) { return oldScan(ctx, c, q, k, videos) }},
				{"new/videos-filter", func(q []float32) ([]candidate, error) {
					return scanOne(ctx, c, scanQuery{vec: q, k: k, filter: &videos, filtered: true}, c.shards(n))
				}},
			} {
				b.Run(bc.name, func(b *testing.B) {
					var lat []float64
					i := 0
					for b.Loop() {
						start := time.Now()
						if _, err := bc.run(queries[i%len(queries)]); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, float64(time.Since(start).Nanoseconds())/1e6)
						i++
					}
					slices.Sort(lat)
					pct := func(p float64) float64 { return lat[max(0, int(math.Ceil(p*float64(len(lat))))-1)] }
					b.ReportMetric(pct(0.50), "p50-ms")
					b.ReportMetric(pct(0.99), "p99-ms")
					b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpoints/s")
				})
			}
		})
	}
}
