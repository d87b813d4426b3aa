// Package sourceguard decides which video sources vidx may read and holds
// it to that while ffmpeg reads them: the SourcePolicy and its Guard
// (schemes, hosts, networks checked at dial time, file roots, size,
// duration and bitrate limits), the checked Source handed to ffmpeg, HLS
// playlist checks and the filtering proxy every HTTP(S) connection of a
// source goes through.
//
// It imports no Kafka client and of vidx only pipeline, for the Poison and
// Retryable error classes its refusals and failures carry.
package sourceguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vidx/vidx/pipeline"
)

// Source schemes a SourcePolicy can allow.
const (
	SchemeFile  = "file"
	SchemeHTTP  = "http"
	SchemeHTTPS = "https"
	SchemeRTSP  = "rtsp"
	SchemeRTMP  = "rtmp"
	SchemeRTMPS = "rtmps"
	SchemeSRT   = "srt"
)

// DefaultSchemes are the schemes a SourcePolicy allows when it lists none.
var DefaultSchemes = []string{SchemeFile, SchemeHTTP, SchemeHTTPS, SchemeRTSP, SchemeRTMP, SchemeRTMPS, SchemeSRT}

// SourcePolicy says which sources the sample stage may read, for video jobs
// and streams alike. A job or stream cannot change it.
//
// Network sources pass when their scheme is allowed, their host is in Hosts
// (when Hosts is not empty) and every address vidx connects to is public:
// loopback, private, link-local (cloud metadata), carrier-grade NAT,
// multicast and reserved ranges are refused unless AllowNetworks lists them.
// Addresses are checked when vidx dials them, after resolving the name
// itself, so a name that resolves differently later gains nothing; HTTP and
// HLS traffic goes through a filtering proxy that checks every redirect and
// playlist too.
type SourcePolicy struct {
	// Schemes allowed; default DefaultSchemes. HLS is http or https.
	Schemes []string `yaml:"schemes"`
	// Hosts, when not empty, are the only host names (or IP literals)
	// allowed; "*.example.com" allows the subdomains of example.com.
	Hosts []string `yaml:"hosts"`
	// AllowNetworks are CIDRs allowed even inside the refused ranges, for
	// sources on a private network (or 127.0.0.1/32 in tests).
	AllowNetworks []string `yaml:"allow_networks"`
	// DenyNetworks are CIDRs refused in addition to the built-in ranges;
	// they win over AllowNetworks.
	DenyNetworks []string `yaml:"deny_networks"`
	// FileRoots are the directories local files must be under, symbolic
	// links resolved. Empty allows any local regular file.
	FileRoots []string `yaml:"file_roots"`

	// MaxWidth and MaxHeight bound the decoded frame size; MaxDuration
	// bounds files and VOD playlists (live sources run until removed);
	// MaxBitrate (bits per second) bounds the source's data rate.
	MaxWidth    int           `yaml:"max_width"`
	MaxHeight   int           `yaml:"max_height"`
	MaxDuration time.Duration `yaml:"max_duration"`
	MaxBitrate  int64         `yaml:"max_bitrate"`

	// IOTimeout bounds one network read or write (ffmpeg's -rw_timeout,
	// RTSP's -timeout) and the playlist checks.
	IOTimeout time.Duration `yaml:"io_timeout"`

	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver `yaml:"-"`
}

// DefaultIOTimeout bounds one network read or write of ffmpeg/ffprobe when
// nothing else does, so a stalled server fails the call instead of hanging.
const DefaultIOTimeout = 30 * time.Second

// Resolver resolves host names to addresses (*net.Resolver is one).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// WithDefaults fills unset limits.
func (p SourcePolicy) WithDefaults() SourcePolicy {
	if len(p.Schemes) == 0 {
		p.Schemes = slices.Clone(DefaultSchemes)
	}
	if p.MaxWidth == 0 {
		p.MaxWidth = 8192
	}
	if p.MaxHeight == 0 {
		p.MaxHeight = 8192
	}
	if p.MaxDuration == 0 {
		p.MaxDuration = 24 * time.Hour
	}
	if p.MaxBitrate == 0 {
		p.MaxBitrate = 100_000_000
	}
	if p.IOTimeout == 0 {
		p.IOTimeout = DefaultIOTimeout
	}
	return p
}

