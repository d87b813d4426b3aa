//go:build !(goexperiment.simd && amd64)

package preprocess

var verticalKernel = verticalRowPortable
