package pull

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/bundle"
)

func partialData(dir, rel string) string {
	data, _ := partialPaths(dir, rel)
	return data
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func gitSHA1(data []byte) string {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.Itoa(len(data)) + "\x00"))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// serveIndex publishes files under /b/ with an index at /b/index.json that
// lists the checksums of those in withSum.
func serveIndex(t *testing.T, srv *fakeServer, files map[string][]byte, withSum func(string) bool) string {
	t.Helper()
	var idx Index
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		data := files[name]
		srv.add("/b/"+name, &fakeFile{data: data})
		f := File{Path: name, Size: int64(len(data))}
		if withSum == nil || withSum(name) {
			f.SHA256 = sum(data)
		}
		idx.Files = append(idx.Files, f)
	}
	data, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	srv.add("/b/index.json", &fakeFile{data: data})
	return srv.URL + "/b/index.json"
}

func TestPullIndex(t *testing.T) {
	files := colorBundle(t)
	srv := newFakeServer(t, false)
	// vocab.json has no checksum in the index: a sidecar supplies it;
	// merges.txt has none either: the server's ETag is its SHA-256.
	url := serveIndex(t, srv, files, func(name string) bool { return name != "vocab.json" && name != "merges.txt" })
	srv.add("/b/vocab.json.sha256", &fakeFile{data: []byte(sum(files["vocab.json"]) + "  vocab.json\n")})
	srv.files["/b/merges.txt"].etag = quote(sum(files["merges.txt"]))

	dir := filepath.Join(t.TempDir(), "model")
	res, err := testPuller(t, Options{}).Pull(context.Background(), url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest == nil {
		t.Fatal("the bundle's manifest was not loaded")
	}
	if res.Manifest.Name == "" || res.Manifest.Dir == "" {
		t.Errorf("manifest not loaded: %+v", res.Manifest)
	}
	wantSource := map[string]string{"vocab.json": FromSidecar, "merges.txt": FromETag}
	for _, fr := range res.Files {
		if got := mustRead(t, filepath.Join(dir, fr.Path)); !bytes.Equal(got, files[fr.Path]) {
			t.Errorf("%s: content differs", fr.Path)
		}
		if fr.Action != Downloaded || fr.SHA256 != sum(files[fr.Path]) {
			t.Errorf("%s: %+v", fr.Path, fr)
		}
		want := FromIndex
		if s, ok := wantSource[fr.Path]; ok {
			want = s
		}
		if fr.Verified.Source != want || fr.Verified.Hex != sum(files[fr.Path]) {
			t.Errorf("%s: verified by %v, want sha256 from %s", fr.Path, fr.Verified, want)
		}
	}
	if len(res.Files) != len(files) {
		t.Errorf("got %d files, want %d", len(res.Files), len(files))
	}
	if u := res.Unverified(); len(u) != 0 {
		t.Errorf("unverified: %v", u)
	}
	if _, err := os.Stat(filepath.Join(dir, PartialDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".partial left behind: %v", err)
	}
}

func TestPullIndexSkipsPresentFiles(t *testing.T) {
	files := colorBundle(t)
	srv := newFakeServer(t, false)
	url := serveIndex(t, srv, files, nil)
	dir := t.TempDir()
	p := testPuller(t, Options{})
	if _, err := p.Pull(context.Background(), url, dir); err != nil {
		t.Fatal(err)
	}
	// One file damaged on disk: only it is fetched again.
	if err := os.WriteFile(filepath.Join(dir, "vocab.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(srv.requests())
	res, err := p.Pull(context.Background(), url, dir)
	if err != nil {
		t.Fatal(err)
	}
	var fetched []string
	for _, r := range srv.requests()[before:] {
		if r.Path != "/b/index.json" {
			fetched = append(fetched, r.Method+" "+r.Path)
		}
	}
	if !slices.Equal(fetched, []string{"GET /b/vocab.json"}) {
		t.Errorf("second pull fetched %v, want only the damaged vocab.json", fetched)
	}
	for _, fr := range res.Files {
		want := Present
		if fr.Path == "vocab.json" {
			want = Downloaded
		}
		if fr.Action != want {
			t.Errorf("%s: %s, want %s", fr.Path, fr.Action, want)
		}
	}
	if got := mustRead(t, filepath.Join(dir, "vocab.json")); !bytes.Equal(got, files["vocab.json"]) {
		t.Error("vocab.json was not repaired")
	}
}

func TestChecksumMismatch(t *testing.T) {
	srv := newFakeServer(t, false)
	data := []byte(strings.Repeat("model bytes ", 1000))
	wrong := sum([]byte("something else"))
	idx, _ := json.Marshal(Index{Files: []File{{Path: "image.onnx", SHA256: wrong}}})
	srv.add("/b/index.json", &fakeFile{data: idx})
	srv.add("/b/image.onnx", &fakeFile{data: data})
	dir := t.TempDir()

	_, err := testPuller(t, Options{}).Pull(context.Background(), srv.URL+"/b/index.json", dir)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ChecksumError", err)
	}
	if ce.Want.Hex != wrong || ce.Got != sum(data) {
		t.Errorf("error has want %s got %s", ce.Want.Hex, ce.Got)
	}
	for _, h := range []string{wrong, sum(data)} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("error %q does not show %s", err, h)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "image.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image.onnx exists after a mismatch: %v", err)
	}
	noPartials(t, dir)
}

