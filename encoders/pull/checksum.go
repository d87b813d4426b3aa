package pull

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Checksum algorithms.
const (
	// SHA256 is the SHA-256 of the file's bytes: what indexes, the catalogue,
	// sidecar files and the Hugging Face hub's X-Linked-Etag carry.
	SHA256 = "sha256"
	// GitSHA1 is the git blob id, SHA-1 of "blob <size>\x00" + bytes. The
	// Hugging Face hub sends it as the ETag of files kept in git rather than
	// LFS (small text files such as tokenizer.json), so it is the only
	// checksum the hub publishes for them.
	GitSHA1 = "git-sha1"
)

// Where a checksum came from; shown to the user next to each file.
const (
	FromIndex     = "index"
	FromCatalogue = "catalogue"
	FromFragment  = "url fragment"
	FromSidecar   = "sidecar"
	FromLinkedTag = "X-Linked-Etag"
	FromETag      = "ETag"
)

// Checksum is an expected digest and where it came from.
type Checksum struct {
	Algo   string // SHA256 or GitSHA1
	Hex    string // lower-case hex digest
	Source string // FromIndex, FromSidecar, ...
}

// Known reports whether c holds a digest.
func (c Checksum) Known() bool { return c.Hex != "" }

func (c Checksum) String() string {
	if !c.Known() {
		return "none"
	}
	if c.Source == "" {
		return c.Algo + ":" + c.Hex
	}
	return fmt.Sprintf("%s:%s (%s)", c.Algo, c.Hex, c.Source)
}

// same reports whether two checksums name the same digest, ignoring source.
func (c Checksum) same(o Checksum) bool { return c.Algo == o.Algo && c.Hex == o.Hex }

// ParseSHA256 checks that s is a 64-digit hex SHA-256 and returns it in
// lower case.
func ParseSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if !isHex(s, sha256.Size*2) {
		return "", fmt.Errorf("%q is not a SHA-256 (64 hex digits)", s)
	}
	return s, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// strongETag returns an ETag's opaque value without quotes, or "" for a
// weak or missing one: a weak ETag promises semantic, not byte, equality,
// so it can neither name a digest nor validate a byte range.
func strongETag(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || strings.HasPrefix(v, "W/") {
		return ""
	}
	return strings.Trim(v, `"`)
}

// checksumFromHeaders looks for a digest in a response and the redirects
// that led to it. The Hugging Face hub answers a download of an LFS file
// with a redirect whose X-Linked-Etag is the file's SHA-256; files kept in
// git come back directly with the git blob id as ETag and an X-Repo-Commit
// header. Other servers qualify when their ETag is a 64-hex SHA-256.
func checksumFromHeaders(resp *http.Response) Checksum {
	var hops []*http.Response
	for r := resp; r != nil; {
		hops = append(hops, r)
		if r.Request == nil {
			break
		}
		r = r.Request.Response
	}
	// hops runs from the final response back to the first; the first hop is
	// the server the user named, so it speaks with most authority.
	for i := len(hops) - 1; i >= 0; i-- {
		if v := strongETag(hops[i].Header.Get("X-Linked-Etag")); isHex(v, 64) {
			return Checksum{Algo: SHA256, Hex: strings.ToLower(v), Source: FromLinkedTag}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i].Header
		v := strongETag(h.Get("ETag"))
		switch {
		case isHex(v, 64):
			return Checksum{Algo: SHA256, Hex: strings.ToLower(v), Source: FromETag}
		case isHex(v, 40) && h.Get("X-Repo-Commit") != "" && hops[i].StatusCode == http.StatusOK:
			return Checksum{Algo: GitSHA1, Hex: strings.ToLower(v), Source: FromETag}
		}
	}
	return Checksum{}
}

// parseSidecar reads a "URL.sha256" file: the digest alone, or the
// sha256sum format "<digest>  <name>".
func parseSidecar(data []byte) (string, error) {
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return "", fmt.Errorf("sidecar is empty")
	}
	return ParseSHA256(fields[0])
}

// hasher returns a hash for algo, already fed the git blob header when the
// size is needed up front.
func hasher(algo string, size int64) (hash.Hash, error) {
	switch algo {
	case SHA256, "":
		return sha256.New(), nil
	case GitSHA1:
		h := sha1.New()
		h.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
		return h, nil
	}
	return nil, fmt.Errorf("unknown checksum algorithm %q", algo)
}

// digests hashes path once for SHA-256 (always reported) and, if want uses
// another algorithm, for that too.
func digests(ctx context.Context, path string, want Checksum) (sha string, got string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", err
	}
	s := sha256.New()
	w := io.Writer(s)
	var other hash.Hash
	if want.Algo != "" && want.Algo != SHA256 {
		if other, err = hasher(want.Algo, fi.Size()); err != nil {
			return "", "", err
		}
		w = io.MultiWriter(s, other)
	}
	if _, err := io.Copy(w, ctxReader{ctx, f}); err != nil {
		return "", "", fmt.Errorf("hash %s: %w", path, err)
	}
	sha = hex.EncodeToString(s.Sum(nil))
	got = sha
	if other != nil {
		got = hex.EncodeToString(other.Sum(nil))
	}
	return sha, got, nil
}

// ctxReader stops a long local read (hashing a multi-gigabyte file) when the
// context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
