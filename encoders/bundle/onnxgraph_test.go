package bundle_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnxbuild"
	"github.com/vidx/vidx/encoders/testmodels"
)

// pb helpers write onnx.proto messages by field number, so tests can make
// models onnxbuild would refuse to (weights listed as inputs, odd types).
func pbBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func pbVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// valueInfo encodes a ValueInfoProto; a dim is an int64 size or a string name.
func valueInfo(name string, elem int, dims ...any) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		switch v := d.(type) {
		case int:
			dim = pbVarint(dim, 1, uint64(v))
		case string:
			dim = pbBytes(dim, 2, []byte(v))
		}
		shape = pbBytes(shape, 1, dim)
	}
	tt := pbVarint(nil, 1, uint64(elem))
	if dims != nil {
		tt = pbBytes(tt, 2, shape)
	}
	typ := pbBytes(nil, 1, tt)
	return pbBytes(pbBytes(nil, 1, []byte(name)), 2, typ)
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadModelIOTestModels(t *testing.T) {
	dir, _ := testBundles(t)
	cases := []struct {
		file    string
		inputs  []string
		outputs []string
	}{
		{testmodels.ImageFile, []string{"pixel_values float32[N,3,224,224]"}, []string{"image_embeds float32[N,128]"}},
		{testmodels.TextFile, []string{"input_ids int64[N,77]", "attention_mask int64[N,77]"}, []string{"text_embeds float32[N,128]"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			io, err := bundle.ReadModelIO(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			var ins, outs []string
			for _, in := range io.Inputs {
				ins = append(ins, in.String())
			}
			for _, out := range io.Outputs {
				outs = append(outs, out.String())
			}
			if !reflect.DeepEqual(ins, c.inputs) || !reflect.DeepEqual(outs, c.outputs) {
				t.Errorf("inputs %v outputs %v, want %v %v", ins, outs, c.inputs, c.outputs)
			}
			if io.IRVersion != onnxbuild.DefaultIRVersion || io.Opset != onnxbuild.DefaultOpset || io.Producer != onnxbuild.DefaultProducer {
				t.Errorf("header: ir %d opset %d producer %q", io.IRVersion, io.Opset, io.Producer)
			}
			if in := io.Inputs[0]; in.Dims[0] != -1 || in.DimNames[0] != "N" || in.Dims[1] <= 0 {
				t.Errorf("dims %v names %v", in.Dims, in.DimNames)
			}
		})
	}
}

// Old exporters list every weight among the graph inputs; those are not
// inputs anyone feeds.
func TestReadModelIOSkipsInitializerInputs(t *testing.T) {
	weight := pbBytes(nil, 8, []byte("proj.weight"))
	weight = pbVarint(weight, 1, 4)
	weight = pbVarint(weight, 2, 1)
	weight = pbBytes(weight, 9, make([]byte, 16))
	sparseValues := pbBytes(nil, 8, []byte("sparse.weight"))
	sparse := pbBytes(nil, 1, sparseValues)

	var g []byte
	g = pbBytes(g, 2, []byte("graph"))
	g = pbBytes(g, 5, weight)
	g = pbBytes(g, 15, sparse)
	g = pbBytes(g, 11, valueInfo("pixel_values", 1, "batch", 3, 224, 224))
	g = pbBytes(g, 11, valueInfo("proj.weight", 1, 4))
	g = pbBytes(g, 11, valueInfo("sparse.weight", 1, 4))
	g = pbBytes(g, 12, valueInfo("image_embeds", 1, "batch", 512))
	g = pbBytes(g, 12, valueInfo("no_shape", 10))
	var m []byte
	m = pbVarint(m, 1, 6)
	m = pbBytes(m, 2, []byte("pytorch"))
	m = pbBytes(m, 3, []byte("1.13"))
	m = pbBytes(m, 7, g)
	m = pbBytes(m, 8, pbVarint(pbBytes(nil, 1, []byte("com.microsoft")), 2, 1))
	m = pbBytes(m, 8, pbVarint(nil, 2, 13))

	path := writeFile(t, t.TempDir(), "m.onnx", m)
	io, err := bundle.ReadModelIO(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := bundle.Describe(io.Inputs); got != "pixel_values float32[batch,3,224,224]" {
		t.Errorf("inputs %s", got)
	}
	if got := bundle.Describe(io.Outputs); got != "image_embeds float32[batch,512], no_shape float16[?]" {
		t.Errorf("outputs %s", got)
	}
	if io.Opset != 13 || io.Producer != "pytorch 1.13" || io.IRVersion != 6 {
		t.Errorf("header: %+v", io)
	}
	if out, _ := io.Output("no_shape"); out.Ranked() {
		t.Errorf("no_shape is ranked: %v", out.Dims)
	}
}

// Anything that is not an ONNX model is reported as such, never a panic.
func TestReadModelIORejects(t *testing.T) {
	dir := t.TempDir()
	tiny, _ := testBundles(t)
	model, err := os.ReadFile(filepath.Join(tiny, testmodels.ImageFile))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	noGraph := pbVarint(nil, 1, 8)
	noOutputs := pbBytes(pbVarint(nil, 1, 8), 7, pbBytes(nil, 11, valueInfo("x", 1, 1)))
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"text", []byte("this is not a model\n"), "not an ONNX model"},
		{"html", []byte("<!DOCTYPE html><html><body>404 Not Found</body></html>"), "not an ONNX model"},
		{"random", random, "not an ONNX model"},
		{"truncated", model[:len(model)/2], "not an ONNX model"},
		{"one byte short", model[:len(model)-1], "not an ONNX model"},
		{"no graph", noGraph, "no graph"},
		{"no outputs", noOutputs, "no outputs"},
		{"yaml", []byte("name: clip\nembedding_dim: 512\n"), "not an ONNX model"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, dir, c.name+".onnx", c.data)
			_, err := bundle.ReadModelIO(path)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, bundle.ErrNotONNX) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q: want ErrNotONNX, %q and the path", err, c.want)
			}
		})
	}
	// Corrupted copies of a real model either fail cleanly or still parse;
	// they must never panic or hang.
	for i := range 100 {
		bad := append([]byte(nil), model...)
		for range 1 + i%4 {
			bad[rng.IntN(len(bad))] = byte(rng.Uint32())
		}
		path := writeFile(t, dir, "mutated.onnx", bad)
		if io, err := bundle.ReadModelIO(path); err == nil && len(io.Outputs) == 0 {
			t.Fatalf("mutation %d: accepted a model without outputs", i)
		}
	}
	if _, err := bundle.ReadModelIO(filepath.Join(dir, "missing.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := bundle.ReadModelIO(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
}

func FuzzReadModelIO(f *testing.F) {
	dir := f.TempDir()
	if err := testmodels.WriteColorBundle(dir); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{testmodels.ImageFile, testmodels.TextFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/3])
	}
	f.Add([]byte{0x08, 0x08, 0x3a, 0x02, 0x5a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "m.onnx")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		io, err := bundle.ReadModelIO(path)
		if err == nil && len(io.Outputs) == 0 {
			t.Error("accepted a model without outputs")
		}
	})
}
