package embedded

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vidx/vidx/sinks"
)

// scoreTolerance is how far a float32 score may be from the float64 dot
// product of the same two stored vectors. Summing d products of two unit
// vectors in float32, in any order, errs by at most about d*2^-24 (the sum
// of |q_i x_i| is at most 1 by Cauchy-Schwarz); twice that leaves room for
// the vectors being unit only up to rounding.
func scoreTolerance(dim int) float64 { return float64(dim) * 0x1p-23 }

// refScan is the plainest exact search: score every passing point with dot,
// sort them all by score then id, keep k. No heap and no shards, so it
// checks both.
func refScan(c *collection, q []float32, k int, f sinks.Filter, dot func(a, b []float32) float32) []candidate {
	var all []candidate
	for slot := range c.ids {
		if !f.Match(c.payloads[slot]) {
			continue
		}
		all = append(all, candidate{score: dot(q, c.vecs[slot*c.dim:(slot+1)*c.dim]), slot: int32(slot)})
	}
	slices.SortFunc(all, func(a, b candidate) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return strings.Compare(c.ids[a.slot], c.ids[b.slot])
	})
	return all[:min(k, len(all))]
}

// scanOne runs a scan for a single query.
func scanOne(ctx context.Context, c *collection, q scanQuery, shards int) ([]candidate, error) {
	out, err := c.scan(ctx, []scanQuery{q}, shards)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func dot64(a, b []float32) float32 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return float32(s)
}

// scanFixture fills a store with n random points over the given number of
// videos, two generations each, with groups of exact duplicates (ties)
// spread over the whole slab so they land in different shards. It then
// applies the deletes, which move points between slots.
func scanFixture(t *testing.T, n, dim, videos int, deletes func(ctx context.Context, s *Store)) (*Store, *collection) {
	return scanFixtureWith(t, Options{NoSync: true}, n, dim, videos, deletes)
}

// scanFixtureWith is scanFixture with the store's options.
func scanFixtureWith(t *testing.T, opts Options, n, dim, videos int, deletes func(ctx context.Context, s *Store)) (*Store, *collection) {
	t.Helper()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), opts)
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(n), uint64(dim)))
	pts := makePoints(r, "p", n, dim, videos)
	for i := range pts {
		pts[i].Payload.Generation = int64(i % 2)
		// Every 7th point copies the vector of a point half the slab away,
		// and ids are assigned so that slot order and id order disagree.
		if i%7 == 3 {
			pts[i].Vector = pts[(i+n/2)%n].Vector
		}
		pts[i].ID = fmt.Sprintf("p-%05d", (i*7919)%n)
	}
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	if deletes != nil {
		deletes(ctx, s)
	}
	return s, s.colls["c"]
}

// scanModes are the two ways a collection scans: the float vectors alone,
// and the int8 codes first (with the vector kernel where this build has
// one, the portable one otherwise). Both must give refScan's answer.
var scanModes = []struct {
	name string
	opts Options
}{
	{"float", Options{NoSync: true, PlainScan: true}},
	{"codes", Options{NoSync: true, forceCodes: true}},
}

