package sourceguard

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/vidx/vidx/pipeline"
)

// maxPlaylistBytes bounds a playlist read by the checks and the proxy.
const maxPlaylistBytes = 1 << 20

// playlist is what the checks need from an HLS playlist.
type playlist struct {
	url      *url.URL
	master   bool
	variants []variant
	// refs are every URI the playlist makes a player open: segments, keys,
	// init sections, renditions, variants.
	refs    []*url.URL
	live    bool
	seconds float64 // sum of EXTINF
	target  float64 // EXT-X-TARGETDURATION
	count   int     // media segments
}

type variant struct {
	url           *url.URL
	bandwidth     int64
	width, height int
}

// HLSInfo describes the HLS media playlist a source resolved to.
type HLSInfo struct {
	URL     *url.URL // the media playlist ffmpeg reads
	Live    bool
	Seconds float64 // sum of EXTINF
	Target  float64 // EXT-X-TARGETDURATION
	Count   int     // media segments
}

// parsePlaylist reads an m3u8 playlist fetched from base.
func parsePlaylist(base *url.URL, body []byte) (*playlist, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(body, "\ufeff"), []byte("#EXTM3U")) {
		return nil, errors.New("not an m3u8 playlist (no #EXTM3U)")
	}
	pl := &playlist{url: base, live: true}
	var pendingVariant *variant
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), maxPlaylistBytes)
	ref := func(raw string) (*url.URL, error) {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("playlist entry %q: %w", raw, err)
		}
		u = base.ResolveReference(u)
		pl.refs = append(pl.refs, u)
		return u, nil
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			tag, attrs, _ := strings.Cut(line, ":")
			if v, ok := attrValue(attrs, "URI"); ok && strings.HasPrefix(tag, "#EXT") {
				if _, err := ref(v); err != nil {
					return nil, err
				}
			}
			switch tag {
			case "#EXT-X-STREAM-INF":
				pl.master = true
				pendingVariant = &variant{}
				if v, ok := attrValue(attrs, "BANDWIDTH"); ok {
					pendingVariant.bandwidth, _ = strconv.ParseInt(v, 10, 64)
				}
				if v, ok := attrValue(attrs, "RESOLUTION"); ok {
					w, h, _ := strings.Cut(v, "x")
					pendingVariant.width, _ = strconv.Atoi(w)
					pendingVariant.height, _ = strconv.Atoi(h)
				}
			case "#EXTINF":
				d, _, _ := strings.Cut(attrs, ",")
				if s, err := strconv.ParseFloat(strings.TrimSpace(d), 64); err == nil && s >= 0 && !math.IsInf(s, 0) {
					pl.seconds += s
				}
			case "#EXT-X-TARGETDURATION":
				pl.target, _ = strconv.ParseFloat(strings.TrimSpace(attrs), 64)
			case "#EXT-X-ENDLIST":
				pl.live = false
			case "#EXT-X-PLAYLIST-TYPE":
				if strings.TrimSpace(attrs) == "VOD" {
					pl.live = false
				}
			}
		default:
			u, err := ref(line)
			if err != nil {
				return nil, err
			}
			if pendingVariant != nil {
				pendingVariant.url = u
				pl.variants = append(pl.variants, *pendingVariant)
				pendingVariant = nil
			} else {
				pl.count++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read playlist: %w", err)
	}
	return pl, nil
}

// attrValue returns attribute name of an HLS attribute list, unquoted.
func attrValue(attrs, name string) (string, bool) {
	for len(attrs) > 0 {
		var k string
		k, attrs, _ = strings.Cut(attrs, "=")
		k = strings.TrimSpace(k)
		var v string
		if strings.HasPrefix(attrs, `"`) {
			end := strings.IndexByte(attrs[1:], '"')
			if end < 0 {
				return "", false
			}
			v, attrs = attrs[1:1+end], attrs[2+end:]
			attrs = strings.TrimPrefix(attrs, ",")
		} else {
			v, attrs, _ = strings.Cut(attrs, ",")
		}
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// checkPlaylist refuses a playlist that makes a player open anything the
// policy does not allow: local files, other schemes, denied hosts or
// addresses. Host names are resolved here to refuse early with a clear
// reason; the proxy checks the address again when it is dialled.
func (g *Guard) checkPlaylist(ctx context.Context, raw string, pl *playlist) error {
	if err := g.checkPlaylistRefs(raw, pl); err != nil {
		return err
	}
	resolved := map[string]bool{}
	for _, u := range pl.refs {
		host := strings.ToLower(u.Hostname())
		if resolved[host] || len(resolved) >= 16 {
			continue
		}
		resolved[host] = true
		if _, err := g.resolve(ctx, u.String(), host); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				return refuse(raw, "playlist %s names %s: %s", pl.url.Redacted(), Redact(u.String()), re.Reason)
			}
			return err
		}
	}
	return nil
}

// chooseVariant picks the variant a CLIP sampler needs: the smallest whose
// short side still covers size pixels, within the policy's limits.
// Variants without a RESOLUTION are only used when none has one.
func (g *Guard) chooseVariant(raw string, vs []variant, size int) (variant, error) {
	var ok []variant
	for _, v := range vs {
		if v.url == nil {
			continue
		}
		if g.p.MaxBitrate > 0 && v.bandwidth > g.p.MaxBitrate {
			continue
		}
		if v.width > 0 && g.CheckFrame(raw, v.width, v.height) != nil {
			continue
		}
		ok = append(ok, v)
	}
	if len(ok) == 0 {
		return variant{}, refuse(raw, "no variant of the master playlist is within the %dx%d, %s limits",
			g.p.MaxWidth, g.p.MaxHeight, formatBitrate(float64(g.p.MaxBitrate)))
	}
	best := -1
	for i, v := range ok {
		if v.width == 0 {
			continue
		}
		short := min(v.width, v.height)
		switch {
		case best < 0:
			best = i
		default:
			b := ok[best]
			bshort := min(b.width, b.height)
			// Prefer covering size; among those, the smallest; otherwise the largest.
			if (short >= size) != (bshort >= size) {
				if short >= size {
					best = i
				}
			} else if area, barea := v.width*v.height, b.width*b.height; (short >= size && area < barea) || (short < size && area > barea) {
				best = i
			}
		}
	}
	if best < 0 {
		best = 0
	}
	return ok[best], nil
}

