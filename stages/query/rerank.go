package query

import (
	"fmt"
	"math"
)

// Rerank modes.
const (
	// RerankNone orders by raw cosine.
	RerankNone = "none"
	// RerankCAMoE multiplies the similarity by a softmax over the text axis
	// (the dual-softmax inference of CAMoE and EMCL): a clip that matches
	// many queries equally well is discounted for each of them.
	RerankCAMoE = "camoe"
	// RerankSymmetric multiplies by softmaxes over both axes (CLIP2TV).
	RerankSymmetric = "symmetric"
)

// ValidRerank reports whether mode is a known rerank mode.
func ValidRerank(mode string) bool {
	return mode == RerankNone || mode == RerankCAMoE || mode == RerankSymmetric
}

// DualSoftmax re-scores a similarity matrix whose rows are texts and whose
// columns are videos (cosine similarities):
//
//	none:      S
//	camoe:     S * softmax_text(S / temp)
//	symmetric: S * softmax_text(S / temp) * softmax_video(S / temp)
//
// where softmax_text normalises each column over the rows and softmax_video
// normalises each row over the columns. temp is the temperature on cosine
// (0.01 is CLIP's logit scale of 100). The input is not modified.
func DualSoftmax(mode string, temp float64, sims [][]float64) ([][]float64, error) {
	if !ValidRerank(mode) {
		return nil, fmt.Errorf("unknown rerank mode %q (want none, camoe or symmetric)", mode)
	}
	if !(temp > 0) {
		return nil, fmt.Errorf("rerank temperature must be positive, got %v", temp)
	}
	rows := len(sims)
	out := make([][]float64, rows)
	if rows == 0 {
		return out, nil
	}
	cols := len(sims[0])
	for i, r := range sims {
		if len(r) != cols {
			return nil, fmt.Errorf("similarity matrix is ragged: row %d has %d columns, row 0 has %d", i, len(r), cols)
		}
		out[i] = append([]float64(nil), r...)
	}
	if mode == RerankNone || cols == 0 {
		return out, nil
	}
	// Softmax over the text axis: for each column, over the rows. Computed in
	// log space (max subtraction) because cosine/0.01 reaches 100.
	for j := 0; j < cols; j++ {
		m := math.Inf(-1)
		for i := 0; i < rows; i++ {
			m = math.Max(m, sims[i][j]/temp)
		}
		var z float64
		for i := 0; i < rows; i++ {
			z += math.Exp(sims[i][j]/temp - m)
		}
		for i := 0; i < rows; i++ {
			out[i][j] *= math.Exp(sims[i][j]/temp-m) / z
		}
	}
	if mode == RerankSymmetric {
		for i := 0; i < rows; i++ {
			m := math.Inf(-1)
			for j := 0; j < cols; j++ {
				m = math.Max(m, sims[i][j]/temp)
			}
			var z float64
			for j := 0; j < cols; j++ {
				z += math.Exp(sims[i][j]/temp - m)
			}
			for j := 0; j < cols; j++ {
				out[i][j] *= math.Exp(sims[i][j]/temp-m) / z
			}
		}
	}
	return out, nil
}
