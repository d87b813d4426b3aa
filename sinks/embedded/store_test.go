package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/sinks"
)

var quiet = slog.New(slog.DiscardHandler)

func testSpec(name string, dim int) sinks.CollectionSpec {
	return sinks.CollectionSpec{Name: name, Dim: dim, Distance: "cosine", Model: "clip-vit-b32", Pooling: "mean"}
}

// openStore opens dir and closes the store when the test ends unless the
// test already did.
func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// crash drops the store the way a killed process would: no compaction, no
// final sync, files and lock simply released.
func crash(s *Store) {
	s.mu.Lock()
	s.closed = true
	colls := s.colls
	s.colls = nil
	s.mu.Unlock()
	for _, c := range colls {
		c.wmu.Lock()
		c.mu.Lock()
		c.f.Close()
		c.closed = true
		c.mu.Unlock()
		c.wmu.Unlock()
	}
	s.lock.Close()
}

func randVec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

var baseTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// makePoints builds n points spread over videos videos and two sources, with
// start times cycling through 0, 2, ..., 18 seconds.
func makePoints(r *rand.Rand, prefix string, n, dim, videos int) []sinks.Point {
	pts := make([]sinks.Point, n)
	for i := range pts {
		start := float64(i%10) * 2
		pts[i] = sinks.Point{
			ID:     fmt.Sprintf("%s-%05d", prefix, i),
			Vector: randVec(r, dim),
			Payload: sinks.Payload{
				VideoID:    fmt.Sprintf("video-%d", i%videos),
				Source:     []string{"youtube", "s3"}[i%2],
				ClipIndex:  i,
				StartS:     start,
				EndS:       start + 2,
				Frames:     8,
				IngestedAt: baseTime.Add(time.Duration(i) * time.Second),
				Metadata:   map[string]string{"title": "clip " + fmt.Sprint(i)},
			},
		}
	}
	return pts
}

func unit(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / math.Sqrt(s))
	}
	return out
}

func samePayload(a, b sinks.Payload) bool {
	return a.VideoID == b.VideoID && a.Source == b.Source && a.ClipIndex == b.ClipIndex &&
		a.StartS == b.StartS && a.EndS == b.EndS && a.Frames == b.Frames &&
		a.IngestedAt.Equal(b.IngestedAt) && len(a.Metadata) == len(b.Metadata) &&
		func() bool {
			for k, v := range a.Metadata {
				if b.Metadata[k] != v {
					return false
				}
			}
			return true
		}()
}

// allPoints reads every point back through Search, keyed by id.
func allPoints(t *testing.T, s *Store, coll string, dim int) map[string]sinks.Hit {
	t.Helper()
	ctx := context.Background()
	n, err := s.Count(ctx, coll, sinks.Filter{})
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	out := make(map[string]sinks.Hit, n)
	if n == 0 {
		return out
	}
	q := make([]float32, dim)
	q[0] = 1
	hits, err := s.Search(ctx, coll, sinks.SearchRequest{Vector: q, TopK: n + 10, WithVectors: true})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(hits) != n {
		t.Fatalf("Search returned %d hits, Count says %d", len(hits), n)
	}
	for _, h := range hits {
		out[h.ID] = h
	}
	return out
}

// checkPoints asserts that the store holds exactly want.
func checkPoints(t *testing.T, s *Store, coll string, dim int, want []sinks.Point) {
	t.Helper()
	got := allPoints(t, s, coll, dim)
	if len(got) != len(want) {
		t.Fatalf("store holds %d points, want %d", len(got), len(want))
	}
	for _, w := range want {
		h, ok := got[w.ID]
		if !ok {
			t.Fatalf("point %s missing", w.ID)
		}
		if !samePayload(h.Payload, w.Payload) {
			t.Fatalf("point %s payload = %+v, want %+v", w.ID, h.Payload, w.Payload)
		}
		if !slices.Equal(h.Vector, unit(w.Vector)) {
			t.Fatalf("point %s vector differs from the normalised input", w.ID)
		}
	}
}

