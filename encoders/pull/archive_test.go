package pull

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
)

type tarEntry struct {
	name string
	typ  byte
	body string
	link string
}

func makeTar(t *testing.T, gz bool, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = tar.NewWriter(zw)
	} else {
		w = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o644, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			w.Write([]byte(e.body))
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

func bundleTar(t *testing.T, files map[string][]byte, top string) []tarEntry {
	var entries []tarEntry
	if top != "" {
		entries = append(entries, tarEntry{name: top + "/", typ: tar.TypeDir})
		top += "/"
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		entries = append(entries, tarEntry{name: top + name, body: string(files[name])})
	}
	return entries
}

func TestPullArchive(t *testing.T) {
	files := colorBundle(t)
	tests := []struct {
		name, path string
		gz         bool
		top        string
		pin        bool // sha256 in the URL fragment, else a sidecar
	}{
		{"tar.gz with a top directory, pinned", "/dl/color.tar.gz", true, "color-v1", true},
		{"plain tar, sidecar", "/dl/color.tar", false, "", false},
		{"gzip named .tar", "/dl/odd.tar", true, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			archive := makeTar(t, tc.gz, bundleTar(t, files, tc.top))
			srv := newFakeServer(t, false)
			srv.add(tc.path, &fakeFile{data: archive})
			url := srv.URL + tc.path
			if tc.pin {
				url += "#sha256=" + sum(archive)
			} else {
				srv.add(tc.path+".sha256", &fakeFile{data: []byte(sum(archive) + "\n")})
			}
			dir := filepath.Join(t.TempDir(), "m")
			p := testPuller(t, Options{})
			res, err := p.Pull(context.Background(), url, dir)
			if err != nil {
				t.Fatal(err)
			}
			if res.Manifest == nil {
				t.Fatal("bundle not loaded after extraction")
			}
			if res.Archive == nil || res.Archive.Verified.Hex != sum(archive) {
				t.Errorf("archive result %+v", res.Archive)
			}
			if len(res.Files) != len(files) {
				t.Errorf("%d files extracted, want %d", len(res.Files), len(files))
			}
			for _, fr := range res.Files {
				if got := mustRead(t, filepath.Join(dir, fr.Path)); !bytes.Equal(got, files[fr.Path]) || fr.SHA256 != sum(files[fr.Path]) {
					t.Errorf("%s: content or hash differs", fr.Path)
				}
			}
			noPartials(t, dir)

			// Again: the receipt shows an intact extraction, so the archive
			// is not downloaded a second time.
			before := len(srv.gets(tc.path))
			res, err = p.Pull(context.Background(), url, dir)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(srv.gets(tc.path)) - before; n != 0 {
				t.Errorf("archive downloaded %d more times", n)
			}
			if res.Archive.Action != Present {
				t.Errorf("second pull: archive %s, want %s", res.Archive.Action, Present)
			}
			// A damaged file brings the download back.
			os.WriteFile(filepath.Join(dir, bundle.ManifestFile), []byte("name: x\n"), 0o644)
			if _, err := p.Pull(context.Background(), url, dir); err != nil {
				t.Fatal(err)
			}
			if n := len(srv.gets(tc.path)) - before; n != 1 {
				t.Errorf("after damage the archive was downloaded %d times, want 1", n)
			}
			if got := mustRead(t, filepath.Join(dir, bundle.ManifestFile)); !bytes.Equal(got, files[bundle.ManifestFile]) {
				t.Error("damaged manifest not restored")
			}
		})
	}
}

