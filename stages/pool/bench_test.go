package pool_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/stages/pool"
)

// The pool stage benchmarks time Handle on one batch of benchClips
// frame-embedding messages of benchFrames frames at the tiny CLIP width
// (decode, pool, encode), so clips/s covers the whole handler, not just the
// pooling arithmetic. seqTransf runs the tiny bundle's temporal head on two
// intra-op threads in one padded run per batch.
const (
	benchClips  = 32
	benchFrames = 12
)

func benchBatch(b *testing.B) []pipeline.Message {
	rng := rand.New(rand.NewPCG(1, 1))
	batch := make([]pipeline.Message, benchClips)
	for i := range batch {
		c := make([][]float32, benchFrames)
		for f := range c {
			c[f] = make([]float32, testmodels.TinyDim)
			for j := range c[f] {
				c[f][j] = float32(rng.NormFloat64())
			}
		}
		batch[i] = frameEmbeddings(b, frameMsg{clip: i, model: testmodels.TinyCLIPName, frames: c})
	}
	return batch
}

func benchHandle(b *testing.B, p pool.Pooler) {
	h, err := pool.New(pool.Config{Model: testmodels.TinyCLIPName}, p)
	if err != nil {
		b.Fatal(err)
	}
	batch := benchBatch(b)
	ctx := context.Background()
	check := func() {
		for i, r := range h.Handle(ctx, batch) {
			if r.Err != nil {
				b.Fatalf("clip %d: %v", i, r.Err)
			}
		}
	}
	check() // warm-up: ONNX Runtime allocates its arena on the first runs
	b.ResetTimer()
	for b.Loop() {
		check()
	}
	b.ReportMetric(float64(benchClips*b.N)/b.Elapsed().Seconds(), "clips/s")
}

func BenchmarkPoolStage(b *testing.B) {
	b.Run("meanP", func(b *testing.B) { benchHandle(b, pool.MeanPooler{}) })
	b.Run("seqTransf", func(b *testing.B) {
		p, err := pool.NewSeqTransfPooler(tinyTemporal(b, benchClips))
		if err != nil {
			b.Fatal(err)
		}
		benchHandle(b, p)
	})
}
