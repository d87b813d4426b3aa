package sample

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"strconv"
	"strings"

	"github.com/vidx/vidx/media"
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

// Thumbnail is the JPEG of a clip's middle frame (the CLIP crop the
// encoder sees), produced next to the clip on a compacted topic, so every
// replica of the search API can serve it without a shared disk. It returns
// no output when topic is empty or the clip has no frames.
func Thumbnail(topic, videoID string, index int, frames []media.Frame) (*pipeline.Output, error) {
	if topic == "" || len(frames) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, frames[len(frames)/2].Image, &jpeg.Options{Quality: ThumbnailQuality}); err != nil {
		return nil, fmt.Errorf("thumbnail of clip %d: %w", index, err)
	}
	return &pipeline.Output{Topic: topic, Key: []byte(ThumbnailKey(videoID, index)), Value: buf.Bytes()}, nil
}
