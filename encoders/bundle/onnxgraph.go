package bundle

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrNotONNX is wrapped by ReadModelIO's error when a file cannot be an ONNX
// model: not a protobuf ModelProto at all (random bytes, a text file, an HTML
// error page saved by a failed download), truncated, or without a graph.
var ErrNotONNX = errors.New("not an ONNX model")

// ElemType is an ONNX tensor element type (onnx.proto's TensorProto.DataType;
// ONNX Runtime's ONNXTensorElementDataType uses the same numbers).
type ElemType int32

// Element types. Only Float and Int64 are fed or read by vidx; the others
// are named so that a mismatch can be reported in words.
const (
	ElemUndefined  ElemType = 0
	ElemFloat      ElemType = 1
	ElemUint8      ElemType = 2
	ElemInt8       ElemType = 3
	ElemUint16     ElemType = 4
	ElemInt16      ElemType = 5
	ElemInt32      ElemType = 6
	ElemInt64      ElemType = 7
	ElemString     ElemType = 8
	ElemBool       ElemType = 9
	ElemFloat16    ElemType = 10
	ElemDouble     ElemType = 11
	ElemUint32     ElemType = 12
	ElemUint64     ElemType = 13
	ElemComplex64  ElemType = 14
	ElemComplex128 ElemType = 15
	ElemBFloat16   ElemType = 16
)

var elemNames = map[ElemType]string{
	ElemUndefined: "undefined", ElemFloat: "float32", ElemUint8: "uint8", ElemInt8: "int8",
	ElemUint16: "uint16", ElemInt16: "int16", ElemInt32: "int32", ElemInt64: "int64",
	ElemString: "string", ElemBool: "bool", ElemFloat16: "float16", ElemDouble: "float64",
	ElemUint32: "uint32", ElemUint64: "uint64", ElemComplex64: "complex64",
	ElemComplex128: "complex128", ElemBFloat16: "bfloat16",
	17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz",
	21: "uint4", 22: "int4", 23: "float4e2m1",
}

// String names the type the way Go and NumPy do ("float32", "int64").
func (t ElemType) String() string {
	if s, ok := elemNames[t]; ok {
		return s
	}
	return "elem_type(" + strconv.Itoa(int(t)) + ")"
}

// Tensor describes one model input or output.
type Tensor struct {
	Name string
	// Kind is "tensor" for a plain tensor, else the ONNX type's kind
	// ("sequence", "map", "optional", "sparse_tensor"); vidx only handles
	// tensors.
	Kind string
	Elem ElemType
	// Dims holds one entry per axis: the fixed size, or -1 where the size is
	// dynamic. Dims is nil when the model does not declare a shape, which
	// says nothing about the rank.
	Dims []int64
	// DimNames holds the symbolic name of each dynamic axis ("batch_size"),
	// or "" where there is none; nil when no axis has one.
	DimNames []string
}

// Ranked reports whether the model declares the tensor's rank.
func (t Tensor) Ranked() bool { return t.Dims != nil }

