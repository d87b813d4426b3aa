package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vidx/vidx/schemas"
)

// writeStreamTable prints stream states (from streams.ReadStates) as
// a table, one stream a line in stream id order: what `vidx status` shows.
// now dates the last window.
func writeStreamTable(w io.Writer, states map[string]schemas.StreamState, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSTATE\tCLOCK\tWINDOWS\tLAST WINDOW\tSEEN\tRESTARTS\tOWNER\tERROR")
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range states {
			if !yield(id) {
				return
			}
		}
	}) {
		st := states[id]
		clock := "file"
		if st.Live {
			clock = "live"
		}
		last, seen := "-", "-"
		if lw := st.LastWindow; lw != nil {
			last = fmt.Sprintf("#%d [%.1fs, %.1fs) %d frames", lw.Index, lw.StartS, lw.EndS, lw.Frames)
			if !lw.WallEnd.IsZero() {
				seen = now.Sub(lw.WallEnd).Round(time.Second).String() + " ago"
			}
		}
		errText := strings.ReplaceAll(st.Error, "\n", " ")
		if len(errText) > 120 {
			errText = errText[:117] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", id, st.State, clock, st.Windows, last, seen, st.Restarts, st.Owner, errText)
	}
	return tw.Flush()
}
