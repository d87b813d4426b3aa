// Package eval measures text-video retrieval on a captioned dataset with the
// metrics of CLIP4Clip and CLIP2TV (R@1, R@5, R@10, median and mean rank),
// ingesting the videos through vidx's own stages so that the numbers describe
// what a deployment returns.
package eval

import (
	"fmt"
	"math"
	"slices"
)

// Metrics is one row of the retrieval table, as CLIP4Clip's compute_metrics
// reports it: recalls in percent, ranks 1-based.
type Metrics struct {
	R1  float64 `json:"r1"`
	R5  float64 `json:"r5"`
	R10 float64 `json:"r10"`
	MdR float64 `json:"mdr"`
	MnR float64 `json:"mnr"`
}

// Summarize turns 1-based ranks into Metrics as CLIP4Clip's compute_metrics
// does. The median of an even number of ranks is the mean of the two middle
// ones, as numpy's median gives. An empty slice gives zero Metrics.
func Summarize(ranks []int) Metrics { return summarize(ranks, false) }

// SummarizeMultiSentence is Summarize as CLIP4Clip's
// tensor_text_to_video_metrics reports text-to-video when videos have
// several captions: its median is torch.median's, the lower of the two
// middle ranks of an even count.
func SummarizeMultiSentence(ranks []int) Metrics { return summarize(ranks, true) }

func summarize(ranks []int, lowerMedian bool) Metrics {
	n := len(ranks)
	if n == 0 {
		return Metrics{}
	}
	sorted := slices.Clone(ranks)
	slices.Sort(sorted)
	var m Metrics
	var sum float64
	for _, r := range sorted {
		sum += float64(r)
		if r <= 1 {
			m.R1++
		}
		if r <= 5 {
			m.R5++
		}
		if r <= 10 {
			m.R10++
		}
	}
	m.R1 = 100 * m.R1 / float64(n)
	m.R5 = 100 * m.R5 / float64(n)
	m.R10 = 100 * m.R10 / float64(n)
	m.MnR = sum / float64(n)
	switch {
	case n%2 == 1:
		m.MdR = float64(sorted[n/2])
	case lowerMedian:
		m.MdR = float64(sorted[n/2-1])
	default:
		m.MdR = float64(sorted[n/2-1]+sorted[n/2]) / 2
	}
	return m
}

// MultiSentence reports whether some video has more than one caption:
// CLIP4Clip's multi_sentence_per_video case, where eval_epoch reshapes the
// matrix per video and text-to-video is summarised by
// tensor_text_to_video_metrics.
func MultiSentence(truth []int) bool {
	seen := make(map[int]bool, len(truth))
	for _, v := range truth {
		if seen[v] {
			return true
		}
		seen[v] = true
	}
	return false
}

// summarizeT2V summarises text-to-video ranks with the rule CLIP4Clip uses
// for the dataset's shape.
func summarizeT2V(ranks, truth []int) Metrics {
	if MultiSentence(truth) {
		return SummarizeMultiSentence(ranks)
	}
	return Summarize(ranks)
}

// Ties: a candidate that scores exactly as high as the ground truth is
// counted as ranked above it. A model that gives every video the same score
// thus gets the worst rank rather than rank 1, so a degenerate model cannot
// look good. NaN scores count as -Inf (as in CLIP4Clip), so a NaN ground truth
// is ranked last.

// TextToVideoRanks returns, for each text (row of sims, [texts][videos]), the
// 1-based rank of its ground-truth video truth[i] among all videos: what
// CLIP4Clip's compute_metrics (one caption per video) and
// tensor_text_to_video_metrics (several) compute per caption.
func TextToVideoRanks(sims [][]float64, truth []int) ([]int, error) {
	videos, err := checkMatrix(sims, truth)
	if err != nil {
		return nil, err
	}
	ranks := make([]int, len(sims))
	for i, row := range sims {
		gt := score(row[truth[i]])
		rank := 1
		for j := range videos {
			if j != truth[i] && score(row[j]) >= gt {
				rank++
			}
		}
		ranks[i] = rank
	}
	return ranks, nil
}

// VideoToTextRanks returns, for each video (column of sims, [texts][videos]),
// the 1-based rank of its own caption group among all videos' caption
// groups, CLIP4Clip's multi-sentence protocol (metrics.py,
// tensor_video_to_text_sim followed by compute_metrics): a group's score for
// a video is the maximum over that group's captions, and the video's rank is
// 1 plus the number of other groups whose score is at least its own group's.
// A group counts once however many of its captions beat the video's own, so
// there are as many candidates as videos. With one caption per video this is
// compute_metrics on the transposed matrix. Every video needs at least one
// caption.
func VideoToTextRanks(sims [][]float64, truth []int) ([]int, error) {
	videos, err := checkMatrix(sims, truth)
	if err != nil {
		return nil, err
	}
	has := make([]bool, videos)
	for _, v := range truth {
		has[v] = true
	}
	for v, ok := range has {
		if !ok {
			return nil, fmt.Errorf("video %d has no caption", v)
		}
	}
	ranks := make([]int, videos)
	group := make([]float64, videos)
	for v := range videos {
		// group[g]: the best score any caption of video g gives video v.
		for g := range group {
			group[g] = math.Inf(-1)
		}
		for i, row := range sims {
			group[truth[i]] = math.Max(group[truth[i]], score(row[v]))
		}
		rank := 1
		for g, s := range group {
			if g != v && s >= group[v] {
				rank++
			}
		}
		ranks[v] = rank
	}
	return ranks, nil
}

func score(s float64) float64 {
	if math.IsNaN(s) {
		return math.Inf(-1)
	}
	return s
}

// checkMatrix validates a [texts][videos] matrix against its ground truth
// and returns the number of videos.
func checkMatrix(sims [][]float64, truth []int) (int, error) {
	if len(sims) != len(truth) {
		return 0, fmt.Errorf("similarity matrix has %d rows for %d ground-truth labels", len(sims), len(truth))
	}
	if len(sims) == 0 {
		return 0, nil
	}
	videos := len(sims[0])
	for i, row := range sims {
		if len(row) != videos {
			return 0, fmt.Errorf("similarity matrix is ragged: row %d has %d columns, row 0 has %d", i, len(row), videos)
		}
		if truth[i] < 0 || truth[i] >= videos {
			return 0, fmt.Errorf("text %d: ground-truth video %d out of range [0, %d)", i, truth[i], videos)
		}
	}
	return videos, nil
}