func TestResumeAfterTruncation(t *testing.T) {
	data := []byte(strings.Repeat("0123456789abcdef", 16<<10)) // 256 KiB
	for _, tc := range []struct {
		name        string
		etag        string
		wantIfRange bool
	}{
		{"strong etag", `"v1-abc"`, true},
		{"no validator", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, false)
			const cut = 100_000
			srv.add("/m/image.onnx", &fakeFile{data: data, etag: tc.etag, cutAfter: cut, cuts: 1})
			idx, _ := json.Marshal(Index{Files: []File{{Path: "image.onnx", SHA256: sum(data), Size: int64(len(data))}}})
			srv.add("/m/index.json", &fakeFile{data: idx})
			dir := t.TempDir()
			url := srv.URL + "/m/index.json"

			// First run: one attempt only, so the cut ends it.
			_, err := testPuller(t, Options{Attempts: 1}).Pull(context.Background(), url, dir)
			if err == nil {
				t.Fatal("a cut connection with one attempt succeeded")
			}
			fi, err := os.Stat(partialData(dir, "image.onnx"))
			if err != nil {
				t.Fatalf("no partial download kept: %v", err)
			}
			if fi.Size() != cut {
				t.Fatalf("partial has %d bytes, want %d", fi.Size(), cut)
			}

			res, err := testPuller(t, Options{}).Pull(context.Background(), url, dir)
			if err != nil {
				t.Fatal(err)
			}
			gets := srv.gets("/m/image.onnx")
			if len(gets) != 2 {
				t.Fatalf("GETs = %+v, want 2", gets)
			}
			if want := "bytes=" + strconv.Itoa(cut) + "-"; gets[1].Range != want {
				t.Errorf("second GET Range = %q, want %q", gets[1].Range, want)
			}
			if got := gets[1].IfRange != ""; got != tc.wantIfRange {
				t.Errorf("If-Range = %q, want set: %v", gets[1].IfRange, tc.wantIfRange)
			}
			if res.Files[0].Action != Resumed || res.Files[0].SHA256 != sum(data) {
				t.Errorf("result %+v", res.Files[0])
			}
			if got := mustRead(t, filepath.Join(dir, "image.onnx")); !bytes.Equal(got, data) {
				t.Error("content differs after resume")
			}
			noPartials(t, dir)
		})
	}
}