func TestArchiveRejectsUnsafeEntries(t *testing.T) {
	ok := tarEntry{name: "image.onnx", body: "weights"}
	tests := []struct {
		name    string
		entries []tarEntry
		opt     Options
		want    error
	}{
		{"parent traversal", []tarEntry{ok, {name: "../evil.txt", body: "x"}}, Options{}, ErrUnsafeArchive},
		{"traversal inside the path", []tarEntry{ok, {name: "a/../../evil.txt", body: "x"}}, Options{}, ErrUnsafeArchive},
		{"absolute path", []tarEntry{ok, {name: "/tmp/evil.txt", body: "x"}}, Options{}, ErrUnsafeArchive},
		{"backslashes", []tarEntry{ok, {name: `..\..\evil.txt`, body: "x"}}, Options{}, ErrUnsafeArchive},
		{"symlink out", []tarEntry{ok, {name: "link", typ: tar.TypeSymlink, link: "../../etc"}}, Options{}, ErrUnsafeArchive},
		{"absolute symlink", []tarEntry{ok, {name: "link", typ: tar.TypeSymlink, link: "/etc/passwd"}}, Options{}, ErrUnsafeArchive},
		{"symlink out of the stripped top directory", []tarEntry{
			{name: "top/", typ: tar.TypeDir}, {name: "top/image.onnx", body: "w"},
			{name: "top/link", typ: tar.TypeSymlink, link: "../secret"}}, Options{}, ErrUnsafeArchive},
		{"hard link out", []tarEntry{ok, {name: "h", typ: tar.TypeLink, link: "../evil.txt"}}, Options{}, ErrUnsafeArchive},
		{"hard link to a file outside the archive", []tarEntry{ok, {name: "h", typ: tar.TypeLink, link: "etc/passwd"}}, Options{}, ErrUnsafeArchive},
		{"character device", []tarEntry{ok, {name: "null", typ: tar.TypeChar}}, Options{}, ErrUnsafeArchive},
		{"block device", []tarEntry{ok, {name: "sda", typ: tar.TypeBlock}}, Options{}, ErrUnsafeArchive},
		{"fifo", []tarEntry{ok, {name: "pipe", typ: tar.TypeFifo}}, Options{}, ErrUnsafeArchive},
		{"reserved name", []tarEntry{ok, {name: ".partial/x", body: "x"}}, Options{}, ErrUnsafeArchive},
		{"too many entries", []tarEntry{ok, {name: "b", body: "1"}, {name: "c", body: "2"}}, Options{MaxEntries: 2}, ErrTooLarge},
		{"file too large", []tarEntry{ok, {name: "big", body: strings.Repeat("b", 5000)}}, Options{MaxFileSize: 4096}, ErrTooLarge},
		{"total too large", []tarEntry{{name: "a", body: strings.Repeat("a", 3000)}, {name: "b", body: strings.Repeat("b", 3000)}},
			Options{MaxExtractSize: 5000}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			archive := makeTar(t, true, tc.entries)
			srv := newFakeServer(t, false)
			srv.add("/evil.tar.gz", &fakeFile{data: archive})
			base := t.TempDir()
			dir := filepath.Join(base, "model")
			_, err := testPuller(t, tc.opt).Pull(context.Background(), srv.URL+"/evil.tar.gz#sha256="+sum(archive), dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// Nothing extracted, nothing left over, nothing outside.
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				var names []string
				for _, e := range left {
					names = append(names, e.Name())
				}
				t.Errorf("left in the directory: %v", names)
			}
			if around, _ := os.ReadDir(base); len(around) != 1 {
				t.Errorf("%d entries beside the directory, want 1", len(around))
			}
		})
	}
}

// TestArchiveSymlinkChain: each link is lexically inside, but c resolves
// through a/b (the root) to the root's parent. The os.Root based extraction
// refuses to write through it and the final check removes it.
func TestArchiveSymlinkChain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"dangling escape", []tarEntry{
			{name: "a/", typ: tar.TypeDir},
			{name: "a/b", typ: tar.TypeSymlink, link: ".."},
			{name: "c", typ: tar.TypeSymlink, link: "a/b/.."},
		}},
		{"write through the escape", []tarEntry{
			{name: "a/", typ: tar.TypeDir},
			{name: "a/b", typ: tar.TypeSymlink, link: ".."},
			{name: "c", typ: tar.TypeSymlink, link: "a/b/.."},
			{name: "c/evil.txt", body: "pwned"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := makeTar(t, false, tc.entries)
			srv := newFakeServer(t, false)
			srv.add("/chain.tar", &fakeFile{data: archive})
			base := t.TempDir()
			dir := filepath.Join(base, "model")
			_, err := testPuller(t, Options{}).Pull(context.Background(), srv.URL+"/chain.tar#sha256="+sum(archive), dir)
			if err == nil {
				t.Fatal("an escaping symlink chain was extracted")
			}
			if _, err := os.Stat(filepath.Join(base, "evil.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a file was written outside the directory: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "c")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the escaping link was left in place: %v", err)
			}
		})
	}
}

