package sourceguard

import (
	"math"
	"net/url"
	"strings"
	"testing"
)

// FuzzParsePlaylist feeds untrusted playlists (a stream's source sends
// them) to the parser: it must not panic, and what it accepts must hold
// together: every reference resolved against the playlist's own absolute
// URL, every variant among the references, a duration that is a number.
func FuzzParsePlaylist(f *testing.F) {
	seeds := []string{
		"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nseg1.ts\n#EXT-X-ENDLIST\n",
		"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nlow/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1920x1080\nhttp://cdn.example.com/hi.m3u8\n",
		"#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k\"\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4,\n../a.m4s\n",
		"\ufeff#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:-1,\nx.ts\n#EXTINF:1e308,\ny.ts\n#EXTINF:1e308,\nz.ts\n",
		"#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"file:///etc/passwd\"\n#EXTINF:NaN,\n%zz\n",
		"not a playlist",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	base, err := url.Parse("http://media.example.com/live/index.m3u8")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		pl, err := parsePlaylist(base, []byte(body))
		if err != nil {
			return
		}
		if math.IsNaN(pl.seconds) || pl.seconds < 0 {
			t.Fatalf("duration %v", pl.seconds)
		}
		refs := map[string]bool{}
		for _, r := range pl.refs {
			if r.Scheme == "" && !strings.HasPrefix(r.String(), "//") && r.Opaque == "" {
				t.Fatalf("reference %q left relative to %s", r, base)
			}
			refs[r.String()] = true
		}
		for _, v := range pl.variants {
			if v.url == nil || !refs[v.url.String()] {
				t.Fatalf("variant %+v not among the references a player would open", v)
			}
		}
		if pl.count+len(pl.variants) > len(pl.refs) {
			t.Fatalf("%d segments and %d variants from %d references", pl.count, len(pl.variants), len(pl.refs))
		}
	})
}
