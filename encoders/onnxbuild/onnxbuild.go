// Package onnxbuild writes small ONNX models by hand.
//
// No model hub is reachable from where vidx is built and tested, so the
// project generates its own test models in Go. Pulling in generated onnx
// protobuf code for that would add a large dependency for a handful of
// messages; instead this package encodes the few ModelProto messages it needs
// directly with protowire, using the field numbers of onnx.proto.
//
// A Graph is built value by value: Input, Init (and the constant helpers) and
// Op each return the name of the value they create, which later calls take as
// inputs. The first mistake (an unknown input, a duplicate name, data that does
// not match its dims) is remembered and returned by Marshal, so building code
// can stay free of error checks. Output is byte-for-byte deterministic: the
// same calls always produce the same model.
package onnxbuild

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// Defaults used by (*Graph).Model. IR version 8 with opset 17 is understood by
// every ONNX Runtime release vidx supports and includes LayerNormalization.
const (
	DefaultIRVersion = 8
	DefaultOpset     = 17
	DefaultProducer  = "vidx-onnxbuild"
)

// DataType is an ONNX TensorProto.DataType.
type DataType int32

// Element types used by the test models.
const (
	Float DataType = 1
	Int32 DataType = 6
	Int64 DataType = 7
	Bool  DataType = 9
)

// onnx.proto field numbers.
const (
	modelIRVersion    = 1
	modelProducerName = 2
	modelProducerVer  = 3
	modelDocString    = 6
	modelGraph        = 7
	modelOpsetImport  = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName   = 1
	attrF      = 2
	attrI      = 3
	attrS      = 4
	attrT      = 5
	attrFloats = 7
	attrInts   = 8
	attrType   = 20

	tensorDims     = 1
	tensorDataType = 2
	tensorName     = 8
	tensorRawData  = 9

	valueInfoName = 1
	valueInfoType = 2

	typeTensorType = 1
	tensorElemType = 1
	tensorShape    = 2
	shapeDim       = 1
	dimValue       = 1
	dimParam       = 2
)

// AttributeProto.AttributeType values.
const (
	attrTypeFloat  = 1
	attrTypeInt    = 2
	attrTypeString = 3
	attrTypeTensor = 4
	attrTypeFloats = 6
	attrTypeInts   = 7
)

// Attr is a node attribute; build one with AttrInt, AttrFloat, AttrInts,
// AttrFloats, AttrString or AttrTensor.
type Attr struct {
	name   string
	kind   int
	i      int64
	f      float32
	s      string
	ints   []int64
	floats []float32
	t      *tensor
}

// AttrInt is an integer attribute such as axis or keepdims.
func AttrInt(name string, v int64) Attr { return Attr{name: name, kind: attrTypeInt, i: v} }

// AttrFloat is a float attribute such as epsilon or alpha.
func AttrFloat(name string, v float32) Attr { return Attr{name: name, kind: attrTypeFloat, f: v} }

// AttrString is a string attribute such as mode.
func AttrString(name, v string) Attr { return Attr{name: name, kind: attrTypeString, s: v} }

// AttrInts is an integer list attribute such as perm, strides or pads.
func AttrInts(name string, v ...int64) Attr {
	return Attr{name: name, kind: attrTypeInts, ints: append([]int64(nil), v...)}
}

// AttrFloats is a float list attribute.
func AttrFloats(name string, v ...float32) Attr {
	return Attr{name: name, kind: attrTypeFloats, floats: append([]float32(nil), v...)}
}

// AttrTensor is a float tensor attribute, as the value of a Constant node.
func AttrTensor(name string, dims []int64, data []float32) Attr {
	return Attr{name: name, kind: attrTypeTensor, t: &tensor{
		dims: append([]int64(nil), dims...), dataType: Float, raw: float32Bytes(data),
	}}
}

type tensor struct {
	name     string
	dims     []int64
	dataType DataType
	raw      []byte
}

type dim struct {
	value int64
	param string
}

type valueInfo struct {
	name     string
	dataType DataType
	dims     []dim
}

type node struct {
	name    string
	opType  string
	domain  string
	inputs  []string
	outputs []string
	attrs   []Attr
}

// Graph accumulates the inputs, initializers, nodes and outputs of one ONNX
// graph. Nodes must be added in topological order, which building value by
// value gives for free. A Graph is not safe for concurrent use.
type Graph struct {
	name    string
	inputs  []valueInfo
	outputs []valueInfo
	inits   []tensor
	nodes   []node
	values  map[string]bool
	next    int
	err     error
}

// NewGraph starts an empty graph called name.
func NewGraph(name string) *Graph {
	return &Graph{name: name, values: make(map[string]bool)}
}

// Err reports the first error recorded while building, if any.
func (g *Graph) Err() error { return g.err }

func (g *Graph) fail(format string, args ...any) {
	if g.err == nil {
		g.err = fmt.Errorf("onnxbuild: graph %q: "+format, append([]any{g.name}, args...)...)
	}
}

// define registers a new value name, recording an error on a duplicate.
func (g *Graph) define(name string) {
	if name == "" {
		g.fail("empty value name")
		return
	}
	if g.values[name] {
		g.fail("value %q defined twice", name)
		return
	}
	g.values[name] = true
}

