package pull

import (
	"strings"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes */300", -1, 300, true},
		{"bytes 10-5/100", 0, 0, false},
		{"bytes 0-200/200", 0, 0, false},
		{"bytes -5/100", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 0-1", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		start, size, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (start != tc.start || size != tc.size) {
			t.Errorf("%q: got %d/%d, want %d/%d", tc.in, start, size, tc.start, tc.size)
		}
	}
}

func TestCleanRel(t *testing.T) {
	tests := []struct {
		in, want string
		errPart  string
	}{
		{"image.onnx", "image.onnx", ""},
		{"./onnx/text.onnx", "onnx/text.onnx", ""},
		{"a//b/", "a/b", ""},
		{"", "", "empty"},
		{".", "", "directory itself"},
		{"../x", "", ".."},
		{"a/../../x", "", ".."},
		{"a/../x", "", ".."},
		{"/etc/passwd", "", "absolute"},
		{`a\b`, "", "backslash"},
		{"C:x", "", "drive"},
		{"a\x00b", "", "NUL"},
		{".partial/x", "", "reserved"},
		{".vidx-pull.json", "", "reserved"},
	}
	for _, tc := range tests {
		got, err := cleanRel(tc.in)
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("cleanRel(%q) = %q, %v; want an error about %q", tc.in, got, err, tc.errPart)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanRel(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseIndex(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	tests := []struct {
		name, in, errPart string
	}{
		{"valid", `{"name":"m","files":[{"path":"a.onnx","url":"https://h/a","sha256":"` + sha + `","size":3}]}`, ""},
		{"upper-case digest", `{"files":[{"path":"a","sha256":"` + strings.ToUpper(sha) + `"}]}`, ""},
		{"no files", `{"files":[]}`, "no files"},
		{"misspelt field", `{"files":[{"path":"a","sha265":"x"}]}`, "unknown field"},
		{"short digest", `{"files":[{"path":"a","sha256":"abc"}]}`, "files[0].sha256"},
		{"traversal", `{"files":[{"path":"../a"}]}`, "files[0].path"},
		{"negative size", `{"files":[{"path":"a","size":-1}]}`, "files[0].size"},
		{"trailing data", `{"files":[{"path":"a"}]} {}`, "trailing"},
		{"not json", `<html>`, "parse"},
	}
	for _, tc := range tests {
		_, err := ParseIndex([]byte(tc.in))
		if tc.errPart == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("%s: err = %v, want one about %q", tc.name, err, tc.errPart)
		}
	}
}

func TestParseSidecar(t *testing.T) {
	sha := strings.Repeat("0f", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{sha, true},
		{sha + "  model.tar.gz\n", true},
		{strings.ToUpper(sha) + "\n", true},
		{"", false},
		{"not-a-digest model.tar.gz", false},
	} {
		got, err := parseSidecar([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && got != sha) {
			t.Errorf("parseSidecar(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestFileTargetResolvesRelativeURLs(t *testing.T) {
	base := mustURL(t, "https://models.example/b32/index.json")
	tests := []struct {
		f    File
		want string
	}{
		{File{Path: "image.onnx"}, "https://models.example/b32/image.onnx"},
		{File{Path: "tok/vocab json.txt"}, "https://models.example/b32/tok/vocab%20json.txt"},
		{File{Path: "a", URL: "../shared/a.bin"}, "https://models.example/shared/a.bin"},
		{File{Path: "a", URL: "https://cdn.example/a"}, "https://cdn.example/a"},
	}
	for _, tc := range tests {
		tg, err := tc.f.target(base, FromIndex)
		if err != nil || tg.url.String() != tc.want {
			t.Errorf("%+v: %v, %v; want %s", tc.f, tg.url, err, tc.want)
		}
	}
}
