package embedded

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vidx/vidx/sinks"
)

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func capture() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

func TestTornTailRecovered(t *testing.T) {
	const dim = 8
	for _, tc := range []struct {
		name string
		// damage edits the log whose last record is lastLen bytes long.
		damage func(t *testing.T, path string, lastLen int64)
		// lastSurvives says whether the final record is still valid.
		lastSurvives bool
		warns        bool
	}{
		{"cut 1 byte", cut(1), false, true},
		{"cut into header", cutToLeave(5), false, true},
		{"cut after header", cutToLeave(recHeaderSize + 3), false, true},
		{"cut whole record", cutToLeave(0), false, false},
		{"flipped body byte", flip(-3), false, true},
		{"flipped length byte", flip(0), false, true},
		{"zeros after last record", appendBytes(make([]byte, 100)), true, true},
		{"garbage after last record", appendBytes([]byte("\xff\xff\xff\x7fgarbage")), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			logPath := filepath.Join(dir, "c", logName)
			r := rand.New(rand.NewPCG(11, 12))
			pts := makePoints(r, "p", 21, dim, 3)

			s := openStore(t, dir, Options{})
			if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
				t.Fatal(err)
			}
			for _, batch := range [][]sinks.Point{pts[:10], pts[10:20]} {
				if err := s.Upsert(ctx, "c", batch); err != nil {
					t.Fatal(err)
				}
			}
			before := fileSize(t, logPath)
			if err := s.Upsert(ctx, "c", pts[20:]); err != nil {
				t.Fatal(err)
			}
			lastLen := fileSize(t, logPath) - before
			crash(s)

			tc.damage(t, logPath, lastLen)

			logs, logger := capture()
			s2 := openStore(t, dir, Options{Logger: logger})
			want := pts[:20]
			if tc.lastSurvives {
				want = pts
			}
			checkPoints(t, s2, "c", dim, want)
			if got := strings.Contains(logs.String(), "torn or corrupt tail"); got != tc.warns {
				t.Fatalf("warning logged = %v, want %v; log: %s", got, tc.warns, logs.String())
			}
			wantSize := before
			if tc.lastSurvives {
				wantSize += lastLen
			}
			if got := fileSize(t, logPath); got != wantSize {
				t.Fatalf("log is %d bytes after recovery, want %d", got, wantSize)
			}

			// Writes after recovery must land after the good records and
			// survive the next restart without another warning.
			extra := makePoints(r, "extra", 1, dim, 1)
			if err := s2.Upsert(ctx, "c", extra); err != nil {
				t.Fatal(err)
			}
			crash(s2)
			logs, logger = capture()
			s3 := openStore(t, dir, Options{Logger: logger})
			checkPoints(t, s3, "c", dim, append(append([]sinks.Point(nil), want...), extra...))
			if logs.String() != "" {
				t.Fatalf("unexpected warnings on clean reopen: %s", logs.String())
			}
		})
	}
}

func cut(n int64) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, _ int64) {
		if err := os.Truncate(path, fileSize(t, path)-n); err != nil {
			t.Fatal(err)
		}
	}
}

// cutToLeave keeps only the first n bytes of the last record.
func cutToLeave(n int64) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, last int64) {
		if err := os.Truncate(path, fileSize(t, path)-last+n); err != nil {
			t.Fatal(err)
		}
	}
}

