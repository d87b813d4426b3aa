// Package onnx runs model bundles with ONNX Runtime through
// github.com/yalue/onnxruntime_go, implementing the encoders interfaces.
package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release the bindings are built against
// (onnxruntime_go v1.27.0 requests C API version 24).
const ORTVersion = "1.24.1"

// DefaultLibPath returns $VIDX_ORT_LIB, or else where scripts/setup.sh puts
// the shared library: $VIDX_CACHE_DIR, $XDG_CACHE_HOME/vidx or ~/.cache/vidx,
// then onnxruntime-1.24.1/libonnxruntime.so.1.
func DefaultLibPath() string {
	if p := os.Getenv("VIDX_ORT_LIB"); p != "" {
		return p
	}
	dir := os.Getenv("VIDX_CACHE_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "vidx")
	}
	return filepath.Join(dir, "onnxruntime-"+ORTVersion, "libonnxruntime.so.1")
}

// ErrLibraryMissing is returned (wrapped) by NewRuntime when the shared
// library is not where it was looked for.
var ErrLibraryMissing = errors.New("ONNX Runtime shared library not found (run make setup or set VIDX_ORT_LIB)")

// ONNX Runtime's environment (OrtEnv, plus the dlopen'ed library and C API
// table inside onnxruntime_go) exists once per process, not per caller, and
// onnxruntime_go keeps it in package variables. Several Runtimes (say, the
// indexer and the query server in one binary, or parallel tests) must
// therefore share it: these variables count the live Runtimes so that the
// environment is created by the first and destroyed only by the last. This is
// the package's only global state, and it cannot be avoided.
var env struct {
	mu   sync.Mutex
	refs int
	lib  string // absolute library path the live environment was loaded from
}

// Runtime is a handle on the process-wide ONNX Runtime environment. Encoders
// created from it are closed when it is closed.
type Runtime struct {
	lib     string
	version string

	// life is held shared while anything that needs the environment is being
	// set up (session creation, inspection) and exclusively by Close, so the
	// environment cannot be torn down under them.
	life   sync.RWMutex
	closed bool

	smu      sync.Mutex
	sessions map[closer]struct{}
}

type closer interface{ close() error }

// NewRuntime loads the ONNX Runtime shared library at libPath (DefaultLibPath
// when empty) and initialises the environment, or joins the one already
// initialised by another Runtime. Only one library can be loaded per process,
// so a different libPath while another Runtime is open is an error.
func NewRuntime(libPath string) (*Runtime, error) {
	if libPath == "" {
		libPath = DefaultLibPath()
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return nil, fmt.Errorf("onnx: library path %s: %w", libPath, err)
	}
	// Symlinks (libonnxruntime.so -> .so.1.24.1) name the same library.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}

	env.mu.Lock()
	defer env.mu.Unlock()
	if env.refs > 0 {
		if abs != env.lib {
			return nil, fmt.Errorf("onnx: ONNX Runtime is already loaded from %s in this process; cannot also load %s (close every Runtime first)", env.lib, abs)
		}
		env.refs++
		return newRuntime(abs), nil
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("onnx: %s: %w", libPath, ErrLibraryMissing)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("onnx: %s is a directory: %w", libPath, ErrLibraryMissing)
	}
	if ort.IsInitialized() {
		// Someone called onnxruntime_go directly; we could not tell which
		// library it loaded nor when it will be torn down under us.
		return nil, errors.New("onnx: ONNX Runtime environment was initialised outside this package")
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("onnx: initialise ONNX Runtime from %s (want version %s): %w", abs, ORTVersion, err)
	}
	env.refs = 1
	env.lib = abs
	return newRuntime(abs), nil
}

// newRuntime is called with env.mu held and the environment live.
func newRuntime(lib string) *Runtime {
	return &Runtime{lib: lib, version: ort.GetVersion(), sessions: make(map[closer]struct{})}
}

// LibPath is the resolved path of the loaded shared library.
func (r *Runtime) LibPath() string { return r.lib }

// Version is the ONNX Runtime version string reported by the library. It is
// read at creation because the library may be unloaded after Close.
func (r *Runtime) Version() string { return r.version }

// Close closes any encoders still open on r and releases r's hold on the
// environment, destroying it (and unloading the library) when r was the last
// Runtime. It is safe to call more than once.
func (r *Runtime) Close() error {
	r.life.Lock()
	if r.closed {
		r.life.Unlock()
		return nil
	}
	r.closed = true
	r.life.Unlock()

	r.smu.Lock()
	open := r.sessions
	r.sessions = nil
	r.smu.Unlock()

	// Sessions must go before the environment: they hold pointers into the
	// library that DestroyEnvironment unloads.
	var errs []error
	for s := range open {
		errs = append(errs, s.close())
	}

	env.mu.Lock()
	defer env.mu.Unlock()
	env.refs--
	if env.refs == 0 {
		env.lib = ""
		if err := ort.DestroyEnvironment(); err != nil {
			errs = append(errs, fmt.Errorf("onnx: destroy environment: %w", err))
		}
	}
	return errors.Join(errs...)
}

var errClosed = errors.New("onnx: runtime is closed")

// withEnv runs fn while r is guaranteed to stay open.
func (r *Runtime) withEnv(fn func() error) error {
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed {
		return errClosed
	}
	return fn()
}

// track registers an encoder so that Close can reach it. Callers hold
// r.life shared, so r cannot have been closed in between.
func (r *Runtime) track(c closer) {
	r.smu.Lock()
	defer r.smu.Unlock()
	r.sessions[c] = struct{}{}
}

func (r *Runtime) untrack(c closer) {
	r.smu.Lock()
	defer r.smu.Unlock()
	delete(r.sessions, c)
}

// InspectModel lists a model's inputs and outputs (names, shapes, element
// types), e.g. to write or check a bundle manifest. It loads the model into a
// throwaway session, so it costs about as much as opening an encoder.
func (r *Runtime) InspectModel(path string) (inputs, outputs []ort.InputOutputInfo, err error) {
	err = r.withEnv(func() error {
		if _, err := os.Stat(path); err != nil {
			return err
		}
		inputs, outputs, err = ort.GetInputOutputInfo(path)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("onnx: inspect %s: %w", path, err)
	}
	return inputs, outputs, nil
}
