package testmodels

import (
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/vidx/vidx/encoders/onnxbuild"
)

// Temporal head contract, matching the defaults of encoders/bundle.
const (
	TemporalFrames    = "frame_embeds"
	TemporalMask      = "frame_mask"
	TemporalOutput    = "video_embeds"
	TemporalFile      = "temporal.onnx"
	TemporalMaxFrames = 12
	// TemporalLayers is the depth of CLIP4Clip's seqTransf
	// (cross_num_hidden_layers = 4).
	TemporalLayers = 4
)

// TemporalMaskLogit is what CLIP4Clip adds to the attention logits of padded
// frames. It is finite, unlike -inf, so a row whose keys are all padding
// cannot turn into NaN; exp(-1e6) is exactly 0 in float32, so real frames
// never see padding.
const TemporalMaskLogit = -1e6

const tinyTemporalSeed = 3

// TemporalBlock is one pre-LayerNorm residual attention block of a seqTransf
// head. Projection matrices are stored row-major as [in, out], the right
// operand of x @ W, so that x·W needs no transpose in the graph or in a
// reference implementation.
type TemporalBlock struct {
	LN1Weight, LN1Bias []float32 // [D]
	QWeight, QBias     []float32 // [D, D], [D]
	KWeight, KBias     []float32 // [D, D], [D]
	VWeight, VBias     []float32 // [D, D], [D]
	OutWeight, OutBias []float32 // [D, D], [D]
	LN2Weight, LN2Bias []float32 // [D]
	FCWeight, FCBias   []float32 // [D, 4D], [4D]
	ProjWeight         []float32 // [4D, D]
	ProjBias           []float32 // [D]
}

// TemporalWeights are the parameters of CLIP4Clip's seqTransf head: learned
// frame position embeddings and a stack of transformer blocks of width Dim
// with Heads heads. They are exported so that tests can compute the head
// from its definition with exactly the weights the generated model holds.
type TemporalWeights struct {
	Dim, Heads, MaxFrames int
	// Position is [MaxFrames, Dim]: row t is added to frame t.
	Position []float32
	Blocks   []TemporalBlock
}

// TemporalHeads is CLIP4Clip's head count for a width: one per 64 channels,
// and at least one for the narrow widths of test models.
func TemporalHeads(dim int) int { return max(1, dim/64) }

// RandomTemporalWeights draws a seqTransf head of width dim from a PCG stream
// seeded with seed, in a fixed order, so equal arguments give equal weights.
// Scales keep activations near unit variance for unit-variance frames, and
// the position embeddings are large enough that frame order changes the
// result, which tests rely on.
func RandomTemporalWeights(dim, maxFrames, layers int, seed uint64) *TemporalWeights {
	rng := rand.New(rand.NewPCG(seed, 0x7669_6478_636c_6970))
	normal := func(count int, mean, std float64) []float32 {
		out := make([]float32, count)
		for i := range out {
			out[i] = float32(mean + std*rng.NormFloat64())
		}
		return out
	}
	d := dim
	inv := func(n int) float64 { return 1 / math.Sqrt(float64(n)) }
	w := &TemporalWeights{Dim: d, Heads: TemporalHeads(d), MaxFrames: maxFrames}
	w.Position = normal(maxFrames*d, 0, 0.5)
	for range layers {
		var b TemporalBlock
		b.LN1Weight, b.LN1Bias = normal(d, 1, 0.05), normal(d, 0, 0.05)
		b.QWeight, b.QBias = normal(d*d, 0, inv(d)), normal(d, 0, 0.02)
		b.KWeight, b.KBias = normal(d*d, 0, inv(d)), normal(d, 0, 0.02)
		b.VWeight, b.VBias = normal(d*d, 0, inv(d)), normal(d, 0, 0.02)
		b.OutWeight, b.OutBias = normal(d*d, 0, 0.5*inv(d)), normal(d, 0, 0.02)
		b.LN2Weight, b.LN2Bias = normal(d, 1, 0.05), normal(d, 0, 0.05)
		b.FCWeight, b.FCBias = normal(d*4*d, 0, inv(d)), normal(4*d, 0, 0.02)
		b.ProjWeight, b.ProjBias = normal(4*d*d, 0, 0.5*inv(4*d)), normal(d, 0, 0.02)
		w.Blocks = append(w.Blocks, b)
	}
	return w
}

// TinyTemporalWeights are the weights of the tiny CLIP bundle's temporal
// head.
func TinyTemporalWeights() *TemporalWeights {
	return RandomTemporalWeights(TinyDim, TemporalMaxFrames, TemporalLayers, tinyTemporalSeed)
}