func TestScanMatchesReference(t *testing.T) {
	const dim = 40
	from := 6.0
	gen := int64(1)
	filters := []struct {
		name string
		f    sinks.Filter
	}{
		{"none", sinks.Filter{}},
		{"videos", sinks.Filter{VideoIDs: []string{"video-1", "video-4", "video-9"}}},
		{"start+generation", sinks.Filter{StartFrom: &from, Generation: &gen}},
		{"metadata-none-match", sinks.Filter{Metadata: map[string]string{"title": "nope"}}},
	}
	for _, tc := range []struct {
		name    string
		n       int
		deletes func(ctx context.Context, s *Store)
	}{
		{"empty", 0, nil},
		{"one", 1, nil},
		{"small", 37, nil},
		{"1000", 1000, nil},
		{"1000-after-deletes", 1000, func(ctx context.Context, s *Store) {
			for _, v := range []string{"video-2", "video-5"} {
				if _, err := s.DeleteVideo(ctx, "c", v); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.DeleteOlder(ctx, "c", "video-7", 1); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		for _, mode := range scanModes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				_, c := scanFixtureWith(t, mode.opts, tc.n, dim, 10, tc.deletes)
				c.codedMinRows = 0
				r := rand.New(rand.NewPCG(7, uint64(tc.n)))
				var queries [][]float32
				for range 3 {
					q, _ := normalize(randVec(r, dim), dim)
					queries = append(queries, q)
				}
				if tc.n > 0 {
					// A stored vector as the query puts a tie group at the top.
					slot := min(3, len(c.ids)-1)
					queries = append(queries, slices.Clone(c.vecs[slot*dim:(slot+1)*dim]))
				}
				// Every (query, filter) pair in one pass must give what each
				// gives alone.
				for _, k := range []int{1, 10, tc.n + 5} {
					for _, shards := range []int{1, 3} {
						var batch []scanQuery
						var want [][]candidate
						for _, ff := range filters {
							for _, q := range queries {
								batch = append(batch, scanQuery{vec: q, k: k, filter: &ff.f, filtered: ff.name != "none"})
								want = append(want, refScan(c, q, k, ff.f, c.dot))
							}
						}
						got, err := c.scan(context.Background(), batch, shards)
						if err != nil {
							t.Fatal(err)
						}
						for j := range want {
							if !slices.Equal(got[j], want[j]) {
								t.Fatalf("batch k=%d shards=%d query %d:\n got %v\nwant %v", k, shards, j, describe(c, got[j]), describe(c, want[j]))
							}
						}
					}
				}
				for _, ff := range filters {
					for _, k := range []int{1, 2, 10, 100, tc.n + 5} {
						for _, shards := range []int{1, 2, 3, 8, tc.n + 3} {
							name := fmt.Sprintf("%s/k=%d/shards=%d", ff.name, k, shards)
							for qi, q := range queries {
								sq := scanQuery{vec: q, k: k, filter: &ff.f, filtered: true}
								got, err := scanOne(context.Background(), c, sq, shards)
								if err != nil {
									t.Fatalf("%s: %v", name, err)
								}
								want := refScan(c, q, k, ff.f, c.dot)
								if !slices.Equal(got, want) {
									t.Fatalf("%s query %d:\n got %v\nwant %v", name, qi, describe(c, got), describe(c, want))
								}
								// The unfiltered fast path must agree too.
								if ff.name == "none" {
									sq.filtered = false
									got, err := scanOne(context.Background(), c, sq, shards)
									if err != nil || !slices.Equal(got, want) {
										t.Fatalf("%s query %d unfiltered path: %v, %v", name, qi, describe(c, got), err)
									}
								}
								checkAgainstFloat64(t, c, q, got, refScan(c, q, k, ff.f, dot64))
							}
						}
					}
				}
			})
		}
	}
}

// checkAgainstFloat64 compares a ranking with the float64 one: rank by
// rank, the float64 scores of the two points must agree within
// scoreTolerance. Ids may differ only among points that close.
func checkAgainstFloat64(t *testing.T, c *collection, q []float32, got, want []candidate) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d hits, float64 reference has %d", len(got), len(want))
	}
	tol := scoreTolerance(c.dim)
	for i := range got {
		exact := dot64(q, c.vecs[int(got[i].slot)*c.dim:(int(got[i].slot)+1)*c.dim])
		if d := math.Abs(float64(got[i].score) - float64(exact)); d > tol {
			t.Fatalf("rank %d: score %v is %g from its float64 value %v (tolerance %g)", i, got[i].score, d, exact, tol)
		}
		if d := math.Abs(float64(exact) - float64(want[i].score)); d > tol {
			t.Fatalf("rank %d: %s (float64 %v), float64 ranking has %s (%v)", i,
				c.ids[got[i].slot], exact, c.ids[want[i].slot], want[i].score)
		}
	}
}

func describe(c *collection, cs []candidate) string {
	var b strings.Builder
	for _, x := range cs {
		fmt.Fprintf(&b, "%s:%v ", c.ids[x.slot], x.score)
	}
	return b.String()
}