// flip inverts one byte of the last record; negative offsets count from the
// end of the file.
func flip(off int64) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, last int64) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := int64(len(b)) - last + off
		if off < 0 {
			i = int64(len(b)) + off
		}
		b[i] ^= 0xff
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func appendBytes(extra []byte) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, _ int64) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(extra); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesInconsistentLog(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"unknown record type", func(t *testing.T, path string) {
			rec, _ := sealRecord(append(make([]byte, recHeaderSize), 42, 1, 2), 0)
			appendBytes(rec)(t, path, 0)
		}},
		{"vector of another dimension", func(t *testing.T, path string) {
			rec, _ := appendUpsert(nil, "odd", []float32{1, 0}, []byte(`{}`))
			appendBytes(rec)(t, path, 0)
		}},
		{"bad header", func(t *testing.T, path string) {
			flip(0)(t, path, fileSize(t, path))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			if err := s.EnsureCollection(ctx, testSpec("c", 4)); err != nil {
				t.Fatal(err)
			}
			if err := s.Upsert(ctx, "c", []sinks.Point{{ID: "a", Vector: []float32{1, 2, 3, 4}}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "c", logName)
			tc.damage(t, path)
			size := fileSize(t, path)
			if s, err := Open(dir, Options{Logger: quiet}); err == nil {
				s.Close()
				t.Fatal("Open succeeded on a log with a checksummed but invalid record")
			}
			if got := fileSize(t, path); got != size {
				t.Fatalf("failed Open changed the log from %d to %d bytes", size, got)
			}
		})
	}
}

func TestCompaction(t *testing.T) {
	const dim, n = 8, 10
	for _, tc := range []struct {
		name       string
		minDead    int
		wantBefore int // log records before Close
	}{
		// Batch 3 leaves 20 dead > 5 and > 10 live, so it compacts to 10;
		// batch 4 adds 10 more.
		{"automatic", 5, 20},
		{"disabled", -1, 40},
		// The default threshold is far above this test's garbage.
		{"default", 0, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			logPath := filepath.Join(dir, "c", logName)
			r := rand.New(rand.NewPCG(13, 14))
			s := openStore(t, dir, Options{CompactMinDead: tc.minDead})
			if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
				t.Fatal(err)
			}
			var pts []sinks.Point
			for range 4 {
				pts = makePoints(r, "p", n, dim, 2)
				if err := s.Upsert(ctx, "c", pts); err != nil {
					t.Fatal(err)
				}
			}
			c, _ := s.get(ctx, "c")
			if c.records != tc.wantBefore {
				t.Fatalf("log holds %d records before Close, want %d", c.records, tc.wantBefore)
			}
			if got := fileSize(t, logPath); got != c.size {
				t.Fatalf("log file is %d bytes, store tracks %d", got, c.size)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			compacted := fileSize(t, logPath)
			if _, err := os.Stat(filepath.Join(dir, "c", compactName)); !os.IsNotExist(err) {
				t.Fatalf("compaction file left behind: %v", err)
			}

			s2 := openStore(t, dir, Options{})
			checkPoints(t, s2, "c", dim, pts)
			c2, _ := s2.get(ctx, "c")
			if c2.records != n || c2.size != compacted {
				t.Fatalf("after Close the log holds %d records (%d bytes), want %d", c2.records, c2.size, n)
			}
			// A clean log is not rewritten on Close.
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			if got := fileSize(t, logPath); got != compacted {
				t.Fatalf("clean log changed size from %d to %d on Close", compacted, got)
			}
		})
	}
}

func TestCompactionAfterDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(15, 16))
	s := openStore(t, dir, Options{NoSync: true, CompactMinDead: 1})
	if err := s.EnsureCollection(ctx, testSpec("c", 4)); err != nil {
		t.Fatal(err)
	}
	pts := makePoints(r, "p", 12, 4, 3)
	if err := s.Upsert(ctx, "c", pts); err != nil {
		t.Fatal(err)
	}
	// Removing 8 of 12 points leaves 9 dead records against 4 live ones.
	for _, v := range []string{"video-0", "video-1"} {
		if _, err := s.DeleteVideo(ctx, "c", v); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := s.get(ctx, "c")
	if c.records != 4 {
		t.Fatalf("log holds %d records after deletes, want 4", c.records)
	}
	crash(s)
	s2 := openStore(t, dir, Options{})
	var want []sinks.Point
	for _, p := range pts {
		if p.Payload.VideoID == "video-2" {
			want = append(want, p)
		}
	}
	checkPoints(t, s2, "c", 4, want)
}

