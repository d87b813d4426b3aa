// Package storetest is the conformance suite of sinks.Store: every store
// (the embedded one, Qdrant) must pass it, so that the index and query
// stages behave the same on either. It also holds the benchmarks that
// compare stores through the interface.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/sinks"
)

// Opener opens a store over one backing state (a data directory, a server).
// The suite closes each store before it opens the next, so a second call
// stands for a restart of the process and, where there is one, the server.
type Opener func(t testing.TB) sinks.Store

// Setup creates fresh backing state for one test and returns its opener.
// Collections the suite creates start with CollectionPrefix, for backends
// whose state outlives the test and must be cleaned up.
type Setup func(t *testing.T) Opener

// CollectionPrefix starts the name of every collection the suite creates.
const CollectionPrefix = "vidxconf_"

const (
	dim   = 16
	model = "conformance-model"
)

// Run runs the suite, one subtest per behaviour, each on fresh state.
// Searches whose rankings it checks ask for exact search: a store may search
// approximately otherwise (Qdrant's HNSW once a collection is indexed).
func Run(t *testing.T, setup Setup) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"Collections", testCollections},
		{"SearchOrderAndPayload", testSearchOrder},
		{"TopKBeyondCollection", testTopKBeyond},
		{"IdempotentUpsert", testIdempotent},
		{"Filters", testFilters},
		{"DeleteVideo", testDelete},
		{"ReplaceGeneration", testReplaceGeneration},
		{"KillBetweenUpsertAndDelete", testKillBetween},
		{"InvalidInput", testInvalid},
		{"MissingCollection", testMissing},
		{"Restart", testRestart},
		{"LargeBatch", testLargeBatch},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, setup(t))
		})
	}
}

// Spec returns the spec the suite uses for a collection name.
func Spec(name string) sinks.CollectionSpec {
	return sinks.CollectionSpec{Name: name, Dim: dim, Distance: "cosine", Model: model, Pooling: "meanP"}
}

func collectionName(t testing.TB) string {
	return fmt.Sprintf("%s%08x", CollectionPrefix, rand.Uint32())
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openFresh opens a store and creates the suite's collection in it.
func openFresh(t testing.TB, open Opener) (sinks.Store, string) {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { s.Close() })
	name := collectionName(t)
	if err := s.EnsureCollection(ctxFor(t), Spec(name)); err != nil {
		t.Fatalf("EnsureCollection(%s): %v", name, err)
	}
	return s, name
}

var baseTime = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

// Points returns n points of dimension d spread over videos videos and two
// sources, with starts cycling 0, 2, ..., 18 s, ids from sinks.PointID.
func Points(r *rand.Rand, n, d, videos int) []sinks.Point {
	pts := make([]sinks.Point, n)
	for i := range pts {
		video := fmt.Sprintf("video-%02d", i%videos)
		start := float64((i/videos)%10) * 2
		end := start + 2
		// Distinct segments per point even when starts repeat.
		end += float64(i/(videos*10)) * 0.001
		pts[i] = sinks.Point{
			ID:     sinks.PointID(video, start, end, model),
			Vector: randVec(r, d),
			Payload: sinks.Payload{
				VideoID:    video,
				Source:     []string{"cam-a", "cam-b"}[i%2],
				ClipIndex:  i / videos,
				StartS:     start,
				EndS:       end,
				Frames:     1 + i%12,
				IngestedAt: baseTime.Add(time.Duration(i) * time.Second),
				Metadata:   map[string]string{"lang": []string{"en", "de", "fr"}[i%3], "seq": fmt.Sprint(i)},
			},
		}
	}
	return pts
}

func randVec(r *rand.Rand, d int) []float32 {
	v := make([]float32, d)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func upsert(t testing.TB, s sinks.Store, name string, pts []sinks.Point) {
	t.Helper()
	if err := s.Upsert(ctxFor(t), name, pts); err != nil {
		t.Fatalf("Upsert %d points: %v", len(pts), err)
	}
}

func count(t testing.TB, s sinks.Store, name string, f sinks.Filter) int {
	t.Helper()
	n, err := s.Count(ctxFor(t), name, f)
	if err != nil {
		t.Fatalf("Count(%+v): %v", f, err)
	}
	return n
}

func unit(v []float32) []float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x) / math.Sqrt(s)
	}
	return out
}

