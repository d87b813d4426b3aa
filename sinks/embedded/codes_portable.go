//go:build !(goexperiment.simd && amd64)

package embedded

// codeKernel has no vector kernel in this build (one built without
// GOEXPERIMENT=simd, or for another architecture). The portable kernel is
// slower than the plain float scan, so collections keep no codes.
func codeKernel() (codeDotFunc, bool) { return dotCodesPortable, false }

func vectorCodeKernels() []namedCodeKernel { return nil }
