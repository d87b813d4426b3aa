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
		for j, v := range r {
			// One NaN or infinity would spread through its whole column and
			// row of softmax, and NaN scores sort unpredictably and cannot
			// be written as JSON.
			if math.IsNaN(v) || math.IsInf(v, 0) || math.IsInf(v/temp, 0) {
				return nil, fmt.Errorf("similarity[%d][%d] = %v is not finite at temperature %v", i, j, v, temp)
			}
		}
		out[i] = append([]float64(nil), r...)
	}
	if mode == RerankNone || cols == 0 {
		return out, nil
	}
	// Softmax over the text axis: for each column, over the rows.
	for j := 0; j < cols; j++ {
		softmaxInto(rows, temp, func(i int) float64 { return sims[i][j] }, func(i int, p float64) { out[i][j] *= p })
	}
	if mode == RerankSymmetric {
		// Softmax over the video axis: for each row, over the columns.
		for i := 0; i < rows; i++ {
			softmaxInto(cols, temp, func(j int) float64 { return sims[i][j] }, func(j int, p float64) { out[i][j] *= p })
		}
	}
	return out, nil
}

// softmaxInto computes softmax(x/temp) over n values read with get and
// hands each probability to put. It subtracts the maximum first because
// cosine/0.01 reaches 100 and exp(100) is near float64's limit.
func softmaxInto(n int, temp float64, get func(int) float64, put func(int, float64)) {
	m := math.Inf(-1)
	for k := 0; k < n; k++ {
		m = math.Max(m, get(k)/temp)
	}
	var z float64
	for k := 0; k < n; k++ {
		z += math.Exp(get(k)/temp - m)
	}
	for k := 0; k < n; k++ {
		put(k, math.Exp(get(k)/temp-m)/z)
	}
}