// RefusedError is why a source was refused by the SourcePolicy. Errors
// wrapping it are poison: the same job or stream would be refused again.
type RefusedError struct {
	URI    string // redacted
	Reason string
}

func (e *RefusedError) Error() string { return fmt.Sprintf("source %s refused: %s", e.URI, e.Reason) }

func refuse(uri, format string, args ...any) error {
	return pipeline.Poison(&RefusedError{URI: Redact(uri), Reason: fmt.Sprintf(format, args...)})
}

// redact hides the password of a URI for messages, logs and status.
func Redact(uri string) string {
	if !strings.Contains(uri, "@") {
		return uri
	}
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		return uri
	}
	return u.Redacted()
}

// deniedRanges are refused unless AllowNetworks lists them: what a job must
// not reach through vidx. Each says why.
var deniedRanges = func() []namedPrefix {
	list := []struct{ cidr, what string }{
		{"0.0.0.0/8", "the unspecified/this-host range"},
		{"10.0.0.0/8", "a private range"},
		{"100.64.0.0/10", "the carrier-grade NAT range"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local (cloud metadata endpoints live here)"},
		{"172.16.0.0/12", "a private range"},
		{"192.0.0.0/24", "the IETF protocol assignment range"},
		{"192.168.0.0/16", "a private range"},
		{"198.18.0.0/15", "the benchmarking range"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "a reserved range"},
		{"::1/128", "loopback"},
		{"::/96", "the unspecified/IPv4-compatible range"},
		{"64:ff9b::/96", "NAT64 (it embeds an IPv4 address)"},
		{"64:ff9b:1::/48", "local NAT64"},
		{"2002::/16", "6to4 (it embeds an IPv4 address)"},
		{"fc00::/7", "a unique-local (private) range"},
		{"fe80::/10", "link-local"},
		{"ff00::/8", "multicast"},
	}
	out := make([]namedPrefix, len(list))
	for i, r := range list {
		out[i] = namedPrefix{netip.MustParsePrefix(r.cidr), r.what}
	}
	return out
}()

type namedPrefix struct {
	prefix netip.Prefix
	what   string
}

// Guard enforces a SourcePolicy. It is safe for concurrent use.
type Guard struct {
	p        SourcePolicy
	schemes  map[string]bool
	hosts    []string
	allow    []netip.Prefix
	deny     []netip.Prefix
	roots    []string
	resolver Resolver
	dialer   net.Dialer
}

// NewGuard applies defaults to p, validates it and resolves its file roots.
func NewGuard(p SourcePolicy) (*Guard, error) {
	p = p.WithDefaults()
	g := &Guard{p: p, schemes: map[string]bool{}, resolver: p.Resolver, dialer: net.Dialer{Timeout: p.IOTimeout}}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	var errs []error
	for _, s := range p.Schemes {
		s = strings.ToLower(s)
		if !slices.Contains(DefaultSchemes, s) {
			errs = append(errs, fmt.Errorf("schemes: %q is not one of %v", s, DefaultSchemes))
		}
		g.schemes[s] = true
	}
	for _, h := range p.Hosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" || h == "*" || h == "*." {
			errs = append(errs, fmt.Errorf("hosts: %q is not a host name or *.domain pattern", h))
			continue
		}
		g.hosts = append(g.hosts, h)
	}
	parse := func(field string, cidrs []string) []netip.Prefix {
		var out []netip.Prefix
		for _, c := range cidrs {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				if a, aerr := netip.ParseAddr(strings.TrimSpace(c)); aerr == nil {
					pfx, err = a.Prefix(a.BitLen())
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a CIDR: %w", field, c, err))
				continue
			}
			out = append(out, pfx.Masked())
		}
		return out
	}
	g.allow = parse("allow_networks", p.AllowNetworks)
	g.deny = parse("deny_networks", p.DenyNetworks)
	for _, r := range p.FileRoots {
		abs, err := filepath.Abs(r)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("file_roots: %q: %w", r, err))
			continue
		}
		g.roots = append(g.roots, abs)
	}
	if p.MaxWidth < 0 || p.MaxHeight < 0 || p.MaxDuration < 0 || p.MaxBitrate < 0 || p.IOTimeout < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sample: sources policy: %w", err)
	}
	return g, nil
}