// model is what the suite expects a store to hold.
type reference map[string]sinks.Point

func refOf(pts ...[]sinks.Point) reference {
	ref := reference{}
	for _, list := range pts {
		for _, p := range list {
			ref[p.ID] = p
		}
	}
	return ref
}

func (ref reference) score(q []float32, id string) float64 {
	a, b := unit(q), unit(ref[id].Vector)
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// top is the exact answer: matching points by descending cosine.
func (ref reference) top(q []float32, k int, f sinks.Filter) []string {
	var ids []string
	for id, p := range ref {
		if f.Match(p.Payload) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		si, sj := ref.score(q, ids[i]), ref.score(q, ids[j])
		if si != sj {
			return si > sj
		}
		return ids[i] < ids[j]
	})
	if len(ids) > k {
		ids = ids[:k]
	}
	return ids
}

func (ref reference) count(f sinks.Filter) int {
	n := 0
	for _, p := range ref {
		if f.Match(p.Payload) {
			n++
		}
	}
	return n
}

const scoreTol = 1e-4

// checkRanking compares hits with the exact answer. Two points may trade
// places only when their scores tie within the tolerance.
func checkRanking(t testing.TB, ref reference, q []float32, hits []sinks.Hit, want []string) {
	t.Helper()
	if len(hits) != len(want) {
		t.Fatalf("got %d hits, want %d", len(hits), len(want))
	}
	for i, h := range hits {
		p, ok := ref[h.ID]
		if !ok {
			t.Fatalf("hit %d: unknown id %q", i, h.ID)
		}
		exact := ref.score(q, h.ID)
		if math.Abs(float64(h.Score)-exact) > scoreTol {
			t.Errorf("hit %d (%s): score %.6f, cosine is %.6f", i, h.ID, h.Score, exact)
		}
		if h.ID != want[i] && math.Abs(exact-ref.score(q, want[i])) > scoreTol {
			t.Errorf("rank %d: got %s (%.6f), want %s (%.6f)", i, h.ID, exact, want[i], ref.score(q, want[i]))
		}
		if i > 0 && h.Score > hits[i-1].Score+scoreTol {
			t.Errorf("hits %d and %d out of order: %.6f after %.6f", i-1, i, h.Score, hits[i-1].Score)
		}
		checkPayload(t, h.ID, h.Payload, p.Payload)
	}
}

func checkPayload(t testing.TB, id string, got, want sinks.Payload) {
	t.Helper()
	if got.VideoID != want.VideoID || got.Source != want.Source || got.ClipIndex != want.ClipIndex ||
		got.StartS != want.StartS || got.EndS != want.EndS || got.Frames != want.Frames {
		t.Errorf("%s: payload %+v, want %+v", id, got, want)
	}
	if !got.IngestedAt.Equal(want.IngestedAt) {
		t.Errorf("%s: ingested_at %s, want %s", id, got.IngestedAt, want.IngestedAt)
	}
	if len(got.Metadata) != len(want.Metadata) || (len(want.Metadata) > 0 && !maps.Equal(got.Metadata, want.Metadata)) {
		t.Errorf("%s: metadata %v, want %v", id, got.Metadata, want.Metadata)
	}
}

