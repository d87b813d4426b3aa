package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// QuantizeOptions configure Quantize.
type QuantizeOptions struct {
	// Script is scripts/quantize.py (or a copy of it): the driver of ONNX
	// Runtime's own dynamic quantizer, which installs it on first use.
	Script string
	// Python runs Script; default python3 from PATH.
	Python string
	// Name is the new bundle's name; default the source name plus "-int8".
	// The name is stored with every indexed vector, and int8 embeddings
	// differ slightly from float32 ones, so the two must not share it.
	Name string
	// Stderr receives the script's progress; nil discards it.
	Stderr io.Writer
}

// ErrQuantizeTool is returned (wrapped) when the quantizer cannot be run at
// all (no python3, no pip reach), as opposed to failing on a model.
var ErrQuantizeTool = errors.New("quantizer unavailable")

// Quantize writes a copy of the bundle at src to dst (which must not exist
// or be empty) with its image and text models replaced by dynamically
// quantized int8 versions, and returns the new bundle's manifest. The
// temporal model, being small and run once per clip, stays float32. The copy
// is assembled next to dst and renamed into place, so a failure leaves no
// half-written bundle.
func Quantize(ctx context.Context, src, dst string, o QuantizeOptions) (*Manifest, error) {
	if o.Script == "" {
		return nil, errors.New("quantize: no script given")
	}
	if o.Python == "" {
		o.Python = "python3"
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	m, err := Load(src)
	if err != nil {
		return nil, err
	}
	if err := checkEmpty(dst); err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	// MkdirTemp makes it private; a bundle is read by whoever runs the stages.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}

	out := *m
	out.Name = o.Name
	if out.Name == "" {
		out.Name = m.Name + "-int8"
	}
	// Models named by absolute or outside paths land at the top of dst.
	local := func(rel string) string {
		if filepath.IsLocal(rel) {
			return rel
		}
		return filepath.Base(rel)
	}
	out.Image.ONNX = local(m.Image.ONNX)
	out.Text.ONNX = local(m.Text.ONNX)
	replaced := map[string]bool{m.Path(m.Image.ONNX): true, m.Path(m.Text.ONNX): true}

	if err := copyTree(m.Dir, tmp, replaced); err != nil {
		return nil, fmt.Errorf("quantize: copy %s: %w", m.Dir, err)
	}
	// Files the manifest names from outside the bundle directory come along.
	for _, rel := range m.namedFiles() {
		if p := m.Path(rel); !filepath.IsLocal(rel) && !replaced[p] {
			if err := copyFile(p, filepath.Join(tmp, filepath.Base(rel))); err != nil {
				return nil, fmt.Errorf("quantize: %w", err)
			}
		}
	}
	out.localizeFiles(local)

	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.Python, o.Script,
		m.Path(m.Image.ONNX), filepath.Join(tmp, out.Image.ONNX),
		m.Path(m.Text.ONNX), filepath.Join(tmp, out.Text.ONNX))
	cmd.Stdout = o.Stderr
	cmd.Stderr = io.MultiWriter(o.Stderr, &stderr)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("quantize: %w", ctx.Err())
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, fmt.Errorf("quantize: run %s: %w: %w", o.Python, ErrQuantizeTool, err)
		}
		return nil, fmt.Errorf("quantize: %s %s: %w: %s", o.Python, o.Script, err, lastLines(stderr.String(), 5))
	}

	data, err := yaml.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("quantize: manifest: %w", err)
	}
	header := fmt.Sprintf("# %s with 8-bit quantized image and text models (vidx models quantize: ONNX Runtime dynamic quantization).\n", m.Name)
	if err := os.WriteFile(filepath.Join(tmp, ManifestFile), append([]byte(header), data...), 0o644); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if _, err := Load(tmp); err != nil {
		return nil, fmt.Errorf("quantize: the written bundle does not load: %w", err)
	}
	// An empty dst directory is replaced; checkEmpty refused anything else.
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	return Load(dst)
}

// namedFiles lists every file the manifest names except the image and text
// models.
func (m *Manifest) namedFiles() []string {
	t := m.Text.Tokenizer
	files := []string{t.Vocab, t.Merges, t.BPE, t.TokenizerJSON}
	if m.Temporal != nil {
		files = append(files, m.Temporal.ONNX)
	}
	var out []string
	for _, f := range files {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (m *Manifest) localizeFiles(local func(string) string) {
	t := &m.Text.Tokenizer
	for _, p := range []*string{&t.Vocab, &t.Merges, &t.BPE, &t.TokenizerJSON} {
		if *p != "" {
			*p = local(*p)
		}
	}
	if m.Temporal != nil {
		tc := *m.Temporal
		tc.ONNX = local(tc.ONNX)
		m.Temporal = &tc
	}
}

func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("quantize: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("quantize: %s exists and is not empty", dir)
	}
	return nil
}

// copyTree copies the regular files under src into dst, skipping skip and
// the manifest (which Quantize rewrites).
func copyTree(src, dst string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if rel != "." && strings.HasPrefix(filepath.Base(rel), ".") {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		case skip[p] || rel == ManifestFile || !d.Type().IsRegular():
			return nil
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("; ")))
}
