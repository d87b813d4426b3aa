// Package pull downloads model bundles: a tar or tar.gz archive, a JSON
// index listing the files, or a named entry of the built-in catalogue.
//
// Every file is verified against a SHA-256 before it is moved into place.
// The digest comes from the index or catalogue when they carry one, else
// from a "URL.sha256" sidecar, else from the server's X-Linked-Etag or ETag
// when that is a digest (the Hugging Face hub publishes them this way); a
// file with none of these is refused unless Options.NoVerify is set.
//
// Downloads land in DIR/.partial first and resume with HTTP range requests
// after an interruption, so a multi-gigabyte model survives a dropped
// connection or a Ctrl-C without starting over.
package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/vidx/vidx/encoders/bundle"
)

// Source kinds, for URLs whose name does not tell.
const (
	KindArchive = "archive"
	KindIndex   = "index"
)

// PartialDir is the directory inside DIR that holds unfinished downloads.
const PartialDir = ".partial"

// ReceiptFile records what an archive pull extracted, so that pulling the
// same archive again can skip it when every file is still intact.
const ReceiptFile = ".vidx-pull.json"

// Defaults for zero Options fields.
const (
	DefaultAttempts       = 5
	DefaultBackoff        = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultStallTimeout   = 60 * time.Second
	DefaultMaxFileSize    = 16 << 30
	DefaultMaxExtractSize = 64 << 30
	DefaultMaxEntries     = 10000

	maxIndexSize   = 4 << 20
	maxSidecarSize = 4 << 10
	maxRedirects   = 10
)

// Errors callers branch on; returned wrapped with the file or URL at fault.
var (
	// ErrNoChecksum: no index, sidecar or ETag gave a digest for a file and
	// Options.NoVerify is not set.
	ErrNoChecksum = errors.New("no checksum source")
	// ErrInsecureURL: plain http to a non-loopback host without
	// Options.InsecureHTTP, or an unsupported scheme.
	ErrInsecureURL = errors.New("insecure URL")
	// ErrUnsafeArchive: an archive entry would escape DIR, is a device file,
	// or otherwise cannot be extracted safely. Nothing is extracted.
	ErrUnsafeArchive = errors.New("unsafe archive")
	// ErrTooLarge: a file or archive exceeds the configured size limits.
	ErrTooLarge = errors.New("too large")
	// ErrUnknownModel: the name is neither a URL nor in the catalogue.
	ErrUnknownModel = errors.New("unknown model")
)

// ChecksumError is a download whose digest differs from the expected one.
// The partial file has been deleted.
type ChecksumError struct {
	Path string
	URL  string
	Want Checksum
	Got  string // hex digest, same algorithm as Want
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: checksum mismatch: want %s:%s (from %s), got %s:%s; the download was deleted",
		e.Path, e.Want.Algo, e.Want.Hex, e.Want.Source, e.Want.Algo, e.Got)
}

// HTTPError is an unexpected HTTP status.
type HTTPError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }

// Progress receives the byte counts of one download at a time.
type Progress interface {
	// Start begins a file of total bytes (-1 when unknown), of which done
	// are already on disk from an earlier attempt.
	Start(name string, total, done int64)
	Add(n int64)
	Finish(err error)
}

// Options configures a Puller. The zero value is usable.
type Options struct {
	// Client makes the requests; nil uses one with connect, TLS and header
	// timeouts. Its CheckRedirect is replaced to keep redirects on https.
	Client *http.Client
	// InsecureHTTP allows plain http to any host. Loopback addresses are
	// always allowed (local mirrors, tests).
	InsecureHTTP bool
	// NoVerify accepts files that have no checksum source. They are logged
	// at warning level as unverified.
	NoVerify bool
	// Kind is KindArchive or KindIndex for a URL whose name ends in neither
	// .tar/.tar.gz/.tgz nor .json.
	Kind string

	Attempts     int           // tries per request; default DefaultAttempts
	Backoff      time.Duration // first retry delay, doubled each time; default DefaultBackoff
	MaxBackoff   time.Duration // default DefaultMaxBackoff
	StallTimeout time.Duration // abort an attempt that receives nothing for this long; default DefaultStallTimeout

	MaxFileSize    int64 // per downloaded or extracted file; default DefaultMaxFileSize
	MaxExtractSize int64 // all of an archive's files together; default DefaultMaxExtractSize
	MaxEntries     int   // archive entries; default DefaultMaxEntries

	Progress Progress     // nil: no progress reports
	Log      *slog.Logger // nil: discard
}

// Puller downloads bundles. It is safe for sequential use; concurrent pulls
// into the same directory are not coordinated.
type Puller struct {
	opt        Options
	client     *http.Client
	noRedirect *http.Client // for HEAD, which reads each redirect's headers
	log        *slog.Logger
}

