package onnxbuild_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// errNoORT marks a missing ONNX Runtime library: tests skip rather than fail,
// so the package still tests on machines without scripts/setup.sh.
var errNoORT = errors.New("ONNX Runtime shared library not found")

// ortLibPath returns the library named by VIDX_ORT_LIB, else the one
// scripts/setup.sh installs.
func ortLibPath() (string, error) {
	if p := os.Getenv("VIDX_ORT_LIB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: VIDX_ORT_LIB=%s: %w", errNoORT, p, err)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoORT, err)
	}
	p := filepath.Join(home, ".cache", "vidx", "onnxruntime-1.24.1", "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w at %s (set VIDX_ORT_LIB or run scripts/setup.sh)", errNoORT, p)
	}
	return p, nil
}

// initORT initialises ONNX Runtime's process-wide environment exactly once for
// this test binary.
var initORT = sync.OnceValue(func() error {
	p, err := ortLibPath()
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(p)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s: %w", p, err)
	}
	return nil
})

// requireORT skips the test when the runtime library is absent and fails it
// when the library is present but does not initialise.
func requireORT(t testing.TB) {
	t.Helper()
	if err := initORT(); err != nil {
		if errors.Is(err, errNoORT) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
}

// newSession opens a dynamic-shape session on model bytes, single-threaded to
// keep test runs light.
func newSession(t testing.TB, model []byte, inputs, outputs []string) *ort.DynamicAdvancedSession {
	t.Helper()
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
