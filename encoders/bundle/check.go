package bundle

import (
	"fmt"
	"slices"
	"strings"
)

// Inspector returns the inputs and outputs of the ONNX model at path.
// ReadModelIO reads them from the file itself; the ONNX Runtime view (which
// also proves the model loads) can be adapted to the same signature.
type Inspector func(path string) (*ModelIO, error)

// Problem is one way a manifest and its models disagree.
type Problem struct {
	// Field is the manifest field to fix (e.g. "image.size"), or the file
	// field when the model itself is unusable (e.g. "image.onnx").
	Field string
	// File is the model file as the manifest names it.
	File string
	// Msg says what the manifest says and what the model has.
	Msg string
	// Warning marks problems that do not stop vidx from starting but will
	// hurt at run time in some configurations.
	Warning bool
}

func (p Problem) String() string {
	s := p.Field + ": " + p.Msg
	if p.Warning {
		s = "warning: " + s
	}
	return s
}

// CheckError is returned by Report.Err: every non-warning problem found.
type CheckError struct {
	Model    string
	Dir      string
	Problems []Problem
}

func (e *CheckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model bundle %s (%s) does not match its ONNX models: ", e.Model, e.Dir)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// ModelReport is what Check found for one model file.
type ModelReport struct {
	Role  string // "image", "text" or "temporal"
	Field string // the manifest field naming the file, e.g. "image.onnx"
	File  string // as the manifest names it
	Path  string // resolved against the bundle directory
	IO    *ModelIO
	Err   error // the inspector's error; IO is nil then
}

// Report is the outcome of Check.
type Report struct {
	Manifest *Manifest
	Models   []ModelReport
	Problems []Problem
}

// Err returns a *CheckError listing every non-warning problem, or nil.
func (r *Report) Err() error {
	var errs []Problem
	for _, p := range r.Problems {
		if !p.Warning {
			errs = append(errs, p)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &CheckError{Model: r.Manifest.Name, Dir: r.Manifest.Dir, Problems: errs}
}

// Warnings returns the warning-level problems.
func (r *Report) Warnings() []Problem {
	var ws []Problem
	for _, p := range r.Problems {
		if p.Warning {
			ws = append(ws, p)
		}
	}
	return ws
}

// want is what vidx feeds or reads for one tensor. dims holds the expected
// size of each axis (0: any; dynamicAxis: any, and the model must not fix
// it), and dimFields the manifest field that sets it ("" for axes no field
// controls, such as the batch).
type want struct {
	field     string
	name      string
	elem      ElemType
	dims      []int64
	dimFields []string
}

// Check compares the manifest with its models as inspect sees them: every
// tensor name the manifest gives must exist, with the element type vidx
// uses and sizes that agree with image.size, text.context_length,
// temporal.max_frames and embedding_dim; every model input must be fed.
// A model inspect cannot read (not ONNX, missing) is a problem too. The
// batch axis may be dynamic or fixed; a fixed batch is a warning since vidx
// batches up to model.max_batch items per run.
func (m *Manifest) Check(inspect Inspector) *Report {
	if inspect == nil {
		inspect = ReadModelIO
	}
	r := &Report{Manifest: m}
	d := int64(m.EmbeddingDim)

	im := m.Image
	size := int64(im.Size)
	r.check(inspect, "image", "image.onnx", im.ONNX, m.Path(im.ONNX),
		[]want{{"image.input", im.Input, ElemFloat, []int64{0, 3, size, size}, []string{"", "", "image.size", "image.size"}}},
		want{"image.output", im.Output, ElemFloat, []int64{0, d}, []string{"", "embedding_dim"}})

	tx := m.Text
	ctxLen := int64(tx.ContextLength)
	seq := want{field: "text.input_ids", name: tx.InputIDs, elem: ElemInt64, dims: []int64{0, ctxLen}, dimFields: []string{"", "text.context_length"}}
	if tx.DynamicLength {
		seq.dims[1] = dynamicAxis
		seq.dimFields[1] = "text.dynamic_length"
	}
	ins := []want{seq}
	if tx.AttentionMask != "" {
		mask := seq
		mask.field, mask.name = "text.attention_mask", tx.AttentionMask
		mask.dims, mask.dimFields = slices.Clone(seq.dims), slices.Clone(seq.dimFields)
		ins = append(ins, mask)
	}
	r.check(inspect, "text", "text.onnx", tx.ONNX, m.Path(tx.ONNX), ins,
		want{"text.output", tx.Output, ElemFloat, []int64{0, d}, []string{"", "embedding_dim"}})

	if tp := m.Temporal; tp != nil {
		frames := int64(tp.MaxFrames)
		r.check(inspect, "temporal", "temporal.onnx", tp.ONNX, m.Path(tp.ONNX),
			[]want{
				{"temporal.frames", tp.Frames, ElemFloat, []int64{0, frames, d}, []string{"", "temporal.max_frames", "embedding_dim"}},
				{"temporal.mask", tp.Mask, ElemFloat, []int64{0, frames}, []string{"", "temporal.max_frames"}},
			},
			want{"temporal.output", tp.Output, ElemFloat, []int64{0, d}, []string{"", "embedding_dim"}})
	}
	return r
}

func (r *Report) check(inspect Inspector, role, fileField, file, path string, inputs []want, output want) {
	mr := ModelReport{Role: role, Field: fileField, File: file, Path: path}
	mr.IO, mr.Err = inspect(path)
	r.Models = append(r.Models, mr)
	add := func(field, msg string, warn bool) {
		r.Problems = append(r.Problems, Problem{Field: field, File: file, Msg: msg, Warning: warn})
	}
	if mr.Err != nil {
		add(fileField, mr.Err.Error(), false)
		return
	}
	mio := mr.IO
	for _, w := range inputs {
		t, ok := mio.Input(w.name)
		if !ok {
			add(w.field, fmt.Sprintf("%q is not an input of %s (inputs: %s)", w.name, file, Describe(mio.Inputs)), false)
			continue
		}
		compareTensor(add, file, "input", w, t)
	}
	if t, ok := mio.Output(output.name); ok {
		compareTensor(add, file, "output", output, t)
	} else {
		msg := fmt.Sprintf("%q is not an output of %s (outputs: %s)", output.name, file, Describe(mio.Outputs))
		if hint := projectionHint(mio.Outputs); hint != "" {
			msg += "; " + hint
		}
		add(output.field, msg, false)
	}
	for _, t := range mio.Inputs {
		if slices.ContainsFunc(inputs, func(w want) bool { return w.name == t.Name }) {
			continue
		}
		field := fileField
		if role == "text" && strings.Contains(t.Name, "mask") {
			field = "text.attention_mask" // the usual cause: the mask was left out
		}
		add(field, fmt.Sprintf("model input %s of %s is not fed by the manifest (it feeds %s)", t, file, wantNames(inputs)), false)
	}
}

// compareTensor reports how the model's tensor t differs from what vidx
// feeds or reads (w).
func compareTensor(add func(field, msg string, warn bool), file, kind string, w want, t Tensor) {
	if t.Kind != "" && t.Kind != "tensor" {
		add(w.field, fmt.Sprintf("%s %q of %s is a %s, vidx needs a %s tensor", kind, w.name, file, t.Kind, w.elem), false)
		return
	}
	if t.Elem != ElemUndefined && t.Elem != w.elem {
		add(w.field, fmt.Sprintf("%s %q of %s is %s, vidx %s %s", kind, w.name, file, t.Elem, verb(kind), w.elem), false)
	}
	if !t.Ranked() {
		return // the model does not declare a shape; running it will tell
	}
	if len(t.Dims) != len(w.dims) {
		add(w.field, fmt.Sprintf("%s %q of %s has shape %s (rank %d), vidx %s rank %d %s",
			kind, w.name, file, t.ShapeString(), len(t.Dims), verb(kind), len(w.dims), wantShape(w)), false)
		return
	}
	blamed := map[string]bool{} // one complaint per field: image.size covers H and W
	for i, exp := range w.dims {
		got := t.Dims[i]
		if exp == dynamicAxis && got >= 0 && !blamed[w.dimFields[i]] {
			blamed[w.dimFields[i]] = true
			add(w.dimFields[i], fmt.Sprintf("is true but %s %q of %s has the fixed shape %s: export the text tower with a dynamic sequence axis, or leave dynamic_length out",
				kind, w.name, file, t.ShapeString()), false)
			continue
		}
		if got < 0 || exp <= 0 || got == exp {
			continue
		}
		field := w.dimFields[i]
		switch {
		case field == "":
			add(w.field, fmt.Sprintf("%s %q of %s has shape %s, vidx %s %s",
				kind, w.name, file, t.ShapeString(), verb(kind), wantShape(w)), false)
		case !blamed[field]:
			blamed[field] = true
			add(field, fmt.Sprintf("is %d but %s %q of %s has shape %s",
				exp, kind, w.name, file, t.ShapeString()), false)
		}
	}
	if b := t.Dims[0]; b >= 0 && kind == "input" {
		add(w.field, fmt.Sprintf("%s %q of %s has a fixed batch size of %d (shape %s); vidx sends up to model.max_batch items per run, so set model.max_batch to %d or export with a dynamic batch axis",
			kind, w.name, file, b, t.ShapeString(), b), true)
	}
}

// dynamicAxis in want.dims marks an axis vidx sizes per run, which the
// model must therefore leave dynamic.
const dynamicAxis = -1

func verb(kind string) string {
	if kind == "input" {
		return "feeds"
	}
	return "reads"
}

// wantShape writes the expected shape, e.g. [N,3,224,224].
func wantShape(w want) string {
	parts := make([]string, len(w.dims))
	for i, d := range w.dims {
		if d <= 0 {
			parts[i] = "N"
			if i > 0 {
				parts[i] = "?"
			}
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func wantNames(ws []want) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%s %q", w.field, w.name)
	}
	return strings.Join(parts, ", ")
}

// projectionHint explains the common mistake of exporting a tower without
// its projection (Hugging Face CLIPVisionModel / CLIPTextModel instead of
// the ...WithProjection classes): the outputs are hidden states, not
// embeddings in the joint space.
func projectionHint(outputs []Tensor) string {
	has := func(n string) bool { _, ok := find(outputs, n); return ok }
	if has("pooler_output") || has("last_hidden_state") {
		return "pooler_output/last_hidden_state are hidden states before the projection: export CLIPVisionModelWithProjection / CLIPTextModelWithProjection (outputs image_embeds / text_embeds) instead"
	}
	return ""
}

var _ error = (*CheckError)(nil)