func TestArchiveSafeLinks(t *testing.T) {
	entries := []tarEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "./model.onnx", body: "weights"},
		{name: "./alias.onnx", typ: tar.TypeSymlink, link: "model.onnx"},
		{name: "./copy.onnx", typ: tar.TypeLink, link: "model.onnx"},
		{name: "./sub/", typ: tar.TypeDir},
		{name: "./sub/up.onnx", typ: tar.TypeSymlink, link: "../model.onnx"},
	}
	archive := makeTar(t, true, entries)
	srv := newFakeServer(t, false)
	srv.add("/ok.tgz", &fakeFile{data: archive, etag: quote(sum(archive))})
	dir := t.TempDir()
	res, err := testPuller(t, Options{}).Pull(context.Background(), srv.URL+"/ok.tgz", dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Archive.Verified.Source != FromETag {
		t.Errorf("archive verified by %v, want the ETag", res.Archive.Verified)
	}
	for _, name := range []string{"model.onnx", "alias.onnx", "copy.onnx", "sub/up.onnx"} {
		if got := mustRead(t, filepath.Join(dir, name)); string(got) != "weights" {
			t.Errorf("%s reads %q", name, got)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "sub/up.onnx")); err != nil || target != "../model.onnx" {
		t.Errorf("sub/up.onnx -> %q, %v", target, err)
	}
	if res.Manifest != nil {
		t.Error("a manifest was reported for an archive without one")
	}
}

func TestPlanArchive(t *testing.T) {
	tests := []struct {
		name      string
		entries   []tarEntry
		wantStrip string
		wantNames []string
	}{
		{"top directory stripped", []tarEntry{{name: "b32/", typ: tar.TypeDir}, {name: "b32/x", body: "1"}, {name: "b32/y/z", body: "2"}},
			"b32/", []string{"x", "y/z"}},
		{"top directory without its own entry", []tarEntry{{name: "b32/x", body: "1"}}, "b32/", []string{"x"}},
		{"two top-level names", []tarEntry{{name: "a/x", body: "1"}, {name: "b/x", body: "2"}}, "", []string{"a/x", "b/x"}},
		{"file at the top", []tarEntry{{name: "x", body: "1"}}, "", []string{"x"}},
		{"dot prefix", []tarEntry{{name: "./", typ: tar.TypeDir}, {name: "./x", body: "1"}, {name: "./y", body: "2"}}, "", []string{"x", "y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.tar")
			os.WriteFile(path, makeTar(t, false, tc.entries), 0o644)
			plan, err := planArchive(context.Background(), path, limits{1 << 20, 1 << 20, 100})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range plan.entries {
				if e.typ == tar.TypeReg {
					names = append(names, e.name)
				}
			}
			if plan.strip != tc.wantStrip || !slices.Equal(names, tc.wantNames) {
				t.Errorf("strip %q names %v, want %q %v", plan.strip, names, tc.wantStrip, tc.wantNames)
			}
		})
	}
}

func TestArchiveWithoutChecksumRefused(t *testing.T) {
	archive := makeTar(t, true, []tarEntry{{name: "x", body: "1"}})
	srv := newFakeServer(t, false)
	srv.add("/m.tar.gz", &fakeFile{data: archive, extra: http.Header{"Cache-Control": {"no-store"}}})
	dir := t.TempDir()
	_, err := testPuller(t, Options{}).Pull(context.Background(), srv.URL+"/m.tar.gz", dir)
	if !errors.Is(err, ErrNoChecksum) {
		t.Fatalf("err = %v, want ErrNoChecksum", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Error("an unverified archive was extracted")
	}
	res, err := testPuller(t, Options{NoVerify: true}).Pull(context.Background(), srv.URL+"/m.tar.gz", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Unverified(), []string{"m.tar.gz"}) {
		t.Errorf("Unverified() = %v", res.Unverified())
	}
}