// Policy returns the policy in effect, defaults applied.
func (g *Guard) Policy() SourcePolicy { return g.p }

// Allows reports whether the policy allows scheme (SchemeFile for local
// files).
func (g *Guard) Allows(scheme string) bool { return g.schemes[strings.ToLower(scheme)] }

// checkURL checks a network URL's scheme and host name without resolving
// it. The scheme must be allowed and also one of only, when given.
func (g *Guard) checkURL(raw string, u *url.URL, only ...string) error {
	scheme := strings.ToLower(u.Scheme)
	if !g.schemes[scheme] || (len(only) > 0 && !slices.Contains(only, scheme)) {
		return refuse(raw, "scheme %q is not allowed here", u.Scheme)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return refuse(raw, "no host")
	}
	if !g.hostAllowed(host) {
		return refuse(raw, "host %q is not in the allowed hosts", host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := g.checkIP(a); err != nil {
			return refuse(raw, "%v", err)
		}
	}
	return nil
}

func (g *Guard) hostAllowed(host string) bool {
	if len(g.hosts) == 0 {
		return true
	}
	for _, h := range g.hosts {
		if h == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}

// checkIP says why ip may not be connected to, or nil.
func (g *Guard) checkIP(ip netip.Addr) error {
	ip = ip.Unmap().WithZone("")
	for _, p := range g.deny {
		if p.Contains(ip) {
			return fmt.Errorf("address %s is in the denied network %s", ip, p)
		}
	}
	for _, p := range g.allow {
		if p.Contains(ip) {
			return nil
		}
	}
	for _, r := range deniedRanges {
		if r.prefix.Contains(ip) {
			return fmt.Errorf("address %s is %s, not allowed without allow_networks", ip, r.what)
		}
	}
	return nil
}

// resolve returns the allowed addresses of host, refusing it when it has
// none.
func (g *Guard) resolve(ctx context.Context, raw, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if err := g.checkIP(a); err != nil {
			return nil, refuse(raw, "%v", err)
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, pipeline.Poison(fmt.Errorf("%s: host %q does not exist: %w", Redact(raw), host, err))
		}
		return nil, pipeline.Retryable(fmt.Errorf("%s: resolve %q: %w", Redact(raw), host, err))
	}
	var ok []netip.Addr
	var why error
	for _, a := range addrs {
		if err := g.checkIP(a); err != nil {
			why = err
			continue
		}
		ok = append(ok, a.Unmap())
	}
	if len(ok) == 0 {
		if why == nil {
			why = errors.New("no addresses")
		}
		return nil, refuse(raw, "host %q resolves to no allowed address: %v", host, why)
	}
	return ok, nil
}

// DialContext connects to addr ("host:port") only through addresses the
// policy allows, resolving the name itself so that the address checked is
// the address dialled.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !g.hostAllowed(host) {
		return nil, refuse(addr, "host %q is not in the allowed hosts", host)
	}
	addrs, err := g.resolve(ctx, addr, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		c, err := g.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// pinHost replaces u's host name by an allowed address of it, for protocols
// that ffmpeg dials itself (RTSP, RTMP, SRT): the address checked is the
// address ffmpeg connects to.
func (g *Guard) pinHost(ctx context.Context, raw string, u *url.URL) (*url.URL, error) {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	addrs, err := g.resolve(ctx, raw, host)
	if err != nil {
		return nil, err
	}
	pinned := *u
	ip := addrs[0].String()
	if addrs[0].Is6() {
		ip = "[" + ip + "]"
	}
	if port := u.Port(); port != "" {
		pinned.Host = ip + ":" + port
	} else {
		pinned.Host = ip
	}
	return &pinned, nil
}

// openFile opens a local video after resolving symbolic links and checking
// the result is a non-empty regular file under a file root. The open file
// is what ffmpeg reads (see localInput), so a link swapped after the check
// changes nothing.
func (g *Guard) openFile(raw, path string) (*os.File, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", fmt.Errorf("resolve %q: %w", path, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, "", pipeline.Poison(fmt.Errorf("video file does not exist: %w", err))
	case err != nil:
		return nil, "", fmt.Errorf("resolve video file: %w", err)
	}
	if !g.underRoots(real) {
		return nil, "", refuse(raw, "%s is outside the allowed file roots %v (allow its folder with stages.sample.sources.file_roots, or name it on the command line: vidx up --embedded FOLDER)", real, g.roots)
	}
	f, err := openNoFollow(real)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", pipeline.Poison(fmt.Errorf("video file does not exist: %w", err))
		}
		return nil, "", fmt.Errorf("open video file: %w", err)
	}
	fail := func(err error) (*os.File, string, error) {
		f.Close()
		return nil, "", err
	}
	if opened, ok := openedPath(f); ok && opened != real && !g.underRoots(opened) {
		return fail(refuse(raw, "%s moved outside the allowed file roots while being opened", opened))
	}
	st, err := f.Stat()
	switch {
	case err != nil:
		return fail(fmt.Errorf("stat video file: %w", err))
	case st.IsDir():
		return fail(pipeline.Poisonf("video path %s is a directory", real))
	case !st.Mode().IsRegular():
		return fail(refuse(raw, "%s is not a regular file (%v)", real, st.Mode().Type()))
	case st.Size() == 0:
		return fail(pipeline.Poisonf("video file %s is empty", real))
	}
	return f, real, nil
}