func TestResumeWithinOneRun(t *testing.T) {
	data := []byte(strings.Repeat("x", 200_000))
	srv := newFakeServer(t, false)
	srv.add("/f/a.bin", &fakeFile{data: data, etag: `"e1"`, cutAfter: 50_000, cuts: 2})
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	dir := t.TempDir()
	if _, err := testPuller(t, Options{Attempts: 3}).Pull(context.Background(), srv.URL+"/f/index.json", dir); err != nil {
		t.Fatal(err)
	}
	var ranges []string
	for _, g := range srv.gets("/f/a.bin") {
		ranges = append(ranges, g.Range)
	}
	if want := []string{"", "bytes=50000-", "bytes=100000-"}; !slices.Equal(ranges, want) {
		t.Errorf("ranges %q, want %q", ranges, want)
	}
	if got := mustRead(t, filepath.Join(dir, "a.bin")); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
}

func TestServerIgnoresRange(t *testing.T) {
	data := []byte(strings.Repeat("abcdefgh", 30_000))
	srv := newFakeServer(t, false)
	f := &fakeFile{data: data, etag: `"e"`, cutAfter: 70_000, cuts: 1}
	srv.add("/f/a.bin", f)
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	dir := t.TempDir()
	url := srv.URL + "/f/index.json"
	if _, err := testPuller(t, Options{Attempts: 1}).Pull(context.Background(), url, dir); err == nil {
		t.Fatal("first run succeeded despite the cut")
	}
	f.ignoreRange = true
	res, err := testPuller(t, Options{}).Pull(context.Background(), url, dir)
	if err != nil {
		t.Fatal(err)
	}
	gets := srv.gets("/f/a.bin")
	if len(gets) != 2 || gets[1].Range == "" {
		t.Fatalf("GETs %+v: want a second GET with a Range header", gets)
	}
	if got := mustRead(t, filepath.Join(dir, "a.bin")); !bytes.Equal(got, data) {
		t.Error("content differs: the 200 body was appended to the partial instead of replacing it")
	}
	if res.Files[0].Action != Downloaded {
		t.Errorf("action %s, want %s (a full download)", res.Files[0].Action, Downloaded)
	}
}

func TestBadContentRangeStartsOver(t *testing.T) {
	data := []byte(strings.Repeat("q", 100_000))
	srv := newFakeServer(t, false)
	srv.add("/f/a.bin", &fakeFile{data: data, etag: `"e"`, cutAfter: 40_000, cuts: 1})
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	dir := t.TempDir()
	url := srv.URL + "/f/index.json"
	if _, err := testPuller(t, Options{Attempts: 1}).Pull(context.Background(), url, dir); err == nil {
		t.Fatal("first run succeeded despite the cut")
	}
	// Pretend the partial is longer than what the server has: the server
	// answers the range with 416 and the download starts over.
	partial := partialData(dir, "a.bin")
	f, err := os.OpenFile(partial, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 80_000))
	f.Close()
	if _, err := testPuller(t, Options{}).Pull(context.Background(), url, dir); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "a.bin")); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
}

func TestRetryOn5xx(t *testing.T) {
	data := []byte("weights")
	for _, tc := range []struct {
		fails, attempts int
		ok              bool
	}{
		{2, 3, true},
		{3, 3, false},
	} {
		srv := newFakeServer(t, false)
		srv.add("/f/a.bin", &fakeFile{data: data, fail: tc.fails})
		idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
		srv.add("/f/index.json", &fakeFile{data: idx})
		dir := t.TempDir()
		_, err := testPuller(t, Options{Attempts: tc.attempts}).Pull(context.Background(), srv.URL+"/f/index.json", dir)
		if (err == nil) != tc.ok {
			t.Fatalf("%d failures, %d attempts: err = %v", tc.fails, tc.attempts, err)
		}
		if n := len(srv.gets("/f/a.bin")); n != tc.attempts {
			t.Errorf("%d GETs, want %d", n, tc.attempts)
		}
		var he *HTTPError
		if !tc.ok && (!errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable) {
			t.Errorf("err = %v, want the 503 HTTPError", err)
		}
	}
}

