package pull

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// partialMeta sits next to a partial download and says what it is part of,
// so that a later run resumes only the same file from the same server.
type partialMeta struct {
	URL          string   `json:"url"`
	ETag         string   `json:"etag,omitempty"`
	LastModified string   `json:"last_modified,omitempty"`
	Size         int64    `json:"size"` // -1 when the server did not say
	Want         Checksum `json:"want"`
}

// partialPaths returns where rel's unfinished bytes and their metadata
// live: two separate trees, so no file name can collide with another
// file's metadata.
func partialPaths(dir, rel string) (data, meta string) {
	r := filepath.FromSlash(rel)
	return filepath.Join(dir, PartialDir, "data", r), filepath.Join(dir, PartialDir, "meta", r+".json")
}

// pullFile makes dir/t.rel hold t's verified bytes.
func (p *Puller) pullFile(ctx context.Context, dir string, t *target) (FileResult, error) {
	dest := filepath.Join(dir, filepath.FromSlash(t.rel))
	if !t.want.Known() {
		if err := p.resolveChecksum(ctx, t); err != nil {
			return FileResult{}, fmt.Errorf("%s: %w", t.rel, err)
		}
	}
	if t.want.Known() {
		if fr, ok := p.present(ctx, dest, t); ok {
			return fr, nil
		}
	}
	partial, fr, err := p.download(ctx, dir, t)
	if err != nil {
		return fr, err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fr, fmt.Errorf("%s: %w", t.rel, err)
	}
	if err := os.Rename(partial, dest); err != nil {
		return fr, fmt.Errorf("%s: move into place: %w", t.rel, err)
	}
	syncDir(filepath.Dir(dest))
	return fr, nil
}

// present reports whether dest already holds the wanted bytes.
func (p *Puller) present(ctx context.Context, dest string, t *target) (FileResult, bool) {
	fi, err := os.Stat(dest)
	if err != nil || !fi.Mode().IsRegular() || (t.size > 0 && fi.Size() != t.size) {
		return FileResult{}, false
	}
	sha, got, err := digests(ctx, dest, t.want)
	if err != nil {
		return FileResult{}, false
	}
	if got != t.want.Hex {
		p.log.Info("existing file differs from the expected checksum; downloading it again", "file", t.rel)
		return FileResult{}, false
	}
	p.log.Info("already present", "file", t.rel, "checksum", t.want.Algo+":"+t.want.Hex)
	return FileResult{Path: t.rel, Size: fi.Size(), SHA256: sha, Verified: t.want, Action: Present}, true
}

// resolveChecksum looks for a digest before downloading: in the headers of a
// HEAD request (where the Hugging Face hub puts it), then in a sidecar file.
// A missing digest is not an error here; the download's own headers get a
// last look.
func (p *Puller) resolveChecksum(ctx context.Context, t *target) error {
	err := p.retry(ctx, "HEAD "+redact(t.url), func(ctx context.Context) error {
		cs, err := p.headChecksum(ctx, t.url)
		t.want = cs
		return err
	})
	if err != nil || t.want.Known() {
		return err
	}
	side := *t.url
	side.Path += ".sha256"
	side.RawPath = ""
	return p.retry(ctx, "sidecar "+redact(&side), func(ctx context.Context) error {
		resp, err := p.get(ctx, &side, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusUnauthorized:
			return nil
		default:
			return statusError(&side, resp)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxSidecarSize))
		if err != nil {
			return retryable(fmt.Errorf("read %s: %w", redact(&side), err), 0)
		}
		hex, err := parseSidecar(data)
		if err != nil {
			return fmt.Errorf("%s: %w", redact(&side), err)
		}
		t.want = Checksum{Algo: SHA256, Hex: hex, Source: FromSidecar}
		return nil
	})
}

