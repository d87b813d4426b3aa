package eval

import (
	"fmt"
	"io"
)

// WriteTable prints the report as the papers' table: one line per direction
// and dual-softmax mode, recalls in percent, ranks 1-based.
func WriteTable(w io.Writer, r *Report) error {
	model := r.Model
	if model == "" {
		model = "?"
	}
	codec := ""
	if r.Codec != "" {
		codec = ", frames " + r.Codec
	}
	fmt.Fprintf(w, "%d videos, %d captions; model %s, pooling %s%s, dual-softmax temperature %g\n\n",
		r.Videos, r.Captions, model, r.Pooling, codec, r.Temperature)
	rows := []struct {
		label string
		by    *ByMode
	}{
		{"text-to-video", &r.T2V},
		{"video-to-text", &r.V2T},
		{fmt.Sprintf("t2v streaming, bank %d", r.BankSize), &r.T2VStream},
	}
	width := len("direction")
	for _, row := range rows {
		width = max(width, len(row.label))
	}
	var err error
	line := func(label, mode string, cols ...string) {
		if err != nil {
			return
		}
		s := fmt.Sprintf("%-*s  %-12s", width, label, mode)
		for _, c := range cols {
			s += fmt.Sprintf("  %6s", c)
		}
		_, err = fmt.Fprintln(w, s)
	}
	line("direction", "dual softmax", "R@1", "R@5", "R@10", "MdR", "MnR")
	for _, row := range rows {
		for _, mode := range Modes() {
			m := row.by.Get(mode)
			f := func(x float64) string { return fmt.Sprintf("%.1f", x) }
			line(row.label, mode, f(m.R1), f(m.R5), f(m.R10), f(m.MdR), f(m.MnR))
		}
	}
	return err
}