func testCollections(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s := open(t)
	defer s.Close()
	name := collectionName(t)
	spec := Spec(name)

	if _, err := s.Collection(ctx, name); !errors.Is(err, sinks.ErrNotFound) {
		t.Fatalf("Collection before creation: %v, want ErrNotFound", err)
	}
	if err := s.EnsureCollection(ctx, spec); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.EnsureCollection(ctx, spec); err != nil {
		t.Fatalf("ensure again with the same spec: %v", err)
	}
	got, err := s.Collection(ctx, name)
	if err != nil || got != spec {
		t.Fatalf("Collection = %+v, %v; want %+v", got, err, spec)
	}
	pts := Points(rand.New(rand.NewPCG(1, 2)), 20, dim, 4)
	upsert(t, s, name, pts)

	incompatible := []struct {
		what   string
		change func(*sinks.CollectionSpec)
	}{
		{"dimension", func(s *sinks.CollectionSpec) { s.Dim = dim * 2 }},
		{"model", func(s *sinks.CollectionSpec) { s.Model = "another-model" }},
		{"pooling", func(s *sinks.CollectionSpec) { s.Pooling = "seqTransf" }},
	}
	for _, c := range incompatible {
		other := spec
		c.change(&other)
		if err := s.EnsureCollection(ctx, other); !errors.Is(err, sinks.ErrIncompatible) {
			t.Errorf("ensure with another %s: %v, want ErrIncompatible", c.what, err)
		}
		if err := got.Compatible(other); err == nil {
			t.Errorf("spec with another %s reported compatible", c.what)
		}
	}
	invalid := []struct {
		what   string
		change func(*sinks.CollectionSpec)
	}{
		{"zero dimension", func(s *sinks.CollectionSpec) { s.Name += "_zero"; s.Dim = 0 }},
		{"dot distance", func(s *sinks.CollectionSpec) { s.Name += "_dot"; s.Distance = "dot" }},
		{"empty name", func(s *sinks.CollectionSpec) { s.Name = "" }},
	}
	for _, c := range invalid {
		other := spec
		c.change(&other)
		if err := s.EnsureCollection(ctx, other); !errors.Is(err, sinks.ErrInvalid) {
			t.Errorf("ensure with %s: %v, want ErrInvalid", c.what, err)
		}
	}
	// Refusals change nothing.
	if got, err := s.Collection(ctx, name); err != nil || got != spec {
		t.Errorf("after refusals Collection = %+v, %v; want %+v", got, err, spec)
	}
	if n := count(t, s, name, sinks.Filter{}); n != len(pts) {
		t.Errorf("after refusals count = %d, want %d", n, len(pts))
	}
}

func testSearchOrder(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(3, 4))
	pts := Points(r, 200, dim, 5)
	upsert(t, s, name, pts)
	ref := refOf(pts)
	if n := count(t, s, name, sinks.Filter{}); n != len(pts) {
		t.Fatalf("count = %d, want %d", n, len(pts))
	}
	for range 5 {
		q := randVec(r, dim)
		for _, withVectors := range []bool{false, true} {
			hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: q, TopK: 10, WithVectors: withVectors, Exact: true})
			if err != nil {
				t.Fatal(err)
			}
			checkRanking(t, ref, q, hits, ref.top(q, 10, sinks.Filter{}))
			for _, h := range hits {
				if !withVectors {
					if len(h.Vector) != 0 {
						t.Fatalf("%s: vector returned without being asked for", h.ID)
					}
					continue
				}
				want := unit(ref[h.ID].Vector)
				if len(h.Vector) != dim {
					t.Fatalf("%s: vector of %d dimensions, want %d", h.ID, len(h.Vector), dim)
				}
				for i := range want {
					if math.Abs(float64(h.Vector[i])-want[i]) > 1e-5 {
						t.Fatalf("%s: vector %v is not the stored vector normalised %v", h.ID, h.Vector, want)
					}
				}
			}
		}
	}
	// A stored vector is its own best match with cosine 1, whatever its
	// length.
	p := pts[17]
	scaled := slices.Clone(p.Vector)
	for i := range scaled {
		scaled[i] *= 7.5
	}
	hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: scaled, TopK: 1, Exact: true})
	if err != nil || len(hits) != 1 || hits[0].ID != p.ID || math.Abs(float64(hits[0].Score)-1) > scoreTol {
		t.Fatalf("self search = %+v, %v; want %s with score 1", hits, err, p.ID)
	}
}

func testTopKBeyond(t *testing.T, open Opener) {
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(5, 6))
	pts := Points(r, 30, dim, 3)
	upsert(t, s, name, pts)
	ref := refOf(pts)
	q := randVec(r, dim)
	hits, err := s.Search(ctxFor(t), name, sinks.SearchRequest{Vector: q, TopK: 1000, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRanking(t, ref, q, hits, ref.top(q, 1000, sinks.Filter{}))
}

func testIdempotent(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(7, 8))
	pts := Points(r, 50, dim, 5)
	upsert(t, s, name, pts)
	// A redelivered batch overwrites, it does not duplicate.
	upsert(t, s, name, pts)
	upsert(t, s, name, pts[10:20])
	if n := count(t, s, name, sinks.Filter{}); n != len(pts) {
		t.Fatalf("after redelivery count = %d, want %d", n, len(pts))
	}
	// Same ids with new vectors and payloads replace the old points.
	changed := slices.Clone(pts[:10])
	for i := range changed {
		changed[i].Vector = randVec(r, dim)
		changed[i].Payload.Frames = 99
		changed[i].Payload.Metadata = map[string]string{"rev": "2"}
	}
	upsert(t, s, name, changed)
	ref := refOf(pts, changed)
	if n := count(t, s, name, sinks.Filter{}); n != len(pts) {
		t.Fatalf("after replacing count = %d, want %d", n, len(pts))
	}
	for _, p := range changed[:3] {
		hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: p.Vector, TopK: 5, Exact: true})
		if err != nil {
			t.Fatal(err)
		}
		checkRanking(t, ref, p.Vector, hits, ref.top(p.Vector, 5, sinks.Filter{}))
		if hits[0].ID != p.ID || hits[0].Payload.Frames != 99 {
			t.Errorf("replaced point %s: top hit %s with frames %d", p.ID, hits[0].ID, hits[0].Payload.Frames)
		}
	}
	if err := s.Upsert(ctx, name, nil); err != nil {
		t.Errorf("empty upsert: %v", err)
	}
}

