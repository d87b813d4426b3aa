package query

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzDualSoftmax decodes a similarity matrix from raw bytes (any float64
// bit pattern: NaN, ±Inf, subnormals, huge values), shape and temperature
// from the fuzzer, and checks DualSoftmax either refuses the input or
// returns a matrix of the same shape whose scores are finite and never
// larger in magnitude than the cosine they rescale (each softmax factor is
// in [0, 1]). A NaN score would sort unpredictably and cannot be encoded
// in a JSON result.
func FuzzDualSoftmax(f *testing.F) {
	enc := func(vals ...float64) []byte {
		b := make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
		}
		return b
	}
	f.Add(enc(0.3, 0.1, 0.2, 0.4), uint8(2), uint8(2), 0.01)
	f.Add(enc(0.3, math.NaN(), 0.2, 0.4), uint8(2), uint8(1), 0.01)
	f.Add(enc(math.Inf(1), 0.1, math.Inf(-1), 0.4), uint8(2), uint8(0), 0.01)
	f.Add(enc(1e308, -1e308, 5e-324, 0), uint8(2), uint8(2), 1e-300)
	f.Add(enc(), uint8(0), uint8(2), 0.01)
	f.Add(enc(0.5), uint8(1), uint8(1), 0.0)
	f.Add(enc(0.5, 0.4), uint8(1), uint8(2), math.NaN())
	f.Fuzz(func(t *testing.T, raw []byte, cols uint8, modeSel uint8, temp float64) {
		mode := []string{RerankNone, RerankCAMoE, RerankSymmetric}[int(modeSel)%3]
		n := len(raw) / 8
		c := int(cols)
		var sims [][]float64
		if c > 0 {
			for r := 0; (r+1)*c <= n && r < 64; r++ {
				row := make([]float64, c)
				for j := range row {
					row[j] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*(r*c+j):]))
				}
				sims = append(sims, row)
			}
		}
		out, err := DualSoftmax(mode, temp, sims)
		if len(sims) > 0 {
			// The query stage's fast path must agree to the bit, errors
			// included.
			first, ferr := FirstRowDualSoftmax(mode, temp, sims)
			if (err == nil) != (ferr == nil) {
				t.Fatalf("DualSoftmax error %v, FirstRowDualSoftmax error %v", err, ferr)
			}
			if err == nil {
				for j := range first {
					if math.Float64bits(first[j]) != math.Float64bits(out[0][j]) {
						t.Fatalf("%s: first row [%d] = %v, DualSoftmax %v", mode, j, first[j], out[0][j])
					}
				}
			}
		}
		if err != nil {
			return
		}
		if len(out) != len(sims) {
			t.Fatalf("%d rows out, %d in", len(out), len(sims))
		}
		for i := range out {
			if len(out[i]) != len(sims[i]) {
				t.Fatalf("row %d: %d columns out, %d in", i, len(out[i]), len(sims[i]))
			}
			for j, v := range out[i] {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%s: score[%d][%d] = %v for similarity %v at temperature %v", mode, i, j, v, sims[i][j], temp)
				}
				if math.Abs(v) > math.Abs(sims[i][j]) {
					t.Fatalf("%s: score[%d][%d] = %v exceeds the similarity %v", mode, i, j, v, sims[i][j])
				}
			}
		}
	})
}