// ShapeString writes the shape as [batch_size,3,224,224], with "?" for a
// dynamic axis without a name and "[?]" for an undeclared shape.
func (t Tensor) ShapeString() string {
	if t.Dims == nil {
		return "[?]"
	}
	parts := make([]string, len(t.Dims))
	for i, d := range t.Dims {
		switch {
		case d >= 0:
			parts[i] = strconv.FormatInt(d, 10)
		case i < len(t.DimNames) && t.DimNames[i] != "":
			parts[i] = t.DimNames[i]
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// String is "name float32[N,3,224,224]".
func (t Tensor) String() string {
	typ := t.Elem.String()
	if t.Kind != "" && t.Kind != "tensor" {
		typ = t.Kind + "<" + typ + ">"
	}
	return t.Name + " " + typ + t.ShapeString()
}

// ModelIO is what a model takes and returns, plus the header fields that
// help tell exports apart.
type ModelIO struct {
	Inputs, Outputs []Tensor
	IRVersion       int64
	// Opset is the default ("ai.onnx") operator set version; 0 when the
	// model does not import it.
	Opset    int64
	Producer string // producer_name and producer_version, e.g. "pytorch 2.1.0"
}

// Input returns the input called name.
func (m *ModelIO) Input(name string) (Tensor, bool) { return find(m.Inputs, name) }

// Output returns the output called name.
func (m *ModelIO) Output(name string) (Tensor, bool) { return find(m.Outputs, name) }

func find(ts []Tensor, name string) (Tensor, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Describe lists tensors as "a float32[N,3], b int64[N,77]", or "none".
func Describe(ts []Tensor) string {
	if len(ts) == 0 {
		return "none"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// onnx.proto field numbers read here.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelGraph           = 7
	modelOpsetImport     = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphInitializer       = 5
	graphInput             = 11
	graphOutput            = 12
	graphSparseInitializer = 15

	tensorName         = 8
	sparseTensorValues = 1

	valueInfoName = 1
	valueInfoType = 2

	typeTensor       = 1
	typeSequence     = 4
	typeMap          = 5
	typeSparseTensor = 8
	typeOptional     = 9

	tensorTypeElem  = 1
	tensorTypeShape = 2
	shapeDim        = 1
	dimValue        = 1
	dimParam        = 2
)

// maxInlineField bounds the fields read into memory (value infos, names,
// version strings). Anything larger in those places means the bytes are not
// what they claim to be; large weights are skipped, never read.
const maxInlineField = 16 << 20

// ReadModelIO reads the graph inputs and outputs of the ONNX model at path
// without ONNX Runtime. Weights are skipped with seeks rather than read, so
// it costs little even for a model of hundreds of megabytes. Graph inputs
// that are also initializers (older exporters list every weight as an
// input) are left out, as ONNX Runtime does.
func ReadModelIO(path string) (*ModelIO, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, want an ONNX file", path)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%s: %w: the file is empty", path, ErrNotONNX)
	}
	r := &pbReader{f: f, br: bufio.NewReaderSize(f, 64<<10), size: fi.Size()}
	mio, err := r.model()
	if err != nil {
		if errors.Is(err, ErrNotONNX) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, fmt.Errorf("%s: read ONNX model: %w", path, err)
	}
	return mio, nil
}

// pbReader walks protobuf fields of a file sequentially.
type pbReader struct {
	f    io.ReadSeeker
	br   *bufio.Reader
	off  int64 // file offset of the next unread byte
	size int64
}

// notONNX reports malformed protobuf at the current offset.
func (r *pbReader) notONNX(format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrNotONNX, fmt.Sprintf(format, args...), r.off)
}

func (r *pbReader) varint() (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		b, err := r.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, r.notONNX("file ends inside a field (truncated?)")
			}
			return 0, err
		}
		r.off++
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, r.notONNX("malformed varint")
}

func (r *pbReader) skip(n int64) error {
	if n <= int64(r.br.Buffered()) {
		d, err := r.br.Discard(int(n))
		r.off += int64(d)
		return err
	}
	if _, err := r.f.Seek(r.off+n, io.SeekStart); err != nil {
		return err
	}
	r.off += n
	r.br.Reset(r.f)
	return nil
}

func (r *pbReader) read(n int64) ([]byte, error) {
	if n > maxInlineField {
		return nil, r.notONNX("implausible field length %d", n)
	}
	b := make([]byte, n)
	k, err := io.ReadFull(r.br, b)
	r.off += int64(k)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, r.notONNX("file ends inside a field (truncated?)")
		}
		return nil, err
	}
	return b, nil
}

// field is one decoded tag: for varints the value, for length-delimited
// fields the length of the payload, which the callback may read (fully or
// in part) or leave for the walker to skip.
type field struct {
	num protowire.Number
	typ protowire.Type
	val uint64
	len int64
}

