package pull

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Bar draws a one-line progress bar on a terminal. It is also an
// io.Writer: log lines written through it clear the bar first and redraw
// it after, so the two never garble each other.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	now      func() time.Time
	interval time.Duration

	active    bool
	name      string
	total     int64
	done      int64
	startDone int64
	startAt   time.Time
	lastDraw  time.Time
	lineLen   int
}

// NewBar returns a Bar drawing on w (a terminal) at most every 100ms.
func NewBar(w io.Writer) *Bar {
	return &Bar{w: w, now: time.Now, interval: 100 * time.Millisecond}
}

// Start implements Progress.
func (b *Bar) Start(name string, total, done int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.active, b.name, b.total, b.done, b.startDone = true, name, total, done, done
	b.startAt = b.now()
	b.draw()
}

// Add implements Progress.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if now := b.now(); now.Sub(b.lastDraw) >= b.interval {
		b.draw()
	}
}

// Finish implements Progress: the last state stays on screen.
func (b *Bar) Finish(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.active {
		return
	}
	b.draw()
	fmt.Fprintln(b.w)
	b.active, b.lineLen = false, 0
}

// Write lets a logger share the terminal with the bar.
func (b *Bar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active {
		b.clear()
	}
	n, err := b.w.Write(p)
	if b.active {
		b.draw()
	}
	return n, err
}

func (b *Bar) clear() {
	fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", b.lineLen))
}

func (b *Bar) draw() {
	line := b.line()
	pad := ""
	if len(line) < b.lineLen {
		pad = strings.Repeat(" ", b.lineLen-len(line))
	}
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
	b.lineLen = len(line)
	b.lastDraw = b.now()
}

const barWidth = 24

func (b *Bar) line() string {
	rate := rateOf(b.done-b.startDone, b.now().Sub(b.startAt))
	if b.total <= 0 {
		return fmt.Sprintf("%s  %s  %s/s", b.name, FormatBytes(b.done), FormatBytes(int64(rate)))
	}
	frac := min(float64(b.done)/float64(b.total), 1)
	filled := int(frac * barWidth)
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	eta := ""
	if rate > 0 && b.done < b.total {
		eta = "  ETA " + (time.Duration(float64(b.total-b.done)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("%s [%s] %3.0f%%  %s / %s  %s/s%s",
		b.name, bar, 100*frac, FormatBytes(b.done), FormatBytes(b.total), FormatBytes(int64(rate)), eta)
}

// rateOf is bytes per second.
func rateOf(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// LogProgress reports downloads as log lines, for output that is not a
// terminal (CI logs, files): one line at the start, one every interval,
// one at the end.
type LogProgress struct {
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration

	name      string
	total     int64
	done      int64
	startDone int64
	startAt   time.Time
	lastLog   time.Time
}

// NewLogProgress logs to log every interval (10s when zero).
func NewLogProgress(log *slog.Logger, interval time.Duration) *LogProgress {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &LogProgress{log: log, now: time.Now, interval: interval}
}

// Start implements Progress.
func (l *LogProgress) Start(name string, total, done int64) {
	l.name, l.total, l.done, l.startDone = name, total, done, done
	l.startAt = l.now()
	l.lastLog = l.startAt
	args := []any{"file", name, "size", sizeOrUnknown(total)}
	if done > 0 {
		args = append(args, "resume_at", FormatBytes(done))
	}
	l.log.Info("downloading", args...)
}

// Add implements Progress.
func (l *LogProgress) Add(n int64) {
	l.done += n
	now := l.now()
	if now.Sub(l.lastLog) < l.interval {
		return
	}
	l.lastLog = now
	args := []any{"file", l.name, "done", FormatBytes(l.done)}
	if l.total > 0 {
		args = append(args, "percent", fmt.Sprintf("%.0f", 100*float64(l.done)/float64(l.total)), "size", FormatBytes(l.total))
	}
	args = append(args, "rate", FormatBytes(int64(rateOf(l.done-l.startDone, now.Sub(l.startAt))))+"/s")
	l.log.Info("progress", args...)
}

// Finish implements Progress.
func (l *LogProgress) Finish(err error) {
	d := l.now().Sub(l.startAt)
	rate := FormatBytes(int64(rateOf(l.done-l.startDone, d))) + "/s"
	if err != nil {
		l.log.Warn("download stopped", "file", l.name, "done", FormatBytes(l.done), "err", err)
		return
	}
	l.log.Info("downloaded", "file", l.name, "size", FormatBytes(l.done), "took", d.Round(100*time.Millisecond), "rate", rate)
}

func sizeOrUnknown(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return FormatBytes(n)
}

// FormatBytes renders a byte count with a binary unit: "351.5 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
