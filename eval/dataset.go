package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vidx/vidx/schemas"
)

// Video is one dataset line: a video and the captions that describe it.
type Video struct {
	VideoID string `json:"video_id"`
	// Path is the video file as written in the dataset: absolute, relative
	// to the dataset file's directory, or a URL ffmpeg can read.
	Path     string   `json:"path"`
	Captions []string `json:"captions"`

	// URI is Path resolved: what the sample stage is asked to read.
	URI string `json:"-"`
	// Line is the 1-based line of the dataset file.
	Line int `json:"-"`
}

// Dataset is a parsed dataset file.
type Dataset struct {
	File   string
	Videos []Video
}

// LineError is a problem with one line of a dataset file.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// maxLine bounds one dataset line; a video with thousands of captions fits.
const maxLine = 16 << 20

// LoadDataset reads a JSONL file with one video per line:
//
//	{"video_id": "v1", "path": "videos/v1.mp4", "captions": ["a man cooks", "..."]}
//
// Blank lines are skipped and fields other than these three are ignored, so
// annotation files with extra fields can be used as they are. Every problem
// is reported as a *LineError naming the line: invalid JSON, a missing
// video_id or path, a video file that does not exist, no captions, a blank
// caption or a repeated video_id.
func LoadDataset(file string) (*Dataset, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	dir := filepath.Dir(file)
	ds := &Dataset{File: file}
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		v, err := parseLine(text, dir)
		if err == nil {
			if prev, dup := seen[v.VideoID]; dup {
				err = fmt.Errorf("video_id %q repeats line %d", v.VideoID, prev)
			}
		}
		if err != nil {
			return nil, &LineError{File: file, Line: line, Err: err}
		}
		v.Line = line
		seen[v.VideoID] = line
		ds.Videos = append(ds.Videos, v)
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{File: file, Line: line + 1, Err: err}
	}
	if len(ds.Videos) == 0 {
		return nil, fmt.Errorf("dataset %s: no videos", file)
	}
	return ds, nil
}

func parseLine(text []byte, dir string) (Video, error) {
	var v Video
	if err := json.Unmarshal(text, &v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field == "" {
				return v, fmt.Errorf("want a JSON object with video_id, path and captions, got a JSON %s", typeErr.Value)
			}
			return v, fmt.Errorf("field %s: want %s, got a JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return v, fmt.Errorf("invalid JSON: %w", err)
	}
	job := schemas.VideoJob{VideoID: v.VideoID, URI: v.Path}
	switch {
	case v.VideoID == "":
		return v, errors.New("video_id is missing")
	case v.Path == "":
		return v, fmt.Errorf("video %q: path is missing", v.VideoID)
	case len(v.Captions) == 0:
		return v, fmt.Errorf("video %q: no captions", v.VideoID)
	}
	if err := job.Validate(); err != nil {
		return v, fmt.Errorf("video %q: %w", v.VideoID, err)
	}
	for k, c := range v.Captions {
		if strings.TrimSpace(c) == "" {
			return v, fmt.Errorf("video %q: caption %d is blank", v.VideoID, k+1)
		}
		if len(c) > schemas.MaxQueryText {
			return v, fmt.Errorf("video %q: caption %d is longer than %d bytes", v.VideoID, k+1, schemas.MaxQueryText)
		}
	}
	v.URI = v.Path
	if !strings.Contains(v.Path, "://") {
		if !filepath.IsAbs(v.URI) {
			v.URI = filepath.Join(dir, v.URI)
		}
		abs, err := filepath.Abs(v.URI)
		if err != nil {
			return v, fmt.Errorf("video %q: path %s: %w", v.VideoID, v.Path, err)
		}
		v.URI = abs
		fi, err := os.Stat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			return v, fmt.Errorf("video %q: %s: %w", v.VideoID, abs, fs.ErrNotExist)
		}
		if err != nil {
			return v, fmt.Errorf("video %q: %w", v.VideoID, err)
		}
		if fi.IsDir() {
			return v, fmt.Errorf("video %q: %s is a directory", v.VideoID, abs)
		}
	}
	return v, nil
}

// Captions returns every caption in dataset order and, for each, the index
// of the video it describes.
func (d *Dataset) Captions() (texts []string, truth []int) {
	for i, v := range d.Videos {
		for _, c := range v.Captions {
			texts = append(texts, c)
			truth = append(truth, i)
		}
	}
	return texts, truth
}
