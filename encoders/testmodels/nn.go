package testmodels

import (
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/vidx/vidx/encoders/onnxbuild"
)

// net adds transformer layers to a graph, drawing weights from a seeded PCG
// stream. Layers are created in a fixed order, so the same seed always gives
// the same weights and the same model bytes.
type net struct {
	g   *onnxbuild.Graph
	rng *rand.Rand
}

func newNet(name string, seed uint64) *net {
	return &net{g: onnxbuild.NewGraph(name), rng: rand.New(rand.NewPCG(seed, 0x7669_6478_636c_6970))}
}

// normal returns n samples of N(mean, std²).
func (n *net) normal(count int, mean, std float64) []float32 {
	out := make([]float32, count)
	for i := range out {
		out[i] = float32(mean + std*n.rng.NormFloat64())
	}
	return out
}

// param adds a randomly initialised weight.
func (n *net) param(name string, dims []int64, mean, std float64) string {
	count := 1
	for _, d := range dims {
		count *= int(d)
	}
	return n.g.Init(name, dims, n.normal(count, mean, std))
}

// linear is x @ W (+ b) over the last axis. W has std gain/sqrt(in), which
// keeps unit-variance inputs near unit variance.
func (n *net) linear(name, x string, in, out int, gain float64, bias bool) string {
	w := n.param(name+".weight", []int64{int64(in), int64(out)}, 0, gain/math.Sqrt(float64(in)))
	y := n.g.Op("MatMul", []string{x, w})
	if bias {
		y = n.g.Op("Add", []string{y, n.param(name+".bias", []int64{int64(out)}, 0, 0.02)})
	}
	return y
}

// layerNorm normalises the last axis, with a scale near 1 and a small shift.
func (n *net) layerNorm(name, x string, width int) string {
	scale := n.param(name+".weight", []int64{int64(width)}, 1, 0.05)
	shift := n.param(name+".bias", []int64{int64(width)}, 0, 0.05)
	return n.g.Op("LayerNormalization", []string{x, scale, shift},
		onnxbuild.AttrInt("axis", -1), onnxbuild.AttrFloat("epsilon", 1e-5))
}

// quickGELU is CLIP's activation, x * sigmoid(1.702 x).
func (n *net) quickGELU(x string) string {
	s := n.g.Op("Sigmoid", []string{n.g.Op("Mul", []string{x, n.g.Scalar(1.702)})})
	return n.g.Op("Mul", []string{x, s})
}

// attention is multi-head self-attention over x [N, L, width]. mask, when not
// empty, is added to the [N, heads, L, L] scores (large negative values block
// a key); it must broadcast to that shape.
func (n *net) attention(name, x string, width, heads int, mask string) string {
	g := n.g
	hd := width / heads
	split := g.Int64s(0, 0, int64(heads), int64(hd))
	project := func(part string) string {
		y := n.linear(name+"."+part+"_proj", x, width, width, 1, true)
		return g.Op("Reshape", []string{y, split})
	}
	q := g.Op("Transpose", []string{project("q")}, onnxbuild.AttrInts("perm", 0, 2, 1, 3)) // N,H,L,hd
	k := g.Op("Transpose", []string{project("k")}, onnxbuild.AttrInts("perm", 0, 2, 3, 1)) // N,H,hd,L
	v := g.Op("Transpose", []string{project("v")}, onnxbuild.AttrInts("perm", 0, 2, 1, 3)) // N,H,L,hd
	scores := g.Op("Mul", []string{g.Op("MatMul", []string{q, k}), g.Scalar(float32(1 / math.Sqrt(float64(hd))))})
	if mask != "" {
		scores = g.Op("Add", []string{scores, mask})
	}
	probs := g.Op("Softmax", []string{scores}, onnxbuild.AttrInt("axis", -1))
	ctx := g.Op("Transpose", []string{g.Op("MatMul", []string{probs, v})}, onnxbuild.AttrInts("perm", 0, 2, 1, 3))
	ctx = g.Op("Reshape", []string{ctx, g.Int64s(0, 0, int64(width))})
	return n.linear(name+".out_proj", ctx, width, width, 0.5, true)
}

// block is a pre-LayerNorm residual transformer block as in CLIP:
// x + attn(ln_1(x)), then + mlp(ln_2(x)) with a 4x QuickGELU MLP.
func (n *net) block(name, x string, width, heads int, mask string) string {
	g := n.g
	a := n.attention(name+".attn", n.layerNorm(name+".ln_1", x, width), width, heads, mask)
	x = g.Op("Add", []string{x, a})
	h := n.linear(name+".mlp.c_fc", n.layerNorm(name+".ln_2", x, width), width, 4*width, 1, true)
	h = n.linear(name+".mlp.c_proj", n.quickGELU(h), 4*width, width, 0.5, true)
	return g.Op("Add", []string{x, h})
}

// transformer stacks layers blocks.
func (n *net) transformer(name, x string, width, heads, layers int, mask string) string {
	for i := range layers {
		x = n.block(name+".resblocks."+strconv.Itoa(i), x, width, heads, mask)
	}
	return x
}
