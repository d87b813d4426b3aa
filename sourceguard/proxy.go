package sourceguard

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a forward HTTP proxy on loopback that ffmpeg is pointed at
// (-http_proxy) for an HTTP or HLS source, so that every connection ffmpeg
// makes for it (redirects, variant playlists, segments, keys) is checked
// against the policy and dialled by vidx itself. Plain-HTTP playlists are
// checked again on every refresh; HTTPS is tunnelled (CONNECT), its target
// checked. It also counts the bytes the source sends, for the bitrate limit.
type Proxy struct {
	g   *Guard
	raw string
	log *slog.Logger
	ln  net.Listener
	srv *http.Server
	tr  *http.Transport

	received atomic.Int64

	mu      sync.Mutex
	refusal error
	tunnels map[net.Conn]struct{}
	closed  bool
}

// hopHeaders are connection-scoped and never forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (g *Guard) StartProxy(raw string, log *slog.Logger) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("source proxy: %w", err)
	}
	p := &Proxy{
		g: g, raw: raw, log: log, ln: ln, tunnels: map[net.Conn]struct{}{},
		tr: &http.Transport{
			Proxy:                 nil,
			DialContext:           g.DialContext,
			DisableCompression:    true,
			ResponseHeaderTimeout: g.p.IOTimeout,
			IdleConnTimeout:       30 * time.Second,
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the address to give ffmpeg's http_proxy option.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Received returns the bytes the source has sent so far.
func (p *Proxy) Received() int64 { return p.received.Load() }

// Refusal returns the first request the proxy refused, or nil.
func (p *Proxy) Refusal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refusal
}

// Close stops the proxy and every tunnel through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.tunnels {
		c.Close()
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	_ = p.srv.Close()
	p.tr.CloseIdleConnections()
}

func (p *Proxy) refuse(w http.ResponseWriter, err error) {
	p.mu.Lock()
	if p.refusal == nil {
		p.refusal = err
	}
	p.mu.Unlock()
	p.log.Warn("sample: source request refused", "err", err)
	http.Error(w, err.Error(), http.StatusForbidden)
}

// fail answers an upstream failure: a refusal from the dialer is recorded,
// anything else is the network's and reported as a bad gateway.
func (p *Proxy) fail(w http.ResponseWriter, err error) {
	var re *RefusedError
	if errors.As(err, &re) {
		p.refuse(w, err)
		return
	}
	http.Error(w, err.Error(), http.StatusBadGateway)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.tunnel(w, r)
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "only proxy requests", http.StatusBadRequest)
		return
	}
	if err := p.g.checkURL(r.URL.String(), r.URL, SchemeHTTP, SchemeHTTPS); err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			err = refuse(p.raw, "%s: %s", r.URL.Redacted(), re.Reason)
		}
		p.refuse(w, err)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	// An encoded playlist could not be checked.
	out.Header.Del("Accept-Encoding")
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			err = refuse(p.raw, "%s: %s", r.URL.Redacted(), re.Reason)
		}
		p.fail(w, err)
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	body := io.Reader(bufio.NewReaderSize(resp.Body, 512))
	if isPlaylist(resp, body.(*bufio.Reader)) {
		data, err := io.ReadAll(io.LimitReader(body, maxPlaylistBytes+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if len(data) > maxPlaylistBytes {
			p.refuse(w, refuse(p.raw, "playlist %s larger than %d bytes", r.URL.Redacted(), maxPlaylistBytes))
			return
		}
		if pl, err := parsePlaylist(resp.Request.URL, data); err == nil {
			if err := p.g.checkPlaylistRefs(p.raw, pl); err != nil {
				p.refuse(w, err)
				return
			}
		}
		p.received.Add(int64(len(data)))
		body = bytes.NewReader(data)
		resp.Header.Del("Content-Length")
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, body)
	if _, isPlaylist := body.(*bytes.Reader); !isPlaylist {
		p.received.Add(n)
	}
}

// isPlaylist sniffs an HLS playlist by content type, name or content.
func isPlaylist(resp *http.Response, br *bufio.Reader) bool {
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	if strings.Contains(ct, "mpegurl") {
		return true
	}
	if p := strings.ToLower(resp.Request.URL.Path); strings.HasSuffix(p, ".m3u8") || strings.HasSuffix(p, ".m3u") {
		return true
	}
	head, _ := br.Peek(10)
	return bytes.HasPrefix(bytes.TrimLeft(head, "\ufeff"), []byte("#EXTM3U"))
}

// checkPlaylistRefs is checkPlaylist without resolving names: the proxy
// dials every connection itself, and live playlists refresh every few
// seconds.
func (g *Guard) checkPlaylistRefs(raw string, pl *playlist) error {
	for _, u := range pl.refs {
		if err := g.checkURL(u.String(), u, SchemeHTTP, SchemeHTTPS); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				return refuse(raw, "playlist %s names %s: %s", pl.url.Redacted(), Redact(u.String()), re.Reason)
			}
			return err
		}
	}
	return nil
}

func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	target := &url.URL{Scheme: SchemeHTTPS, Host: r.Host}
	if err := p.g.checkURL(target.String(), target, SchemeHTTPS); err != nil {
		p.refuse(w, err)
		return
	}
	up, err := p.g.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		p.fail(w, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "tunnelling not supported", http.StatusInternalServerError)
		return
	}
	down, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(up, down) {
		return
	}
	defer p.untrack(up, down)
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		// Bytes ffmpeg already sent after CONNECT sit in rw's buffer.
		_, _ = io.Copy(up, rw)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	n, _ := io.Copy(down, up)
	p.received.Add(n)
	down.Close()
	<-done
}

func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.tunnels[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.tunnels, c)
	}
}
