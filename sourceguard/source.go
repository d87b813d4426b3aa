package sourceguard

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/vidx/vidx/pipeline"
)

// Source is a checked input: what ffmpeg should open and how. A Source
// from Guard.Open holds the opened local file (see Prepare); one built by
// hand, for tools and tests that read any path or URL, is never guarded.
type Source struct {
	URI    string // as given (password redacted), for messages
	Input  string // argument to -i
	Local  string // file path for local inputs, "" for remote ones
	Remote bool

	// Set for sources checked by a Guard (see Guard.Open).
	Scheme  string
	Proxied bool     // http(s): ffmpeg connects through a Proxy
	HLS     *HLSInfo // the source is an HLS playlist
	// Ranges is set for an http(s) file whose server said it takes byte
	// ranges, so ffmpeg can seek in it without reading what lies between.
	Ranges bool

	guarded bool
	file    *os.File // the opened local file ffmpeg reads as descriptor 3
	secret  string   // the URI's password, kept out of messages
}

// Open checks uri against the policy and prepares what ffmpeg opens:
// local files are opened here and inherited, network hosts are resolved
// and checked, HTTP(S) sources are fetched once to check playlists. size is
// the crop size, for choosing an HLS variant. The caller must close the
// source.
func (g *Guard) Open(ctx context.Context, uri string, size int) (Source, error) {
	src := Source{URI: Redact(uri), guarded: true}
	if uri == "" {
		return src, pipeline.Poisonf("empty video URI")
	}
	i := strings.Index(uri, "://")
	if i <= 0 {
		return g.localSource(src, uri, uri)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return src, pipeline.Poison(fmt.Errorf("invalid video URI %q: %w", src.URI, err))
	}
	src.Scheme = strings.ToLower(u.Scheme)
	if pw, ok := u.User.Password(); ok && pw != "" {
		src.secret = pw
	}
	switch src.Scheme {
	case SchemeFile:
		if u.Host != "" && u.Host != "localhost" {
			return src, pipeline.Poisonf("file URI %q names host %q; only local files are supported", src.URI, u.Host)
		}
		return g.localSource(src, uri, u.Path)
	case SchemeHTTP, SchemeHTTPS:
		if err := g.checkURL(uri, u); err != nil {
			return src, err
		}
		src.Remote, src.Proxied, src.Input = true, true, u.String()
		info, ranges, err := g.preflight(ctx, uri, u, size)
		if err != nil {
			return src, err
		}
		src.Ranges = ranges
		if info != nil {
			src.HLS, src.Input = info, info.URL.String()
		}
		return src, nil
	case SchemeRTSP, SchemeRTMP, SchemeRTMPS, SchemeSRT:
		if err := g.checkURL(uri, u); err != nil {
			return src, err
		}
		pinned, err := g.pinHost(ctx, uri, u)
		if err != nil {
			return src, err
		}
		src.Remote, src.Input = true, pinned.String()
		return src, nil
	}
	return src, refuse(uri, "scheme %q is not supported (want a path, file://, http(s)://, rtsp://, rtmp(s):// or srt://)", u.Scheme)
}

func (g *Guard) localSource(src Source, raw, path string) (Source, error) {
	src.Scheme = SchemeFile
	if !g.schemes[SchemeFile] {
		return src, refuse(raw, "local files are not allowed")
	}
	f, real, err := g.openFile(raw, path)
	if err != nil {
		return src, err
	}
	src.file, src.Local = f, real
	// The file: prefix stops ffmpeg from reading a name such as "concat:x"
	// as a protocol.
	src.Input = "file:" + real
	if p, ok := inheritedPath(); ok {
		src.Input = "file:" + p
	}
	return src, nil
}

// Live reports whether the source is known to be live before ffmpeg opens
// it: a network stream protocol or a live HLS playlist.
func (s Source) Live() bool {
	switch s.Scheme {
	case SchemeRTSP, SchemeRTMP, SchemeRTMPS, SchemeSRT:
		return true
	}
	return s.HLS != nil && s.HLS.Live
}

// LocalFile is the local file a Guard opened and checked, nil for remote
// sources and for ones no Guard opened. Reading the video in-process
// through it, rather than by its path, reads what was checked even if the
// path has changed since. Read it with ReadAt: the offset is shared.
func (s Source) LocalFile() *os.File { return s.file }

// Close closes the opened local file, if any.
func (s *Source) Close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// Prepare hands a guarded source's open file to cmd and keeps proxy
// settings in the environment from steering ffmpeg around the checks
// (ffmpeg honours http_proxy and no_proxy). It filters cmd.Env where the
// caller set one, the process environment otherwise.
func (s Source) Prepare(cmd *exec.Cmd) {
	if !s.guarded {
		return
	}
	if s.file != nil {
		cmd.ExtraFiles = []*os.File{s.file}
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "no_proxy", "all_proxy":
			return true
		}
		return false
	})
}

// Scrub removes the source's password from ffmpeg's diagnostics, which
// quote the input URL.
func (s Source) Scrub(text string) string {
	if s.secret == "" {
		return text
	}
	return strings.ReplaceAll(text, s.secret, "xxxxx")
}

// ErrNotLocal is returned by OpenLocal for a URI that is not a local file.
var ErrNotLocal = errors.New("not a local file")

// OpenLocal opens the local video a job's uri names (a path or a file://
// URI) with the checks the stage applies before decoding: symbolic links
// resolved, a non-empty regular file under a file root. Unlike the stage,
// it refuses every file when the policy names no file roots, because what
// it opens is served to whoever asks.
func (g *Guard) OpenLocal(uri string) (*os.File, error) {
	path := uri
	if strings.Contains(uri, "://") {
		u, err := url.Parse(uri)
		if err != nil || !strings.EqualFold(u.Scheme, SchemeFile) {
			return nil, ErrNotLocal
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, ErrNotLocal
		}
		path = u.Path
	}
	if !g.schemes[SchemeFile] {
		return nil, refuse(uri, "local files are not allowed")
	}
	if len(g.roots) == 0 {
		return nil, refuse(uri, "no file roots are configured")
	}
	f, _, err := g.openFile(uri, path)
	return f, err
}