func ptr(f float64) *float64 { return &f }

// wall is the wall-clock time d after baseTime.
func wall(d time.Duration) *time.Time {
	t := baseTime.Add(d)
	return &t
}

// withWallClock gives three points in four a stream window's wall-clock
// start (10 s apart) and leaves the rest without, like clips of files.
func withWallClock(pts []sinks.Point) {
	for i := range pts {
		if i%4 != 0 {
			pts[i].Payload.WallStart = baseTime.Add(time.Duration(i) * 10 * time.Second)
		}
	}
}

// MetadataKeys are the metadata keys the suite filters on; a store that
// must be told which keys to index (Qdrant) is opened with them.
var MetadataKeys = []string{"lang", "seq"}

// filters is the table of filters the suite checks.
var filters = []struct {
	Name   string
	Filter sinks.Filter
}{
	{"none", sinks.Filter{}},
	{"one video", sinks.Filter{VideoIDs: []string{"video-03"}}},
	{"two videos", sinks.Filter{VideoIDs: []string{"video-01", "video-04"}}},
	{"unknown video", sinks.Filter{VideoIDs: []string{"nope"}}},
	{"source", sinks.Filter{Sources: []string{"cam-b"}}},
	{"both sources", sinks.Filter{Sources: []string{"cam-a", "cam-b"}}},
	{"start from (inclusive)", sinks.Filter{StartFrom: ptr(10)}},
	{"start to (inclusive)", sinks.Filter{StartTo: ptr(4)}},
	{"start window", sinks.Filter{StartFrom: ptr(4), StartTo: ptr(8)}},
	{"empty window", sinks.Filter{StartFrom: ptr(9), StartTo: ptr(3)}},
	{"video and source", sinks.Filter{VideoIDs: []string{"video-00", "video-02"}, Sources: []string{"cam-a"}}},
	{"everything", sinks.Filter{VideoIDs: []string{"video-00", "video-01", "video-02"}, Sources: []string{"cam-a"}, StartFrom: ptr(2), StartTo: ptr(12)}},
	{"metadata", sinks.Filter{Metadata: map[string]string{"lang": "de"}}},
	{"metadata, every key", sinks.Filter{Metadata: map[string]string{"lang": "en", "seq": "3"}}},
	{"metadata, one key differs", sinks.Filter{Metadata: map[string]string{"lang": "de", "seq": "3"}}},
	{"metadata, unknown value", sinks.Filter{Metadata: map[string]string{"lang": "xx"}}},
	{"metadata and source", sinks.Filter{Metadata: map[string]string{"lang": "fr"}, Sources: []string{"cam-b"}}},
	{"wall from (inclusive)", sinks.Filter{WallFrom: wall(500 * time.Second)}},
	{"wall to (inclusive)", sinks.Filter{WallTo: wall(300 * time.Second)}},
	{"wall window", sinks.Filter{WallFrom: wall(200 * time.Second), WallTo: wall(700 * time.Second)}},
	{"wall window and metadata", sinks.Filter{WallFrom: wall(200 * time.Second), WallTo: wall(900 * time.Second), Metadata: map[string]string{"lang": "en"}}},
	{"wall window before every window", sinks.Filter{WallTo: wall(-time.Second)}},
}

