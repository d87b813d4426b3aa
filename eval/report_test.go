package eval

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	r := &Report{
		T2V:       ByMode{None: Metrics{R1: 44.5, R5: 71.4, R10: 81.6, MdR: 2, MnR: 15.3}, Symmetric: Metrics{R1: 52.9}},
		V2T:       ByMode{CAMoE: Metrics{R1: 12.34}},
		T2VStream: ByMode{Symmetric: Metrics{MdR: 2.5}},
		Videos:    1000, Captions: 1000, Pooling: "seqTransf", Model: "clip-vit-b16", BankSize: 256, Temperature: 0.01,
		Codec: "png",
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"1000 videos, 1000 captions; model clip-vit-b16, pooling seqTransf, frames png, dual-softmax temperature 0.01",
		"text-to-video            none            44.5    71.4    81.6     2.0    15.3",
		"text-to-video            symmetric       52.9     0.0",
		"video-to-text            camoe           12.3",
		"t2v streaming, bank 256  symmetric        0.0     0.0     0.0     2.5     0.0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 12 {
		t.Errorf("%d lines, want a header, a blank, the column names and 9 rows:\n%s", lines, out)
	}
}