// fresh returns an unused value name starting with prefix.
func (g *Graph) fresh(prefix string) string {
	for {
		g.next++
		name := fmt.Sprintf("%s_%d", prefix, g.next)
		if !g.values[name] {
			return name
		}
	}
}

func parseDims(dims []any) ([]dim, error) {
	out := make([]dim, len(dims))
	for i, d := range dims {
		switch v := d.(type) {
		case int:
			out[i].value = int64(v)
		case int64:
			out[i].value = v
		case string:
			out[i].param = v
		default:
			return nil, fmt.Errorf("dimension %d has type %T, want int, int64 or string", i, d)
		}
		if out[i].param == "" && out[i].value < 0 {
			return nil, fmt.Errorf("dimension %d is negative (%d)", i, out[i].value)
		}
	}
	return out, nil
}

// Input declares a graph input and returns its name. Each dim is an int for
// a fixed size or a string naming a dynamic one, e.g. "N" for the batch.
func (g *Graph) Input(name string, dt DataType, dims ...any) string {
	ds, err := parseDims(dims)
	if err != nil {
		g.fail("input %q: %w", name, err)
	}
	g.define(name)
	g.inputs = append(g.inputs, valueInfo{name: name, dataType: dt, dims: ds})
	return name
}

func numElements(dims []int64) (int, error) {
	n := 1
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d", d)
		}
		n *= int(d)
	}
	return n, nil
}

func (g *Graph) addInit(name string, dims []int64, dt DataType, count int, raw []byte) string {
	n, err := numElements(dims)
	if err != nil {
		g.fail("initializer %q: %w", name, err)
	} else if n != count {
		g.fail("initializer %q: dims %v hold %d elements, data has %d", name, dims, n, count)
	}
	g.define(name)
	g.inits = append(g.inits, tensor{name: name, dims: append([]int64(nil), dims...), dataType: dt, raw: raw})
	return name
}

// Init adds a float32 initializer (a weight) called name and returns its name.
// The data is copied and stored little-endian in raw_data.
func (g *Graph) Init(name string, dims []int64, data []float32) string {
	return g.addInit(name, dims, Float, len(data), float32Bytes(data))
}

// InitInt64 adds an int64 initializer called name and returns its name.
func (g *Graph) InitInt64(name string, dims []int64, data []int64) string {
	return g.addInit(name, dims, Int64, len(data), int64Bytes(data))
}

// Const adds an automatically named float32 initializer.
func (g *Graph) Const(dims []int64, data []float32) string {
	return g.Init(g.fresh("const"), dims, data)
}

// Scalar adds an automatically named rank-0 float32 constant, for
// broadcasting arithmetic such as scaling.
func (g *Graph) Scalar(v float32) string {
	return g.Const(nil, []float32{v})
}

// Int64s adds an automatically named 1-D int64 constant, the form shape, axes
// and index operands take since opset 13.
func (g *Graph) Int64s(v ...int64) string {
	return g.InitInt64(g.fresh("const"), []int64{int64(len(v))}, v)
}

// Op adds a node with a single output and returns the output's name.
// An empty input name marks an omitted optional input.
func (g *Graph) Op(opType string, inputs []string, attrs ...Attr) string {
	return g.OpN(opType, inputs, 1, attrs...)[0]
}

// OpN adds a node with n outputs and returns their names.
func (g *Graph) OpN(opType string, inputs []string, n int, attrs ...Attr) []string {
	for _, in := range inputs {
		if in != "" && !g.values[in] {
			g.fail("%s: unknown input %q", opType, in)
		}
	}
	if n < 1 {
		g.fail("%s: %d outputs", opType, n)
		n = 1
	}
	nodeName := g.fresh(opType)
	outs := make([]string, n)
	for i := range outs {
		outs[i] = fmt.Sprintf("%s:%d", nodeName, i)
		g.define(outs[i])
	}
	g.nodes = append(g.nodes, node{
		name:    nodeName,
		opType:  opType,
		inputs:  append([]string(nil), inputs...),
		outputs: outs,
		attrs:   append([]Attr(nil), attrs...),
	})
	return outs
}

// Output declares value as a graph output called name, adding an Identity node
// when the names differ, so callers can name outputs after the contract
// ("image_embeds") without naming every intermediate value.
func (g *Graph) Output(value, name string, dt DataType, dims ...any) {
	ds, err := parseDims(dims)
	if err != nil {
		g.fail("output %q: %w", name, err)
	}
	if !g.values[value] {
		g.fail("output %q: unknown value %q", name, value)
	}
	if value != name {
		g.define(name)
		g.nodes = append(g.nodes, node{
			name: g.fresh("Identity"), opType: "Identity",
			inputs: []string{value}, outputs: []string{name},
		})
	}
	g.outputs = append(g.outputs, valueInfo{name: name, dataType: dt, dims: ds})
}

// Model wraps the graph with the default IR version, opset and producer.
func (g *Graph) Model() *Model {
	return &Model{
		Graph:        g,
		IRVersion:    DefaultIRVersion,
		Opset:        DefaultOpset,
		ProducerName: DefaultProducer,
	}
}