func testFilters(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(9, 10))
	pts := Points(r, 150, dim, 5)
	withWallClock(pts)
	upsert(t, s, name, pts)
	ref := refOf(pts)
	for _, f := range filters {
		want := ref.count(f.Filter)
		if n := count(t, s, name, f.Filter); n != want {
			t.Errorf("%s: count = %d, want %d", f.Name, n, want)
		}
		q := randVec(r, dim)
		hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: q, TopK: 8, Filter: f.Filter, Exact: true})
		if err != nil {
			t.Errorf("%s: search: %v", f.Name, err)
			continue
		}
		for _, h := range hits {
			if !f.Filter.Match(h.Payload) {
				t.Errorf("%s: hit %s with payload %+v does not match", f.Name, h.ID, h.Payload)
			}
		}
		checkRanking(t, ref, q, hits, ref.top(q, 8, f.Filter))
		if f.Name != "none" && want == 0 && !strings.Contains(f.Name, "unknown") && !strings.Contains(f.Name, "differs") &&
			!strings.Contains(f.Name, "empty") && !strings.Contains(f.Name, "before") {
			t.Errorf("%s: the fixture has no point for this filter to find", f.Name)
		}
	}
	// The wall-clock start survives the round trip.
	got, err := s.Search(ctx, name, sinks.SearchRequest{Vector: pts[1].Vector, TopK: 1, Filter: sinks.Filter{VideoIDs: []string{pts[1].Payload.VideoID}, StartFrom: ptr(pts[1].Payload.StartS), StartTo: ptr(pts[1].Payload.StartS)}, Exact: true})
	if err != nil || len(got) != 1 {
		t.Fatalf("search for point 1: %v, %d hits", err, len(got))
	}
	if !got[0].Payload.WallStart.Equal(pts[1].Payload.WallStart) {
		t.Errorf("wall_start %v came back as %v", pts[1].Payload.WallStart, got[0].Payload.WallStart)
	}
}

