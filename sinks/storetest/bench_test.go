package storetest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/embedded"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
	"github.com/vidx/vidx/sinks/storetest"
)

// The benchmarks compare the two stores through sinks.Store with CLIP
// ViT-B/32 vectors: the embedded store in process, and the Qdrant store over
// gRPC on loopback to the test server (which keeps its points in an
// embedded store, so the difference is the client path: request building,
// protobuf, gRPC and payload mapping). Neither fsyncs.
//
//	go test -run '^$' -bench . -benchtime 200x ./sinks/storetest/
const (
	benchDim    = 512
	benchPoints = 10000
	indexBatch  = 64 // the index stage's default max_batch
	topK        = 100
)

type backend struct {
	name string
	open func(b *testing.B) sinks.Store
}

var backends = []backend{
	{"embedded", func(b *testing.B) sinks.Store {
		s, err := embedded.Open(b.TempDir(), embedded.Options{NoSync: true, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"qdrant-grpc", func(b *testing.B) sinks.Store {
		srv := qdranttest.New(b, qdranttest.Options{})
		s, err := qdrant.Open(context.Background(), srv.URL(), qdrant.Config{}, quiet)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

func benchSpec(name string) sinks.CollectionSpec {
	return sinks.CollectionSpec{Name: name, Dim: benchDim, Distance: "cosine", Model: "bench", Pooling: "meanP"}
}

// BenchmarkUpsert reports points/s for batches the size the index stage
// sends.
func BenchmarkUpsert(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			defer s.Close()
			name := fmt.Sprintf("bench_%d", b.N)
			if err := s.EnsureCollection(ctx, benchSpec(name)); err != nil {
				b.Fatal(err)
			}
			// Cycling through at most 64 batches keeps memory flat; later
			// rounds overwrite points, which costs the same as inserting.
			rounds := min(b.N, 64)
			pts := storetest.Points(rand.New(rand.NewPCG(1, 2)), indexBatch*rounds, benchDim, 50)
			b.ResetTimer()
			for i := range b.N {
				k := i % rounds * indexBatch
				if err := s.Upsert(ctx, name, pts[k:k+indexBatch]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*indexBatch)/b.Elapsed().Seconds(), "points/s")
		})
	}
}

// BenchmarkSearchK100 reports the latency of one top-100 search with
// vectors (what the query stage asks for before dual softmax) over 10,000
// points.
func BenchmarkSearchK100(b *testing.B) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	pts := storetest.Points(r, benchPoints, benchDim, 100)
	queries := make([][]float32, 256)
	for i := range queries {
		queries[i] = storetest.Points(r, 1, benchDim, 1)[0].Vector
	}
	for _, be := range backends {
		s := be.open(b)
		if err := s.EnsureCollection(ctx, benchSpec("bench")); err != nil {
			b.Fatal(err)
		}
		for batch := range slices.Chunk(pts, 512) {
			if err := s.Upsert(ctx, "bench", batch); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(be.name, func(b *testing.B) {
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				hits, err := s.Search(ctx, "bench", sinks.SearchRequest{Vector: queries[i%len(queries)], TopK: topK, WithVectors: true})
				lat[i] = time.Since(start)
				if err != nil || len(hits) != topK {
					b.Fatalf("search: %d hits, %v", len(hits), err)
				}
			}
			reportPercentiles(b, lat, 1)
		})
		if bs, ok := s.(interface {
			SearchBatch(context.Context, string, []sinks.SearchRequest) ([][]sinks.Hit, error)
		}); ok {
			// A micro-batch of 32 queries in one call, reported per query.
			b.Run(be.name+"-batch32", func(b *testing.B) {
				reqs := make([]sinks.SearchRequest, 32)
				lat := make([]time.Duration, b.N)
				b.ResetTimer()
				for i := range b.N {
					for j := range reqs {
						reqs[j] = sinks.SearchRequest{Vector: queries[(i*32+j)%len(queries)], TopK: topK, WithVectors: true}
					}
					start := time.Now()
					res, err := bs.SearchBatch(ctx, "bench", reqs)
					lat[i] = time.Since(start)
					if err != nil || len(res) != len(reqs) {
						b.Fatalf("batch search: %v", err)
					}
				}
				reportPercentiles(b, lat, len(reqs))
			})
		}
		s.Close()
	}
}

// reportPercentiles reports p50 and p99 latency per query in milliseconds;
// each sample covered perSample queries.
func reportPercentiles(b *testing.B, lat []time.Duration, perSample int) {
	slices.Sort(lat)
	at := func(p float64) float64 {
		d := lat[min(len(lat)-1, int(p*float64(len(lat))))]
		return float64(d.Microseconds()) / 1000 / float64(perSample)
	}
	b.ReportMetric(at(0.50), "p50-ms/query")
	b.ReportMetric(at(0.99), "p99-ms/query")
}
