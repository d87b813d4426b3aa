package onnxbuild_test

import (
	"bytes"
	"math"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vidx/vidx/encoders/onnx/orttest"
	"github.com/vidx/vidx/encoders/onnxbuild"
)

// affineModel computes y = LeakyRelu(2*(x@W + b) + c), its row sums and its
// transpose over a dynamic batch, covering the encodings the test models rely
// on: dynamic dims, float and int64 initializers, scalar constants, a Constant
// node and int, float, ints and tensor attributes.
func affineModel(t testing.TB) []byte {
	t.Helper()
	g := onnxbuild.NewGraph("affine")
	x := g.Input("x", onnxbuild.Float, "N", 3)
	w := g.Init("w", []int64{3, 2}, []float32{1, 0, 0, 1, 1, 1})
	b := g.Init("b", []int64{2}, []float32{0.5, -0.5})
	y := g.Op("Add", []string{g.Op("MatMul", []string{x, w}), b})
	y = g.Op("Mul", []string{y, g.Scalar(2)})
	y = g.Op("Add", []string{y, g.Op("Constant", nil, onnxbuild.AttrTensor("value", []int64{2}, []float32{1, -1}))})
	y = g.Op("LeakyRelu", []string{y}, onnxbuild.AttrFloat("alpha", 0.25))
	g.Output(y, "y", onnxbuild.Float, "N", 2)
	s := g.Op("ReduceSum", []string{y, g.Int64s(1)}, onnxbuild.AttrInt("keepdims", 0))
	g.Output(s, "s", onnxbuild.Float, "N")
	tr := g.Op("Transpose", []string{y}, onnxbuild.AttrInts("perm", 1, 0))
	g.Output(tr, "yt", onnxbuild.Float, 2, "N")
	b2, err := g.Model().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b2
}

func TestDeterministic(t *testing.T) {
	a, b := affineModel(t), affineModel(t)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same graph differ")
	}
}

// TestWireFormat decodes the top level of the model and checks the fields a
// runtime reads first.
func TestWireFormat(t *testing.T) {
	b := affineModel(t)
	var ir, opset int64
	var producer string
	var graph []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			ir, n = int64(v), m
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeString(b)
			producer, n = v, m
		case num == 7 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			graph, n = v, m
		case num == 8 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			n = m
			for len(v) > 0 {
				fn, ft, k := protowire.ConsumeTag(v)
				v = v[k:]
				k = protowire.ConsumeFieldValue(fn, ft, v)
				if fn == 2 {
					x, _ := protowire.ConsumeVarint(v)
					opset = int64(x)
				}
				v = v[k:]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		b = b[n:]
	}
	if ir != onnxbuild.DefaultIRVersion || opset != onnxbuild.DefaultOpset {
		t.Errorf("ir_version %d opset %d, want %d and %d", ir, opset, onnxbuild.DefaultIRVersion, onnxbuild.DefaultOpset)
	}
	if producer != onnxbuild.DefaultProducer {
		t.Errorf("producer %q", producer)
	}
	if !bytes.Contains(graph, []byte("affine")) {
		t.Error("graph name missing")
	}
}

func TestBuildErrors(t *testing.T) {
	cases := map[string]func(g *onnxbuild.Graph){
		"unknown input": func(g *onnxbuild.Graph) {
			g.Output(g.Op("Relu", []string{"nope"}), "y", onnxbuild.Float, 1)
		},
		"defined twice": func(g *onnxbuild.Graph) {
			x := g.Input("x", onnxbuild.Float, 1)
			g.Init("x", []int64{1}, []float32{1})
			g.Output(x, "y", onnxbuild.Float, 1)
		},
		"elements": func(g *onnxbuild.Graph) {
			x := g.Input("x", onnxbuild.Float, 2)
			g.Output(g.Op("Add", []string{x, g.Init("w", []int64{2}, []float32{1, 2, 3})}), "y", onnxbuild.Float, 2)
		},
		"dimension": func(g *onnxbuild.Graph) {
			g.Output(g.Input("x", onnxbuild.Float, 1.5), "y", onnxbuild.Float, 1)
		},
		"no outputs": func(g *onnxbuild.Graph) {
			g.Input("x", onnxbuild.Float, 1)
		},
	}
	for want, build := range cases {
		g := onnxbuild.NewGraph("bad")
		build(g)
		if _, err := g.Model().Marshal(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %v", want, err)
		}
	}
}

// TestRunsInORT loads the model into ONNX Runtime and checks the arithmetic
// for two batch sizes.
func TestRunsInORT(t *testing.T) {
	orttest.Require(t)
	s := orttest.Session(t, affineModel(t), []string{"x"}, []string{"y", "s", "yt"})
	for _, n := range []int{1, 4} {
		in := make([]float32, 3*n)
		for i := range in {
			in[i] = float32(i%5) - 1.5
		}
		x, err := ort.NewTensor(ort.NewShape(int64(n), 3), in)
		if err != nil {
			t.Fatal(err)
		}
		outs := []ort.Value{nil, nil, nil}
		if err := s.Run([]ort.Value{x}, outs); err != nil {
			t.Fatal(err)
		}
		y := outs[0].(*ort.Tensor[float32])
		sum := outs[1].(*ort.Tensor[float32])
		yt := outs[2].(*ort.Tensor[float32])
		if got := y.GetShape(); !got.Equals(ort.NewShape(int64(n), 2)) {
			t.Fatalf("y shape %v", got)
		}
		for r := range n {
			a, b, c := in[3*r], in[3*r+1], in[3*r+2]
			want := []float32{2*(a+c+0.5) + 1, 2*(b+c-0.5) - 1}
			var ws float32
			for j, v := range want {
				if v < 0 {
					v *= 0.25
				}
				ws += v
				if got := y.GetData()[2*r+j]; math.Abs(float64(got-v)) > 1e-5 {
					t.Errorf("n=%d y[%d][%d]=%v want %v", n, r, j, got, v)
				}
				if got := yt.GetData()[j*n+r]; got != y.GetData()[2*r+j] {
					t.Errorf("transpose mismatch at %d,%d", r, j)
				}
			}
			if got := sum.GetData()[r]; math.Abs(float64(got-ws)) > 1e-5 {
				t.Errorf("n=%d s[%d]=%v want %v", n, r, got, ws)
			}
		}
		x.Destroy()
		for _, o := range outs {
			o.Destroy()
		}
	}
}