func testDelete(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	pts := Points(rand.New(rand.NewPCG(11, 12)), 60, dim, 4)
	upsert(t, s, name, pts)
	ref := refOf(pts)
	victim := sinks.Filter{VideoIDs: []string{"video-02"}}
	want := ref.count(victim)
	n, err := s.DeleteVideo(ctx, name, "video-02")
	if err != nil || n != want {
		t.Fatalf("DeleteVideo = %d, %v; want %d", n, err, want)
	}
	if c := count(t, s, name, victim); c != 0 {
		t.Errorf("video-02 still has %d points", c)
	}
	if c := count(t, s, name, sinks.Filter{}); c != len(pts)-want {
		t.Errorf("count after delete = %d, want %d", c, len(pts)-want)
	}
	if n, err := s.DeleteVideo(ctx, name, "video-02"); err != nil || n != 0 {
		t.Errorf("second DeleteVideo = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteVideo(ctx, name, "never-indexed"); err != nil || n != 0 {
		t.Errorf("DeleteVideo of an unknown video = %d, %v; want 0", n, err)
	}
	for id, p := range ref {
		if p.Payload.VideoID == "video-02" {
			delete(ref, id)
		}
	}
	q := randVec(rand.New(rand.NewPCG(13, 14)), dim)
	hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: q, TopK: 100, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRanking(t, ref, q, hits, ref.top(q, 100, sinks.Filter{}))
	// A deleted clip can be indexed again under its id.
	upsert(t, s, name, pts[2:3])
	if c := count(t, s, name, victim); c != 1 {
		t.Errorf("re-indexed clip: video-02 has %d points, want 1", c)
	}
}

func testInvalid(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(15, 16))
	good := Points(r, 5, dim, 5)
	upsert(t, s, name, good[:2])

	nan := slices.Clone(good[3].Vector)
	nan[2] = float32(math.NaN())
	inf := slices.Clone(good[3].Vector)
	inf[0] = float32(math.Inf(1))
	// Squared norm 16 * 2.5e-9 = 4e-8, below sinks.MinSquaredNorm: Qdrant
	// would leave it unnormalised and score it about 0.
	tiny := make([]float32, dim)
	for i := range tiny {
		tiny[i] = 5e-5
	}
	cases := []struct {
		what string
		p    sinks.Point
	}{
		{"wrong dimension", sinks.Point{ID: good[3].ID, Vector: randVec(r, dim+1), Payload: good[3].Payload}},
		{"NaN component", sinks.Point{ID: good[3].ID, Vector: nan, Payload: good[3].Payload}},
		{"infinite component", sinks.Point{ID: good[3].ID, Vector: inf, Payload: good[3].Payload}},
		{"zero vector", sinks.Point{ID: good[3].ID, Vector: make([]float32, dim), Payload: good[3].Payload}},
		{"near-zero vector", sinks.Point{ID: good[3].ID, Vector: tiny, Payload: good[3].Payload}},
		{"empty id", sinks.Point{ID: "", Vector: good[3].Vector, Payload: good[3].Payload}},
	}
	for _, c := range cases {
		// The bad point rides with a good one: the whole call is refused.
		err := s.Upsert(ctx, name, []sinks.Point{good[2], c.p})
		if !errors.Is(err, sinks.ErrInvalid) {
			t.Errorf("upsert with %s: %v, want ErrInvalid", c.what, err)
		}
	}
	if n := count(t, s, name, sinks.Filter{}); n != 2 {
		t.Errorf("after refused upserts count = %d, want 2", n)
	}
	// Short but above the limit is a direction like any other.
	small := good[4]
	small.Vector = slices.Clone(small.Vector)
	for i := range small.Vector {
		small.Vector[i] *= 1e-3
	}
	upsert(t, s, name, []sinks.Point{small})
	hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: good[4].Vector, TopK: 1, Exact: true})
	if err != nil || len(hits) != 1 || hits[0].ID != small.ID || math.Abs(float64(hits[0].Score)-1) > scoreTol {
		t.Errorf("search for a short vector = %+v, %v; want %s with score 1", hits, err, small.ID)
	}
	searches := []struct {
		what string
		req  sinks.SearchRequest
	}{
		{"top_k 0", sinks.SearchRequest{Vector: good[0].Vector, TopK: 0}},
		{"wrong query dimension", sinks.SearchRequest{Vector: randVec(r, dim-1), TopK: 3}},
		{"NaN query", sinks.SearchRequest{Vector: nan, TopK: 3}},
		{"zero query", sinks.SearchRequest{Vector: make([]float32, dim), TopK: 3}},
		{"near-zero query", sinks.SearchRequest{Vector: tiny, TopK: 3}},
	}
	for _, c := range searches {
		if _, err := s.Search(ctx, name, c.req); !errors.Is(err, sinks.ErrInvalid) {
			t.Errorf("search with %s: %v, want ErrInvalid", c.what, err)
		}
	}
}