func (g *Guard) underRoots(path string) bool {
	if len(g.roots) == 0 {
		return true
	}
	for _, r := range g.roots {
		rel, err := filepath.Rel(r, path)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}

// CheckFrame refuses frames larger than the policy allows.
func (g *Guard) CheckFrame(raw string, w, h int) error {
	if (g.p.MaxWidth > 0 && w > g.p.MaxWidth) || (g.p.MaxHeight > 0 && h > g.p.MaxHeight) {
		return refuse(raw, "frames of %dx%d exceed the %dx%d limit", w, h, g.p.MaxWidth, g.p.MaxHeight)
	}
	return nil
}

// CheckDuration refuses files and VOD playlists longer than the policy
// allows.
func (g *Guard) CheckDuration(raw string, seconds float64) error {
	if g.p.MaxDuration > 0 && seconds > g.p.MaxDuration.Seconds() {
		return refuse(raw, "duration %s exceeds the %s limit", time.Duration(seconds*float64(time.Second)).Round(time.Second), g.p.MaxDuration)
	}
	return nil
}

// CheckBitrate refuses a source whose data rate (bits per second) exceeds
// the policy.
func (g *Guard) CheckBitrate(raw string, bps float64) error {
	if g.p.MaxBitrate > 0 && bps > float64(g.p.MaxBitrate) {
		return refuse(raw, "bitrate %s exceeds the %s limit", formatBitrate(bps), formatBitrate(float64(g.p.MaxBitrate)))
	}
	return nil
}

func formatBitrate(bps float64) string {
	switch {
	case bps >= 1e6:
		return strconv.FormatFloat(bps/1e6, 'f', 1, 64) + " Mbit/s"
	case bps >= 1e3:
		return strconv.FormatFloat(bps/1e3, 'f', 0, 64) + " kbit/s"
	}
	return strconv.FormatFloat(bps, 'f', 0, 64) + " bit/s"
}