// walk calls fn for every field up to end, skipping what fn leaves unread.
func (r *pbReader) walk(end int64, fn func(f field) error) error {
	for r.off < end {
		tag, err := r.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if !num.IsValid() {
			return r.notONNX("invalid field number %d", num)
		}
		f := field{num: num, typ: typ}
		var fieldEnd int64
		switch typ {
		case protowire.VarintType:
			if f.val, err = r.varint(); err != nil {
				return err
			}
			fieldEnd = r.off
		case protowire.Fixed32Type, protowire.Fixed64Type:
			n := int64(4)
			if typ == protowire.Fixed64Type {
				n = 8
			}
			if r.off+n > end {
				return r.notONNX("field %d runs past its message", num)
			}
			if err := r.skip(n); err != nil {
				return err
			}
			continue
		case protowire.BytesType:
			n, err := r.varint()
			if err != nil {
				return err
			}
			if n > uint64(end-r.off) {
				return r.notONNX("field %d claims %d bytes, %d left", num, n, end-r.off)
			}
			f.len = int64(n)
			fieldEnd = r.off + f.len
		default: // groups: onnx.proto has none
			return r.notONNX("unexpected wire type %d for field %d", typ, num)
		}
		if err := fn(f); err != nil {
			return err
		}
		switch {
		case r.off < fieldEnd:
			if err := r.skip(fieldEnd - r.off); err != nil {
				return err
			}
		case r.off > fieldEnd:
			return r.notONNX("field %d overruns its length", num)
		}
	}
	if r.off != end {
		return r.notONNX("message overruns its length")
	}
	return nil
}

func (r *pbReader) model() (*ModelIO, error) {
	m := &ModelIO{}
	var (
		graph                 *graphIO
		producer, producerVer string
		err                   error
	)
	err = r.walk(r.size, func(f field) error {
		switch {
		case f.num == modelIRVersion && f.typ == protowire.VarintType:
			m.IRVersion = int64(f.val)
		case f.num == modelProducerName && f.typ == protowire.BytesType:
			b, err := r.read(f.len)
			producer = string(b)
			return err
		case f.num == modelProducerVersion && f.typ == protowire.BytesType:
			b, err := r.read(f.len)
			producerVer = string(b)
			return err
		case f.num == modelOpsetImport && f.typ == protowire.BytesType:
			b, err := r.read(f.len)
			if err != nil {
				return err
			}
			domain, version, err := parseOpset(b)
			if err != nil {
				return r.notONNX("opset_import: %v", err)
			}
			if domain == "" || domain == "ai.onnx" {
				m.Opset = version
			}
		case f.num == modelGraph && f.typ == protowire.BytesType:
			graph = &graphIO{inits: map[string]bool{}}
			return r.graph(r.off+f.len, graph)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if graph == nil {
		return nil, fmt.Errorf("%w: no graph (the file parses as protobuf but holds no ONNX ModelProto graph)", ErrNotONNX)
	}
	if m.IRVersion <= 0 || m.IRVersion > 1000 {
		return nil, fmt.Errorf("%w: ir_version %d", ErrNotONNX, m.IRVersion)
	}
	if len(graph.outputs) == 0 {
		return nil, fmt.Errorf("%w: the graph has no outputs", ErrNotONNX)
	}
	for _, in := range graph.inputs {
		if !graph.inits[in.Name] {
			m.Inputs = append(m.Inputs, in)
		}
	}
	m.Outputs = graph.outputs
	m.Producer = strings.TrimSpace(producer + " " + producerVer)
	return m, nil
}

type graphIO struct {
	inputs, outputs []Tensor
	inits           map[string]bool
}

func (r *pbReader) graph(end int64, g *graphIO) error {
	return r.walk(end, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case graphInput, graphOutput:
			b, err := r.read(f.len)
			if err != nil {
				return err
			}
			t, err := parseValueInfo(b)
			if err != nil {
				return r.notONNX("graph value info: %v", err)
			}
			if f.num == graphInput {
				g.inputs = append(g.inputs, t)
			} else {
				g.outputs = append(g.outputs, t)
			}
		case graphInitializer:
			return r.tensorName(r.off+f.len, g)
		case graphSparseInitializer:
			return r.walk(r.off+f.len, func(sf field) error {
				if sf.num == sparseTensorValues && sf.typ == protowire.BytesType {
					return r.tensorName(r.off+sf.len, g)
				}
				return nil
			})
		}
		return nil
	})
}

// tensorName records an initializer's name, skipping its data.
func (r *pbReader) tensorName(end int64, g *graphIO) error {
	return r.walk(end, func(f field) error {
		if f.num == tensorName && f.typ == protowire.BytesType {
			b, err := r.read(f.len)
			if err != nil {
				return err
			}
			g.inits[string(b)] = true
		}
		return nil
	})
}

// forEach decodes the fields of an in-memory message.
func forEach(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, payload []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var (
			v       uint64
			payload []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			payload, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, payload); err != nil {
			return err
		}
	}
	return nil
}

