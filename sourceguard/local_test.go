package sourceguard

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "videos")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	inside := writeFile(t, filepath.Join(root, "in.mp4"), []byte("video"))
	outside := writeFile(t, filepath.Join(dir, "secret.mp4"), []byte("secret"))
	link := filepath.Join(root, "link.mp4")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "empty.mp4"), nil)
	rooted, err := NewGuard(SourcePolicy{FileRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	open, err := NewGuard(SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	var refused *RefusedError
	cases := []struct {
		name  string
		guard *Guard
		uri   string
		want  string // file content, or "" for an error
		check func(error) bool
	}{
		{"path inside", rooted, inside, "video", nil},
		{"file URI inside", rooted, "file://" + inside, "video", nil},
		{"outside the roots", rooted, outside, "", func(err error) bool { return errors.As(err, &refused) }},
		{"link out of the roots", rooted, link, "", func(err error) bool { return errors.As(err, &refused) }},
		{"dot-dot out of the roots", rooted, root + "/../secret.mp4", "", func(err error) bool { return errors.As(err, &refused) }},
		{"no roots configured", open, inside, "", func(err error) bool { return errors.As(err, &refused) }},
		{"a directory", rooted, root, "", func(err error) bool { return err != nil }},
		{"empty file", rooted, filepath.Join(root, "empty.mp4"), "", func(err error) bool { return err != nil }},
		{"missing file", rooted, filepath.Join(root, "nope.mp4"), "", func(err error) bool { return err != nil }},
		{"http source", rooted, "https://example.com/v.mp4", "", func(err error) bool { return errors.Is(err, ErrNotLocal) }},
		{"file URI of another host", rooted, "file://other/v.mp4", "", func(err error) bool { return errors.Is(err, ErrNotLocal) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.guard.OpenLocal(tc.uri)
			if tc.want == "" {
				if err == nil {
					f.Close()
					t.Fatal("opened")
				}
				if !tc.check(err) {
					t.Fatalf("error %v of the wrong kind", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			data, err := os.ReadFile(f.Name())
			if err != nil || string(data) != tc.want {
				t.Fatalf("read %q %v", data, err)
			}
		})
	}
}