func TestNotFoundIsNotRetried(t *testing.T) {
	srv := newFakeServer(t, false)
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum([]byte("x"))}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	_, err := testPuller(t, Options{Attempts: 5}).Pull(context.Background(), srv.URL+"/f/index.json", t.TempDir())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Fatalf("err = %v, want a 404 HTTPError", err)
	}
	if n := len(srv.gets("/f/a.bin")); n != 1 {
		t.Errorf("%d GETs for a 404, want 1", n)
	}
}

func TestContextCancellation(t *testing.T) {
	data := []byte(strings.Repeat("z", 300_000))
	srv := newFakeServer(t, false)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) }) // before the server closes
	f := &fakeFile{data: data, etag: `"e"`, block: block, blockAfter: 120_000}
	srv.add("/f/a.bin", f)
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	dir := t.TempDir()
	url := srv.URL + "/f/index.json"

	ctx, cancel := context.WithCancel(context.Background())
	progress := &countingProgress{onAdd: func(total int64) {
		if total >= 120_000 {
			cancel()
		}
	}}
	start := time.Now()
	_, err := testPuller(t, Options{Progress: progress}).Pull(ctx, url, dir)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a.bin exists after cancellation: %v", err)
	}
	if fi, err := os.Stat(partialData(dir, "a.bin")); err != nil || fi.Size() == 0 {
		t.Fatalf("no partial kept after cancellation: %v", err)
	}

	srv.mu.Lock()
	f.block = nil
	srv.mu.Unlock()
	res, err := testPuller(t, Options{}).Pull(context.Background(), url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files[0].Action != Resumed {
		t.Errorf("action %s, want %s", res.Files[0].Action, Resumed)
	}
	if got := mustRead(t, filepath.Join(dir, "a.bin")); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
}

type countingProgress struct {
	starts, finishes int
	total            int64
	onAdd            func(total int64)
}

func (c *countingProgress) Start(string, int64, int64) { c.starts++ }
func (c *countingProgress) Add(n int64) {
	c.total += n
	if c.onAdd != nil {
		c.onAdd(c.total)
	}
}
func (c *countingProgress) Finish(error) { c.finishes++ }

func TestStallTimeoutRetries(t *testing.T) {
	data := []byte(strings.Repeat("s", 50_000))
	srv := newFakeServer(t, false)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	f := &fakeFile{data: data, etag: `"e"`, block: block, blockAfter: 10_000}
	srv.add("/f/a.bin", f)
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	_, err := testPuller(t, Options{Attempts: 2, StallTimeout: 50 * time.Millisecond}).
		Pull(context.Background(), srv.URL+"/f/index.json", t.TempDir())
	if err == nil || !errors.Is(err, errStalled) {
		t.Fatalf("err = %v, want a stall", err)
	}
	if n := len(srv.gets("/f/a.bin")); n != 2 {
		t.Errorf("%d GETs, want 2 (a stall is retried)", n)
	}
}