// headChecksum follows redirects by hand, reading each hop's headers and
// stopping at the first digest. Stopping early matters: the hub's redirect
// carries the digest, and the signed CDN URL it points to may not answer
// HEAD at all. Answers other than 5xx just mean "no digest here"; the GET
// that follows reports real errors.
func (p *Puller) headChecksum(ctx context.Context, u *url.URL) (Checksum, error) {
	for range maxRedirects {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
		if err != nil {
			return Checksum{}, err
		}
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := p.doWith(p.noRedirect, req)
		if err != nil {
			return Checksum{}, err
		}
		resp.Body.Close()
		if cs := checksumFromHeaders(resp); cs.Known() {
			return cs, nil
		}
		switch c := resp.StatusCode; {
		case c >= 500:
			return Checksum{}, statusError(u, resp)
		case c >= 300 && c < 400 && resp.Header.Get("Location") != "":
			next, err := u.Parse(resp.Header.Get("Location"))
			if err != nil {
				return Checksum{}, nil
			}
			if err := p.checkURL(next); err != nil {
				return Checksum{}, err
			}
			u = next
		default:
			return Checksum{}, nil
		}
	}
	return Checksum{}, nil
}

// download fetches t into dir/.partial/t.rel, resuming what an earlier run
// left there, and verifies it. It returns the partial file's path.
func (p *Puller) download(ctx context.Context, dir string, t *target) (string, FileResult, error) {
	fr := FileResult{Path: t.rel, Action: Downloaded}
	partial, meta := partialPaths(dir, t.rel)
	for _, d := range []string{filepath.Dir(partial), filepath.Dir(meta)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fr, fmt.Errorf("%s: %w", t.rel, err)
		}
	}
	st := &dlState{t: t, partial: partial, metaPath: meta}
	st.loadMeta(p)

	err := p.retry(ctx, t.rel, func(ctx context.Context) error { return p.attempt(ctx, st) })
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			p.log.Info("download interrupted; the same command resumes it", "file", t.rel, "have", st.have())
		}
		return "", fr, fmt.Errorf("%s: %w", t.rel, err)
	}
	if st.resumed {
		fr.Action = Resumed
	}

	// Always hash the whole file: a resumed download is only as good as
	// the bytes from the earlier run, and those get checked here too.
	sha, got, err := digests(ctx, partial, t.want)
	if err != nil {
		return "", fr, fmt.Errorf("%s: %w", t.rel, err)
	}
	fi, err := os.Stat(partial)
	if err != nil {
		return "", fr, fmt.Errorf("%s: %w", t.rel, err)
	}
	fr.Size, fr.SHA256 = fi.Size(), sha
	if t.want.Known() && got != t.want.Hex {
		st.discard()
		return "", fr, &ChecksumError{Path: t.rel, URL: redact(t.url), Want: t.want, Got: got}
	}
	if t.size > 0 && fi.Size() != t.size {
		st.discard()
		return "", fr, fmt.Errorf("%s: got %d bytes, expected %d; the download was deleted", t.rel, fi.Size(), t.size)
	}
	os.Remove(st.metaPath)
	if t.want.Known() {
		fr.Verified = t.want
		p.log.Info("verified", "file", t.rel, "checksum", t.want.Algo+":"+t.want.Hex, "from", t.want.Source)
	} else {
		p.log.Warn("NOT VERIFIED: no checksum is published for this file; it was accepted because of --no-verify",
			"file", t.rel, "sha256", sha)
	}
	return partial, fr, nil
}

// dlState is one file's download across attempts.
type dlState struct {
	t        *target
	partial  string
	metaPath string
	meta     partialMeta
	offset   int64 // bytes on disk when the current attempt started
	written  int64 // bytes written by the current attempt
	resumed  bool  // some attempt continued from earlier bytes
}

func (s *dlState) have() int64 { return s.offset + s.written }

// loadMeta keeps an earlier partial download only when its metadata shows
// it is the same file from the same URL.
func (s *dlState) loadMeta(p *Puller) {
	fi, err := os.Stat(s.partial)
	if err != nil {
		os.Remove(s.metaPath)
		return
	}
	var m partialMeta
	data, err := os.ReadFile(s.metaPath)
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	switch {
	case err != nil:
		p.log.Info("discarding a partial download without metadata", "file", s.t.rel)
	case m.URL != s.t.url.String():
		p.log.Info("discarding a partial download of another URL", "file", s.t.rel)
	case m.Want.Known() && s.t.want.Known() && !m.Want.same(s.t.want):
		p.log.Info("discarding a partial download of another version", "file", s.t.rel)
	case fi.Size() == 0:
	default:
		s.meta = m
		s.offset = fi.Size()
		if !s.t.want.Known() && m.Want.Known() {
			// The server gave it with the first part; the range request's
			// validator makes sure the rest belongs to the same file.
			s.t.want = m.Want
		}
		p.log.Info("resuming partial download", "file", s.t.rel, "have", s.offset)
		return
	}
	s.discard()
}

