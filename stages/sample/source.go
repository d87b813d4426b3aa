package sample

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/vidx/vidx/pipeline"
)

// source checks uri against the policy and prepares what ffmpeg opens:
// local files are opened here and inherited, network hosts are resolved
// and checked, HTTP(S) sources are fetched once to check playlists. size is
// the crop size, for choosing an HLS variant. The caller must close the
// source.
func (g *Guard) source(ctx context.Context, uri string, size int) (source, error) {
	src := source{uri: redact(uri), guarded: true}
	if uri == "" {
		return src, pipeline.Poisonf("empty video URI")
	}
	i := strings.Index(uri, "://")
	if i <= 0 {
		return g.localSource(src, uri, uri)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return src, pipeline.Poison(fmt.Errorf("invalid video URI %q: %w", src.uri, err))
	}
	src.scheme = strings.ToLower(u.Scheme)
	if pw, ok := u.User.Password(); ok && pw != "" {
		src.secret = pw
	}
	switch src.scheme {
	case SchemeFile:
		if u.Host != "" && u.Host != "localhost" {
			return src, pipeline.Poisonf("file URI %q names host %q; only local files are supported", src.uri, u.Host)
		}
		return g.localSource(src, uri, u.Path)
	case SchemeHTTP, SchemeHTTPS:
		if err := g.checkURL(uri, u); err != nil {
			return src, err
		}
		src.remote, src.proxied, src.input = true, true, u.String()
		info, err := g.preflight(ctx, uri, u, size)
		if err != nil {
			return src, err
		}
		if info != nil {
			src.hls, src.input = info, info.url.String()
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
		src.remote, src.input = true, pinned.String()
		return src, nil
	}
	return src, refuse(uri, "scheme %q is not supported (want a path, file://, http(s)://, rtsp://, rtmp(s):// or srt://)", u.Scheme)
}

func (g *Guard) localSource(src source, raw, path string) (source, error) {
	src.scheme = SchemeFile
	if !g.schemes[SchemeFile] {
		return src, refuse(raw, "local files are not allowed")
	}
	f, real, err := g.openFile(raw, path)
	if err != nil {
		return src, err
	}
	src.file, src.local = f, real
	// The file: prefix stops ffmpeg from reading a name such as "concat:x"
	// as a protocol.
	src.input = "file:" + real
	if p, ok := inheritedPath(); ok {
		src.input = "file:" + p
	}
	return src, nil
}

// live reports whether the source is known to be live before ffmpeg opens
// it: a network stream protocol or a live HLS playlist.
func (s source) live() bool {
	switch s.scheme {
	case SchemeRTSP, SchemeRTMP, SchemeRTMPS, SchemeSRT:
		return true
	}
	return s.hls != nil && s.hls.live
}

func (s *source) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// prepare hands a guarded source's open file to cmd and keeps proxy
// settings in the environment from steering ffmpeg around the checks
// (ffmpeg honours http_proxy and no_proxy).
func (s source) prepare(cmd *exec.Cmd) {
	if !s.guarded {
		return
	}
	if s.file != nil {
		cmd.ExtraFiles = []*os.File{s.file}
	}
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "no_proxy", "all_proxy":
			return true
		}
		return false
	})
}
