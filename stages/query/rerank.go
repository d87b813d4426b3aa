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
	if err := checkSims(temp, sims); err != nil {
		return nil, err
	}
	cols := len(sims[0])
	for i, r := range sims {
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

// checkSims refuses a ragged matrix or one with a value that is not
// finite: one NaN or infinity would spread through its whole column and
// row of softmax, and NaN scores sort unpredictably and cannot be written
// as JSON.
func checkSims(temp float64, sims [][]float64) error {
	cols := len(sims[0])
	for i, r := range sims {
		if len(r) != cols {
			return fmt.Errorf("similarity matrix is ragged: row %d has %d columns, row 0 has %d", i, len(r), cols)
		}
		for j, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.IsInf(v/temp, 0) {
				return fmt.Errorf("similarity[%d][%d] = %v is not finite at temperature %v", i, j, v, temp)
			}
		}
	}
	return nil
}

// FirstRowDualSoftmax is row 0 of DualSoftmax(mode, temp, sims), to the
// bit, without the rows nobody reads: the query stage ranks one query
// against a text axis of up to bank_size other texts, and only that
// query's row is its answer. It still needs every row of each column for
// the text-axis softmax, but computes each exponential once and the
// video-axis softmax of row 0 alone, a quarter of the work.
func FirstRowDualSoftmax(mode string, temp float64, sims [][]float64) ([]float64, error) {
	if !ValidRerank(mode) {
		return nil, fmt.Errorf("unknown rerank mode %q (want none, camoe or symmetric)", mode)
	}
	if !(temp > 0) {
		return nil, fmt.Errorf("rerank temperature must be positive, got %v", temp)
	}
	if len(sims) == 0 {
		return nil, fmt.Errorf("similarity matrix has no rows")
	}
	if err := checkSims(temp, sims); err != nil {
		return nil, err
	}
	out := append([]float64(nil), sims[0]...)
	if mode == RerankNone || len(out) == 0 {
		return out, nil
	}
	// The same expressions, in the same order, as softmaxInto: the results
	// are DualSoftmax's exactly.
	for j := range out {
		m := math.Inf(-1)
		for i := range sims {
			m = math.Max(m, sims[i][j]/temp)
		}
		var z float64
		var e0 float64
		for i := range sims {
			e := math.Exp(sims[i][j]/temp - m)
			if i == 0 {
				e0 = e
			}
			z += e
		}
		out[j] *= e0 / z
	}
	if mode == RerankSymmetric {
		row := sims[0]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v/temp)
		}
		e := make([]float64, len(row))
		var z float64
		for j, v := range row {
			e[j] = math.Exp(v/temp - m)
			z += e[j]
		}
		for j := range out {
			out[j] *= e[j] / z
		}
	}
	return out, nil
}

// similarities returns the dot product of every text with every vector,
// one row per text, each accumulated in float64 in index order as Dot
// does. Where the build has a vector kernel for this CPU it is used; it
// keeps each sum's order, so the results are the same bits either way.
func similarities(texts, vecs [][]float32) [][]float64 {
	rows := make([][]float64, len(texts))
	for i := range rows {
		rows[i] = make([]float64, len(vecs))
	}
	if similaritiesVector(texts, vecs, rows) {
		return rows
	}
	similaritiesScalar(texts, vecs, rows)
	return rows
}

// similaritiesScalar fills rows portably. Four texts share a pass over a
// vector: four independent sums keep the multiplier busy where one sum
// waits on its last addition, and each sum's order, so its result, is
// Dot's.
func similaritiesScalar(texts, vecs [][]float32, rows [][]float64) {
	i := 0
	for ; i+4 <= len(texts); i += 4 {
		a, b, c, d := texts[i], texts[i+1], texts[i+2], texts[i+3]
		for j, v := range vecs {
			n := len(v)
			a, b, c, d := a[:n], b[:n], c[:n], d[:n]
			var sa, sb, sc, sd float64
			for k, x := range v {
				fx := float64(x)
				sa += float64(a[k]) * fx
				sb += float64(b[k]) * fx
				sc += float64(c[k]) * fx
				sd += float64(d[k]) * fx
			}
			rows[i][j], rows[i+1][j], rows[i+2][j], rows[i+3][j] = sa, sb, sc, sd
		}
	}
	for ; i < len(texts); i++ {
		for j, v := range vecs {
			rows[i][j] = Dot(texts[i], v)
		}
	}
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