func (s *dlState) discard() {
	os.Remove(s.partial)
	os.Remove(s.metaPath)
	s.meta = partialMeta{}
	s.offset, s.written = 0, 0
}

func (s *dlState) saveMeta() error {
	data, err := json.Marshal(s.meta)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.metaPath, data)
}

// attempt runs one GET, continuing from what is on disk.
func (p *Puller) attempt(ctx context.Context, st *dlState) error {
	t := st.t
	f, err := os.OpenFile(st.partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st.offset, st.written = fi.Size(), 0
	if st.offset > 0 && st.meta.URL == "" {
		// Bytes without metadata (written before a crash that lost it)
		// cannot be validated: start over.
		if err := f.Truncate(0); err != nil {
			return err
		}
		st.offset = 0
	}

	hdr := http.Header{}
	if st.offset > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", st.offset))
		if v := strongETag(st.meta.ETag); v != "" {
			hdr.Set("If-Range", st.meta.ETag)
		} else if st.meta.LastModified != "" {
			hdr.Set("If-Range", st.meta.LastModified)
		}
	}

	// The stall timer covers the wait for headers as well as each read,
	// and restarts whenever bytes arrive.
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(p.opt.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	resp, err := p.get(actx, t.url, hdr)
	if err != nil {
		return stallOr(actx, err)
	}
	defer resp.Body.Close()

	total := int64(-1)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, size, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != st.offset {
			// Not the bytes asked for; the next attempt starts over.
			st.discard()
			return retryable(fmt.Errorf("server answered the range request with Content-Range %q: %v", resp.Header.Get("Content-Range"), err), 0)
		}
		total = size
		st.resumed = true
	case http.StatusOK:
		if st.offset > 0 {
			p.log.Info("server sent the whole file instead of the requested range; starting from the beginning", "file", t.rel)
			if err := f.Truncate(0); err != nil {
				return err
			}
			st.offset, st.resumed = 0, false
		}
		total = resp.ContentLength
	case http.StatusRequestedRangeNotSatisfiable:
		if _, size, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil && size == st.offset && st.offset > 0 {
			return nil // the earlier run had every byte
		}
		st.discard()
		return retryable(errors.New("server rejected the resume range; starting over"), 0)
	default:
		return statusError(t.url, resp)
	}

	if !t.want.Known() {
		t.want = checksumFromHeaders(resp)
		if !t.want.Known() && !p.opt.NoVerify {
			st.discard()
			return fmt.Errorf("%w: not in the index or catalogue, no %s sidecar, and the server's ETag is not a digest; pass --no-verify to accept it unverified",
				ErrNoChecksum, redact(t.url)+".sha256")
		}
	}
	if total >= 0 && t.size > 0 && total != t.size {
		st.discard()
		return fmt.Errorf("server sends %d bytes, the index says %d", total, t.size)
	}
	limit := p.opt.MaxFileSize
	if total > limit {
		st.discard()
		return fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrTooLarge, total, limit)
	}

	st.meta = partialMeta{
		URL:          t.url.String(),
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		Size:         total,
		Want:         t.want,
	}
	if err := st.saveMeta(); err != nil {
		return err
	}
	if _, err := f.Seek(st.offset, io.SeekStart); err != nil {
		return err
	}

	if p.opt.Progress != nil {
		p.opt.Progress.Start(t.rel, total, st.offset)
	}
	body := &watchReader{r: resp.Body, stall: stall, timeout: p.opt.StallTimeout, progress: p.opt.Progress}
	n, err := io.Copy(f, io.LimitReader(body, limit-st.offset+1))
	st.written = n
	if err != nil && err == body.err && ctx.Err() == nil && context.Cause(actx) != errStalled {
		// The connection broke mid-body; what arrived is kept and the
		// next attempt asks for the rest.
		err = retryable(fmt.Errorf("connection lost after %d bytes: %w", st.have(), err), 0)
	}
	if err == nil && st.have() > limit {
		err = fmt.Errorf("%w: over the %d-byte limit", ErrTooLarge, limit)
	}
	if err == nil && total >= 0 && st.have() != total {
		err = retryable(fmt.Errorf("connection closed after %d of %d bytes", st.have(), total), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if p.opt.Progress != nil {
		p.opt.Progress.Finish(err)
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			st.discard()
			return err
		}
		return stallOr(actx, err)
	}
	return nil
}