// TestScanTieAtCutoff puts a group of equal scores across the k boundary and
// across shard boundaries: the kept ones must be the smallest ids whichever
// shard each sits in.
func TestScanTieAtCutoff(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", 3)); err != nil {
		t.Fatal(err)
	}
	var pts []sinks.Point
	// 40 points: the 20 ties interleaved with 20 worse points, tie ids in
	// descending slot order so slot and id order are opposite.
	for i := range 40 {
		v, id := []float32{0, 1, 1}, fmt.Sprintf("z%02d", i)
		if i%2 == 0 {
			v, id = []float32{1, 1, 0}, fmt.Sprintf("t%02d", 40-i)
		}
		pts = append(pts, sinks.Point{ID: id, Vector: v, Payload: sinks.Payload{VideoID: "v"}})
	}
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	c := s.colls["c"]
	q, _ := normalize([]float32{3, 3, 0}, 3)
	for _, k := range []int{1, 5, 19, 20, 21} {
		for _, shards := range []int{1, 2, 4, 7, 40} {
			got, err := scanOne(ctx, c, scanQuery{vec: q, k: k}, shards)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, g := range got {
				ids = append(ids, c.ids[g.slot])
			}
			var want []string
			for i := range min(k, 20) {
				want = append(want, fmt.Sprintf("t%02d", 2+2*i))
			}
			if k > 20 {
				want = append(want, "z01")
			}
			if !slices.Equal(ids, want) {
				t.Errorf("k=%d shards=%d: %v, want %v", k, shards, ids, want)
			}
		}
	}
}

// TestSearchSameForAnyWorkerCount runs the public Search with one worker and
// with several over small shards and expects identical hits.
func TestSearchSameForAnyWorkerCount(t *testing.T) {
	ctx := context.Background()
	const dim, n = 64, 3000
	r := rand.New(rand.NewPCG(11, 12))
	pts := makePoints(r, "p", n, dim, 30)
	open := func(workers int) *Store {
		s := openStore(t, t.TempDir(), Options{NoSync: true, ScanWorkers: workers})
		if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
			t.Fatal(err)
		}
		s.colls["c"].shardMinRows = 100
		if err := s.Upsert(ctx, "c", pts); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteVideo(ctx, "c", "video-3"); err != nil {
			t.Fatal(err)
		}
		return s
	}
	serial, parallel := open(1), open(5)
	if got := parallel.colls["c"].shards(n); got != 5 {
		t.Fatalf("shards = %d, want 5", got)
	}
	for _, req := range []sinks.SearchRequest{
		{TopK: 100, WithVectors: true},
		{TopK: 7, Filter: sinks.Filter{Sources: []string{"s3"}}},
		{TopK: n},
	} {
		req.Vector = randVec(r, dim)
		a, err := serial.Search(ctx, "c", req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parallel.Search(ctx, "c", req)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) || len(a) == 0 {
			t.Fatalf("%d hits serial, %d parallel", len(a), len(b))
		}
		for i := range a {
			if a[i].ID != b[i].ID || a[i].Score != b[i].Score || !slices.Equal(a[i].Vector, b[i].Vector) ||
				!samePayload(a[i].Payload, b[i].Payload) {
				t.Fatalf("rank %d: serial %s %v, parallel %s %v", i, a[i].ID, a[i].Score, b[i].ID, b[i].Score)
			}
		}
	}
}

func TestShards(t *testing.T) {
	for _, tc := range []struct {
		workers, minRows, n, want int
	}{
		{workers: 4, minRows: 8192, n: 0, want: 1},
		{workers: 4, minRows: 8192, n: 8191, want: 1},
		{workers: 4, minRows: 8192, n: 3 * 8192, want: 3},
		{workers: 4, minRows: 8192, n: 1_000_000, want: 4},
		{workers: 1, minRows: 8192, n: 1_000_000, want: 1},
		{workers: 3, minRows: 1, n: 2, want: 2},
	} {
		c := &collection{opts: Options{ScanWorkers: tc.workers}, shardMinRows: tc.minRows}
		if got := c.shards(tc.n); got != tc.want {
			t.Errorf("workers=%d min=%d n=%d: %d shards, want %d", tc.workers, tc.minRows, tc.n, got, tc.want)
		}
	}
}

func TestNegativeScanWorkersRejected(t *testing.T) {
	_, err := Open(t.TempDir(), Options{ScanWorkers: -1, Logger: quiet})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open with ScanWorkers -1 = %v, want ErrInvalid", err)
	}
}

// TestScanKernelAccuracy checks the chosen kernel, including vector lengths
// that leave a remainder after its 32-wide blocks, against float64.
func TestScanKernelAccuracy(t *testing.T) {
	dot := pickDot()
	r := rand.New(rand.NewPCG(3, 3))
	for _, dim := range []int{1, 3, 8, 31, 32, 33, 100, 512, 768, 1024} {
		for range 50 {
			a, _ := normalize(randVec(r, dim), dim)
			b, _ := normalize(randVec(r, dim), dim)
			if dim > 1 && r.IntN(4) == 0 {
				b = a // the largest possible score
			}
			got, want := dot(a, b), dot64(a, b)
			if d := math.Abs(float64(got) - float64(want)); d > scoreTolerance(dim) {
				t.Fatalf("dim %d: kernel %v, float64 %v, off by %g > %g", dim, got, want, d, scoreTolerance(dim))
			}
			if u := dotUnrolled(a, b); math.Abs(float64(u)-float64(want)) > scoreTolerance(dim) {
				t.Fatalf("dim %d: unrolled %v, float64 %v", dim, u, want)
			}
		}
	}
}

