package embedded

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/vidx/vidx/sinks"
)

// TestCodeKernels checks every vector code kernel the CPU runs against
// the portable one on every length around their blocks of 64, 32 and 16,
// with the extreme values the encoders can produce.
func TestCodeKernels(t *testing.T) {
	kernels := vectorCodeKernels()
	if len(kernels) == 0 {
		t.Skip("this build or CPU has no vector code kernel (build with GOEXPERIMENT=simd on amd64 with AVX2)")
	}
	if best, _ := codeKernel(); reflect.ValueOf(best).Pointer() != reflect.ValueOf(kernels[len(kernels)-1].dot).Pointer() {
		t.Error("codeKernel is not the widest kernel the CPU runs")
	}
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			for n := range 200 {
				limit := min(math.MaxInt16, math.MaxInt32/(127*max(1, n))-1)
				for _, extreme := range []bool{false, true} {
					q, c := make([]int16, n), make([]int8, n)
					for i := range n {
						q[i], c[i] = int16(r.IntN(2*limit+1)-limit), int8(r.IntN(255)-127)
						if extreme {
							// All products at their largest, one sign: the
							// sum nearest int32's limit the encoders allow.
							q[i], c[i] = int16(limit), 127
						}
					}
					if got, want := k.dot(q, c), dotCodesPortable(q, c); got != want {
						t.Fatalf("n=%d extreme=%v: kernel %d, portable %d", n, extreme, got, want)
					}
				}
			}
		})
	}
}

// exactNorm is ||x - s*c|| in exact arithmetic, rounded to float64.
func exactNorm(x []float32, s float64, c func(i int) float64) float64 {
	sum := new(big.Float).SetPrec(256)
	for i, v := range x {
		d := new(big.Float).SetPrec(256).SetFloat64(float64(v))
		p := new(big.Float).SetPrec(256).SetFloat64(c(i))
		p.Mul(p, new(big.Float).SetPrec(256).SetFloat64(s))
		d.Sub(d, p)
		sum.Add(sum, d.Mul(d, d))
	}
	f, _ := sum.Sqrt(sum).Float64()
	return f
}

// TestEncodeBounds checks the bounds the coded scan relies on against
// exact arithmetic, on dense, spiky and wide-ranging vectors.
func TestEncodeBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	shapes := map[string]func(dim int) []float32{
		"normal": func(dim int) []float32 { return randVec(r, dim) },
		"one-hot": func(dim int) []float32 {
			v := make([]float32, dim)
			v[r.IntN(dim)] = 1
			return v
		},
		"spike": func(dim int) []float32 {
			v := randVec(r, dim)
			v[0] = 1000
			return v
		},
		"wide-range": func(dim int) []float32 {
			v := randVec(r, dim)
			for i := range v {
				v[i] *= float32(math.Exp(8 * r.NormFloat64()))
			}
			v[0] = 1 // a direction for normalize, whatever the rest
			return v
		},
	}
	for _, dim := range []int{1, 3, 64, 512, 768, 4096} {
		for name, shape := range shapes {
			for range 5 {
				v, err := normalize(shape(dim), dim)
				if err != nil {
					t.Fatal(err)
				}
				codes := make([]int8, dim)
				s, e := encodeVector(v, codes)
				if got := exactNorm(v, float64(s), func(i int) float64 { return float64(codes[i]) }); got > float64(e) {
					t.Fatalf("%s dim %d: vector error %g above its bound %g", name, dim, got, e)
				}
				for _, c := range codes {
					if c < -127 {
						t.Fatalf("%s dim %d: code %d", name, dim, c)
					}
				}
				cq := encodeQuery(v)
				ints := func(i int) float64 { return float64(cq.ints[i]) }
				if got := exactNorm(v, cq.scale, ints); got > cq.err {
					t.Fatalf("%s dim %d: query error %g above its bound %g", name, dim, got, cq.err)
				}
				if got := exactNorm(make([]float32, dim), -cq.scale, ints); got > cq.norm {
					t.Fatalf("%s dim %d: query norm %g above its bound %g", name, dim, got, cq.norm)
				}
				var abs int64
				for _, x := range cq.ints {
					abs += int64(max(x, -x))
				}
				if abs*127 > math.MaxInt32 {
					t.Fatalf("%s dim %d: sum of |query ints| %d can overflow the kernel", name, dim, abs)
				}
			}
		}
	}
}

