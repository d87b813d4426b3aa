package schemas

import "testing"

func TestDeadLetterFilter(t *testing.T) {
	d := DeadLetter{Stage: "index", Class: "poison", Reason: "Vector has NaN", Key: []byte("v1"), Topic: "clip-embeddings"}
	cases := []struct {
		expr    string
		match   bool
		wantErr bool
	}{
		{"", true, false},
		{"stage=index", true, false},
		{"stage=sample", false, false},
		{"stage=index,class=poison,topic=clip-embeddings", true, false},
		{"reason~=nan", true, false},
		{"reason~=inf", false, false},
		{"key=v1, class=unknown", false, false},
		{"colour=red", false, true},
		{"stage", false, true},
		{"stage=", false, true},
	}
	for _, tc := range cases {
		f, err := ParseDeadLetterFilter(tc.expr)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err = %v", tc.expr, err)
			continue
		}
		if err == nil && f.Match(d) != tc.match {
			t.Errorf("%q: match = %v, want %v", tc.expr, !tc.match, tc.match)
		}
	}
}

func TestReplayHeaders(t *testing.T) {
	d := DeadLetter{Reason: "bad", Class: "poison", Stage: "sample", Topic: "videos", Partition: 2, Offset: 7}
	h := d.Headers()
	h["traceparent"] = "keep-me"
	got := ReplayHeaders(h, "dead-letters", 1, 40)
	if len(got) != 2 || got["traceparent"] != "keep-me" || got[HeaderReplayedFrom] != "dead-letters/1@40" {
		t.Errorf("replay headers %v: want the trace context and %s only", got, HeaderReplayedFrom)
	}
}
