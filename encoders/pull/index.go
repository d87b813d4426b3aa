package pull

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
)

// Index is the JSON form of a bundle published as separate files:
//
//	{"name": "clip-vit-b32",
//	 "files": [{"path": "image.onnx", "url": "https://.../image.onnx", "sha256": "…", "size": 351468543},
//	           {"path": "vidx-model.yaml", "sha256": "…"}]}
//
// A file's url may be relative to the index's own URL, and may be left out
// when it equals path. sha256 and size are optional but recommended: without
// sha256 the digest must come from a sidecar or the server's ETag.
type Index struct {
	Name  string `json:"name,omitempty"`
	Files []File `json:"files"`
}

// File is one entry of an Index or of a catalogue entry.
type File struct {
	Path   string `json:"path"`
	URL    string `json:"url,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

// ParseIndex decodes and checks an index. Unknown fields are rejected so a
// misspelt "sha265" fails instead of silently skipping verification.
func ParseIndex(data []byte) (*Index, error) {
	var idx Index
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse: trailing data after the index object")
	}
	if len(idx.Files) == 0 {
		return nil, errors.New("files: the index lists no files")
	}
	for i, f := range idx.Files {
		if _, err := cleanRel(f.Path); err != nil {
			return nil, fmt.Errorf("files[%d].path: %w", i, err)
		}
		if f.SHA256 != "" {
			if _, err := ParseSHA256(f.SHA256); err != nil {
				return nil, fmt.Errorf("files[%d].sha256 (%s): %w", i, f.Path, err)
			}
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("files[%d].size (%s): must be >= 0, got %d", i, f.Path, f.Size)
		}
	}
	return &idx, nil
}

// target is a file to download: where it goes and what it must hash to.
type target struct {
	rel  string // slash-separated path inside the bundle directory
	url  *url.URL
	want Checksum
	size int64 // expected size, 0 when unknown
}

// target resolves f against base (the index URL; nil for catalogue
// entries, whose URLs are absolute).
func (f File) target(base *url.URL, source string) (target, error) {
	rel, err := cleanRel(f.Path)
	if err != nil {
		return target{}, fmt.Errorf("path: %w", err)
	}
	ref := f.URL
	if ref == "" {
		ref = escapePath(rel)
	}
	u, err := url.Parse(ref)
	if err != nil {
		return target{}, fmt.Errorf("%s: url: %w", rel, err)
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	if !u.IsAbs() {
		return target{}, fmt.Errorf("%s: url %q is not absolute", rel, f.URL)
	}
	t := target{rel: rel, url: u, size: f.Size}
	if f.SHA256 != "" {
		hex, err := ParseSHA256(f.SHA256)
		if err != nil {
			return target{}, fmt.Errorf("%s: sha256: %w", rel, err)
		}
		t.want = Checksum{Algo: SHA256, Hex: hex, Source: source}
	}
	return t, nil
}

func escapePath(rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// cleanRel checks that name is a relative, slash-separated path that stays
// inside the bundle directory and returns it cleaned. It is the one gate
// for every name that comes from the network: index paths and archive
// entries alike.
func cleanRel(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("empty path")
	case strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%q contains a NUL byte", name)
	case strings.Contains(name, `\`):
		return "", fmt.Errorf("%q contains a backslash", name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%q is an absolute path", name)
	case len(name) >= 2 && name[1] == ':':
		return "", fmt.Errorf("%q has a drive letter", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q leaves the directory (..)", name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", fmt.Errorf("%q names the directory itself", name)
	}
	if c == PartialDir || strings.HasPrefix(c, PartialDir+"/") || c == ReceiptFile {
		return "", fmt.Errorf("%q is reserved for downloads in progress", name)
	}
	return c, nil
}
