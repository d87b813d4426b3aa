package bundle_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/testmodels"
)

var generated struct {
	once        sync.Once
	dir         string
	tiny, color string
	err         error
}

// testBundles writes the generated bundles once per test binary.
func testBundles(t *testing.T) (tiny, color string) {
	t.Helper()
	generated.once.Do(func() {
		generated.dir, generated.err = os.MkdirTemp("", "vidx-bundle-test-")
		if generated.err != nil {
			return
		}
		generated.tiny = filepath.Join(generated.dir, "tiny")
		generated.color = filepath.Join(generated.dir, "color")
		if generated.err = testmodels.WriteTinyCLIPBundle(generated.tiny); generated.err == nil {
			generated.err = testmodels.WriteColorBundle(generated.color)
		}
	})
	if generated.err != nil {
		t.Fatal(generated.err)
	}
	return generated.tiny, generated.color
}

func TestMain(m *testing.M) {
	code := m.Run()
	if generated.dir != "" {
		os.RemoveAll(generated.dir)
	}
	os.Exit(code)
}

// copyBundle copies src into a new directory, with the manifest's temporal
// section dropped and then rewritten by edit, and extra files added or
// replaced.
func copyBundle(t *testing.T, src string, edit func(string) string, extra map[string][]byte) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == bundle.ManifestFile {
			base := withoutTemporal(string(data))
			if edit != nil {
				edited := edit(base)
				if edited == base {
					t.Fatal("manifest edit changed nothing")
				}
				base = edited
			}
			data = []byte(base)
		}
		writeFile(t, dst, e.Name(), data)
	}
	for name, data := range extra {
		writeFile(t, dst, name, data)
	}
	return dst
}

// withoutTemporal drops the temporal section from a manifest, so that each
// case states its own temporal model (or none).
func withoutTemporal(manifest string) string {
	var kept []string
	in := false
	for _, line := range strings.SplitAfter(manifest, "\n") {
		switch {
		case strings.HasPrefix(line, "temporal:"):
			in = true
			continue
		case in && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
			continue
		}
		in = false
		kept = append(kept, line)
	}
	return strings.Join(kept, "")
}

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

// rawModel is a ModelProto with the given graph inputs and outputs (encoded
// ValueInfoProtos) and no nodes: enough for Check, which reads only the
// signature.
func rawModel(inputs, outputs [][]byte) []byte {
	var g []byte
	for _, in := range inputs {
		g = pbBytes(g, 11, in)
	}
	for _, out := range outputs {
		g = pbBytes(g, 12, out)
	}
	return pbBytes(pbVarint(nil, 1, 8), 7, g)
}

const (
	elemFloat = 1
	elemInt32 = 6
	elemInt64 = 7
)

