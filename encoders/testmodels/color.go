package testmodels

import (
	"fmt"

	"github.com/vidx/vidx/encoders/onnxbuild"
)

// The colour bundle is a hand-made "CLIP" whose embeddings mean something, so
// retrieval can be tested end to end: a solid red video must be the top hit
// for "red". Both towers write into the same ColorDim-dimensional space, in
// which dimension k stands for palette colour k and dimension len(palette) is
// a constant bias; the remaining dimensions are zero.
//
// Image tower: undo the CLIP normalisation (x*std + mean), average each
// channel over the image to get its mean colour c, and softly assign c to the
// nearest palette colours, p = softmax(-|c - rgb_k|² / colorTemperature). The
// embedding is p in dimensions 0..K-1 plus colorBias in dimension K. Because p
// sums to one, a single MatMul writes both.
//
// Text tower: each token looks up a row of an embedding table that is e_k for
// the token of a colour word ("red</w>") and zero for every other token,
// including the special tokens and the pad id 0; the rows are summed over the
// sequence and colorBias is added in dimension K. "a red screen" thus embeds
// as e_red + bias, and text without a colour word as the bias alone.
//
// The bias keeps every embedding non-zero (no NaN after normalisation, for
// grey frames or colourless queries) while costing little margin: a matching
// colour scores cosine ≈ 1, any other ≈ colorBias² / (1 + colorBias²) ≈ 0.01.

// Color is one palette colour the colour bundle recognises.
type Color struct {
	// Words are the query words for the colour, e.g. "grey" and "gray".
	Words []string
	// RGB is the colour in [0, 1].
	RGB [3]float32
}

// Colors returns the colour bundle's palette in embedding-dimension order.
// Frames whose mean colour is closest to RGB match queries with Words.
func Colors() []Color {
	return []Color{
		{[]string{"red"}, [3]float32{1, 0, 0}},
		{[]string{"green"}, [3]float32{0, 1, 0}},
		{[]string{"blue"}, [3]float32{0, 0, 1}},
		{[]string{"yellow"}, [3]float32{1, 1, 0}},
		{[]string{"cyan"}, [3]float32{0, 1, 1}},
		{[]string{"magenta"}, [3]float32{1, 0, 1}},
		{[]string{"white"}, [3]float32{1, 1, 1}},
		{[]string{"black"}, [3]float32{0, 0, 0}},
		{[]string{"orange"}, [3]float32{1, 0.5, 0}},
		{[]string{"purple"}, [3]float32{0.5, 0, 0.5}},
		{[]string{"grey", "gray"}, [3]float32{0.5, 0.5, 0.5}},
	}
}

const (
	// colorTemperature sets how sharply a mean colour is assigned to its
	// nearest palette colour. Palette colours are at least 0.25 apart in
	// squared distance, so a neighbour gets about exp(-12.5) of the weight.
	colorTemperature = 0.02
	// colorBias is the constant component of every colour-bundle embedding.
	colorBias = 0.1
)

// colorImageModel maps CLIP-normalised pixels [N,3,224,224] to [N,ColorDim].
func colorImageModel() *onnxbuild.Model {
	g := onnxbuild.NewGraph("color_image")
	pal := Colors()
	k := len(pal)
	px := g.Input(ImageInput, onnxbuild.Float, "N", 3, ImageSize, ImageSize)

	// Back to [0, 1] RGB, then the mean colour per image: N,3.
	mean, std := clipMean(), clipStd()
	toF32 := func(v [3]float64) []float32 { return []float32{float32(v[0]), float32(v[1]), float32(v[2])} }
	x := g.Op("Mul", []string{px, g.Init("std", []int64{1, 3, 1, 1}, toF32(std))})
	x = g.Op("Add", []string{x, g.Init("mean", []int64{1, 3, 1, 1}, toF32(mean))})
	rgb := g.Op("ReduceMean", []string{x}, onnxbuild.AttrInts("axes", 2, 3), onnxbuild.AttrInt("keepdims", 0))

	// Squared distance to each palette colour: N,K.
	protos := make([]float32, 0, 3*k)
	for _, c := range pal {
		protos = append(protos, c.RGB[:]...)
	}
	diff := g.Op("Sub", []string{
		g.Op("Unsqueeze", []string{rgb, g.Int64s(1)}),
		g.Init("palette", []int64{int64(k), 3}, protos),
	}) // N,K,3
	dist := g.Op("ReduceSum", []string{g.Op("Mul", []string{diff, diff}), g.Int64s(2)}, onnxbuild.AttrInt("keepdims", 0))
	p := g.Op("Softmax", []string{g.Op("Mul", []string{dist, g.Scalar(-1 / colorTemperature)})}, onnxbuild.AttrInt("axis", -1))

	// Row k of the placement matrix is e_k + colorBias*e_K.
	place := make([]float32, k*ColorDim)
	for i := range k {
		place[i*ColorDim+i] = 1
		place[i*ColorDim+k] = colorBias
	}
	emb := g.Op("MatMul", []string{p, g.Init("placement", []int64{int64(k), ColorDim}, place)})
	g.Output(emb, ImageOutput, onnxbuild.Float, "N", ColorDim)
	return g.Model()
}

// colorTextModel maps ids [N,77] to [N,ColorDim] using the colour-word token
// ids from vocab, which must hold every palette word as a whole-word token.
func colorTextModel(vocab map[string]int) (*onnxbuild.Model, error) {
	size, err := vocabSize(vocab)
	if err != nil {
		return nil, err
	}
	pal := Colors()
	table := make([]float32, size*ColorDim)
	for k, c := range pal {
		for _, w := range c.Words {
			id, ok := vocab[w+endOfWord]
			if !ok {
				return nil, fmt.Errorf("colour word %q is not a single token in the vocabulary", w)
			}
			table[id*ColorDim+k] = 1
		}
	}
	bias := make([]float32, ColorDim)
	bias[len(pal)] = colorBias

	g := onnxbuild.NewGraph("color_text")
	ids := g.Input(TextInputIDs, onnxbuild.Int64, "N", ContextLength)
	x := g.Op("Gather", []string{g.Init("token_embedding", []int64{int64(size), ColorDim}, table), ids},
		onnxbuild.AttrInt("axis", 0)) // N,77,D
	x = g.Op("ReduceSum", []string{x, g.Int64s(1)}, onnxbuild.AttrInt("keepdims", 0))
	x = g.Op("Add", []string{x, g.Init("bias", []int64{ColorDim}, bias)})
	g.Output(x, TextOutput, onnxbuild.Float, "N", ColorDim)
	return g.Model(), nil
}
