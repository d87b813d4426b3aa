//go:build !(goexperiment.simd && amd64)

package preprocess

// horizontalKernel is nil: the scalar passes run.
var horizontalKernel func(dst, src []uint8, bpp int, w *widePlan, planes []uint8)