func TestRestartKeepsPointsAndPayloads(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stop   func(*Store) error
		noSync bool
	}{
		{"close", (*Store).Close, false},
		{"crash", func(s *Store) error { crash(s); return nil }, false},
		{"close without sync", (*Store).Close, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			const dim = 16
			r := rand.New(rand.NewPCG(1, 2))
			pts := makePoints(r, "p", 200, dim, 7)

			s := openStore(t, dir, Options{NoSync: tc.noSync})
			if err := s.EnsureCollection(ctx, testSpec("clips", dim)); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(pts); i += 50 {
				if err := s.Upsert(ctx, "clips", pts[i:i+50]); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.stop(s); err != nil {
				t.Fatalf("stop: %v", err)
			}

			s2 := openStore(t, dir, Options{})
			spec, err := s2.Collection(ctx, "clips")
			if err != nil {
				t.Fatal(err)
			}
			if spec != testSpec("clips", dim) {
				t.Fatalf("spec after restart = %+v", spec)
			}
			checkPoints(t, s2, "clips", dim, pts)
		})
	}
}

func TestUpsertSameIDReplaces(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const dim = 8
	r := rand.New(rand.NewPCG(3, 4))
	pts := makePoints(r, "p", 20, dim, 3)

	s := openStore(t, dir, Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	// Redelivery of the same batch must be a no-op for the count.
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	// A changed payload and vector under the same ids replace the old ones,
	// including a duplicate id inside one batch where the last one wins.
	updated := makePoints(r, "p", 20, dim, 3)
	for i := range updated {
		updated[i].Payload.Source = "reindexed"
		updated[i].Payload.Metadata = map[string]string{"rev": "2"}
	}
	batch := append(slices.Clone(updated[:1]), updated...)
	batch[0].Payload.Source = "stale"
	if err := s.Upsert(ctx, "c", batch); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, "c", sinks.Filter{}); n != len(pts) {
		t.Fatalf("Count after duplicate upserts = %d, want %d", n, len(pts))
	}
	checkPoints(t, s, "c", dim, updated)

	crash(s)
	s2 := openStore(t, dir, Options{})
	checkPoints(t, s2, "c", dim, updated)
}

// refSearch is an independent float64 brute force over the inputs; units
// holds the normalised vector of each point.
func refSearch(pts []sinks.Point, units [][]float32, q []float32, k int, f sinks.Filter) []sinks.Hit {
	qu := unit(q)
	var hits []sinks.Hit
	for i, p := range pts {
		if !f.Match(p.Payload) {
			continue
		}
		pu := units[i]
		var s float64
		for i := range qu {
			s += float64(qu[i]) * float64(pu[i])
		}
		hits = append(hits, sinks.Hit{Point: p, Score: float32(s)})
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].Score != hits[j].Score {
			return hits[i].Score > hits[j].Score
		}
		return hits[i].ID < hits[j].ID
	})
	return hits[:min(k, len(hits))]
}

// compareHits checks ranks against the reference; where two reference scores
// are closer than float32 rounding can separate, either order is accepted.
func compareHits(t *testing.T, got, want []sinks.Hit) {
	t.Helper()
	const eps = 1e-5
	if len(got) != len(want) {
		t.Fatalf("got %d hits, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i].Score-want[i].Score)) > eps {
			t.Fatalf("rank %d: score %v, want %v", i, got[i].Score, want[i].Score)
		}
		if i > 0 && got[i].Score > got[i-1].Score {
			t.Fatalf("rank %d: scores not descending", i)
		}
		if got[i].ID == want[i].ID {
			continue
		}
		near := func(j int) bool {
			return j >= 0 && j < len(want) && math.Abs(float64(want[j].Score-want[i].Score)) <= eps
		}
		if !near(i-1) && !near(i+1) {
			t.Fatalf("rank %d: id %s (%v), want %s (%v)", i, got[i].ID, got[i].Score, want[i].ID, want[i].Score)
		}
	}
}

func TestSearchMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	const dim, n = 48, 2000
	r := rand.New(rand.NewPCG(5, 6))
	pts := makePoints(r, "p", n, dim, 40)
	units := make([][]float32, n)
	for i, p := range pts {
		units[i] = unit(p.Vector)
	}
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	from, to := 4.0, 10.0
	filters := map[string]sinks.Filter{
		"none":   {},
		"videos": {VideoIDs: []string{"video-3", "video-17"}},
		"range":  {StartFrom: &from, StartTo: &to},
	}
	for fname, f := range filters {
		for _, k := range []int{1, 10, 100, n + 5} {
			t.Run(fmt.Sprintf("%s/k=%d", fname, k), func(t *testing.T) {
				for range 3 {
					q := randVec(r, dim)
					got, err := s.Search(ctx, "c", sinks.SearchRequest{Vector: q, TopK: k, Filter: f})
					if err != nil {
						t.Fatal(err)
					}
					compareHits(t, got, refSearch(pts, units, q, k, f))
					for _, h := range got {
						if h.Vector != nil {
							t.Fatal("vector returned without WithVectors")
						}
					}
				}
			})
		}
	}
}

func TestSearchTiesOrderedByID(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", 3)); err != nil {
		t.Fatal(err)
	}
	var pts []sinks.Point
	for _, id := range []string{"d", "b", "e", "a", "c"} {
		pts = append(pts, sinks.Point{ID: id, Vector: []float32{1, 1, 0}, Payload: sinks.Payload{VideoID: "v"}})
	}
	pts = append(pts, sinks.Point{ID: "0far", Vector: []float32{0, 0, 1}, Payload: sinks.Payload{VideoID: "v"}})
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[int][]string{
		1: {"a"},
		3: {"a", "b", "c"},
		6: {"a", "b", "c", "d", "e", "0far"},
	} {
		hits, err := s.Search(ctx, "c", sinks.SearchRequest{Vector: []float32{2, 2, 0}, TopK: k})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range hits {
			ids = append(ids, h.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("top %d = %v, want %v", k, ids, want)
		}
		if math.Abs(float64(hits[0].Score)-1) > 1e-6 {
			t.Errorf("score of identical direction = %v, want 1", hits[0].Score)
		}
	}
}

func TestFilters(t *testing.T) {
	ctx := context.Background()
	const dim = 8
	r := rand.New(rand.NewPCG(7, 8))
	pts := makePoints(r, "p", 300, dim, 6)
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name   string
		filter sinks.Filter
		want   int
	}{
		{"none", sinks.Filter{}, 300},
		{"one video", sinks.Filter{VideoIDs: []string{"video-2"}}, 50},
		{"two videos", sinks.Filter{VideoIDs: []string{"video-2", "video-5"}}, 100},
		{"unknown video", sinks.Filter{VideoIDs: []string{"nope"}}, 0},
		{"source", sinks.Filter{Sources: []string{"s3"}}, 150},
		{"both sources", sinks.Filter{Sources: []string{"s3", "youtube"}}, 300},
		{"start from", sinks.Filter{StartFrom: f(10)}, 150},
		{"start to", sinks.Filter{StartTo: f(3.9)}, 60},
		{"start range inclusive", sinks.Filter{StartFrom: f(4), StartTo: f(8)}, 90},
		{"video and source", sinks.Filter{VideoIDs: []string{"video-1"}, Sources: []string{"s3"}}, 50},
		{"video and wrong source", sinks.Filter{VideoIDs: []string{"video-2"}, Sources: []string{"s3"}}, 0},
		{"all three", sinks.Filter{VideoIDs: []string{"video-0", "video-1"}, Sources: []string{"youtube"}, StartFrom: f(0), StartTo: f(2)}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.Count(ctx, "c", tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Fatalf("Count = %d, want %d", n, tc.want)
			}
			hits, err := s.Search(ctx, "c", sinks.SearchRequest{Vector: randVec(r, dim), TopK: 1000, Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != tc.want {
				t.Fatalf("Search returned %d hits, want %d", len(hits), tc.want)
			}
			for _, h := range hits {
				if !tc.filter.Match(h.Payload) {
					t.Fatalf("hit %s with payload %+v does not match the filter", h.ID, h.Payload)
				}
			}
		})
	}
}