// TestCodedScanOnHardData runs the coded scan where its bounds are loosest
// against the score gaps: points that are small perturbations of a few
// centres (near-ties by the thousand), exact duplicates straddling the
// cut-off, and queries equal to stored points. Every answer must be the
// float scan's, score for score.
func TestCodedScanOnHardData(t *testing.T) {
	ctx := context.Background()
	for _, dim := range []int{7, 64, 512} {
		for _, spread := range []float64{0, 1e-4, 1e-2, 1} {
			t.Run(fmt.Sprintf("dim=%d/spread=%g", dim, spread), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(dim), uint64(spread*1e6)))
				s := openStore(t, t.TempDir(), Options{NoSync: true, forceCodes: true})
				if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
					t.Fatal(err)
				}
				centres := [][]float32{randVec(r, dim), randVec(r, dim), randVec(r, dim)}
				pts := makePoints(r, "p", 3000, dim, 20)
				for i := range pts {
					c := centres[i%len(centres)]
					for k := range pts[i].Vector {
						pts[i].Vector[k] = c[k] + float32(spread*r.NormFloat64())
					}
				}
				if err := s.Upsert(ctx, "c", pts); err != nil {
					t.Fatal(err)
				}
				c := s.colls["c"]
				c.codedMinRows = 0
				queries := []scanQuery{}
				for _, v := range [][]float32{randVec(r, dim), centres[0], pts[5].Vector} {
					q, _ := normalize(v, dim)
					for _, k := range []int{1, 50, 999, 5000} {
						queries = append(queries, scanQuery{vec: q, k: k})
					}
				}
				videos := sinks.Filter{VideoIDs: []string{"video-3", "video-11"}}
				queries = append(queries, scanQuery{vec: queries[0].vec, k: 10, filter: &videos, filtered: true})
				for _, shards := range []int{1, 2, 5} {
					got, err := c.scanCoded(ctx, queries, shards)
					if err != nil {
						t.Fatal(err)
					}
					want, err := c.scanPlain(ctx, queries, shards)
					if err != nil {
						t.Fatal(err)
					}
					for j := range want {
						if !slices.Equal(got[j], want[j]) {
							t.Fatalf("shards=%d query %d (k=%d): coded scan differs:\n got %v\nwant %v", shards, j, queries[j].k, describe(c, got[j]), describe(c, want[j]))
						}
					}
				}
			})
		}
	}
}

// checkCodebook fails unless every slot's codes are those of its vector.
func checkCodebook(t *testing.T, c *collection) {
	t.Helper()
	if c.book == nil {
		t.Fatal("collection keeps no codes")
	}
	n := len(c.ids)
	if len(c.book.scales) != n || len(c.book.errs) != n || len(c.book.codes) != n*c.dim {
		t.Fatalf("codebook holds %d scales, %d bounds, %d codes for %d points", len(c.book.scales), len(c.book.errs), len(c.book.codes), n)
	}
	want := make([]int8, c.dim)
	for slot := range n {
		s, e := encodeVector(c.vecs[slot*c.dim:(slot+1)*c.dim], want)
		if s != c.book.scales[slot] || e != c.book.errs[slot] || !slices.Equal(want, c.book.codes[slot*c.dim:(slot+1)*c.dim]) {
			t.Fatalf("slot %d (%s): codes are not those of its vector", slot, c.ids[slot])
		}
	}
}

// TestCodebookFollowsWrites checks the codes track every write: inserts,
// replacements, deletes that move points between slots, compaction, and
// the replay of the log on reopening.
func TestCodebookFollowsWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{NoSync: true, forceCodes: true, CompactMinDead: 1}
	s := openStore(t, dir, opts)
	const dim = 24
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	if err := s.Upsert(ctx, "c", makePoints(r, "a", 500, dim, 10)); err != nil {
		t.Fatal(err)
	}
	checkCodebook(t, s.colls["c"])
	// Replace half the points with new vectors, add others.
	if err := s.Upsert(ctx, "c", makePoints(r, "a", 250, dim, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", makePoints(r, "b", 100, dim, 10)); err != nil {
		t.Fatal(err)
	}
	checkCodebook(t, s.colls["c"])
	for _, v := range []string{"video-0", "video-7"} {
		if _, err := s.DeleteVideo(ctx, "c", v); err != nil {
			t.Fatal(err)
		}
	}
	checkCodebook(t, s.colls["c"])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, opts)
	c := s.colls["c"]
	checkCodebook(t, c)
	if len(c.ids) == 0 {
		t.Fatal("nothing left to check")
	}
}
