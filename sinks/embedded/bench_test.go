package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vidx/vidx/sinks"
)

func BenchmarkSearch(b *testing.B) {
	const dim, n = 512, 100_000
	ctx := context.Background()
	s := openStore(b, b.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	const batch = 1000
	for i := 0; i < n; i += batch {
		if err := s.Upsert(ctx, "c", makePoints(r, fmt.Sprintf("b%d", i), batch, dim, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	queries := make([][]float32, 64)
	for i := range queries {
		queries[i] = randVec(r, dim)
	}
	for _, bc := range []struct {
		name string
		req  sinks.SearchRequest
	}{
		{"top100", sinks.SearchRequest{TopK: 100}},
		{"top10", sinks.SearchRequest{TopK: 10}},
		{"top100/videos-filter", sinks.SearchRequest{TopK: 100, Filter: sinks.Filter{VideoIDs: []string{"video-1", "video-2"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				req := bc.req
				req.Vector = queries[i%len(queries)]
				i++
				if _, err := s.Search(ctx, "c", req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpoints/s")
		})
	}
}

func BenchmarkUpsert(b *testing.B) {
	const dim = 512
	for _, bc := range []struct {
		name   string
		batch  int
		noSync bool
	}{
		{"batch64/fsync", 64, false},
		{"batch64/nosync", 64, true},
		{"batch1/fsync", 1, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, b.TempDir(), Options{NoSync: bc.noSync})
			if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(2, 2))
			// A fixed pool of ids keeps memory flat however long the
			// benchmark runs; replacements exercise compaction as well.
			pool := makePoints(r, "p", 4096, dim, 64)
			i := 0
			for b.Loop() {
				start := (i * bc.batch) % (len(pool) - bc.batch)
				i++
				if err := s.Upsert(ctx, "c", pool[start:start+bc.batch]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "points/s")
		})
	}
}