// TemporalModel builds CLIP4Clip's seqTransf head as an ONNX graph with the
// bundle contract: frame_embeds [N, MaxFrames, Dim] and frame_mask
// [N, MaxFrames] (1 for a frame, 0 for padding) in, video_embeds [N, Dim] out.
// It computes, as CLIP4Clip's _loose_similarity does for seqTransf:
//
//	x = frames + position
//	x = transformer(x) with padded frames masked as keys (TemporalMaskLogit)
//	x = x + frames
//	x = x / |x| per frame; v = sum(x * mask) / max(sum(mask), 1); v / |v|
func TemporalModel(w *TemporalWeights) *onnxbuild.Model {
	g := onnxbuild.NewGraph("seq_transf")
	d, t := int64(w.Dim), int64(w.MaxFrames)
	frames := g.Input(TemporalFrames, onnxbuild.Float, "N", t, d)
	mask := g.Input(TemporalMask, onnxbuild.Float, "N", t)

	x := g.Op("Add", []string{frames, g.Init("frame_position_embeddings", []int64{t, d}, w.Position)})
	// [N, 1, 1, T]: broadcast over heads and query positions, so only keys
	// are masked, as in CLIP4Clip.
	bias := g.Op("Mul", []string{g.Op("Sub", []string{g.Scalar(1), mask}), g.Scalar(TemporalMaskLogit)})
	bias = g.Op("Unsqueeze", []string{bias, g.Int64s(1, 2)})
	for i, b := range w.Blocks {
		x = temporalBlock(g, "transformer.resblocks."+strconv.Itoa(i), x, bias, w.Dim, w.Heads, &b)
	}
	x = g.Op("Add", []string{x, frames})

	x = l2Normalize(g, x)
	m := g.Op("Unsqueeze", []string{mask, g.Int64s(2)}) // N,T,1
	sum := g.Op("ReduceSum", []string{g.Op("Mul", []string{x, m}), g.Int64s(1)}, onnxbuild.AttrInt("keepdims", 0))
	count := g.Op("ReduceSum", []string{mask, g.Int64s(1)}, onnxbuild.AttrInt("keepdims", 1))
	count = g.Op("Max", []string{count, g.Scalar(1)})
	v := l2Normalize(g, g.Op("Div", []string{sum, count}))
	g.Output(v, TemporalOutput, onnxbuild.Float, "N", d)
	return g.Model()
}

// l2Normalize divides x by its L2 norm over the last axis, without an
// epsilon, as CLIP4Clip does.
func l2Normalize(g *onnxbuild.Graph, x string) string {
	sq := g.Op("ReduceSum", []string{g.Op("Mul", []string{x, x}), g.Int64s(-1)}, onnxbuild.AttrInt("keepdims", 1))
	return g.Op("Div", []string{x, g.Op("Sqrt", []string{sq})})
}

func temporalLinear(g *onnxbuild.Graph, name, x string, in, out int, w, b []float32) string {
	y := g.Op("MatMul", []string{x, g.Init(name+".weight", []int64{int64(in), int64(out)}, w)})
	return g.Op("Add", []string{y, g.Init(name+".bias", []int64{int64(out)}, b)})
}

func temporalLayerNorm(g *onnxbuild.Graph, name, x string, w, b []float32) string {
	dims := []int64{int64(len(w))}
	return g.Op("LayerNormalization", []string{x, g.Init(name+".weight", dims, w), g.Init(name+".bias", dims, b)},
		onnxbuild.AttrInt("axis", -1), onnxbuild.AttrFloat("epsilon", 1e-5))
}

// temporalBlock is CLIP's ResidualAttentionBlock with an additive key mask:
// x + attn(ln_1(x)), then + c_proj(QuickGELU(c_fc(ln_2(x)))).
func temporalBlock(g *onnxbuild.Graph, name, x, bias string, width, heads int, b *TemporalBlock) string {
	hd := width / heads
	h := temporalLayerNorm(g, name+".ln_1", x, b.LN1Weight, b.LN1Bias)
	split := g.Int64s(0, 0, int64(heads), int64(hd))
	project := func(part string, w, bb []float32) string {
		y := temporalLinear(g, name+".attn."+part+"_proj", h, width, width, w, bb)
		return g.Op("Reshape", []string{y, split})
	}
	q := g.Op("Transpose", []string{project("q", b.QWeight, b.QBias)}, onnxbuild.AttrInts("perm", 0, 2, 1, 3)) // N,H,T,hd
	k := g.Op("Transpose", []string{project("k", b.KWeight, b.KBias)}, onnxbuild.AttrInts("perm", 0, 2, 3, 1)) // N,H,hd,T
	v := g.Op("Transpose", []string{project("v", b.VWeight, b.VBias)}, onnxbuild.AttrInts("perm", 0, 2, 1, 3)) // N,H,T,hd
	scores := g.Op("Mul", []string{g.Op("MatMul", []string{q, k}), g.Scalar(float32(1 / math.Sqrt(float64(hd))))})
	probs := g.Op("Softmax", []string{g.Op("Add", []string{scores, bias})}, onnxbuild.AttrInt("axis", -1))
	ctx := g.Op("Transpose", []string{g.Op("MatMul", []string{probs, v})}, onnxbuild.AttrInts("perm", 0, 2, 1, 3))
	ctx = g.Op("Reshape", []string{ctx, g.Int64s(0, 0, int64(width))})
	x = g.Op("Add", []string{x, temporalLinear(g, name+".attn.out_proj", ctx, width, width, b.OutWeight, b.OutBias)})

	h = temporalLayerNorm(g, name+".ln_2", x, b.LN2Weight, b.LN2Bias)
	h = temporalLinear(g, name+".mlp.c_fc", h, width, 4*width, b.FCWeight, b.FCBias)
	h = g.Op("Mul", []string{h, g.Op("Sigmoid", []string{g.Op("Mul", []string{h, g.Scalar(1.702)})})})
	h = temporalLinear(g, name+".mlp.c_proj", h, 4*width, width, b.ProjWeight, b.ProjBias)
	return g.Op("Add", []string{x, h})
}