// New applies defaults to o and returns a Puller.
func New(o Options) (*Puller, error) {
	if o.Attempts == 0 {
		o.Attempts = DefaultAttempts
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.MaxExtractSize == 0 {
		o.MaxExtractSize = DefaultMaxExtractSize
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	switch {
	case o.Attempts < 0:
		return nil, fmt.Errorf("pull: attempts must be >= 1, got %d", o.Attempts)
	case o.Backoff < 0 || o.MaxBackoff < 0 || o.StallTimeout < 0:
		return nil, errors.New("pull: backoff and stall timeout must be positive")
	case o.MaxFileSize < 0 || o.MaxExtractSize < 0 || o.MaxEntries < 0:
		return nil, errors.New("pull: size limits must be positive")
	case o.Kind != "" && o.Kind != KindArchive && o.Kind != KindIndex:
		return nil, fmt.Errorf("pull: kind must be %q or %q, got %q", KindArchive, KindIndex, o.Kind)
	}
	p := &Puller{opt: o, log: o.Log}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	var c http.Client
	if o.Client != nil {
		c = *o.Client
	} else {
		c = http.Client{Transport: defaultTransport()}
	}
	c.CheckRedirect = p.checkRedirect
	p.client = &c
	nr := c
	nr.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.noRedirect = &nr
	return p, nil
}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 30 * time.Second
	t.ResponseHeaderTimeout = 60 * time.Second
	return t
}

func (p *Puller) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	// A redirect must not downgrade an https download to plain http.
	return p.checkURL(req.URL)
}

func (p *Puller) checkURL(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if p.opt.InsecureHTTP || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: %s is plain http; use https, or --insecure-http on a trusted network", ErrInsecureURL, redact(u))
	}
	return fmt.Errorf("%w: %s: scheme %q is not supported (https, or http to loopback)", ErrInsecureURL, redact(u), u.Scheme)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact drops credentials and the query string (signed CDN URLs carry
// tokens there) from a URL shown to the user.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// Action says what happened to one file.
type Action string

// Actions.
const (
	Downloaded Action = "downloaded"
	Resumed    Action = "resumed"
	Present    Action = "present" // already there with the right checksum
	Extracted  Action = "extracted"
	Written    Action = "written" // a manifest from the catalogue
	Kept       Action = "kept"    // an existing, different manifest left alone
)

// FileResult is one file of a pulled bundle.
type FileResult struct {
	Path   string // relative to Result.Dir, slash-separated
	Size   int64
	SHA256 string
	// Verified is the checksum the file was checked against; zero when it
	// was accepted without one (Options.NoVerify) or extracted from an
	// archive, whose own checksum covers it.
	Verified Checksum
	Action   Action
}

// Result describes a finished pull.
type Result struct {
	Source string
	Dir    string
	Files  []FileResult
	// Archive is the archive's own verification, for archive pulls.
	Archive *FileResult
	// Manifest is the loaded vidx-model.yaml, nil when the bundle has none.
	Manifest *bundle.Manifest
}

// Unverified lists the files accepted without a checksum.
func (r *Result) Unverified() []string {
	var out []string
	for _, f := range r.Files {
		if !f.Verified.Known() && (f.Action == Downloaded || f.Action == Resumed) {
			out = append(out, f.Path)
		}
	}
	if a := r.Archive; a != nil && !a.Verified.Known() && a.Action != Present {
		out = append(out, a.Path)
	}
	return out
}

// Pull fetches src into dir. src is an https URL of an archive or index
// (with an optional "#sha256=HEX" fragment pinning the archive's or index's
// own digest) or the name of a catalogue entry.
func (p *Puller) Pull(ctx context.Context, src, dir string) (*Result, error) {
	if !strings.Contains(src, "://") {
		e, err := Lookup(src)
		if err != nil {
			return nil, err
		}
		return p.PullEntry(ctx, e, dir)
	}
	u, want, err := parseSourceURL(src)
	if err != nil {
		return nil, err
	}
	if err := p.checkURL(u); err != nil {
		return nil, err
	}
	kind := p.opt.Kind
	if kind == "" {
		kind = kindOf(u)
	}
	switch kind {
	case KindArchive:
		return p.pullArchive(ctx, u, want, dir)
	case KindIndex:
		files, err := p.fetchIndex(ctx, u, want)
		if err != nil {
			return nil, err
		}
		return p.pullFiles(ctx, redact(u), files, nil, dir)
	}
	return nil, fmt.Errorf("pull %s: cannot tell an archive from an index by the name; it should end in .tar, .tar.gz, .tgz or .json, or give the kind (--kind archive|index)", redact(u))
}

// PullEntry fetches a catalogue entry's files into dir and writes its
// manifest.
func (p *Puller) PullEntry(ctx context.Context, e Entry, dir string) (*Result, error) {
	files := make([]target, 0, len(e.Files))
	for _, f := range e.Files {
		t, err := f.target(nil, FromCatalogue)
		if err != nil {
			return nil, fmt.Errorf("catalogue entry %s: %w", e.Name, err)
		}
		if err := p.checkURL(t.url); err != nil {
			return nil, fmt.Errorf("catalogue entry %s: %w", e.Name, err)
		}
		files = append(files, t)
	}
	manifest, err := e.ManifestYAML()
	if err != nil {
		return nil, err
	}
	return p.pullFiles(ctx, e.Name, files, manifest, dir)
}

func parseSourceURL(src string) (*url.URL, Checksum, error) {
	u, err := url.Parse(src)
	if err != nil {
		return nil, Checksum{}, fmt.Errorf("pull: %w", err)
	}
	var want Checksum
	if u.Fragment != "" {
		v, ok := strings.CutPrefix(u.Fragment, "sha256=")
		if !ok {
			return nil, Checksum{}, fmt.Errorf("pull %s: fragment %q: want #sha256=HEX", redact(u), u.Fragment)
		}
		hex, err := ParseSHA256(v)
		if err != nil {
			return nil, Checksum{}, fmt.Errorf("pull %s: fragment: %w", redact(u), err)
		}
		want = Checksum{Algo: SHA256, Hex: hex, Source: FromFragment}
		u.Fragment, u.RawFragment = "", ""
	}
	return u, want, nil
}

func kindOf(u *url.URL) string {
	p := strings.ToLower(u.Path)
	switch {
	case strings.HasSuffix(p, ".tar"), strings.HasSuffix(p, ".tar.gz"), strings.HasSuffix(p, ".tgz"):
		return KindArchive
	case strings.HasSuffix(p, ".json"):
		return KindIndex
	}
	return ""
}

// pullFiles downloads each target into dir, writes manifest (when not nil)
// as vidx-model.yaml, and loads the bundle if dir has a manifest.
func (p *Puller) pullFiles(ctx context.Context, source string, files []target, manifest []byte, dir string) (*Result, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("pull %s: no files to download", source)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pull %s: %w", source, err)
	}
	res := &Result{Source: source, Dir: dir}
	seen := map[string]bool{}
	for i := range files {
		t := &files[i]
		if seen[t.rel] {
			return nil, fmt.Errorf("pull %s: %s is listed twice", source, t.rel)
		}
		seen[t.rel] = true
		if manifest != nil && t.rel == bundle.ManifestFile {
			return nil, fmt.Errorf("pull %s: %s is both a file to download and the generated manifest", source, t.rel)
		}
	}
	for i := range files {
		fr, err := p.pullFile(ctx, dir, &files[i])
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, fr)
	}
	if manifest != nil {
		fr, err := p.writeManifest(dir, manifest)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, fr)
	}
	removeEmptyDirs(filepath.Join(dir, PartialDir))
	return res, p.loadBundle(res)
}