func TestCheck(t *testing.T) {
	tiny, color := testBundles(t)
	temporal := func(frames, mask [][]byte) map[string][]byte {
		return map[string][]byte{"temporal.onnx": rawModel(frames, mask)}
	}
	goodTemporal := temporal(
		[][]byte{valueInfo("frame_embeds", elemFloat, "B", 12, 128), valueInfo("frame_mask", elemFloat, "B", 12)},
		[][]byte{valueInfo("video_embeds", elemFloat, "B", 128)})
	withTemporal := func(s string) string { return s + "temporal: {onnx: temporal.onnx}\n" }

	type problem struct{ field, substr string }
	cases := []struct {
		name     string
		src      string
		edit     func(string) string
		extra    map[string][]byte
		problems []problem // errors, in order
		warnings []problem
	}{
		{name: "tiny clip agrees", src: tiny},
		{name: "colour bundle agrees", src: color},
		{name: "temporal agrees", src: tiny, edit: withTemporal, extra: goodTemporal},
		{name: "image input name", src: tiny, edit: replace("input: pixel_values", "input: pixels"),
			problems: []problem{{"image.input", `"pixels" is not an input of image.onnx (inputs: pixel_values float32[N,3,224,224])`},
				{"image.onnx", `model input pixel_values float32[N,3,224,224] of image.onnx is not fed`}}},
		{name: "image output name", src: tiny, edit: replace("output: image_embeds", "output: img"),
			problems: []problem{{"image.output", `"img" is not an output of image.onnx (outputs: image_embeds float32[N,128])`}}},
		{name: "image size", src: tiny, edit: replace("size: 224", "size: 112"),
			problems: []problem{{"image.size", `is 112 but input "pixel_values" of image.onnx has shape [N,3,224,224]`}}},
		{name: "embedding dim", src: tiny, edit: replace("embedding_dim: 128", "embedding_dim: 512"),
			problems: []problem{
				{"embedding_dim", `is 512 but output "image_embeds" of image.onnx has shape [N,128]`},
				{"embedding_dim", `is 512 but output "text_embeds" of text.onnx has shape [N,128]`}}},
		{name: "context length", src: tiny, edit: replace("context_length: 77", "context_length: 64"),
			problems: []problem{
				{"text.context_length", `is 64 but input "input_ids" of text.onnx has shape [N,77]`},
				{"text.context_length", `is 64 but input "attention_mask" of text.onnx has shape [N,77]`}}},
		{name: "text ids name", src: tiny, edit: replace("input_ids: input_ids", "input_ids: ids"),
			problems: []problem{{"text.input_ids", `"ids" is not an input of text.onnx`}, {"text.onnx", `model input input_ids int64[N,77]`}}},
		{name: "mask left out", src: tiny, edit: replace("  attention_mask: attention_mask\n", ""),
			problems: []problem{{"text.attention_mask", `model input attention_mask int64[N,77] of text.onnx is not fed by the manifest (it feeds text.input_ids "input_ids")`}}},
		{name: "mask on an ids-only model", src: color, edit: replace("  input_ids: input_ids\n", "  input_ids: input_ids\n  attention_mask: attention_mask\n"),
			problems: []problem{{"text.attention_mask", `"attention_mask" is not an input of text.onnx (inputs: input_ids int64[N,77])`}}},
		{name: "image onnx is random bytes", src: tiny, extra: map[string][]byte{"image.onnx": {0xff, 0xfe, 0x00, 0x13, 0x37}},
			problems: []problem{{"image.onnx", "not an ONNX model"}}},
		{name: "text onnx is a text file", src: tiny, extra: map[string][]byte{"text.onnx": []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n")},
			problems: []problem{{"text.onnx", "not an ONNX model"}}},
		{name: "int32 ids", src: color, extra: map[string][]byte{"text.onnx": rawModel(
			[][]byte{valueInfo("input_ids", elemInt32, "N", 77)}, [][]byte{valueInfo("text_embeds", elemFloat, "N", 64)})},
			problems: []problem{{"text.input_ids", `input "input_ids" of text.onnx is int32, vidx feeds int64`}}},
		{name: "3-D output", src: color, extra: map[string][]byte{"text.onnx": rawModel(
			[][]byte{valueInfo("input_ids", elemInt64, "N", 77)}, [][]byte{valueInfo("text_embeds", elemFloat, "N", 77, 64)})},
			problems: []problem{{"text.output", `has shape [N,77,64] (rank 3), vidx reads rank 2 [N,64]`}}},
		{name: "dynamic text length agrees", src: color, edit: replace("context_length: 77", "context_length: 77\n  dynamic_length: true"),
			extra: map[string][]byte{"text.onnx": rawModel(
				[][]byte{valueInfo("input_ids", elemInt64, "N", "L")}, [][]byte{valueInfo("text_embeds", elemFloat, "N", 64)})}},
		{name: "dynamic text length on a fixed model", src: tiny, edit: replace("context_length: 77", "context_length: 77\n  dynamic_length: true"),
			problems: []problem{
				{"text.dynamic_length", `is true but input "input_ids" of text.onnx has the fixed shape [N,77]`},
				{"text.dynamic_length", `is true but input "attention_mask" of text.onnx has the fixed shape [N,77]`}}},
		{name: "dynamic model, fixed manifest", src: color, extra: map[string][]byte{"text.onnx": rawModel(
			[][]byte{valueInfo("input_ids", elemInt64, "N", "L")}, [][]byte{valueInfo("text_embeds", elemFloat, "N", 64)})}},
		{name: "channels", src: color, extra: map[string][]byte{"image.onnx": rawModel(
			[][]byte{valueInfo("pixel_values", elemFloat, "N", 224, 224, 3)}, [][]byte{valueInfo("image_embeds", elemFloat, "N", 64)})},
			problems: []problem{{"image.input", `has shape [N,224,224,3], vidx feeds [N,3,224,224]`}, {"image.size", "is 224 but"}}},
		{name: "hidden states instead of embeddings", src: color, extra: map[string][]byte{"image.onnx": rawModel(
			[][]byte{valueInfo("pixel_values", elemFloat, "N", 3, 224, 224)},
			[][]byte{valueInfo("last_hidden_state", elemFloat, "N", 50, 768), valueInfo("pooler_output", elemFloat, "N", 768)})},
			problems: []problem{{"image.output", "CLIPVisionModelWithProjection"}}},
		{name: "fixed batch", src: color, extra: map[string][]byte{"image.onnx": rawModel(
			[][]byte{valueInfo("pixel_values", elemFloat, 1, 3, 224, 224)}, [][]byte{valueInfo("image_embeds", elemFloat, 1, 64)})},
			warnings: []problem{{"image.input", "fixed batch size of 1"}}},
		{name: "temporal max frames", src: tiny, edit: func(s string) string { return s + "temporal: {onnx: temporal.onnx, max_frames: 8}\n" }, extra: goodTemporal,
			problems: []problem{
				{"temporal.max_frames", `is 8 but input "frame_embeds" of temporal.onnx has shape [B,12,128]`},
				{"temporal.max_frames", `is 8 but input "frame_mask" of temporal.onnx has shape [B,12]`}}},
		{name: "temporal int mask", src: tiny, edit: withTemporal, extra: temporal(
			[][]byte{valueInfo("frame_embeds", elemFloat, "B", 12, 128), valueInfo("frame_mask", elemInt64, "B", 12)},
			[][]byte{valueInfo("video_embeds", elemFloat, "B", 128)}),
			problems: []problem{{"temporal.mask", `input "frame_mask" of temporal.onnx is int64, vidx feeds float32`}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyBundle(t, c.src, c.edit, c.extra)
			m, err := bundle.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			rep := m.Check(nil)
			if len(rep.Models) < 2 || rep.Models[0].Role != "image" || rep.Models[1].Role != "text" {
				t.Fatalf("models %+v", rep.Models)
			}
			match := func(kind string, got []bundle.Problem, want []problem) {
				if len(got) != len(want) {
					t.Errorf("%d %s, want %d: %v", len(got), kind, len(want), got)
					return
				}
				for i, w := range want {
					if got[i].Field != w.field || !strings.Contains(got[i].Msg, w.substr) {
						t.Errorf("%s %d = %s, want field %s and %q", kind, i, got[i], w.field, w.substr)
					}
				}
			}
			var errs []bundle.Problem
			for _, p := range rep.Problems {
				if !p.Warning {
					errs = append(errs, p)
				}
			}
			match("problems", errs, c.problems)
			match("warnings", rep.Warnings(), c.warnings)
			err = rep.Err()
			if (err != nil) != (len(c.problems) > 0) {
				t.Fatalf("Err() = %v", err)
			}
			var ce *bundle.CheckError
			if err != nil && (!errors.As(err, &ce) || !strings.Contains(err.Error(), c.problems[0].field) || !strings.Contains(err.Error(), dir)) {
				t.Errorf("Err() = %v: want a *CheckError naming the field and the bundle", err)
			}
		})
	}
}

// Check takes another inspector, such as ONNX Runtime's, and reports its
// failures against the file's field.
func TestCheckInspectorError(t *testing.T) {
	_, color := testBundles(t)
	m, err := bundle.Load(color)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("Load model failed: Unsupported opset")
	rep := m.Check(func(path string) (*bundle.ModelIO, error) {
		if strings.HasSuffix(path, "text.onnx") {
			return nil, boom
		}
		return bundle.ReadModelIO(path)
	})
	err = rep.Err()
	if err == nil || !strings.Contains(err.Error(), "text.onnx: Load model failed") || rep.Models[1].Err != boom {
		t.Fatalf("Err() = %v, models %+v", err, rep.Models)
	}
}
