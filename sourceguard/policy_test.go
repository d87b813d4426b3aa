package sourceguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vidx/vidx/pipeline"
)

// fakeResolver answers from a table, like a DNS server an attacker
// controls.
type fakeResolver map[string][]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func writeFile(tb testing.TB, path string, data []byte) string {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// refusedBecause fails the test unless err is a poison refusal whose
// reason mentions want.
func refusedBecause(t *testing.T, err error, want string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) || !pipeline.IsPoison(err) {
		t.Fatalf("err = %v (class %v), want a poison refusal", err, pipeline.Classify(err))
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q does not mention %q", err, want)
	}
}

func TestGuardNetworkSources(t *testing.T) {
	resolver := fakeResolver{
		"public.test":   {"203.0.113.10"},
		"metadata.test": {"169.254.169.254"},
		"split.test":    {"10.0.0.5", "203.0.113.11"},
		"inside.test":   {"10.20.0.1"},
	}
	base := SourcePolicy{Resolver: resolver}
	cases := []struct {
		name   string
		policy func(*SourcePolicy)
		uri    string
		want   string // "" allowed, else a word of the refusal
	}{
		{"public host", nil, "http://public.test/v.mp4", ""},
		{"cloud metadata by address", nil, "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"cloud metadata by name", nil, "http://metadata.test/latest/meta-data/", "resolves to no allowed address"},
		{"private", nil, "https://10.1.2.3/v.m3u8", "private"},
		{"loopback", nil, "http://127.0.0.1:8080/v.mp4", "loopback"},
		{"IPv6 loopback", nil, "http://[::1]/v.mp4", "loopback"},
		{"IPv4-mapped loopback", nil, "http://[::ffff:127.0.0.1]/v.mp4", "loopback"},
		{"NAT64 of metadata", nil, "http://[64:ff9b::a9fe:a9fe]/", "NAT64"},
		{"unspecified", nil, "http://0.0.0.0:9092/", "unspecified"},
		{"unique local", nil, "http://[fd00:ec2::254]/", "unique-local"},
		{"RTSP camera on a private network", nil, "rtsp://10.0.0.9/stream1", "private"},
		{"private network allowed", func(p *SourcePolicy) { p.AllowNetworks = []string{"10.0.0.0/8"} }, "rtsp://inside.test/stream1", ""},
		{"denied subnet wins", func(p *SourcePolicy) {
			p.AllowNetworks, p.DenyNetworks = []string{"10.0.0.0/8"}, []string{"10.20.0.0/16"}
		}, "rtsp://inside.test/stream1", "denied network 10.20.0.0/16"},
		{"split answer uses the allowed address", nil, "http://split.test/v.mp4", ""},
		{"unknown scheme", nil, "gopher://public.test/", "not allowed"},
		{"scheme not in the list", func(p *SourcePolicy) { p.Schemes = []string{"https"} }, "http://public.test/v.mp4", "not allowed"},
		{"host list: exact", func(p *SourcePolicy) { p.Hosts = []string{"public.test"} }, "http://public.test/v.mp4", ""},
		{"host list: subdomain pattern", func(p *SourcePolicy) { p.Hosts = []string{"*.test"} }, "http://public.test/v.mp4", ""},
		{"host list: other host", func(p *SourcePolicy) { p.Hosts = []string{"cdn.example.com"} }, "http://public.test/v.mp4", "not in the allowed hosts"},
		{"host list: pattern needs a subdomain", func(p *SourcePolicy) { p.Hosts = []string{"*.public.test"} }, "http://public.test/", "not in the allowed hosts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base
			if c.policy != nil {
				c.policy(&p)
			}
			g, err := NewGuard(p)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(c.uri)
			if err != nil {
				t.Fatal(err)
			}
			err = g.checkURL(c.uri, u)
			var addrs []netip.Addr
			if err == nil {
				addrs, err = g.resolve(context.Background(), c.uri, u.Hostname())
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				for _, a := range addrs {
					if g.checkIP(a) != nil {
						t.Errorf("resolve returned the refused address %v", a)
					}
				}
				return
			}
			refusedBecause(t, err, c.want)
		})
	}
}