// writeManifest writes the catalogue's manifest unless the directory
// already has a different one, which the user may have edited on purpose.
func (p *Puller) writeManifest(dir string, data []byte) (FileResult, error) {
	dest := filepath.Join(dir, bundle.ManifestFile)
	fr := FileResult{Path: bundle.ManifestFile, Size: int64(len(data)), SHA256: sha256Hex(data), Action: Written}
	if old, err := os.ReadFile(dest); err == nil {
		if string(old) == string(data) {
			fr.Action = Present
			return fr, nil
		}
		p.log.Warn("keeping the existing manifest, which differs from the catalogue's; delete it to get the catalogue's",
			"file", dest)
		fr.Action, fr.Size, fr.SHA256 = Kept, int64(len(old)), sha256Hex(old)
		return fr, nil
	}
	if err := writeFileAtomic(dest, data); err != nil {
		return fr, fmt.Errorf("write %s: %w", dest, err)
	}
	return fr, nil
}

func (p *Puller) loadBundle(res *Result) error {
	if _, err := os.Stat(filepath.Join(res.Dir, bundle.ManifestFile)); err != nil {
		p.log.Info("no "+bundle.ManifestFile+" in the download; check the files with `vidx models inspect`", "dir", res.Dir)
		return nil
	}
	m, err := bundle.Load(res.Dir)
	if err != nil {
		return fmt.Errorf("downloaded into %s, but the bundle does not load: %w", res.Dir, err)
	}
	res.Manifest = m
	return nil
}

// fetchIndex downloads and parses a JSON index, verifying it when the URL
// pins its digest.
func (p *Puller) fetchIndex(ctx context.Context, u *url.URL, want Checksum) ([]target, error) {
	var data []byte
	err := p.retry(ctx, "index "+redact(u), func(ctx context.Context) error {
		resp, err := p.get(ctx, u, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return statusError(u, resp)
		}
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxIndexSize+1))
		if err != nil {
			return retryable(fmt.Errorf("read index %s: %w", redact(u), err), 0)
		}
		if len(data) > maxIndexSize {
			return fmt.Errorf("index %s: %w: over %d bytes", redact(u), ErrTooLarge, maxIndexSize)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if want.Known() {
		if got := sha256Hex(data); got != want.Hex {
			return nil, &ChecksumError{Path: path.Base(u.Path), URL: redact(u), Want: want, Got: got}
		}
	}
	idx, err := ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", redact(u), err)
	}
	files := make([]target, 0, len(idx.Files))
	for _, f := range idx.Files {
		t, err := f.target(u, FromIndex)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", redact(u), err)
		}
		if err := p.checkURL(t.url); err != nil {
			return nil, fmt.Errorf("index %s: %s: %w", redact(u), t.rel, err)
		}
		files = append(files, t)
	}
	return files, nil
}
