package onnx

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// DefaultMaxBatch is the batch size used when SessionOptions.MaxBatch is 0.
// CLIP image towers gain little from larger CPU batches while memory for
// activations grows linearly.
const DefaultMaxBatch = 8

// SessionOptions tune one encoder's ONNX Runtime session. Zero values leave
// ONNX Runtime's defaults (threads = physical cores) and DefaultMaxBatch.
type SessionOptions struct {
	IntraOpThreads int
	InterOpThreads int
	// MaxBatch caps how many items go through one Run; larger requests are
	// split into chunks.
	MaxBatch int
	// NoSpinning stops ONNX Runtime's pool threads from busy-waiting for
	// work between and within runs. Spinning saves a few microseconds per
	// parallel section on an idle machine, but where the cores are shared
	// (ffmpeg and the other stages in one process, several replicas on one
	// host) the spinning threads take CPU the others need.
	NoSpinning bool
}

func (o SessionOptions) maxBatch() (int, error) {
	switch {
	case o.MaxBatch < 0:
		return 0, fmt.Errorf("MaxBatch must be >= 0, got %d", o.MaxBatch)
	case o.MaxBatch == 0:
		return DefaultMaxBatch, nil
	}
	return o.MaxBatch, nil
}

// ORTOptions builds ONNX Runtime session options from o, for callers that
// open sessions of their own (benchmark baselines). The caller destroys them.
func (o SessionOptions) ORTOptions() (*ort.SessionOptions, error) { return o.build() }

func (o SessionOptions) build() (*ort.SessionOptions, error) {
	if o.IntraOpThreads < 0 || o.InterOpThreads < 0 {
		return nil, fmt.Errorf("thread counts must be >= 0, got intra-op %d, inter-op %d", o.IntraOpThreads, o.InterOpThreads)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	set := func() error {
		if o.IntraOpThreads > 0 {
			if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
				return fmt.Errorf("intra-op threads: %w", err)
			}
		}
		if o.InterOpThreads > 0 {
			if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
				return fmt.Errorf("inter-op threads: %w", err)
			}
			// The inter-op pool is only used in parallel execution mode;
			// asking for more than one thread means asking for that mode.
			if o.InterOpThreads > 1 {
				if err := so.SetExecutionMode(ort.ExecutionModeParallel); err != nil {
					return fmt.Errorf("execution mode: %w", err)
				}
			}
		}
		if o.NoSpinning {
			for _, key := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
				if err := so.AddSessionConfigEntry(key, "0"); err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
			}
		}
		return nil
	}
	if err := set(); err != nil {
		so.Destroy()
		return nil, err
	}
	return so, nil
}

// session is one ONNX model with fixed input and output names. Run is
// thread-safe in ONNX Runtime and every call builds its own tensors, so runs
// only share the read side of mu; Close takes the write side to wait for
// in-flight runs before releasing the session.
type session struct {
	rt    *Runtime
	label string // "model <name> <role> (<file>)", prefixed to every error
	path  string
	in    []string
	out   string

	mu sync.RWMutex
	s  *ort.DynamicAdvancedSession
}

func (r *Runtime) openSession(label, path string, in []string, out string, o SessionOptions) (*session, error) {
	s := &session{rt: r, label: label, path: path, in: in, out: out}
	err := r.withEnv(func() error {
		so, err := o.build()
		if err != nil {
			return err
		}
		defer so.Destroy()
		s.s, err = ort.NewDynamicAdvancedSession(path, in, []string{out}, so)
		if err != nil {
			return err
		}
		r.track(s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return s, nil
}

// acquire holds the session open (against Close) until release. Tensors are
// created under it too, since closing the last Runtime unloads the library
// they are made with.
func (s *session) acquire() error {
	s.mu.RLock()
	if s.s == nil {
		s.mu.RUnlock()
		return fmt.Errorf("%s: encoder is closed", s.label)
	}
	return nil
}

func (s *session) release() { s.mu.RUnlock() }

// run feeds inputs (in the order of s.in) and returns the output, allocated
// by ONNX Runtime and owned by the caller. The caller holds acquire.
// Cancelling ctx aborts a Run in progress through RunOptions.Terminate, so a
// long batch does not hold up shutdown.
func (s *session) run(ctx context.Context, inputs ...ort.Value) (ort.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	outputs := []ort.Value{nil}
	var err error
	if ctx.Done() == nil {
		err = s.s.Run(inputs, outputs)
	} else {
		err = runCancellable(ctx, s.s, inputs, outputs)
	}
	if err != nil {
		if outputs[0] != nil {
			outputs[0].Destroy()
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%s: %w", s.label, cerr)
		}
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	return outputs[0], nil
}

func runCancellable(ctx context.Context, s *ort.DynamicAdvancedSession, inputs, outputs []ort.Value) error {
	opts, err := ort.NewRunOptions()
	if err != nil {
		return err
	}
	// Terminate must not race with Destroy: the callback may already be
	// running when stop() reports it could not be stopped.
	var mu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			opts.Terminate()
		}
	})
	err = s.RunWithOptions(inputs, outputs, opts)
	stop()
	mu.Lock()
	done = true
	mu.Unlock()
	opts.Destroy()
	return err
}

func (s *session) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	if err != nil {
		return fmt.Errorf("%s: %w", s.label, err)
	}
	return nil
}

