package bench

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func TestScanMatchesFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ n, dim, k int }{
		{1, 4, 10}, {50, 8, 10}, {1000, 16, 100}, {300, 32, 1},
	} {
		flat := make([]float32, 0, tc.n*tc.dim)
		for range tc.n {
			flat = append(flat, unitVector(r, tc.dim)...)
		}
		q := unitVector(r, tc.dim)
		got := scan(flat, tc.dim, q, tc.k)

		scores := make([]float32, tc.n)
		idx := make([]int, tc.n)
		for i := range idx {
			idx[i] = i
			for j := range tc.dim {
				scores[i] += flat[i*tc.dim+j] * q[j]
			}
		}
		sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
		want := idx[:min(tc.k, tc.n)]
		if !slices.Equal(got, want) {
			t.Errorf("n=%d k=%d: scan %v, full sort %v", tc.n, tc.k, got, want)
		}
	}
}

func TestPercentileAndMedian(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tc := range []struct {
		p    float64
		want float64
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := percentile(v, tc.p); got != tc.want {
			t.Errorf("p%.0f = %g, want %g", tc.p, got, tc.want)
		}
	}
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median = %g, want 2", got)
	}
	if !slices.Equal(v, []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}) {
		t.Error("percentile reordered its input")
	}
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		wantClips int
		wantErr   bool
	}{
		{"full", Config{CacheDir: "x"}, 100_000, false},
		{"quick", Config{CacheDir: "x", Quick: true}, 2000, false},
		{"explicit", Config{CacheDir: "x", Clips: 7}, 7, false},
		{"negative threads", Config{CacheDir: "x", Threads: -1}, 0, true},
		{"negative clips", Config{CacheDir: "x", Clips: -1}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.defaults()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (tc.cfg.Clips != tc.wantClips || tc.cfg.Threads <= 0) {
				t.Errorf("clips %d threads %d, want clips %d and threads > 0", tc.cfg.Clips, tc.cfg.Threads, tc.wantClips)
			}
		})
	}
}