func TestOpenCleansUpInterruptedWork(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	if err := s.EnsureCollection(ctx, testSpec("c", 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "c", []sinks.Point{{ID: "a", Vector: []float32{1, 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A half-created collection and a half-written compaction.
	half := filepath.Join(dir, tmpPrefix+"d-123")
	if err := os.MkdirAll(half, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c", compactName), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, Options{})
	for _, p := range []string{half, filepath.Join(dir, "c", compactName)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed on Open: %v", p, err)
		}
	}
	if n, _ := s2.Count(ctx, "c", sinks.Filter{}); n != 1 {
		t.Fatalf("Count = %d, want 1", n)
	}
	if _, err := s2.Collection(ctx, "d"); err == nil {
		t.Fatal("half-created collection became visible")
	}
}

func TestWriteFailureStopsWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	if err := s.EnsureCollection(ctx, testSpec("c", 2)); err != nil {
		t.Fatal(err)
	}
	first := []sinks.Point{{ID: "a", Vector: []float32{1, 0}, Payload: sinks.Payload{VideoID: "v"}}}
	if err := s.Upsert(ctx, "c", first); err != nil {
		t.Fatal(err)
	}
	// Pull the file out from under the store so the append and the
	// truncation that undoes it both fail.
	c, _ := s.get(ctx, "c")
	c.f.Close()
	second := []sinks.Point{{ID: "b", Vector: []float32{0, 1}, Payload: sinks.Payload{VideoID: "v"}}}
	if err := s.Upsert(ctx, "c", second); err == nil {
		t.Fatal("Upsert succeeded on a closed log file")
	}
	err := s.Upsert(ctx, "c", second)
	if err == nil || !strings.Contains(err.Error(), "reopen the store") {
		t.Fatalf("Upsert after a failed write = %v, want a request to reopen", err)
	}
	if _, err := s.DeleteVideo(ctx, "c", "v"); err == nil {
		t.Fatal("DeleteVideo succeeded after a failed write")
	}
	// The failed batch never reached the index; reads keep working.
	if n, err := s.Count(ctx, "c", sinks.Filter{}); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1", n, err)
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close did not report the broken log")
	}
	s2 := openStore(t, dir, Options{})
	checkPoints(t, s2, "c", 2, first)
}

// TestDeleteOlderAfterCrash crashes the store between writing a video's new
// generation and deleting its older ones, and again after the delete: the
// log replays to both generations, then to the new one alone.
func TestDeleteOlderAfterCrash(t *testing.T) {
	const dim = 8
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(21, 22))
	stamp := func(pts []sinks.Point, gen int64) []sinks.Point {
		for i := range pts {
			pts[i].Payload.VideoID = "v"
			pts[i].Payload.Generation = gen
		}
		return pts
	}
	old := stamp(makePoints(r, "old", 4, dim, 1), 100)
	legacy := stamp(makePoints(r, "legacy", 1, dim, 1), 0)
	fresh := stamp(makePoints(r, "fresh", 3, dim, 1), 200)
	other := makePoints(r, "other", 2, dim, 1)

	s := openStore(t, dir, Options{})
	if err := s.EnsureCollection(ctx, testSpec("c", dim)); err != nil {
		t.Fatal(err)
	}
	for _, batch := range [][]sinks.Point{old, legacy, other, fresh} {
		if err := s.Upsert(ctx, "c", batch); err != nil {
			t.Fatal(err)
		}
	}
	crash(s)

	s = openStore(t, dir, Options{})
	checkPoints(t, s, "c", dim, slices.Concat(old, legacy, other, fresh))
	if n, err := s.DeleteOlder(ctx, "c", "v", 200); err != nil || n != len(old)+len(legacy) {
		t.Fatalf("DeleteOlder = %d, %v; want %d", n, err, len(old)+len(legacy))
	}
	crash(s)

	s = openStore(t, dir, Options{})
	checkPoints(t, s, "c", dim, slices.Concat(other, fresh))
	if n, err := s.DeleteOlder(ctx, "c", "v", 200); err != nil || n != 0 {
		t.Errorf("DeleteOlder replayed = %d, %v; want 0", n, err)
	}
}
