package media

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
)

// ffmpeg's log is read alongside its raw frames: the showinfo filter logs
// one line per frame (its timestamp and size) before the frame is written
// to stdout, and the input dump says whether the input has a duration and
// where its clock starts. Parsing the log avoids a separate ffprobe run,
// which for a live source would mean a second connection.

// inputHeader is the input dump's "Duration: ..., start: ..., bitrate: ..."
// line.
type inputHeader struct {
	durationS float64 // 0: unknown (N/A), which is what live inputs say
	startS    float64
	bitrate   float64 // bits per second; 0 unknown
}

// frameLine is one showinfo frame line.
type frameLine struct {
	ptsS float64 // seconds, relative to the input's start (no -copyts)
	w, h int
}

// parseHeaderLine reads the input dump's duration line.
func parseHeaderLine(line string) (inputHeader, bool) {
	line = strings.TrimSpace(line)
	rest, ok := strings.CutPrefix(line, "Duration:")
	if !ok {
		return inputHeader{}, false
	}
	fields := strings.Split(rest, ",")
	h := inputHeader{durationS: parseClock(strings.TrimSpace(fields[0]))}
	for _, field := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(field), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "start":
			h.startS, _ = strconv.ParseFloat(v, 64)
		case "bitrate":
			if n, unit, ok := strings.Cut(v, " "); ok && unit == "kb/s" {
				kb, _ := strconv.ParseFloat(n, 64)
				h.bitrate = kb * 1000
			}
		}
	}
	if math.IsNaN(h.startS) || math.IsInf(h.startS, 0) {
		h.startS = 0
	}
	return h, true
}

// parseClock reads ffmpeg's HH:MM:SS.ss; N/A and garbage are 0.
func parseClock(s string) float64 {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0
	}
	var total float64
	for _, p := range parts {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 {
			return 0
		}
		total = total*60 + v
	}
	return total
}

// parseFrameLine reads a showinfo line such as
// "[Parsed_showinfo_1 @ 0x...] n:   3 pts:  270000 pts_time:3 ... s:320x240 ...".
func parseFrameLine(line string) (frameLine, bool) {
	if !strings.Contains(line, "Parsed_showinfo") {
		return frameLine{}, false
	}
	i := strings.Index(line, " pts_time:")
	if i < 0 || !strings.Contains(line, "] n:") {
		return frameLine{}, false
	}
	v, _, _ := strings.Cut(strings.TrimSpace(line[i+len(" pts_time:"):]), " ")
	pts, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(pts) || math.IsInf(pts, 0) {
		return frameLine{}, false
	}
	j := strings.Index(line, " s:")
	if j < 0 {
		return frameLine{}, false
	}
	size, _, _ := strings.Cut(line[j+len(" s:"):], " ")
	ws, hs, ok := strings.Cut(size, "x")
	if !ok {
		return frameLine{}, false
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return frameLine{}, false
	}
	return frameLine{ptsS: pts, w: w, h: h}, true
}

// logEvent is what the log reader passes on: the input header (once) or a
// frame.
type logEvent struct {
	header *inputHeader
	frame  frameLine
}

// readLog parses ffmpeg's log from r until EOF, sending events in order and
// keeping every other line in diag for error messages. It closes events
// when r ends. A line that never ends cannot grow without bound: lines are
// cut at 64 KiB.
func readLog(r io.Reader, events chan<- logEvent, diag io.Writer) {
	defer close(events)
	br := bufio.NewReaderSize(r, 64<<10)
	sawInput, sawHeader := false, false
	for {
		line, err := readLine(br)
		if line != "" {
			switch {
			case !sawHeader && strings.HasPrefix(line, "Input #0"):
				sawInput = true
				_, _ = io.WriteString(diag, line+"\n")
			case sawInput && !sawHeader && strings.HasPrefix(strings.TrimSpace(line), "Duration:"):
				if h, ok := parseHeaderLine(line); ok {
					sawHeader = true
					events <- logEvent{header: &h}
				}
			case strings.Contains(line, "Parsed_showinfo"):
				if f, ok := parseFrameLine(line); ok {
					if !sawHeader {
						// No dump (e.g. a raw input): an unknown duration.
						sawHeader = true
						events <- logEvent{header: &inputHeader{}}
					}
					events <- logEvent{frame: f}
				}
			default:
				_, _ = io.WriteString(diag, line+"\n")
			}
		}
		if err != nil {
			return
		}
	}
}

// readLine returns the next line ending in \n or \r (ffmpeg rewrites its
// progress line with \r), without the terminator.
func readLine(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		b, err := br.ReadByte()
		if err != nil {
			return sb.String(), err
		}
		if b == '\n' || b == '\r' {
			return sb.String(), nil
		}
		if sb.Len() < 64<<10 {
			sb.WriteByte(b)
		}
	}
}