func TestDeleteVideoSurvivesRestart(t *testing.T) {
	for _, stop := range []string{"close", "crash"} {
		t.Run(stop, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			const dim = 8
			r := rand.New(rand.NewPCG(9, 10))
			pts := makePoints(r, "p", 100, dim, 4)
			s := openStore(t, dir, Options{})
			if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
				t.Fatal(err)
			}
			if err := s.Upsert(ctx, "c", pts); err != nil {
				t.Fatal(err)
			}
			n, err := s.DeleteVideo(ctx, "c", "video-1")
			if err != nil || n != 25 {
				t.Fatalf("DeleteVideo = %d, %v; want 25", n, err)
			}
			if n, err := s.DeleteVideo(ctx, "c", "video-1"); err != nil || n != 0 {
				t.Fatalf("second DeleteVideo = %d, %v; want 0", n, err)
			}
			if n, err := s.DeleteVideo(ctx, "c", "never-indexed"); err != nil || n != 0 {
				t.Fatalf("DeleteVideo of unknown video = %d, %v; want 0", n, err)
			}
			// Re-adding one clip after the delete must survive replay, which
			// applies the delete before it.
			readd := pts[1]
			if err := s.Upsert(ctx, "c", []sinks.Point{readd}); err != nil {
				t.Fatal(err)
			}
			var want []sinks.Point
			for _, p := range pts {
				if p.Payload.VideoID != "video-1" || p.ID == readd.ID {
					want = append(want, p)
				}
			}
			checkPoints(t, s, "c", dim, want)

			if stop == "crash" {
				crash(s)
			} else if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2 := openStore(t, dir, Options{})
			checkPoints(t, s2, "c", dim, want)
			if n, _ := s2.Count(ctx, "c", sinks.Filter{VideoIDs: []string{"video-1"}}); n != 1 {
				t.Fatalf("video-1 has %d points after restart, want 1", n)
			}
		})
	}
}

func TestEnsureCollection(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{NoSync: true})
	spec := testSpec("clips", 4)
	if err := s.EnsureCollection(ctx, spec); err != nil {
		t.Fatal(err)
	}
	pts := []sinks.Point{{ID: "a", Vector: []float32{1, 2, 3, 4}, Payload: sinks.Payload{VideoID: "v"}}}
	if err := s.Upsert(ctx, "clips", pts); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx, spec); err != nil {
		t.Fatalf("same spec again: %v", err)
	}
	specFile := filepath.Join(dir, "clips", specName)
	before, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*sinks.CollectionSpec)
	}{
		{"dim", func(c *sinks.CollectionSpec) { c.Dim = 8 }},
		{"model", func(c *sinks.CollectionSpec) { c.Model = "other" }},
		{"pooling", func(c *sinks.CollectionSpec) { c.Pooling = "max" }},
	} {
		t.Run("incompatible "+tc.name, func(t *testing.T) {
			other := spec
			tc.mutate(&other)
			if err := s.EnsureCollection(ctx, other); !errors.Is(err, sinks.ErrIncompatible) {
				t.Fatalf("EnsureCollection(%+v) = %v, want ErrIncompatible", other, err)
			}
			if n, _ := s.Count(ctx, "clips", sinks.Filter{}); n != 1 {
				t.Fatalf("Count = %d after refused spec, want 1", n)
			}
			if got, _ := s.Collection(ctx, "clips"); got != spec {
				t.Fatalf("spec changed to %+v", got)
			}
		})
	}
	after, _ := os.ReadFile(specFile)
	if string(before) != string(after) {
		t.Fatal("collection.json rewritten by a refused EnsureCollection")
	}

	for _, tc := range []struct {
		name string
		spec sinks.CollectionSpec
	}{
		{"empty name", testSpec("", 4)},
		{"parent dir", testSpec("..", 4)},
		{"traversal", testSpec("../evil", 4)},
		{"separator", testSpec("a/b", 4)},
		{"hidden", testSpec(".tmp-x", 4)},
		{"space", testSpec("a b", 4)},
		{"too long", testSpec(string(make([]byte, 129)), 4)},
		{"zero dim", testSpec("z", 0)},
		{"negative dim", testSpec("z", -1)},
		{"distance", sinks.CollectionSpec{Name: "z", Dim: 4, Distance: "dot"}},
	} {
		t.Run("invalid "+tc.name, func(t *testing.T) {
			if err := s.EnsureCollection(ctx, tc.spec); !errors.Is(err, ErrInvalid) {
				t.Fatalf("EnsureCollection(%+v) = %v, want ErrInvalid", tc.spec, err)
			}
		})
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{lockName, "clips"}) && !slices.Equal(names, []string{"clips", lockName}) {
		t.Fatalf("data directory holds %v", names)
	}

	// The refusal must hold across a restart too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, Options{})
	if err := s2.EnsureCollection(ctx, testSpec("clips", 8)); !errors.Is(err, sinks.ErrIncompatible) {
		t.Fatalf("after restart: %v, want ErrIncompatible", err)
	}
	if n, _ := s2.Count(ctx, "clips", sinks.Filter{}); n != 1 {
		t.Fatalf("Count after restart = %d, want 1", n)
	}
}