func TestChecksumSources(t *testing.T) {
	lfs := []byte(strings.Repeat("lfs weights ", 5000))
	small := []byte(`{"model": "tokenizer"}`)
	plain := []byte("no checksum anywhere")
	tests := []struct {
		name     string
		file     *fakeFile
		noVerify bool
		wantAlgo string
		wantFrom string
		wantErr  error
	}{
		{"hub LFS redirect", &fakeFile{data: lfs, redirectVia: true,
			extra: http.Header{"X-Linked-Etag": {quote(sum(lfs))}, "X-Repo-Commit": {"abc"}}}, false, SHA256, FromLinkedTag, nil},
		{"hub git file", &fakeFile{data: small, etag: quote(gitSHA1(small)),
			extra: http.Header{"X-Repo-Commit": {"abc"}}}, false, GitSHA1, FromETag, nil},
		{"sha256 etag", &fakeFile{data: plain, etag: quote(sum(plain))}, false, SHA256, FromETag, nil},
		{"weak sha256 etag", &fakeFile{data: plain, etag: "W/" + quote(sum(plain))}, false, "", "", ErrNoChecksum},
		{"40-hex etag off the hub", &fakeFile{data: small, etag: quote(gitSHA1(small))}, false, "", "", ErrNoChecksum},
		{"none", &fakeFile{data: plain, etag: `"v7"`}, false, "", "", ErrNoChecksum},
		{"none, no-verify", &fakeFile{data: plain}, true, "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, false)
			srv.add("/r/file.bin", tc.file)
			idx, _ := json.Marshal(Index{Files: []File{{Path: "file.bin"}}})
			srv.add("/r/index.json", &fakeFile{data: idx})
			dir := t.TempDir()
			res, err := testPuller(t, Options{NoVerify: tc.noVerify}).Pull(context.Background(), srv.URL+"/r/index.json", dir)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if _, err := os.Stat(filepath.Join(dir, "file.bin")); !errors.Is(err, os.ErrNotExist) {
					t.Error("file kept without a checksum")
				}
				noPartials(t, dir)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fr := res.Files[0]
			if fr.Verified.Algo != tc.wantAlgo || fr.Verified.Source != tc.wantFrom {
				t.Errorf("verified %v, want %s from %s", fr.Verified, tc.wantAlgo, tc.wantFrom)
			}
			if got := mustRead(t, filepath.Join(dir, "file.bin")); !bytes.Equal(got, tc.file.data) {
				t.Error("content differs")
			}
			if tc.noVerify && !slices.Equal(res.Unverified(), []string{"file.bin"}) {
				t.Errorf("Unverified() = %v", res.Unverified())
			}
		})
	}
}

func TestHubETagMismatchIsCaught(t *testing.T) {
	lfs := []byte("the real weights")
	srv := newFakeServer(t, false)
	srv.add("/r/file.bin", &fakeFile{data: lfs, redirectVia: true,
		extra: http.Header{"X-Linked-Etag": {quote(sum([]byte("other weights")))}}})
	idx, _ := json.Marshal(Index{Files: []File{{Path: "file.bin"}}})
	srv.add("/r/index.json", &fakeFile{data: idx})
	_, err := testPuller(t, Options{}).Pull(context.Background(), srv.URL+"/r/index.json", t.TempDir())
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Want.Source != FromLinkedTag {
		t.Fatalf("err = %v, want a ChecksumError against the X-Linked-Etag", err)
	}
}

