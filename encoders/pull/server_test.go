package pull

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/testmodels"
)

// fakeFile is one resource of the fake server and how the server misbehaves
// when serving it.
type fakeFile struct {
	data  []byte
	etag  string // ETag header, quoted as sent; "" for none
	extra http.Header
	// redirectVia makes the file answer at its own path with a 302 to a
	// "/cdn" copy, carrying extra on the redirect (the Hugging Face way).
	redirectVia bool
	ignoreRange bool // always answer 200 with the whole body
	cutAfter    int  // cut the connection after this many body bytes...
	cuts        int  // ...on this many GETs
	fail        int  // answer 503 to this many GETs first
	// block, when set, sends blockAfter bytes and then waits on it.
	block      chan struct{}
	blockAfter int
}

type request struct {
	Method, Path, Range, IfRange string
}

// fakeServer serves fakeFiles over loopback http and records every request.
type fakeServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string]*fakeFile
	reqs  []request
}

func newFakeServer(t *testing.T, tls bool) *fakeServer {
	t.Helper()
	s := &fakeServer{files: map[string]*fakeFile{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Refused handshakes are what some tests are about; keep them quiet.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *fakeServer) add(path string, f *fakeFile) { s.mu.Lock(); s.files[path] = f; s.mu.Unlock() }

func (s *fakeServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// gets returns the GET requests for path.
func (s *fakeServer) gets(path string) []request {
	var out []request
	for _, r := range s.requests() {
		if r.Method == http.MethodGet && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func (s *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, request{r.Method, r.URL.Path, r.Header.Get("Range"), r.Header.Get("If-Range")})
	name, cdn := strings.CutPrefix(r.URL.Path, "/cdn")
	f := s.files[name]
	var cut, block int
	var blockCh chan struct{}
	fail := false
	if f != nil && r.Method == http.MethodGet && (!f.redirectVia || cdn) {
		if f.fail > 0 {
			f.fail--
			fail = true
		} else if f.cuts > 0 {
			f.cuts--
			cut = f.cutAfter
		}
		if f.block != nil {
			blockCh, block = f.block, f.blockAfter
		}
	}
	s.mu.Unlock()

	switch {
	case f == nil:
		http.NotFound(w, r)
		return
	case cdn && r.Method == http.MethodHead:
		// Like a URL signed for GET only.
		http.Error(w, "signature does not match", http.StatusForbidden)
		return
	case fail:
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	case f.redirectVia && !cdn:
		for k, v := range f.extra {
			w.Header()[k] = v
		}
		http.Redirect(w, r, "/cdn"+name, http.StatusFound)
		return
	}
	if f.etag != "" {
		w.Header().Set("ETag", f.etag)
	}
	if !f.redirectVia {
		for k, v := range f.extra {
			w.Header()[k] = v
		}
	}
	var out http.ResponseWriter = w
	if cut > 0 || blockCh != nil {
		out = &cuttingWriter{ResponseWriter: w, cutAfter: cut, block: blockCh, blockAfter: block}
	}
	if f.ignoreRange {
		r.Header.Del("Range")
	}
	http.ServeContent(out, r, name, time.Time{}, bytes.NewReader(f.data))
}

// cuttingWriter aborts the response after cutAfter body bytes (the client
// sees the connection drop mid-body), or stalls after blockAfter bytes
// until block is closed.
type cuttingWriter struct {
	http.ResponseWriter
	cutAfter   int
	block      chan struct{}
	blockAfter int
	n          int
}

func (c *cuttingWriter) Write(p []byte) (int, error) {
	limit := c.cutAfter
	if c.block != nil {
		limit = c.blockAfter
	}
	if c.n+len(p) > limit {
		k := limit - c.n
		if k > 0 {
			c.ResponseWriter.Write(p[:k])
			c.n += k
		}
		c.ResponseWriter.(http.Flusher).Flush()
		if c.block != nil {
			<-c.block
		}
		panic(http.ErrAbortHandler)
	}
	c.n += len(p)
	return c.ResponseWriter.Write(p)
}

// colorBundle returns the files of the small generated "color" bundle.
func colorBundle(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	if err := testmodels.WriteAll(dir); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join(dir, "color"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "color", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	if len(out) < 4 {
		t.Fatalf("color bundle has only %d files", len(out))
	}
	return out
}

// testPuller returns a Puller with fast retries that logs into the test.
func testPuller(t *testing.T, o Options) *Puller {
	t.Helper()
	if o.Backoff == 0 {
		o.Backoff = time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	if os.Getenv("VIDX_TEST_LOG") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// noPartials fails when dir still holds unfinished downloads.
func noPartials(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, PartialDir)); err == nil {
		var left []string
		filepath.WalkDir(filepath.Join(dir, PartialDir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("partial files left: %v", left)
		}
	}
}

func quote(s string) string { return fmt.Sprintf("%q", s) }
