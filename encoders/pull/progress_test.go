package pull

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestBar(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := NewBar(&out)
	b.now = clock.now

	b.Start("image.onnx", 4<<20, 1<<20) // resuming at 1 MiB of 4 MiB
	clock.advance(time.Second)
	b.Add(1 << 20)
	line := lastLine(out.String())
	for _, want := range []string{"image.onnx", " 50%", "2.0 MiB / 4.0 MiB", "1.0 MiB/s", "ETA 2s", "[============>"} {
		if !strings.Contains(line, want) {
			t.Errorf("bar %q lacks %q", line, want)
		}
	}

	// Adds closer together than the interval do not redraw.
	n := out.Len()
	b.Add(10)
	if out.Len() != n {
		t.Error("redrawn within the interval")
	}

	// A log line clears the bar, prints, and the bar comes back.
	out.Reset()
	b.Write([]byte("level=WARN msg=retrying\n"))
	s := out.String()
	if !strings.HasPrefix(s, "\r") || !strings.Contains(s, "msg=retrying\n\r") || !strings.Contains(s, "image.onnx [") {
		t.Errorf("log through the bar: %q", s)
	}

	out.Reset()
	clock.advance(time.Second)
	b.Add(2<<20 - 10)
	b.Finish(nil)
	if s := out.String(); !strings.Contains(s, "100%") || !strings.HasSuffix(s, "\n") {
		t.Errorf("finish: %q", s)
	}
	// After Finish, log lines pass straight through.
	out.Reset()
	b.Write([]byte("done\n"))
	if out.String() != "done\n" {
		t.Errorf("after finish: %q", out.String())
	}
}

func TestBarUnknownSize(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0)}
	b := NewBar(&out)
	b.now = clock.now
	b.Start("tokenizer.json", -1, 0)
	clock.advance(2 * time.Second)
	b.Add(3 << 10)
	line := lastLine(out.String())
	if !strings.Contains(line, "3.0 KiB") || !strings.Contains(line, "1.5 KiB/s") || strings.Contains(line, "%") {
		t.Errorf("bar without a size: %q", line)
	}
}

func lastLine(s string) string {
	if i := strings.LastIndex(s, "\r"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func TestLogProgress(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	clock := &fakeClock{t: time.Unix(0, 0)}
	p := NewLogProgress(log, 10*time.Second)
	p.now = clock.now

	p.Start("text.onnx", 1000, 0)
	for i := 0; i < 10; i++ {
		clock.advance(3 * time.Second)
		p.Add(100)
	}
	p.Finish(nil)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// start, a line every 10s of 30s (at 12s, 24s), the end.
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[0], "msg=downloading") || !strings.Contains(lines[0], `size="1000 B"`) {
		t.Errorf("start line %q", lines[0])
	}
	if !strings.Contains(lines[1], "percent=40") || !strings.Contains(lines[1], `rate="33 B/s"`) {
		t.Errorf("progress line %q", lines[1])
	}
	if !strings.Contains(lines[3], "msg=downloaded") || !strings.Contains(lines[3], "took=30s") {
		t.Errorf("end line %q", lines[3])
	}

	out.Reset()
	p.Start("text.onnx", -1, 500)
	p.Finish(errors.New("connection reset"))
	if s := out.String(); !strings.Contains(s, "resume_at") || !strings.Contains(s, "size=unknown") || !strings.Contains(s, "level=WARN") {
		t.Errorf("resume and failure lines: %q", s)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{351 << 20, "351.0 MiB"}, {3 << 30, "3.0 GiB"},
	} {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