// preflight fetches an http(s) source before ffmpeg opens it. A playlist is
// checked entry by entry (a master playlist's chosen variant too) and
// described; anything else returns nil, and whether its server takes byte
// ranges. Redirects are checked hop by hop and every connection goes
// through DialContext.
func (g *Guard) preflight(ctx context.Context, raw string, u *url.URL, size int) (*HLSInfo, bool, error) {
	client := g.httpClient(raw)
	pl, ranges, err := g.fetchPlaylist(ctx, client, raw, u)
	if err != nil {
		return nil, false, err
	}
	if pl == nil {
		return nil, ranges, nil
	}
	info, err := g.describePlaylist(ctx, client, raw, pl, size)
	return info, false, err
}

// describePlaylist checks a fetched playlist (and a master playlist's
// chosen variant) and describes the media playlist ffmpeg is to read.
func (g *Guard) describePlaylist(ctx context.Context, client *http.Client, raw string, pl *playlist, size int) (*HLSInfo, error) {
	if err := g.checkPlaylist(ctx, raw, pl); err != nil {
		return nil, err
	}
	if pl.master {
		v, err := g.chooseVariant(raw, pl.variants, size)
		if err != nil {
			return nil, err
		}
		media, _, err := g.fetchPlaylist(ctx, client, raw, v.url)
		if err != nil {
			return nil, err
		}
		if media == nil || media.master {
			return nil, refuse(raw, "variant %s is not a media playlist", v.url.Redacted())
		}
		if err := g.checkPlaylist(ctx, raw, media); err != nil {
			return nil, err
		}
		pl = media
	}
	if !pl.live {
		if err := g.CheckDuration(raw, pl.seconds); err != nil {
			return nil, err
		}
	}
	return &HLSInfo{URL: pl.url, Live: pl.live, Seconds: pl.seconds, Target: pl.target, Count: pl.count}, nil
}

func (g *Guard) httpClient(raw string) *http.Client {
	return &http.Client{
		Timeout: g.p.IOTimeout,
		Transport: &http.Transport{
			Proxy:       nil, // never an environment proxy: the checks are the point
			DialContext: g.DialContext,
			// ffmpeg does not verify certificates either (tls_verify=0), so
			// verifying here would only refuse sources ffmpeg reads; the
			// checks are about where vidx connects, which DialContext holds.
			TLSClientConfig:       &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
			DisableCompression:    true,
			ResponseHeaderTimeout: g.p.IOTimeout,
			MaxIdleConns:          1,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return pipeline.Poisonf("%s: more than 5 redirects", Redact(raw))
			}
			if err := g.checkURL(raw, req.URL, SchemeHTTP, SchemeHTTPS); err != nil {
				var re *RefusedError
				if errors.As(err, &re) {
					return refuse(raw, "redirect to %s: %s", req.URL.Redacted(), re.Reason)
				}
				return err
			}
			return nil
		},
	}
}

// fetchPlaylist GETs u and parses it when it is a playlist; other content
// returns nil after reading only its first bytes, and whether the server
// says it takes byte ranges (Accept-Ranges: bytes).
func (g *Guard) fetchPlaylist(ctx context.Context, client *http.Client, raw string, u *url.URL) (*playlist, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, pipeline.Poison(fmt.Errorf("%s: %w", Redact(raw), err))
	}
	req.Header.Set("User-Agent", "vidx")
	resp, err := client.Do(req)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			return nil, false, pipeline.Poison(re)
		}
		if pipeline.Classify(err) != pipeline.ClassUnknown {
			return nil, false, err
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, false, pipeline.Retryable(fmt.Errorf("%s: HTTP source unavailable: %w", Redact(raw), err))
		}
		return nil, false, pipeline.Retryable(fmt.Errorf("%s: %w", Redact(raw), err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return nil, false, pipeline.Retryable(fmt.Errorf("%s: HTTP source unavailable: server returned %s", Redact(raw), resp.Status))
	case resp.StatusCode >= 400:
		return nil, false, pipeline.Poison(fmt.Errorf("%s: HTTP source rejected the request: server returned %s", Redact(raw), resp.Status))
	}
	br := bufio.NewReaderSize(resp.Body, 512)
	head, _ := br.Peek(10)
	if !bytes.HasPrefix(bytes.TrimLeft(head, "\ufeff"), []byte("#EXTM3U")) {
		return nil, strings.EqualFold(strings.TrimSpace(resp.Header.Get("Accept-Ranges")), "bytes"), nil
	}
	body, err := io.ReadAll(io.LimitReader(br, maxPlaylistBytes+1))
	if err != nil {
		return nil, false, pipeline.Retryable(fmt.Errorf("%s: read playlist: %w", Redact(raw), err))
	}
	if len(body) > maxPlaylistBytes {
		return nil, false, refuse(raw, "playlist larger than %d bytes", maxPlaylistBytes)
	}
	pl, err := parsePlaylist(resp.Request.URL, body)
	if err != nil {
		return nil, false, pipeline.Poison(fmt.Errorf("%s: %w", Redact(raw), err))
	}
	return pl, false, nil
}