func testMissing(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s := open(t)
	defer s.Close()
	name := collectionName(t)
	p := Points(rand.New(rand.NewPCG(17, 18)), 1, dim, 1)
	if err := s.Upsert(ctx, name, p); !errors.Is(err, sinks.ErrNotFound) {
		t.Errorf("Upsert: %v, want ErrNotFound", err)
	}
	if _, err := s.Search(ctx, name, sinks.SearchRequest{Vector: p[0].Vector, TopK: 1}); !errors.Is(err, sinks.ErrNotFound) {
		t.Errorf("Search: %v, want ErrNotFound", err)
	}
	if _, err := s.Count(ctx, name, sinks.Filter{}); !errors.Is(err, sinks.ErrNotFound) {
		t.Errorf("Count: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteVideo(ctx, name, "v"); !errors.Is(err, sinks.ErrNotFound) {
		t.Errorf("DeleteVideo: %v, want ErrNotFound", err)
	}
}

func testRestart(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s := open(t)
	name := collectionName(t)
	spec := Spec(name)
	if err := s.EnsureCollection(ctx, spec); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(19, 20))
	pts := Points(r, 80, dim, 4)
	upsert(t, s, name, pts)
	if _, err := s.DeleteVideo(ctx, name, "video-01"); err != nil {
		t.Fatal(err)
	}
	q := randVec(r, dim)
	before, err := s.Search(ctx, name, sinks.SearchRequest{Vector: q, TopK: 20, WithVectors: true, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t)
	defer s.Close()
	if got, err := s.Collection(ctx, name); err != nil || got != spec {
		t.Fatalf("after restart Collection = %+v, %v; want %+v", got, err, spec)
	}
	ref := refOf(pts)
	for id, p := range ref {
		if p.Payload.VideoID == "video-01" {
			delete(ref, id)
		}
	}
	if n := count(t, s, name, sinks.Filter{}); n != len(ref) {
		t.Fatalf("after restart count = %d, want %d", n, len(ref))
	}
	after, err := s.Search(ctx, name, sinks.SearchRequest{Vector: q, TopK: 20, WithVectors: true, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRanking(t, ref, q, after, ref.top(q, 20, sinks.Filter{}))
	for i := range after {
		if after[i].ID != before[i].ID || !slices.Equal(after[i].Vector, before[i].Vector) {
			t.Errorf("rank %d: %s after restart, %s before", i, after[i].ID, before[i].ID)
		}
	}
	if err := s.EnsureCollection(ctx, spec); err != nil {
		t.Errorf("ensure after restart: %v", err)
	}
	other := spec
	other.Model = "another-model"
	if err := s.EnsureCollection(ctx, other); !errors.Is(err, sinks.ErrIncompatible) {
		t.Errorf("ensure with another model after restart: %v, want ErrIncompatible", err)
	}
	upsert(t, s, name, pts[:4])
	if n := count(t, s, name, sinks.Filter{}); n != len(ref)+1 {
		t.Errorf("write after restart: count = %d, want %d", n, len(ref)+1)
	}
}

func testLargeBatch(t *testing.T, open Opener) {
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(21, 22))
	pts := Points(r, 700, dim, 7)
	upsert(t, s, name, pts)
	if n := count(t, s, name, sinks.Filter{}); n != len(pts) {
		t.Fatalf("count = %d, want %d", n, len(pts))
	}
	ref := refOf(pts)
	q := randVec(r, dim)
	hits, err := s.Search(ctxFor(t), name, sinks.SearchRequest{Vector: q, TopK: 100, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRanking(t, ref, q, hits, ref.top(q, 100, sinks.Filter{}))
}

func testConcurrent(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(23, 24))
	pts := Points(r, 400, dim, 8)
	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := w * 100; i < (w+1)*100; i += 25 {
				if err := s.Upsert(ctx, name, pts[i:i+25]); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			q := pts[w].Vector
			for range 10 {
				hits, err := s.Search(ctx, name, sinks.SearchRequest{Vector: q, TopK: 5})
				if err != nil {
					errs <- err
					return
				}
				for i := 1; i < len(hits); i++ {
					if hits[i].Score > hits[i-1].Score+scoreTol {
						errs <- fmt.Errorf("hits out of order during writes: %v", hits)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := count(t, s, name, sinks.Filter{}); n != len(pts) {
		t.Errorf("count = %d, want %d", n, len(pts))
	}
}

// generation returns the clips of one ingest run of video: n windows of
// width w seconds, starting at 0, stamped with gen.
func generation(r *rand.Rand, video string, gen int64, n int, w float64) []sinks.Point {
	pts := make([]sinks.Point, n)
	for i := range pts {
		start, end := float64(i)*w, float64(i+1)*w
		pts[i] = sinks.Point{
			ID:     sinks.PointID(video, start, end, model),
			Vector: randVec(r, dim),
			Payload: sinks.Payload{
				VideoID: video, Source: "cam-a", ClipIndex: i, StartS: start, EndS: end, Frames: 2,
				IngestedAt: baseTime.Add(time.Duration(gen) * time.Microsecond), Generation: gen,
			},
		}
	}
	return pts
}

func genFilter(video string, gen int64) sinks.Filter {
	return sinks.Filter{VideoIDs: []string{video}, Generation: &gen}
}

// checkVideo compares what a search of video finds with want, exactly.
func checkVideo(t testing.TB, s sinks.Store, name, video string, want ...[]sinks.Point) {
	t.Helper()
	ref := refOf(want...)
	q := randVec(rand.New(rand.NewPCG(99, uint64(len(ref)))), dim)
	f := sinks.Filter{VideoIDs: []string{video}}
	hits, err := s.Search(ctxFor(t), name, sinks.SearchRequest{Vector: q, TopK: 100, Filter: f, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRanking(t, ref, q, hits, ref.top(q, 100, f))
	for _, h := range hits {
		if h.Payload.Generation != ref[h.ID].Payload.Generation {
			t.Errorf("%s: generation %d, want %d", h.ID, h.Payload.Generation, ref[h.ID].Payload.Generation)
		}
	}
}

// testReplaceGeneration is a re-ingested video: its new generation is
// written next to the old one, then DeleteOlder removes what the new run
// did not overwrite, points without a generation included, and nothing of
// other videos or newer generations.
func testReplaceGeneration(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s, name := openFresh(t, open)
	r := rand.New(rand.NewPCG(41, 42))
	const g1, g2, g3 = int64(1733500000000001), int64(1733500000000002), int64(1733500000000003)
	whole := generation(r, "beach", g1, 1, 5)   // whole-video clip [0, 5)
	windows := generation(r, "beach", g2, 3, 2) // [0,2) [2,4) [4,6)
	legacy := generation(r, "beach", 0, 1, 7)   // written before generations
	other := generation(r, "harbour", g1, 2, 5) // another video, older generation
	upsert(t, s, name, slices.Concat(whole, legacy, other))
	upsert(t, s, name, windows)

	// Between the two steps both runs are found.
	checkVideo(t, s, name, "beach", whole, legacy, windows)
	if n := count(t, s, name, genFilter("beach", g2)); n != len(windows) {
		t.Fatalf("count of the new generation = %d, want %d", n, len(windows))
	}
	if n := count(t, s, name, genFilter("beach", g1)); n != 1 {
		t.Fatalf("count of the old generation = %d, want 1", n)
	}

	n, err := s.DeleteOlder(ctx, name, "beach", g2)
	if err != nil || n != 2 {
		t.Fatalf("DeleteOlder = %d, %v; want the old whole clip and the legacy clip", n, err)
	}
	checkVideo(t, s, name, "beach", windows)
	checkVideo(t, s, name, "harbour", other)
	// Replayed, it finds nothing more; an older run's replace never touches
	// a newer run.
	if n, err := s.DeleteOlder(ctx, name, "beach", g2); err != nil || n != 0 {
		t.Errorf("second DeleteOlder = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteOlder(ctx, name, "beach", g1); err != nil || n != 0 {
		t.Errorf("DeleteOlder of an older generation = %d, %v; want 0", n, err)
	}
	checkVideo(t, s, name, "beach", windows)

	// A run that re-cuts the same windows overwrites them in place: the
	// replace then has nothing left to delete but the window it dropped.
	again := generation(r, "beach", g3, 2, 2)
	upsert(t, s, name, again)
	checkVideo(t, s, name, "beach", again, windows[2:])
	if n, err := s.DeleteOlder(ctx, name, "beach", g3); err != nil || n != 1 {
		t.Errorf("DeleteOlder after an overwrite = %d, %v; want 1", n, err)
	}
	checkVideo(t, s, name, "beach", again)
	if n := count(t, s, name, sinks.Filter{}); n != len(again)+len(other) {
		t.Errorf("count = %d, want %d", n, len(again)+len(other))
	}
	if _, err := s.DeleteOlder(ctx, name, "beach", -1); !errors.Is(err, sinks.ErrInvalid) {
		t.Errorf("DeleteOlder with a negative generation: %v, want ErrInvalid", err)
	}
}

// testKillBetween stops the process (and server) after the new generation
// is written and before the old one is deleted: after the restart both are
// found, never neither, and replaying the two steps completes the replace.
func testKillBetween(t *testing.T, open Opener) {
	ctx := ctxFor(t)
	s := open(t)
	name := collectionName(t)
	if err := s.EnsureCollection(ctx, Spec(name)); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(43, 44))
	const g1, g2 = int64(1733500000000010), int64(1733500000000020)
	old := generation(r, "beach", g1, 2, 5)
	upsert(t, s, name, old)
	if _, err := s.DeleteOlder(ctx, name, "beach", g1); err != nil {
		t.Fatal(err)
	}
	fresh := generation(r, "beach", g2, 5, 2)
	upsert(t, s, name, fresh)
	if err := s.Close(); err != nil { // killed before DeleteOlder
		t.Fatalf("Close: %v", err)
	}

	s = open(t)
	defer s.Close()
	checkVideo(t, s, name, "beach", old, fresh)
	// The redelivered batch is written again, then the replace runs.
	upsert(t, s, name, fresh)
	if n, err := s.DeleteOlder(ctx, name, "beach", g2); err != nil || n != len(old) {
		t.Fatalf("DeleteOlder after the restart = %d, %v; want %d", n, err, len(old))
	}
	checkVideo(t, s, name, "beach", fresh)
}