func TestScanRangeDoesNotAllocate(t *testing.T) {
	_, c := scanFixture(t, 500, 16, 10, nil)
	q, _ := normalize(randVec(rand.New(rand.NewPCG(1, 1)), 16), 16)
	from := 4.0
	for _, f := range []sinks.Filter{
		{},
		{VideoIDs: []string{"video-1", "video-2"}, StartFrom: &from},
		{Metadata: map[string]string{"title": "clip 7"}},
	} {
		tk := newTopK(50, c.ids)
		qs := []scanQuery{{vec: q, k: 50, filter: &f, filtered: true}}
		tks := []*topK{tk}
		allocs := testing.AllocsPerRun(20, func() {
			tk.heap = tk.heap[:0]
			if err := c.scanRange(context.Background(), qs, 0, len(c.ids), tks); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("filter %+v: %v allocations per scan, want 0", f, allocs)
		}
		if len(tk.heap) == 0 && len(f.Metadata) == 0 {
			t.Errorf("filter %+v kept nothing", f)
		}
	}
}

func TestScanCancelled(t *testing.T) {
	_, c := scanFixture(t, 3*scanCheckEvery, 2, 10, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q, _ := normalize([]float32{1, 0}, 2)
	for _, shards := range []int{1, 2} {
		if _, err := scanOne(ctx, c, scanQuery{vec: q, k: 10}, shards); !errors.Is(err, context.Canceled) {
			t.Errorf("shards=%d: scan with cancelled context = %v, want context.Canceled", shards, err)
		}
	}
}

// TestParallelSearchWithDeletes runs sharded searches while points are
// upserted and deleted (which moves points between slots) and checks every
// hit against the vector its id was written with. Run with -race.
func TestParallelSearchWithDeletes(t *testing.T) {
	ctx := context.Background()
	const dim, videos, perVideo = 8, 20, 30
	s := openStore(t, t.TempDir(), Options{NoSync: true, CompactMinDead: 50, ScanWorkers: 4})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	s.colls["c"].shardMinRows = 16
	// A point's vector is a function of its id, so any hit can be checked.
	vecOf := func(id string) []float32 {
		h := fnv.New64a()
		h.Write([]byte(id))
		return randVec(rand.New(rand.NewPCG(h.Sum64(), 1)), dim)
	}
	write := func(v int, gen int64) error {
		var pts []sinks.Point
		for i := range perVideo {
			id := fmt.Sprintf("v%d-g%d-%d", v, gen, i)
			pts = append(pts, sinks.Point{ID: id, Vector: vecOf(id),
				Payload: sinks.Payload{VideoID: fmt.Sprint("video-", v), Generation: gen}})
		}
		return s.Upsert(ctx, "c", pts)
	}
	for v := range videos {
		if err := write(v, 0); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 16)
	done := make(chan struct{})
	var writers sync.WaitGroup
	writers.Go(func() {
		for gen := int64(1); gen <= 5; gen++ {
			for v := range videos {
				if err := write(v, gen); err != nil {
					errc <- err
					return
				}
				if _, err := s.DeleteOlder(ctx, "c", fmt.Sprint("video-", v), gen); err != nil {
					errc <- err
					return
				}
				if v%5 == 0 {
					if _, err := s.DeleteVideo(ctx, "c", fmt.Sprint("video-", v)); err != nil {
						errc <- err
						return
					}
				}
			}
		}
	})
	var readers sync.WaitGroup
	for i := range 2 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 5))
			for {
				select {
				case <-done:
					return
				default:
				}
				hits, err := s.Search(ctx, "c", sinks.SearchRequest{Vector: randVec(r, dim), TopK: 50, WithVectors: true})
				if err != nil {
					errc <- err
					return
				}
				for j, h := range hits {
					want, _ := normalize(vecOf(h.ID), dim)
					if !slices.Equal(h.Vector, want) {
						errc <- fmt.Errorf("hit %s carries another point's vector", h.ID)
						return
					}
					if j > 0 && (h.Score > hits[j-1].Score || h.Score == hits[j-1].Score && h.ID < hits[j-1].ID) {
						errc <- fmt.Errorf("hits out of order at rank %d", j)
						return
					}
				}
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// Every video ends at generation 5 except those deleted outright.
	n, err := s.Count(ctx, "c", sinks.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (videos - videos/5) * perVideo; n != want {
		t.Fatalf("Count = %d, want %d", n, want)
	}
}

// TestSearchBatchEqualsSearch checks that each answer of a batch is exactly
// what the same request gets alone, with mixed filters, sizes and vectors.
func TestSearchBatchEqualsSearch(t *testing.T) {
	ctx := context.Background()
	const dim, n = 32, 2500
	r := rand.New(rand.NewPCG(21, 22))
	pts := makePoints(r, "p", n, dim, 25)
	from := 8.0
	q1, q2 := randVec(r, dim), randVec(r, dim)
	for _, workers := range []int{1, 3} {
		s := openStore(t, t.TempDir(), Options{NoSync: true, ScanWorkers: workers})
		if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
			t.Fatal(err)
		}
		s.colls["c"].shardMinRows = 200
		if err := s.Upsert(ctx, "c", pts); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteVideo(ctx, "c", "video-4"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			reqs []sinks.SearchRequest
		}{
			{"one", []sinks.SearchRequest{{Vector: q1, TopK: 10}}},
			{"mixed", []sinks.SearchRequest{
				{Vector: q1, TopK: 100, WithVectors: true},
				{Vector: q2, TopK: 5, Filter: sinks.Filter{VideoIDs: []string{"video-1", "video-4"}}},
				{Vector: q1, TopK: n + 1, Filter: sinks.Filter{StartFrom: &from, Sources: []string{"s3"}}},
				{Vector: q1, TopK: 3, Filter: sinks.Filter{VideoIDs: []string{"video-4"}}}, // deleted: no hits
				{Vector: q2, TopK: 1},
			}},
		} {
			got, err := s.SearchBatch(ctx, "c", tc.reqs)
			if err != nil {
				t.Fatalf("workers=%d %s: %v", workers, tc.name, err)
			}
			if len(got) != len(tc.reqs) {
				t.Fatalf("workers=%d %s: %d answers for %d requests", workers, tc.name, len(got), len(tc.reqs))
			}
			for i, req := range tc.reqs {
				want, err := s.Search(ctx, "c", req)
				if err != nil {
					t.Fatal(err)
				}
				if len(got[i]) != len(want) {
					t.Fatalf("workers=%d %s request %d: %d hits, alone %d", workers, tc.name, i, len(got[i]), len(want))
				}
				for j := range want {
					a, b := got[i][j], want[j]
					if a.ID != b.ID || a.Score != b.Score || !slices.Equal(a.Vector, b.Vector) || !samePayload(a.Payload, b.Payload) {
						t.Fatalf("workers=%d %s request %d rank %d: %s %v, alone %s %v", workers, tc.name, i, j, a.ID, a.Score, b.ID, b.Score)
					}
				}
			}
		}
	}
}

func TestSearchBatchErrors(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", []sinks.Point{{ID: "a", Vector: []float32{1, 0}}}); err != nil {
		t.Fatal(err)
	}
	good := sinks.SearchRequest{Vector: []float32{1, 1}, TopK: 1}
	for _, tc := range []struct {
		name string
		coll string
		reqs []sinks.SearchRequest
		want error
	}{
		{"zero top_k", "c", []sinks.SearchRequest{good, {Vector: []float32{1, 1}}}, ErrInvalid},
		{"wrong dimension", "c", []sinks.SearchRequest{{Vector: []float32{1}, TopK: 1}, good}, ErrInvalid},
		{"zero vector", "c", []sinks.SearchRequest{good, {Vector: []float32{0, 0}, TopK: 1}}, ErrInvalid},
		{"unknown collection", "nope", []sinks.SearchRequest{good}, sinks.ErrNotFound},
	} {
		hits, err := s.SearchBatch(ctx, tc.coll, tc.reqs)
		if !errors.Is(err, tc.want) || hits != nil {
			t.Errorf("%s: %d answers, err %v, want %v", tc.name, len(hits), err, tc.want)
		}
	}
	if hits, err := s.SearchBatch(ctx, "c", nil); err != nil || len(hits) != 0 {
		t.Errorf("empty batch: %v, %v", hits, err)
	}
}