// Model is an ONNX ModelProto around one graph using the default ("ai.onnx")
// operator domain.
type Model struct {
	Graph           *Graph
	IRVersion       int64
	Opset           int64
	ProducerName    string
	ProducerVersion string
	DocString       string
}

// Marshal encodes the model as ONNX protobuf bytes.
func (m *Model) Marshal() ([]byte, error) {
	g := m.Graph
	if g == nil {
		return nil, errors.New("onnxbuild: model has no graph")
	}
	if g.err != nil {
		return nil, g.err
	}
	if len(g.outputs) == 0 {
		return nil, fmt.Errorf("onnxbuild: graph %q has no outputs", g.name)
	}
	var b []byte
	b = appendVarintField(b, modelIRVersion, uint64(m.IRVersion))
	b = appendStringField(b, modelProducerName, m.ProducerName)
	if m.ProducerVersion != "" {
		b = appendStringField(b, modelProducerVer, m.ProducerVersion)
	}
	if m.DocString != "" {
		b = appendStringField(b, modelDocString, m.DocString)
	}
	b = appendBytesField(b, modelGraph, g.encode())
	var opset []byte
	opset = appendStringField(opset, opsetDomain, "")
	opset = appendVarintField(opset, opsetVersion, uint64(m.Opset))
	b = appendBytesField(b, modelOpsetImport, opset)
	return b, nil
}

// WriteFile marshals the model and writes it to path.
func (m *Model) WriteFile(path string) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("onnxbuild: write model: %w", err)
	}
	return nil
}

func (g *Graph) encode() []byte {
	var b []byte
	for i := range g.nodes {
		b = appendBytesField(b, graphNode, g.nodes[i].encode())
	}
	b = appendStringField(b, graphName, g.name)
	for i := range g.inits {
		b = appendBytesField(b, graphInitializer, g.inits[i].encode())
	}
	for i := range g.inputs {
		b = appendBytesField(b, graphInput, g.inputs[i].encode())
	}
	for i := range g.outputs {
		b = appendBytesField(b, graphOutput, g.outputs[i].encode())
	}
	return b
}

func (n *node) encode() []byte {
	var b []byte
	for _, in := range n.inputs {
		b = appendStringField(b, nodeInput, in)
	}
	for _, out := range n.outputs {
		b = appendStringField(b, nodeOutput, out)
	}
	b = appendStringField(b, nodeName, n.name)
	b = appendStringField(b, nodeOpType, n.opType)
	for i := range n.attrs {
		b = appendBytesField(b, nodeAttribute, n.attrs[i].encode())
	}
	if n.domain != "" {
		b = appendStringField(b, nodeDomain, n.domain)
	}
	return b
}

// encode writes repeated scalars unpacked, the proto2 default onnx.proto uses;
// protobuf parsers accept either form.
func (a *Attr) encode() []byte {
	var b []byte
	b = appendStringField(b, attrName, a.name)
	switch a.kind {
	case attrTypeFloat:
		b = appendFloatField(b, attrF, a.f)
	case attrTypeInt:
		b = appendVarintField(b, attrI, uint64(a.i))
	case attrTypeString:
		b = appendStringField(b, attrS, a.s)
	case attrTypeTensor:
		b = appendBytesField(b, attrT, a.t.encode())
	case attrTypeFloats:
		for _, f := range a.floats {
			b = appendFloatField(b, attrFloats, f)
		}
	case attrTypeInts:
		for _, v := range a.ints {
			b = appendVarintField(b, attrInts, uint64(v))
		}
	}
	b = appendVarintField(b, attrType, uint64(a.kind))
	return b
}

func (t *tensor) encode() []byte {
	var b []byte
	for _, d := range t.dims {
		b = appendVarintField(b, tensorDims, uint64(d))
	}
	b = appendVarintField(b, tensorDataType, uint64(t.dataType))
	if t.name != "" {
		b = appendStringField(b, tensorName, t.name)
	}
	b = appendBytesField(b, tensorRawData, t.raw)
	return b
}

func (v *valueInfo) encode() []byte {
	var shape []byte
	for _, d := range v.dims {
		var db []byte
		if d.param != "" {
			db = appendStringField(db, dimParam, d.param)
		} else {
			db = appendVarintField(db, dimValue, uint64(d.value))
		}
		shape = appendBytesField(shape, shapeDim, db)
	}
	var tt []byte
	tt = appendVarintField(tt, tensorElemType, uint64(v.dataType))
	tt = appendBytesField(tt, tensorShape, shape)
	var typ []byte
	typ = appendBytesField(typ, typeTensorType, tt)
	var b []byte
	b = appendStringField(b, valueInfoName, v.name)
	b = appendBytesField(b, valueInfoType, typ)
	return b
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFloatField(b []byte, num protowire.Number, f float32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(f))
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func float32Bytes(data []float32) []byte {
	b := make([]byte, 4*len(data))
	for i, f := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func int64Bytes(data []int64) []byte {
	b := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return b
}