func TestUnknownCollection(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	calls := map[string]func() error{
		"Upsert": func() error {
			return s.Upsert(ctx, "missing", []sinks.Point{{ID: "a", Vector: []float32{1}}})
		},
		"Search": func() error {
			_, err := s.Search(ctx, "missing", sinks.SearchRequest{Vector: []float32{1}, TopK: 1})
			return err
		},
		"DeleteVideo": func() error { _, err := s.DeleteVideo(ctx, "missing", "v"); return err },
		"Count":       func() error { _, err := s.Count(ctx, "missing", sinks.Filter{}); return err },
		"Collection":  func() error { _, err := s.Collection(ctx, "missing"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, sinks.ErrNotFound) {
			t.Errorf("%s on missing collection = %v, want ErrNotFound", name, err)
		}
	}
}

func TestInvalidInputRejected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", 3)); err != nil {
		t.Fatal(err)
	}
	good := sinks.Point{ID: "good", Vector: []float32{1, 0, 0}, Payload: sinks.Payload{VideoID: "v"}}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		pt   sinks.Point
	}{
		{"short vector", sinks.Point{ID: "x", Vector: []float32{1, 2}}},
		{"long vector", sinks.Point{ID: "x", Vector: []float32{1, 2, 3, 4}}},
		{"nil vector", sinks.Point{ID: "x"}},
		{"NaN", sinks.Point{ID: "x", Vector: []float32{1, nan, 0}}},
		{"+Inf", sinks.Point{ID: "x", Vector: []float32{inf, 0, 0}}},
		{"-Inf", sinks.Point{ID: "x", Vector: []float32{0, -inf, 0}}},
		{"zero vector", sinks.Point{ID: "x", Vector: []float32{0, 0, 0}}},
		{"empty id", sinks.Point{Vector: []float32{1, 0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The valid point in the same batch must not be written either.
			err := s.Upsert(ctx, "c", []sinks.Point{good, tc.pt})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Upsert = %v, want ErrInvalid", err)
			}
			if n, _ := s.Count(ctx, "c", sinks.Filter{}); n != 0 {
				t.Fatalf("Count = %d after rejected batch, want 0", n)
			}
		})
	}
	info, err := os.Stat(filepath.Join(dir, "c", logName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != int64(logHeaderSize) {
		t.Fatalf("log grew to %d bytes from rejected batches", info.Size())
	}

	if err := s.Upsert(ctx, "c", []sinks.Point{good}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  sinks.SearchRequest
	}{
		{"query dim", sinks.SearchRequest{Vector: []float32{1, 0}, TopK: 1}},
		{"query NaN", sinks.SearchRequest{Vector: []float32{nan, 0, 0}, TopK: 1}},
		{"query zero", sinks.SearchRequest{Vector: []float32{0, 0, 0}, TopK: 1}},
		{"top_k zero", sinks.SearchRequest{Vector: []float32{1, 0, 0}, TopK: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Search(ctx, "c", tc.req); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Search = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestResultsDoNotAliasStore(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	if err := s.EnsureCollection(ctx, testSpec("c", 2)); err != nil {
		t.Fatal(err)
	}
	in := sinks.Point{ID: "a", Vector: []float32{3, 4}, Payload: sinks.Payload{VideoID: "v", Metadata: map[string]string{"k": "orig"}}}
	if err := s.Upsert(ctx, "c", []sinks.Point{in}); err != nil {
		t.Fatal(err)
	}
	in.Vector[0] = 100
	in.Payload.Metadata["k"] = "caller changed input"
	req := sinks.SearchRequest{Vector: []float32{1, 0}, TopK: 1, WithVectors: true}
	hits, _ := s.Search(ctx, "c", req)
	hits[0].Vector[0] = 100
	hits[0].Payload.Metadata["k"] = "caller changed result"
	hits, _ = s.Search(ctx, "c", req)
	if !slices.Equal(hits[0].Vector, []float32{0.6, 0.8}) {
		t.Fatalf("stored vector = %v, want [0.6 0.8]", hits[0].Vector)
	}
	if hits[0].Payload.Metadata["k"] != "orig" {
		t.Fatalf("stored metadata = %v", hits[0].Payload.Metadata)
	}
}

func TestClosedStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	if err := s.EnsureCollection(ctx, testSpec("c", 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	errs := map[string]error{
		"EnsureCollection": s.EnsureCollection(ctx, testSpec("d", 2)),
		"Upsert":           s.Upsert(ctx, "c", []sinks.Point{{ID: "a", Vector: []float32{1, 0}}}),
	}
	_, errs["Search"] = s.Search(ctx, "c", sinks.SearchRequest{Vector: []float32{1, 0}, TopK: 1})
	_, errs["DeleteVideo"] = s.DeleteVideo(ctx, "c", "v")
	_, errs["Count"] = s.Count(ctx, "c", sinks.Filter{})
	_, errs["Collection"] = s.Collection(ctx, "c")
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	if _, err := Open(dir, Options{Logger: quiet}); err == nil {
		t.Fatal("second Open of a directory in use succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openStore(t, dir, Options{})
}

func TestCancelledContext(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{NoSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.EnsureCollection(ctx, testSpec("c", 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("EnsureCollection with cancelled context = %v", err)
	}
}

func TestConcurrentUpsertAndSearch(t *testing.T) {
	ctx := context.Background()
	const dim, writers, batches, batchSize = 16, 3, 10, 10
	dir := t.TempDir()
	// A tiny threshold makes compaction run while searches are in flight.
	s := openStore(t, dir, Options{NoSync: true, CompactMinDead: 10})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	done := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			pts := makePoints(r, fmt.Sprintf("w%d", w), batches*batchSize, dim, 5)
			for b := range batches {
				// Each batch is written twice so compaction has dead records.
				for range 2 {
					if err := s.Upsert(ctx, "c", pts[b*batchSize:(b+1)*batchSize]); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for i := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for {
				select {
				case <-done:
					return
				default:
				}
				hits, err := s.Search(ctx, "c", sinks.SearchRequest{Vector: randVec(r, dim), TopK: 5, WithVectors: true})
				if err != nil {
					errc <- err
					return
				}
				for j := 1; j < len(hits); j++ {
					if hits[j].Score > hits[j-1].Score {
						errc <- fmt.Errorf("unsorted hits %v", hits)
						return
					}
				}
				if _, err := s.Count(ctx, "c", sinks.Filter{Sources: []string{"s3"}}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	const want = writers * batches * batchSize
	if n, _ := s.Count(ctx, "c", sinks.Filter{}); n != want {
		t.Fatalf("Count = %d, want %d", n, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, Options{})
	if n, _ := s2.Count(ctx, "c", sinks.Filter{}); n != want {
		t.Fatalf("Count after restart = %d, want %d", n, want)
	}
}
