// Package orttest lets tests run ONNX models directly on ONNX Runtime,
// without a bundle: for checking generated graphs op by op.
package orttest

import (
	"errors"
	"os"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/onnx"
)

// runtime keeps ONNX Runtime's process-wide environment up for the whole
// test binary; sessions from any test may use it.
var runtime = sync.OnceValues(func() (*onnx.Runtime, error) {
	return onnx.NewRuntime(onnx.DefaultLibPath())
})

// Require skips the test when the ONNX Runtime library is absent and fails
// it when the library is present but does not load.
func Require(t testing.TB) {
	t.Helper()
	if _, err := runtime(); err != nil {
		if errors.Is(err, onnx.ErrLibraryMissing) || errors.Is(err, os.ErrNotExist) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
}

// Session opens a dynamic-shape session on model bytes, single-threaded to
// keep test runs light, and destroys it when the test ends.
func Session(t testing.TB, model []byte, inputs, outputs []string) *ort.DynamicAdvancedSession {
	t.Helper()
	Require(t)
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, opts)
	if err != nil {
		t.Fatalf("load model: %v", err)
	}
	t.Cleanup(func() { s.Destroy() })
	return s
}

// SessionFile is Session on a model file.
func SessionFile(t testing.TB, path string, inputs, outputs []string) *ort.DynamicAdvancedSession {
	t.Helper()
	model, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Session(t, model, inputs, outputs)
}
