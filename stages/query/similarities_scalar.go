//go:build !(goexperiment.simd && amd64)

package query

// similaritiesVector has no vector kernel in this build (one built
// without GOEXPERIMENT=simd, or for another architecture): the portable
// path fills rows.
func similaritiesVector(texts, vecs [][]float32, rows [][]float64) bool { return false }
