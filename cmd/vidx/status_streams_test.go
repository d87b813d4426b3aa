package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
)

func TestWriteStreamTable(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	states := map[string]schemas.StreamState{
		"cam-b": {StreamID: "cam-b", State: schemas.StreamReconnecting, Live: true, Windows: 7, Restarts: 2, Owner: "h1/9",
			Error:      "stream stalled: no frame within the stall timeout",
			LastWindow: &schemas.StreamWindow{Index: 40, StartS: 400, EndS: 410, Frames: 10, WallEnd: now.Add(-42 * time.Second)}},
		"archive": {StreamID: "archive", State: schemas.StreamEnded, Windows: 360,
			LastWindow: &schemas.StreamWindow{Index: 359, StartS: 3590, EndS: 3597.5, Frames: 8}},
		"cam-a": {StreamID: "cam-a", State: schemas.StreamStarting, Live: true},
	}
	var b strings.Builder
	if err := writeStreamTable(&b, states, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "STREAM") {
		t.Fatalf("table:\n%s", b.String())
	}
	for i, want := range [][]string{
		{"archive", "ended", "file", "360", "#359 [3590.0s, 3597.5s) 8 frames"},
		{"cam-a", "starting", "live", "0"},
		{"cam-b", "reconnecting", "live", "#40 [400.0s, 410.0s)", "42s ago", "h1/9", "stalled"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %q lacks %q", lines[i+1], w)
			}
		}
	}
}