func parseOpset(b []byte) (domain string, version int64, err error) {
	err = forEach(b, func(num protowire.Number, typ protowire.Type, v uint64, p []byte) error {
		switch {
		case num == opsetDomain && typ == protowire.BytesType:
			domain = string(p)
		case num == opsetVersion && typ == protowire.VarintType:
			version = int64(v)
		}
		return nil
	})
	return domain, version, err
}

func parseValueInfo(b []byte) (Tensor, error) {
	var t Tensor
	err := forEach(b, func(num protowire.Number, typ protowire.Type, v uint64, p []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case valueInfoName:
			t.Name = string(p)
		case valueInfoType:
			return parseType(p, &t)
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	if t.Name == "" {
		return t, errors.New("value without a name")
	}
	return t, nil
}

// parseType fills in the kind, element type and shape from a TypeProto. For
// containers (sequence, optional) the element type of the innermost tensor
// is kept so that the message can still say what is inside.
func parseType(b []byte, t *Tensor) error {
	return forEach(b, func(num protowire.Number, typ protowire.Type, v uint64, p []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case typeTensor, typeSparseTensor:
			if t.Kind == "" {
				t.Kind = "tensor"
				if num == typeSparseTensor {
					t.Kind = "sparse_tensor"
				}
			}
			return parseTensorType(p, t)
		case typeSequence, typeOptional:
			if t.Kind == "" {
				t.Kind = "sequence"
				if num == typeOptional {
					t.Kind = "optional"
				}
			}
			// Sequence and Optional hold one TypeProto as field 1.
			return forEach(p, func(n protowire.Number, ty protowire.Type, _ uint64, inner []byte) error {
				if n == 1 && ty == protowire.BytesType {
					return parseType(inner, t)
				}
				return nil
			})
		case typeMap:
			if t.Kind == "" {
				t.Kind = "map"
			}
		}
		return nil
	})
}

func parseTensorType(b []byte, t *Tensor) error {
	return forEach(b, func(num protowire.Number, typ protowire.Type, v uint64, p []byte) error {
		switch {
		case num == tensorTypeElem && typ == protowire.VarintType:
			t.Elem = ElemType(int32(v))
		case num == tensorTypeShape && typ == protowire.BytesType:
			t.Dims = []int64{} // declared, possibly rank 0
			return forEach(p, func(n protowire.Number, ty protowire.Type, _ uint64, dim []byte) error {
				if n != shapeDim || ty != protowire.BytesType {
					return nil
				}
				size, name := int64(-1), ""
				err := forEach(dim, func(dn protowire.Number, dt protowire.Type, dv uint64, dp []byte) error {
					switch {
					case dn == dimValue && dt == protowire.VarintType:
						size = int64(dv)
					case dn == dimParam && dt == protowire.BytesType:
						name = string(dp)
					}
					return nil
				})
				if err != nil {
					return err
				}
				if size < 0 {
					size = -1
				}
				t.Dims = append(t.Dims, size)
				if name != "" {
					if t.DimNames == nil {
						t.DimNames = make([]string, 0, len(t.Dims))
					}
					for len(t.DimNames) < len(t.Dims)-1 {
						t.DimNames = append(t.DimNames, "")
					}
					t.DimNames = append(t.DimNames, name)
				}
				return nil
			})
		}
		return nil
	})
}
