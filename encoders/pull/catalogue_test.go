package pull

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestCatalogueEntriesLoad writes each entry's manifest next to empty
// stand-ins for its files: bundle.Load must accept the directory, so the
// manifest names exactly the files the entry downloads.
func TestCatalogueEntriesLoad(t *testing.T) {
	entries := Catalogue()
	for _, want := range []string{"clip-vit-base-patch32", "clip-vit-base-patch16"} {
		if _, err := Lookup(want); err != nil {
			t.Errorf("catalogue lacks %s: %v", want, err)
		}
	}
	names := map[string]bool{}
	for _, e := range entries {
		t.Run(e.Name, func(t *testing.T) {
			if names[e.Name] {
				t.Fatalf("%s listed twice", e.Name)
			}
			names[e.Name] = true
			if e.Description == "" || !strings.HasPrefix(e.Homepage, "https://") {
				t.Errorf("entry needs a description and an https homepage: %+v", e)
			}
			dir := t.TempDir()
			for _, f := range e.Files {
				tg, err := f.target(nil, FromCatalogue)
				if err != nil {
					t.Fatal(err)
				}
				if tg.url.Scheme != "https" {
					t.Errorf("%s: %s is not https", f.Path, tg.url)
				}
				p := filepath.Join(dir, filepath.FromSlash(tg.rel))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := e.ManifestYAML()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), data, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := bundle.Load(dir)
			if err != nil {
				t.Fatalf("manifest does not load:\n%s\n%v", data, err)
			}
			if m.Name != e.Name || m.EmbeddingDim != e.Manifest.EmbeddingDim || m.Text.AttentionMask != "" {
				t.Errorf("loaded %+v", m)
			}
			// Every downloaded file is used by the manifest.
			used := map[string]bool{m.Image.ONNX: true, m.Text.ONNX: true, m.Text.Tokenizer.TokenizerJSON: true,
				m.Text.Tokenizer.Vocab: true, m.Text.Tokenizer.Merges: true, m.Text.Tokenizer.BPE: true}
			for _, f := range e.Files {
				if !used[f.Path] {
					t.Errorf("%s is downloaded but not named by the manifest", f.Path)
				}
			}
		})
	}
}

func TestLookupUnknownNamesTheCatalogue(t *testing.T) {
	_, err := Lookup("clip-vit-base-patch33")
	if !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), "clip-vit-base-patch32") {
		t.Errorf("err = %v, want ErrUnknownModel listing the known names", err)
	}
}

func TestCatalogueIsACopy(t *testing.T) {
	a := Catalogue()
	a[0].Files[0].URL = "https://elsewhere.example/x"
	a[0].Manifest.Image.Mean[0] = 9
	b := Catalogue()
	if b[0].Files[0].URL == a[0].Files[0].URL || b[0].Manifest.Image.Mean[0] == 9 {
		t.Error("changing a returned entry changed the catalogue")
	}
}
