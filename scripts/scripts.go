// Package scripts carries the project's helper scripts inside the vidx
// binary, so that commands driving them work from any directory.
package scripts

import _ "embed"

//go:embed quantize.py
var quantizePy []byte

// QuantizePy is scripts/quantize.py, the driver of ONNX Runtime's dynamic
// int8 quantizer behind vidx models quantize.
func QuantizePy() []byte { return quantizePy }