// Close releases the session; the Runtime no longer needs to.
func (s *session) Close() error {
	err := s.close()
	s.rt.untrack(s)
	return err
}

// embeddings checks that out is a float32 [n, dim] tensor and splits it into
// n vectors that share one backing array. It destroys out.
func (s *session) embeddings(out ort.Value, n, dim int) ([][]float32, error) {
	defer out.Destroy()
	t, ok := out.(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("%s: output %q is %s of %s, want a float32 tensor",
			s.label, s.out, out.GetONNXType(), ort.TensorElementDataType(out.DataType()))
	}
	shape := t.GetShape()
	if len(shape) != 2 || shape[0] != int64(n) || shape[1] != int64(dim) {
		return nil, fmt.Errorf("%s: output %q has shape %v, want [%d %d] (batch, embedding_dim)",
			s.label, s.out, shape, n, dim)
	}
	data := t.GetData()
	vecs := make([][]float32, n)
	for i := range vecs {
		// Full slice expressions keep an append on one vector from
		// overwriting the next.
		vecs[i] = data[i*dim : (i+1)*dim : (i+1)*dim]
	}
	return vecs, nil
}

// tensorSpec is what the manifest says one model input or output is, with
// the manifest fields to blame when the model disagrees.
type tensorSpec struct {
	field     string // manifest field holding the name, e.g. "image.input"
	name      string
	dtype     ort.TensorElementDataType
	dims      []int64 // -1 where any size is fine, dynamicDim where the model must not fix it
	dimFields []string
}

// dynamicDim marks an axis vidx sizes per run (the text tower's sequence
// under text.dynamic_length), so a model that fixes it cannot be fed.
const dynamicDim = -2

// diagnose explains a failed probe run in terms of the manifest: a name the
// model does not have, a model input nobody feeds, or a type or fixed
// dimension that differs. It returns nil when it finds nothing, so the
// caller keeps ONNX Runtime's own message.
func (s *session) diagnose(inputs []tensorSpec, output tensorSpec) error {
	modelIn, modelOut, err := s.rt.InspectModel(s.path)
	if err != nil {
		return nil
	}
	var problems []string
	check := func(want tensorSpec, infos []ort.InputOutputInfo, kind string) {
		i := slices.IndexFunc(infos, func(info ort.InputOutputInfo) bool { return info.Name == want.name })
		if i < 0 {
			problems = append(problems, fmt.Sprintf("%s %q is not an %s of the model", want.field, want.name, kind))
			return
		}
		got := infos[i]
		if got.OrtValueType == ort.ONNXTypeTensor && got.DataType != want.dtype {
			problems = append(problems, fmt.Sprintf("%s %q is %s in the model, vidx uses %s",
				want.field, want.name, dtypeName(got.DataType), dtypeName(want.dtype)))
		}
		if len(got.Dimensions) != len(want.dims) {
			problems = append(problems, fmt.Sprintf("%s %q has shape %v in the model, vidx uses %v",
				want.field, want.name, got.Dimensions, want.dims))
			return
		}
		var blamed []string // one complaint per field (image.size covers H and W)
		for d, w := range want.dims {
			g, field := got.Dimensions[d], want.dimFields[d]
			if w == dynamicDim && g > 0 && !slices.Contains(blamed, field) {
				blamed = append(blamed, field)
				problems = append(problems, fmt.Sprintf("%s is true but the model's %q has the fixed shape %v",
					field, want.name, got.Dimensions))
			}
			if g > 0 && w > 0 && g != w && !slices.Contains(blamed, field) {
				blamed = append(blamed, field)
				problems = append(problems, fmt.Sprintf("%s is %d but the model's %q has shape %v",
					field, w, want.name, got.Dimensions))
			}
		}
	}
	for _, in := range inputs {
		check(in, modelIn, "input")
	}
	check(output, modelOut, "output")
	for _, info := range modelIn {
		if !slices.ContainsFunc(inputs, func(t tensorSpec) bool { return t.name == info.Name }) {
			problems = append(problems, fmt.Sprintf("model input %q is not fed by the manifest", info.Name))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s (model inputs: %s; outputs: %s)",
		s.label, strings.Join(problems, "; "), describe(modelIn), describe(modelOut))
}

func describe(infos []ort.InputOutputInfo) string {
	parts := make([]string, len(infos))
	for i, info := range infos {
		parts[i] = fmt.Sprintf("%s %s%v", info.Name, dtypeName(info.DataType), info.Dimensions)
	}
	return strings.Join(parts, ", ")
}

// dtypeName shortens ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT to "float".
func dtypeName(t ort.TensorElementDataType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
}