var errStalled = errors.New("no data received within the stall timeout")

// stallOr turns an error caused by the stall timer into a retryable one;
// other network errors are retryable too, the caller's cancellation is not.
func stallOr(actx context.Context, err error) error {
	if context.Cause(actx) == errStalled {
		return retryable(errStalled, 0)
	}
	return err
}

// watchReader restarts the stall timer on every read that brings data and
// reports progress.
type watchReader struct {
	r        io.Reader
	err      error // the body's read error, other than io.EOF
	stall    *time.Timer
	timeout  time.Duration
	progress Progress
}

func (w *watchReader) Read(b []byte) (int, error) {
	n, err := w.r.Read(b)
	if err != nil && err != io.EOF {
		w.err = err
	}
	if n > 0 {
		w.stall.Reset(w.timeout)
		if w.progress != nil {
			w.progress.Add(int64(n))
		}
	}
	return n, err
}

// parseContentRange reads "bytes START-END/SIZE" (SIZE may be "*", giving
// -1) or the 416 form "bytes */SIZE" (giving start -1).
func parseContentRange(v string) (start, size int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
	}
	rng, sz, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil || size < 0 {
			return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
		}
	}
	if rng == "*" {
		return -1, size, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || (size >= 0 && end >= size) {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
	}
	return start, size, nil
}

// get sends a GET with identity encoding: transparent gzip would make byte
// offsets meaningless for range requests.
func (p *Puller) get(ctx context.Context, u *url.URL, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept-Encoding", "identity")
	return p.do(req)
}

func (p *Puller) do(req *http.Request) (*http.Response, error) {
	return p.doWith(p.client, req)
}

func (p *Puller) doWith(c *http.Client, req *http.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", "vidx-models-pull")
	resp, err := c.Do(req)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		var unknownCA x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		switch {
		case errors.Is(err, ErrInsecureURL), errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
			return nil, err // retrying cannot fix these
		case req.Context().Err() != nil:
			return nil, err
		}
		return nil, retryable(err, 0)
	}
	return resp, nil
}

func statusError(u *url.URL, resp *http.Response) error {
	e := &HTTPError{URL: redact(u), StatusCode: resp.StatusCode, Status: resp.Status}
	switch c := resp.StatusCode; {
	case c >= 500, c == http.StatusTooManyRequests, c == http.StatusRequestTimeout:
		return retryable(e, retryAfter(resp.Header.Get("Retry-After")))
	}
	return e
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// retryableError marks a failure that another attempt may not repeat:
// 5xx, 429, network errors, a connection cut mid-body.
type retryableError struct {
	err   error
	after time.Duration // server's Retry-After, 0 when none
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func retryable(err error, after time.Duration) error { return &retryableError{err: err, after: after} }

// retry runs fn until it succeeds, fails permanently, the context ends or
// the attempts run out, sleeping with exponential backoff and jitter.
func (p *Puller) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	delay := p.opt.Backoff
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if errors.Is(err, ctx.Err()) {
				return err
			}
			return fmt.Errorf("%w (after: %v)", ctx.Err(), err)
		}
		var re *retryableError
		if !errors.As(err, &re) {
			return err
		}
		if attempt >= p.opt.Attempts {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		wait := time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
		if re.after > wait {
			wait = min(re.after, 4*p.opt.MaxBackoff)
		}
		p.log.Warn("retrying", "what", what, "attempt", attempt+1, "of", p.opt.Attempts, "in", wait.Round(time.Millisecond), "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (after: %v)", ctx.Err(), err)
		case <-timer.C:
		}
		delay = min(2*delay, p.opt.MaxBackoff)
	}
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// writeFileAtomic replaces path with data so that a reader sees the old
// file or the new one, never half of it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// syncDir makes a rename durable; failure only weakens crash safety.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// removeEmptyDirs removes dir and its subdirectories when they hold no
// files, leaving anything still partial in place.
func removeEmptyDirs(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i]) // fails, harmlessly, when not empty
	}
}
