package testmodels

import (
	"math"

	"github.com/vidx/vidx/encoders/onnxbuild"
)

// Tiny CLIP architecture. Width and depth are far below ViT-B/32 (768 wide,
// 12 layers) so the models are about a megabyte each and run in
// milliseconds, but every operation of the real towers is present.
const (
	tinyWidth     = 64
	tinyHeads     = 4
	tinyLayers    = 2
	tinyPatch     = 32
	tinyGrid      = ImageSize / tinyPatch // 7
	tinyImageSeed = 1
	tinyTextSeed  = 2
)

// negInf stands in for -inf in attention masks: it zeroes a key's softmax
// weight without the NaNs a true -inf gives on a fully masked row.
const negInf = -1e9

// tinyImageModel is CLIP's VisionTransformer at toy size:
// 32x32/stride-32 patch convolution (no bias), class token, learned position
// embeddings, ln_pre, tinyLayers pre-LN blocks, ln_post on the class token and
// a bias-free projection to TinyDim.
func tinyImageModel() *onnxbuild.Model {
	n := newNet("tiny_clip_vision", tinyImageSeed)
	g := n.g
	px := g.Input(ImageInput, onnxbuild.Float, "N", 3, ImageSize, ImageSize)

	conv := n.param("conv1.weight", []int64{tinyWidth, 3, tinyPatch, tinyPatch}, 0, 1/math.Sqrt(3*tinyPatch*tinyPatch))
	x := g.Op("Conv", []string{px, conv},
		onnxbuild.AttrInts("kernel_shape", tinyPatch, tinyPatch),
		onnxbuild.AttrInts("strides", tinyPatch, tinyPatch)) // N,W,7,7
	x = g.Op("Reshape", []string{x, g.Int64s(0, tinyWidth, tinyGrid*tinyGrid)})
	x = g.Op("Transpose", []string{x}, onnxbuild.AttrInts("perm", 0, 2, 1)) // N,49,W

	// Broadcast the class token to the dynamic batch: shape [N, 1, W].
	cls := n.param("class_embedding", []int64{1, 1, tinyWidth}, 0, 0.5)
	batch := g.Op("Shape", []string{px}, onnxbuild.AttrInt("start", 0), onnxbuild.AttrInt("end", 1))
	clsShape := g.Op("Concat", []string{batch, g.Int64s(1, tinyWidth)}, onnxbuild.AttrInt("axis", 0))
	cls = g.Op("Expand", []string{cls, clsShape})
	x = g.Op("Concat", []string{cls, x}, onnxbuild.AttrInt("axis", 1)) // N,50,W
	pos := n.param("positional_embedding", []int64{tinyGrid*tinyGrid + 1, tinyWidth}, 0, 0.1)
	x = g.Op("Add", []string{x, pos})
	x = n.layerNorm("ln_pre", x, tinyWidth)

	x = n.transformer("transformer", x, tinyWidth, tinyHeads, tinyLayers, "")

	first := g.InitInt64("class_index", nil, []int64{0})
	x = g.Op("Gather", []string{x, first}, onnxbuild.AttrInt("axis", 1)) // N,W
	x = n.layerNorm("ln_post", x, tinyWidth)
	x = n.linear("proj", x, tinyWidth, TinyDim, 1, false)
	g.Output(x, ImageOutput, onnxbuild.Float, "N", TinyDim)
	return g.Model()
}

// tinyTextModel is CLIP's text transformer at toy size: token and position
// embeddings, a causal mask combined with the attention mask (as the Hugging
// Face export does), tinyLayers pre-LN blocks, ln_final, and the features at
// argmax(input_ids) (the end-of-text token, which has the highest id)
// projected to TinyDim.
//
// With dynamicLength the sequence axis is symbolic: the position embedding
// and the causal mask are sliced to the input's length, as
// scripts/export_bundle.py exports them. The weights do not depend on it, so
// both variants compute the same function.
func tinyTextModel(vocabSize int, dynamicLength bool) *onnxbuild.Model {
	n := newNet("tiny_clip_text", tinyTextSeed)
	g := n.g
	var seqDim any = ContextLength
	if dynamicLength {
		seqDim = "L"
	}
	ids := g.Input(TextInputIDs, onnxbuild.Int64, "N", seqDim)
	am := g.Input(TextAttentionMask, onnxbuild.Int64, "N", seqDim)

	tok := n.param("token_embedding", []int64{int64(vocabSize), tinyWidth}, 0, 0.5)
	x := g.Op("Gather", []string{tok, ids}, onnxbuild.AttrInt("axis", 0)) // N,L,W
	pos := n.param("positional_embedding", []int64{ContextLength, tinyWidth}, 0, 0.1)
	// seqLen is the input's length as a 1-element tensor, the end of every
	// slice that cuts a context_length-sized constant down to the input.
	var seqLen string
	if dynamicLength {
		seqLen = g.Op("Shape", []string{ids}, onnxbuild.AttrInt("start", 1), onnxbuild.AttrInt("end", 2))
		pos = g.Op("Slice", []string{pos, g.Int64s(0), seqLen, g.Int64s(0)})
	}
	x = g.Op("Add", []string{x, pos})

	// mask[n, 1, i, j] = causal[i, j] + negInf*(1 - attention_mask[n, j]).
	causal := make([]float32, ContextLength*ContextLength)
	for i := range ContextLength {
		for j := i + 1; j < ContextLength; j++ {
			causal[i*ContextLength+j] = negInf
		}
	}
	keep := g.Op("Cast", []string{am}, onnxbuild.AttrInt("to", int64(onnxbuild.Float)))
	pad := g.Op("Mul", []string{g.Op("Sub", []string{g.Scalar(1), keep}), g.Scalar(negInf)})
	pad = g.Op("Unsqueeze", []string{pad, g.Int64s(1, 2)}) // N,1,1,L
	causalT := g.Const([]int64{ContextLength, ContextLength}, causal)
	if dynamicLength {
		ends := g.Op("Concat", []string{seqLen, seqLen}, onnxbuild.AttrInt("axis", 0))
		causalT = g.Op("Slice", []string{causalT, g.Int64s(0, 0), ends, g.Int64s(0, 1)})
	}
	mask := g.Op("Add", []string{pad, causalT})

	x = n.transformer("transformer", x, tinyWidth, tinyHeads, tinyLayers, mask)
	x = n.layerNorm("ln_final", x, tinyWidth)

	// Casting to int32 before ArgMax mirrors the Hugging Face export, so the
	// graph has the same nodes as the real models vidx loads.
	eot := g.Op("ArgMax", []string{g.Op("Cast", []string{ids}, onnxbuild.AttrInt("to", int64(onnxbuild.Int32)))},
		onnxbuild.AttrInt("axis", 1), onnxbuild.AttrInt("keepdims", 1)) // N,1
	x = g.Op("GatherND", []string{x, eot}, onnxbuild.AttrInt("batch_dims", 1)) // N,W
	x = n.linear("text_projection", x, tinyWidth, TinyDim, 1, false)
	g.Output(x, TextOutput, onnxbuild.Float, "N", TinyDim)
	return g.Model()
}
