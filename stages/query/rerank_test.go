package query

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func randomVectors(r *rand.Rand, n, dim int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, dim)
		var s float64
		for k := range v {
			v[k] = float32(r.NormFloat64())
			s += float64(v[k]) * float64(v[k])
		}
		for k := range v {
			v[k] /= float32(math.Sqrt(s))
		}
		out[i] = v
	}
	return out
}

// TestFastRerankIsExact checks the query stage's rerank path (similarities
// four texts at a time, then only the first row of the dual softmax) gives
// the very bits of the plain path (Dot per pair, then DualSoftmax) for
// text axes of every remainder modulo four, with ties among the
// candidates.
func TestFastRerankIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct{ texts, hits, dim int }{
		{0, 5, 8}, {1, 5, 8}, {3, 7, 16}, {4, 7, 16}, {5, 100, 512}, {8, 1, 3}, {257, 100, 512},
	} {
		for _, mode := range []string{RerankNone, RerankCAMoE, RerankSymmetric} {
			t.Run(fmt.Sprintf("%s/%dx%d", mode, tc.texts, tc.hits), func(t *testing.T) {
				texts := randomVectors(r, tc.texts, tc.dim)
				vecs := randomVectors(r, tc.hits, tc.dim)
				if tc.hits > 2 {
					vecs[2] = vecs[1] // a tie
				}
				first := make([]float64, tc.hits)
				for j := range first {
					first[j] = float64(float32(r.Float64()))
				}
				plain := [][]float64{first}
				for _, tv := range texts {
					row := make([]float64, len(vecs))
					for j, v := range vecs {
						row[j] = Dot(tv, v)
					}
					plain = append(plain, row)
				}
				fast := append([][]float64{first}, similarities(texts, vecs)...)
				for i := range plain {
					for j := range plain[i] {
						if math.Float64bits(plain[i][j]) != math.Float64bits(fast[i][j]) {
							t.Fatalf("similarity[%d][%d] = %v, Dot gives %v", i, j, fast[i][j], plain[i][j])
						}
					}
				}
				want, err := DualSoftmax(mode, 0.01, plain)
				if err != nil {
					t.Fatal(err)
				}
				got, err := FirstRowDualSoftmax(mode, 0.01, fast)
				if err != nil {
					t.Fatal(err)
				}
				for j := range got {
					if math.Float64bits(got[j]) != math.Float64bits(want[0][j]) {
						t.Fatalf("score[%d] = %v, DualSoftmax gives %v", j, got[j], want[0][j])
					}
				}
			})
		}
	}
}

// TestSimilarityKernels checks the vector kernel against the portable one
// to the bit, on text counts around its block of sixteen and dimensions
// that are not multiples of four.
func TestSimilarityKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct{ texts, hits, dim int }{
		{1, 1, 1}, {15, 3, 7}, {16, 4, 512}, {17, 9, 33}, {33, 100, 512}, {256, 100, 512},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", tc.texts, tc.hits, tc.dim), func(t *testing.T) {
			texts, vecs := randomVectors(r, tc.texts, tc.dim), randomVectors(r, tc.hits, tc.dim)
			rows := func() [][]float64 {
				out := make([][]float64, tc.texts)
				for i := range out {
					out[i] = make([]float64, tc.hits)
				}
				return out
			}
			vector, scalar := rows(), rows()
			if !similaritiesVector(texts, vecs, vector) {
				t.Skip("this build or CPU has no vector kernel (build with GOEXPERIMENT=simd on amd64 with AVX2 and FMA)")
			}
			similaritiesScalar(texts, vecs, scalar)
			for i := range scalar {
				for j := range scalar[i] {
					if math.Float64bits(vector[i][j]) != math.Float64bits(scalar[i][j]) {
						t.Fatalf("[%d][%d]: vector %v, scalar %v", i, j, vector[i][j], scalar[i][j])
					}
				}
			}
		})
	}
}

// BenchmarkRerank scores one query's 100 candidates (512-d) against a
// full text axis (the default 256 bank rows): "plain" is Dot per pair and
// the whole DualSoftmax, "fast" the query stage's path. Both give the same
// bits (TestFastRerankIsExact).
func BenchmarkRerank(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	vecs := randomVectors(r, 100, 512)
	texts := randomVectors(r, 256, 512)
	first := make([]float64, len(vecs))
	for j := range first {
		first[j] = r.Float64() * 0.3
	}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			sims := [][]float64{first}
			for _, tv := range texts {
				row := make([]float64, len(vecs))
				for j, v := range vecs {
					row[j] = Dot(tv, v)
				}
				sims = append(sims, row)
			}
			if _, err := DualSoftmax(RerankSymmetric, 0.01, sims); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scalar", func(b *testing.B) {
		rows := make([][]float64, len(texts))
		for i := range rows {
			rows[i] = make([]float64, len(vecs))
		}
		for b.Loop() {
			similaritiesScalar(texts, vecs, rows)
			if _, err := FirstRowDualSoftmax(RerankSymmetric, 0.01, append([][]float64{first}, rows...)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			sims := append([][]float64{first}, similarities(texts, vecs)...)
			if _, err := FirstRowDualSoftmax(RerankSymmetric, 0.01, sims); err != nil {
				b.Fatal(err)
			}
		}
	})
}
