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
		codedMinRows: defaultCodedMinRows,
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
	if kernel, ok := codeKernel(); ok {
		c.book, c.codeDot = newCodebook(dim), kernel
		for i := range n {
			c.book.put(i, c.vecs[i*dim:(i+1)*dim])
		}
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

// BenchmarkScan times top-100 queries over 512-d points (CLIP ViT-B/32),
// the old scan against the new one in the same run, and reports p50/p99
// latency per query. The side-by-side figures are the ones to quote:
//
//	go test -run '^$' -bench 'Scan/.*/side-by-side' -benchtime 30x ./sinks/embedded/
//
// Each variant alone (for a profile, say): -bench 'Scan/^n=100000$/^old$'.
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
				// The codes change nothing: same points, same scores.
				p, _ := c.scanPlain(ctx, []scanQuery{{vec: q, k: k}}, workers)
				if !slices.Equal(p[0], n) {
					b.Fatalf("scan with codes differs from the float scan")
				}
			}
			perBatch := 8
			type variant struct {
				name, metric string
				perCall      int // queries answered per call
				run          func(q []float32) error
			}
			variants := []variant{
				{"old", "old", 1, func(q []float32) error {
					_, err := oldScan(ctx, c, q, k, sinks.Filter{})
					return err
				}},
				{"new/workers=1", "new1", 1, func(q []float32) error {
					_, err := scanOne(ctx, c, scanQuery{vec: q, k: k}, 1)
					return err
				}},
				{fmt.Sprintf("new/workers=%d", workers), "new", 1, func(q []float32) error {
					_, err := scanOne(ctx, c, scanQuery{vec: q, k: k}, c.shards(n))
					return err
				}},
				// The float vectors alone, where new reads the int8
				// codes first (the same when this build has no code
				// kernel).
				{fmt.Sprintf("float/workers=%d", workers), "float", 1, func(q []float32) error {
					_, err := c.scanPlain(ctx, []scanQuery{{vec: q, k: k}}, c.shards(n))
					return err
				}},
				// A micro-batch in one pass (SearchBatch), timed per query.
				{fmt.Sprintf("new/batch=%d/workers=%d", perBatch, workers), "batch", perBatch, func(q []float32) error {
					_, err := c.scan(ctx, batch(q), c.shards(n))
					return err
				}},
				// Reading every vector once and doing nothing else with
				// it: the floor for any exact float32 scan, which must
				// read them all.
				{fmt.Sprintf("read-only/workers=%d", workers), "read", 1, func(q []float32) error {
					readSlab(c.vecs, workers)
					return nil
				}},
				{"old/videos-filter", "old-filter", 1, func(q []float32) error {
					_, err := oldScan(ctx, c, q, k, videos)
					return err
				}},
				{fmt.Sprintf("new/videos-filter/workers=%d", workers), "new-filter", 1, func(q []float32) error {
					_, err := scanOne(ctx, c, scanQuery{vec: q, k: k, filter: &videos, filtered: true}, c.shards(n))
					return err
				}},
			}
			// The coded scan with each narrower kernel the CPU runs, so
			// the widest one (new) is measured against them in one run.
			if ks := vectorCodeKernels(); len(ks) > 1 {
				for _, kern := range ks[:len(ks)-1] {
					variants = append(variants, variant{fmt.Sprintf("new/kernel=%s/workers=%d", kern.name, workers), "new-" + kern.name, 1, func(q []float32) error {
						widest := c.codeDot
						c.codeDot = kern.dot
						defer func() { c.codeDot = widest }()
						_, err := scanOne(ctx, c, scanQuery{vec: q, k: k}, c.shards(n))
						return err
					}})
				}
			}
			pct := func(lat []float64, p float64) float64 {
				s := slices.Clone(lat)
				slices.Sort(s)
				return s[max(0, int(math.Ceil(p*float64(len(s))))-1)]
			}
			timed := func(b *testing.B, run func(q []float32) error, q []float32, perCall int) float64 {
				start := time.Now()
				if err := run(q); err != nil {
					b.Fatal(err)
				}
				return float64(time.Since(start).Nanoseconds()) / 1e6 / float64(perCall)
			}
			// side-by-side runs every variant once per iteration, in
			// rotating order, so load from outside the benchmark falls on
			// all of them alike; its ratios are the figures to compare.
			b.Run("side-by-side", func(b *testing.B) {
				lat := make([][]float64, len(variants))
				i := 0
				for b.Loop() {
					for j := range variants {
						v := (i + j) % len(variants)
						lat[v] = append(lat[v], timed(b, variants[v].run, queries[i%len(queries)], variants[v].perCall))
					}
					i++
				}
				for v, vr := range variants {
					b.ReportMetric(pct(lat[v], 0.50), vr.metric+"-p50-ms")
					b.ReportMetric(pct(lat[v], 0.99), vr.metric+"-p99-ms")
				}
				b.ReportMetric(pct(lat[0], 0.50)/pct(lat[2], 0.50), "old/new-p50")
			})
			for _, vr := range variants {
				b.Run(vr.name, func(b *testing.B) {
					var lat []float64
					i := 0
					for b.Loop() {
						lat = append(lat, timed(b, vr.run, queries[i%len(queries)], vr.perCall))
						i++
					}
					b.ReportMetric(pct(lat, 0.50), "p50-ms/query")
					b.ReportMetric(pct(lat, 0.99), "p99-ms/query")
				})
			}
		})
	}
}
