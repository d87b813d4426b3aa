package sample

import (
	"bytes"
	"errors"
	"fmt"
	"image/jpeg"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/vidx/vidx/pipeline"
)

// ThumbnailQuality is the JPEG quality of clip thumbnails: they are shown
// at a small size, so about 10 KiB each is plenty.
const ThumbnailQuality = 80

// ThumbnailKey is the key of a clip's thumbnail on the thumbnails topic.
// The clip index is last and holds no slash, so the key splits back
// unambiguously even when the video id has slashes.
func ThumbnailKey(videoID string, clipIndex int) string {
	return videoID + "/" + strconv.Itoa(clipIndex)
}

// ParseThumbnailKey splits a ThumbnailKey.
func ParseThumbnailKey(key string) (videoID string, clipIndex int, err error) {
	i := strings.LastIndexByte(key, '/')
	if i <= 0 {
		return "", 0, fmt.Errorf("thumbnail key %q has no clip index", key)
	}
	n, err := strconv.Atoi(key[i+1:])
	if err != nil || n < 0 {
		return "", 0, fmt.Errorf("thumbnail key %q: clip index %q is not a number", key, key[i+1:])
	}
	return key[:i], n, nil
}

// thumbnail is the JPEG of a clip's middle frame (the CLIP crop the
// encoder sees), produced next to the clip on a compacted topic, so every
// replica of the search API can serve it without a shared disk. It returns
// no output when topic is empty or the clip has no frames.
func thumbnail(topic, videoID string, index int, frames []Frame) (*pipeline.Output, error) {
	if topic == "" || len(frames) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, frames[len(frames)/2].Image, &jpeg.Options{Quality: ThumbnailQuality}); err != nil {
		return nil, fmt.Errorf("thumbnail of clip %d: %w", index, err)
	}
	return &pipeline.Output{Topic: topic, Key: []byte(ThumbnailKey(videoID, index)), Value: buf.Bytes()}, nil
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
