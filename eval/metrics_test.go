package eval

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestTextToVideoRanks(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name  string
		sims  [][]float64
		truth []int
		want  []int
	}{
		{
			name: "distinct scores",
			sims: [][]float64{
				{0.9, 0.1, 0.3}, // ground truth best
				{0.5, 0.4, 0.6}, // ground truth last
				{0.2, 0.3, 0.7}, // ground truth best
			},
			truth: []int{0, 1, 2},
			want:  []int{1, 3, 1},
		},
		{
			name:  "a tie ranks the ground truth below the tied video",
			sims:  [][]float64{{0.2, 0.7, 0.7}, {0.2, 0.7, 0.7}},
			truth: []int{2, 1},
			want:  []int{2, 2},
		},
		{
			name:  "all equal is the worst rank",
			sims:  [][]float64{{0.5, 0.5, 0.5, 0.5}},
			truth: []int{0},
			want:  []int{4},
		},
		{
			name:  "NaN counts as minus infinity",
			sims:  [][]float64{{nan, 0.1, 0.2}, {0.3, nan, 0.1}},
			truth: []int{0, 0},
			want:  []int{3, 1},
		},
		{
			name:  "several captions of one video",
			sims:  [][]float64{{0.9, 0.8}, {0.4, 0.6}, {0.1, 0.2}},
			truth: []int{0, 0, 1},
			want:  []int{1, 2, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TextToVideoRanks(tt.sims, tt.truth)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ranks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVideoToTextRanks(t *testing.T) {
	tests := []struct {
		name  string
		sims  [][]float64
		truth []int
		want  []int
	}{
		{
			// Video 0's column is 0.2 0.8 0.7 0.95: its best caption (0.8)
			// is beaten by caption 3 of video 1. Video 1's column is
			// 0.9 0.1 0.3 0.5: its best (0.5) is beaten by caption 0.
			name:  "best caption's rank among all captions",
			sims:  [][]float64{{0.2, 0.9}, {0.8, 0.1}, {0.7, 0.3}, {0.95, 0.5}},
			truth: []int{0, 0, 1, 1},
			want:  []int{2, 2},
		},
		{
			// CLIP4Clip's multi-sentence rule (max per caption group, then
			// rank the groups), worked by hand. Groups: v0 = {c0, c1},
			// v1 = {c2, c3}, v2 = {c4}.
			// Column v0: c0..c4 = .5 .6 .7 .8 .1; groups v0 .6, v1 .8,
			//   v2 .1: rank 2. Ranking single captions would give 3, as
			//   both of v1's captions beat .6.
			// Column v1: .2 .9 .3 .4 .95; groups v0 .9, v1 .4, v2 .95:
			//   rank 3.
			// Column v2: .1 .1 .2 .1 .3; groups .1 .2 .3: rank 1.
			name: "several captions: groups ranked by their best caption",
			sims: [][]float64{
				{0.5, 0.2, 0.1},
				{0.6, 0.9, 0.1},
				{0.7, 0.3, 0.2},
				{0.8, 0.4, 0.1},
				{0.1, 0.95, 0.3},
			},
			truth: []int{0, 0, 1, 1, 2},
			want:  []int{2, 3, 1},
		},
		{
			// Column v0: groups v0 max(NaN, .4) = .4, v1 max(.5, NaN) = .5:
			// rank 2. Column v1: v0 max(.3, NaN->-Inf) = .3, v1 max(NaN,
			// .2) = .2: rank 2. A NaN caption counts as -Inf, as
			// tensor_video_to_text_sim sets it, and does not hide its
			// group's other captions.
			name:  "NaN captions inside groups",
			sims:  [][]float64{{math.NaN(), 0.3}, {0.4, math.NaN()}, {0.5, math.NaN()}, {math.NaN(), 0.2}},
			truth: []int{0, 0, 1, 1},
			want:  []int{2, 2},
		},
		{
			// A video's own captions never rank above its best one, tied or
			// not; another video's caption tied with it does.
			name:  "ties with own and other captions",
			sims:  [][]float64{{0.6, 0.1}, {0.6, 0.2}, {0.6, 0.9}},
			truth: []int{0, 0, 1},
			want:  []int{2, 1},
		},
		{
			name:  "one caption per video is the transposed problem",
			sims:  [][]float64{{0.9, 0.1, 0.3}, {0.5, 0.4, 0.6}, {0.2, 0.3, 0.7}},
			truth: []int{0, 1, 2},
			// columns: 0.9 0.5 0.2 -> 1; 0.1 0.4 0.3 -> 1; 0.3 0.6 0.7 -> 1
			want: []int{1, 1, 1},
		},
		{
			name:  "transposed with losses",
			sims:  [][]float64{{0.5, 0.9}, {0.6, 0.4}},
			truth: []int{0, 1},
			// column 0: own 0.5, other 0.6 -> 2; column 1: own 0.4, other 0.9 -> 2
			want: []int{2, 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VideoToTextRanks(tt.sims, tt.truth)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ranks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRanksRejectBadInput(t *testing.T) {
	tests := []struct {
		name  string
		sims  [][]float64
		truth []int
		want  string
	}{
		{"label count", [][]float64{{1, 2}}, []int{0, 1}, "1 rows for 2"},
		{"ragged", [][]float64{{1, 2}, {1}}, []int{0, 1}, "ragged"},
		{"label range", [][]float64{{1, 2}}, []int{2}, "out of range"},
		{"negative label", [][]float64{{1, 2}}, []int{-1}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := TextToVideoRanks(tt.sims, tt.truth); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("TextToVideoRanks err = %v, want %q", err, tt.want)
			}
			if _, err := VideoToTextRanks(tt.sims, tt.truth); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VideoToTextRanks err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := VideoToTextRanks([][]float64{{1, 2}}, []int{0}); err == nil || !strings.Contains(err.Error(), "video 1 has no caption") {
		t.Errorf("a video without captions: err = %v", err)
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name  string
		ranks []int
		want  Metrics
		// wantMdRMulti is SummarizeMultiSentence's median: only the median
		// of an even count differs.
		wantMdRMulti float64
	}{
		{"odd count", []int{1, 3, 2}, Metrics{R1: 100.0 / 3, R5: 100, R10: 100, MdR: 2, MnR: 2}, 2},
		{"even count takes the middle mean", []int{10, 1, 3, 2}, Metrics{R1: 25, R5: 75, R10: 100, MdR: 2.5, MnR: 4}, 2},
		{"recall bounds are inclusive", []int{5, 10, 11, 6}, Metrics{R1: 0, R5: 25, R10: 75, MdR: 8, MnR: 8}, 6},
		{"empty", nil, Metrics{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.ranks)
			if !closeMetrics(got, tt.want) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.ranks, got, tt.want)
			}
			multi := tt.want
			multi.MdR = tt.wantMdRMulti
			if got := SummarizeMultiSentence(tt.ranks); !closeMetrics(got, multi) {
				t.Errorf("SummarizeMultiSentence(%v) = %+v, want %+v", tt.ranks, got, multi)
			}
		})
	}
}

func TestMultiSentence(t *testing.T) {
	for _, tt := range []struct {
		truth []int
		want  bool
	}{
		{nil, false},
		{[]int{0, 1, 2}, false},
		{[]int{2, 0, 1}, false},
		{[]int{0, 1, 0}, true},
		{[]int{0, 0}, true},
	} {
		if got := MultiSentence(tt.truth); got != tt.want {
			t.Errorf("MultiSentence(%v) = %v, want %v", tt.truth, got, tt.want)
		}
	}
}

func closeMetrics(a, b Metrics) bool {
	eq := func(x, y float64) bool { return math.Abs(x-y) < 1e-9 }
	return eq(a.R1, b.R1) && eq(a.R5, b.R5) && eq(a.R10, b.R10) && eq(a.MdR, b.MdR) && eq(a.MnR, b.MnR)
}