// The address checked is the address dialled: DialContext resolves names
// itself, so a name that points somewhere else later still cannot reach a
// refused address.
func TestGuardDialChecksResolvedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	g, err := NewGuard(SourcePolicy{Resolver: fakeResolver{"rebind.test": {"127.0.0.1"}, "good.test": {"127.0.0.1"}},
		Hosts: []string{"rebind.test", "good.test"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.DialContext(context.Background(), "tcp", net.JoinHostPort("rebind.test", port))
	refusedBecause(t, err, "loopback")

	g, err = NewGuard(SourcePolicy{Resolver: fakeResolver{"good.test": {"127.0.0.1"}}, AllowNetworks: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort("good.test", port))
	if err != nil {
		t.Fatalf("allowed address: %v", err)
	}
	c.Close()
}

func TestGuardLocalFiles(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "videos")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	video := writeFile(t, filepath.Join(root, "a.mp4"), []byte("not really a video, but a regular file"))
	outside := writeFile(t, filepath.Join(dir, "secret.mp4"), []byte("private"))
	if err := os.Symlink(outside, filepath.Join(root, "escape.mp4")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(video, filepath.Join(root, "alias.mp4")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "empty.mp4"), nil)
	if err := os.Mkdir(filepath.Join(root, "dir.mp4"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(root, "fifo.mp4")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	g, err := NewGuard(SourcePolicy{FileRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		uri  string
		want string // "" allowed; else a word of the (poison) error
	}{
		{video, ""},
		{"file://" + video, ""},
		{filepath.Join(root, "alias.mp4"), ""},
		{outside, "outside the allowed file roots"},
		{filepath.Join(root, "..", "secret.mp4"), "outside the allowed file roots"},
		{filepath.Join(root, "escape.mp4"), "outside the allowed file roots"},
		{"file:///etc/passwd", "outside the allowed file roots"},
		{"/etc/passwd", "outside the allowed file roots"},
		{fifo, "not a regular file"},
		{filepath.Join(root, "empty.mp4"), "is empty"},
		{filepath.Join(root, "dir.mp4"), "is a directory"},
		{filepath.Join(root, "missing.mp4"), "does not exist"},
		{"file://otherhost/etc/passwd", "only local files"},
	}
	for _, c := range cases {
		t.Run(c.uri, func(t *testing.T) {
			src, err := g.Open(context.Background(), c.uri, 224)
			defer src.Close()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if src.file == nil || src.Local != video {
					t.Fatalf("source %+v, want the opened %s", src, video)
				}
				return
			}
			if !pipeline.IsPoison(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v (class %v), want poison mentioning %q", err, pipeline.Classify(err), c.want)
			}
		})
	}
	// Without roots any regular file is allowed, but never a FIFO.
	open, err := NewGuard(SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := open.Open(context.Background(), outside, 224)
	src.Close()
	if err != nil {
		t.Errorf("no roots: %v", err)
	}
	_, err = open.Open(context.Background(), fifo, 224)
	refusedBecause(t, err, "not a regular file")
	if _, err := NewGuard(SourcePolicy{FileRoots: []string{filepath.Join(dir, "nope")}}); err == nil {
		t.Error("a missing file root was accepted")
	}
}

func TestParsePlaylist(t *testing.T) {
	base, _ := url.Parse("https://cdn.test/live/cam1/index.m3u8")
	master := `#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,CODECS="avc1.640028,mp4a.40.2"
hi/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=426x240
lo/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1400000,RESOLUTION=640x360
mid/index.m3u8
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/en.m3u8"
`
	pl, err := parsePlaylist(base, []byte(master))
	if err != nil {
		t.Fatal(err)
	}
	if !pl.master || len(pl.variants) != 3 || len(pl.refs) != 4 {
		t.Fatalf("master: %+v", pl)
	}
	if got := pl.refs[3].String(); got != "https://cdn.test/live/cam1/audio/en.m3u8" {
		t.Errorf("rendition resolved to %s", got)
	}
	g, err := NewGuard(SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := g.chooseVariant("x", pl.variants, 224)
	if err != nil || v.height != 240 {
		t.Errorf("chose %+v, %v; want the 426x240 variant (smallest covering 224)", v, err)
	}
	small, _ := NewGuard(SourcePolicy{MaxWidth: 320, MaxHeight: 320})
	if _, err := small.chooseVariant("x", pl.variants[:1], 224); err == nil {
		t.Error("a variant over the resolution limit was chosen")
	}

	media := `#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:120
#EXT-X-KEY:METHOD=AES-128,URI="https://keys.test/k1",IV=0x1
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.000,
seg120.m4s
#EXTINF:3.5,title
http://other.test/seg121.m4s
`
	pl, err = parsePlaylist(base, []byte(media))
	if err != nil {
		t.Fatal(err)
	}
	if pl.master || !pl.live || pl.count != 2 || pl.seconds != 7.5 || pl.target != 4 || len(pl.refs) != 4 {
		t.Fatalf("media: %+v", pl)
	}
	pl, _ = parsePlaylist(base, []byte(media+"#EXT-X-ENDLIST\n"))
	if pl.live {
		t.Error("a playlist with ENDLIST is live")
	}
	if _, err := parsePlaylist(base, []byte("<html>")); err == nil {
		t.Error("HTML parsed as a playlist")
	}
}

func TestCheckPlaylist(t *testing.T) {
	g, err := NewGuard(SourcePolicy{Resolver: fakeResolver{"cdn.test": {"203.0.113.5"}, "meta.test": {"169.254.169.254"}}})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("http://cdn.test/live/index.m3u8")
	head := "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
	cases := []struct {
		name, body, want string
	}{
		{"clean", head + "#EXTINF:2,\nseg1.ts\n#EXTINF:2,\nhttp://cdn.test/seg2.ts\n", ""},
		{"local file segment", head + "#EXTINF:2,\nfile:///etc/passwd\n", "scheme \"file\""},
		{"relative path stays on the host", head + "#EXTINF:2,\n../../../etc/passwd\n", ""},
		{"metadata segment", head + "#EXTINF:2,\nhttp://169.254.169.254/latest/meta-data/\n", "link-local"},
		{"segment host resolving to metadata", head + "#EXTINF:2,\nhttp://meta.test/seg.ts\n", "resolves to no allowed address"},
		{"key from a data URI", head + "#EXT-X-KEY:METHOD=AES-128,URI=\"data:text/plain;base64,AAAA\"\n#EXTINF:2,\nseg.ts\n", "scheme \"data\""},
		{"init section on the local disk", head + "#EXT-X-MAP:URI=\"file:///dev/zero\"\n#EXTINF:2,\nseg.ts\n", "scheme \"file\""},
		{"nested protocol", head + "#EXTINF:2,\nconcat:/etc/passwd|/etc/shadow\n", "scheme \"concat\""},
		{"other protocol", head + "#EXTINF:2,\nrtmp://cdn.test/x\n", "scheme \"rtmp\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl, err := parsePlaylist(base, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			err = g.checkPlaylist(context.Background(), base.String(), pl)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				for _, r := range pl.refs {
					if r.Scheme != "http" || r.Host != "cdn.test" {
						t.Errorf("entry resolved to %s", r)
					}
				}
				return
			}
			refusedBecause(t, err, c.want)
		})
	}
}

func TestSourcePolicyValidation(t *testing.T) {
	for _, p := range []SourcePolicy{
		{Schemes: []string{"ftp"}},
		{AllowNetworks: []string{"10.0.0.0/33"}},
		{DenyNetworks: []string{"not-a-cidr"}},
		{Hosts: []string{"*"}},
		{MaxWidth: -1},
	} {
		if _, err := NewGuard(p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	g, err := NewGuard(SourcePolicy{AllowNetworks: []string{"192.168.1.7"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.checkIP(netip.MustParseAddr("192.168.1.7")); err != nil {
		t.Errorf("a bare address in allow_networks: %v", err)
	}
	if err := g.checkIP(netip.MustParseAddr("192.168.1.8")); err == nil {
		t.Error("its neighbour was allowed too")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://admin:hunter2@cam.test:554/stream": "rtsp://admin:xxxxx@cam.test:554/stream",
		"https://cdn.test/a.m3u8":                  "https://cdn.test/a.m3u8",
		"/videos/a@b.mp4":                          "/videos/a@b.mp4",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	err := refuse("rtsp://admin:hunter2@10.0.0.1/s", "private")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("refusal leaks the password: %v", err)
	}
}

// Protocols ffmpeg dials itself get the checked address in their URL.
func TestGuardPinsStreamHosts(t *testing.T) {
	g, err := NewGuard(SourcePolicy{Resolver: fakeResolver{"cam.test": {"10.0.0.7"}, "v6cam.test": {"2001:db8::7"}},
		AllowNetworks: []string{"10.0.0.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"rtsp://admin:pw@cam.test:554/stream1?channel=2": "rtsp://admin:pw@10.0.0.7:554/stream1?channel=2",
		"rtmp://cam.test/live/key":                       "rtmp://10.0.0.7/live/key",
		"srt://v6cam.test:9000?streamid=cam":             "srt://[2001:db8::7]:9000?streamid=cam",
	} {
		src, err := g.Open(context.Background(), in, 224)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if src.Input != want || !src.Remote || !src.Live() || strings.Contains(src.URI, "pw@") {
			t.Errorf("%s: input %q (uri %q, live %v), want %q", in, src.Input, src.URI, src.Live(), want)
		}
	}
	_, err = g.Open(context.Background(), "rtsp://10.0.1.7/stream", 224)
	refusedBecause(t, err, "private")
}

// TestGuardRecordsByteRanges checks Open says whether an http source's
// server takes byte ranges, which decides whether a decoder may seek in
// it: a file served with ranges, one streamed without, and a playlist.
func TestGuardRecordsByteRanges(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "v.mp4"), make([]byte, 4096))
	writeFile(t, filepath.Join(dir, "p.m3u8"), []byte("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream.mp4" {
			w.Write(make([]byte, 4096)) // no Accept-Ranges
			return
		}
		http.ServeFile(w, r, filepath.Join(dir, filepath.Base(r.URL.Path)))
	}))
	defer srv.Close()
	g, err := NewGuard(SourcePolicy{AllowNetworks: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/v.mp4": true, "/stream.mp4": false, "/p.m3u8": false} {
		src, err := g.Open(context.Background(), srv.URL+path, 224)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if src.Ranges != want {
			t.Errorf("%s: Ranges = %v, want %v", path, src.Ranges, want)
		}
		src.Close()
	}
}