func TestURLPolicy(t *testing.T) {
	srv := newFakeServer(t, false)
	srv.add("/x/index.json", &fakeFile{data: []byte(`{"files":[{"path":"a","url":"http://example.invalid/a","sha256":"` + sum(nil) + `"}]}`)})
	tests := []struct {
		name    string
		src     string
		opt     Options
		wantErr error
	}{
		{"plain http to a remote host", "http://example.invalid/m.tar.gz", Options{}, ErrInsecureURL},
		{"ftp", "ftp://example.invalid/m.tar.gz", Options{}, ErrInsecureURL},
		{"index pointing at plain http", srv.URL + "/x/index.json", Options{}, ErrInsecureURL},
		{"unknown name", "clip-vit-huge-patch99", Options{}, ErrUnknownModel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testPuller(t, tc.opt).Pull(context.Background(), tc.src, t.TempDir())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRedirectDowngradeRefused(t *testing.T) {
	tlsSrv := newFakeServer(t, true)
	tlsSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.invalid/m.tar.gz", http.StatusFound)
	})
	p := testPuller(t, Options{Client: tlsSrv.Client()})
	_, err := p.Pull(context.Background(), tlsSrv.URL+"/m.tar.gz#sha256="+sum(nil), t.TempDir())
	if !errors.Is(err, ErrInsecureURL) {
		t.Fatalf("err = %v, want ErrInsecureURL for an https -> http redirect", err)
	}
}

func TestPullOverHTTPS(t *testing.T) {
	files := colorBundle(t)
	srv := newFakeServer(t, true)
	url := serveIndex(t, srv, files, nil)
	dir := t.TempDir()
	res, err := testPuller(t, Options{Client: srv.Client()}).Pull(context.Background(), url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest == nil {
		t.Error("bundle not loaded")
	}
	// Without the test CA the certificate is refused, once, not retried.
	before := len(srv.requests())
	_, err = testPuller(t, Options{Attempts: 3}).Pull(context.Background(), url, t.TempDir())
	if err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	if n := len(srv.requests()) - before; n != 0 {
		t.Errorf("%d requests completed with an untrusted certificate", n)
	}
}

func TestPullEntry(t *testing.T) {
	files := colorBundle(t)
	srv := newFakeServer(t, false)
	m, err := bundle.Parse(files["vidx-model.yaml"])
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Name: "color-test", Homepage: srv.URL, Manifest: *m}
	for name, data := range files {
		if name == bundle.ManifestFile {
			continue
		}
		// Published the hub's way: checksums only in the redirect headers.
		srv.add("/repo/"+name, &fakeFile{data: data, redirectVia: true,
			extra: http.Header{"X-Linked-Etag": {quote(sum(data))}}})
		e.Files = append(e.Files, File{Path: name, URL: srv.URL + "/repo/" + name})
	}
	dir := t.TempDir()
	p := testPuller(t, Options{})
	res, err := p.PullEntry(context.Background(), e, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest == nil || res.Manifest.Name != m.Name || res.Manifest.EmbeddingDim != m.EmbeddingDim {
		t.Fatalf("manifest %+v", res.Manifest)
	}
	last := res.Files[len(res.Files)-1]
	if last.Path != bundle.ManifestFile || last.Action != Written {
		t.Errorf("manifest result %+v", last)
	}

	// A second pull only asks for the checksums (HEAD), downloads nothing
	// and leaves a user's edited manifest alone.
	edited := append(mustRead(t, filepath.Join(dir, bundle.ManifestFile)), "# tuned by hand\n"...)
	os.WriteFile(filepath.Join(dir, bundle.ManifestFile), edited, 0o644)
	before := len(srv.requests())
	res, err = p.PullEntry(context.Background(), e, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range srv.requests()[before:] {
		if r.Method != http.MethodHead {
			t.Errorf("second pull sent %s %s", r.Method, r.Path)
		}
	}
	for _, fr := range res.Files {
		want := Present
		if fr.Path == bundle.ManifestFile {
			want = Kept
		}
		if fr.Action != want {
			t.Errorf("%s: %s, want %s", fr.Path, fr.Action, want)
		}
	}
	if got := mustRead(t, filepath.Join(dir, bundle.ManifestFile)); !bytes.Equal(got, edited) {
		t.Error("edited manifest was overwritten")
	}
}

func TestSizeLimit(t *testing.T) {
	data := []byte(strings.Repeat("b", 10_000))
	srv := newFakeServer(t, false)
	srv.add("/f/a.bin", &fakeFile{data: data})
	idx, _ := json.Marshal(Index{Files: []File{{Path: "a.bin", SHA256: sum(data)}}})
	srv.add("/f/index.json", &fakeFile{data: idx})
	dir := t.TempDir()
	_, err := testPuller(t, Options{MaxFileSize: 4096}).Pull(context.Background(), srv.URL+"/f/index.json", dir)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	noPartials(t, dir)
}

func TestKindFromName(t *testing.T) {
	_, err := testPuller(t, Options{}).Pull(context.Background(), "https://example.invalid/models/latest", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--kind") {
		t.Errorf("err = %v, want advice to give the kind", err)
	}
	if _, err := New(Options{Kind: "zip"}); err == nil {
		t.Error("kind zip accepted")
	}
}
