package eval

import (
	"math/rand/v2"
	"testing"

	"github.com/vidx/vidx/stages/query"
)

// syntheticEmbeddings makes n videos with one caption each in dim
// dimensions, each caption a noisy copy of its video.
func syntheticEmbeddings(n, dim int) *Embeddings {
	rng := rand.New(rand.NewPCG(1, 2))
	e := &Embeddings{}
	for i := range n {
		v := make([]float32, dim)
		c := make([]float32, dim)
		for k := range v {
			v[k] = float32(rng.NormFloat64())
			c[k] = v[k] + 2*float32(rng.NormFloat64())
		}
		e.VideoVecs = append(e.VideoVecs, query.Normalize(v))
		e.TextVecs = append(e.TextVecs, query.Normalize(c))
		e.Texts = append(e.Texts, string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))
		e.Truth = append(e.Truth, i)
	}
	e.Cosine = BankDots(e.TextVecs, e.VideoVecs)
	return e
}

// BenchmarkScore is the scoring cost of an MSR-VTT 1k-A sized evaluation
// (1000 videos, 1000 captions, 512 dimensions, bank 256), ingest excluded.
func BenchmarkScore(b *testing.B) {
	e := syntheticEmbeddings(1000, 512)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Score(e, ScoreOptions{Temperature: 0.01, BankSize: 256}); err != nil {
			b.Fatal(err)
		}
	}
}
