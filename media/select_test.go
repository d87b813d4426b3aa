package media

import (
	"slices"
	"strings"
	"testing"
)

func TestSelectIndices(t *testing.T) {
	for _, tc := range []struct {
		n, max int
		sel    string
		want   []int
	}{
		// np.linspace(0, 14, 12, dtype=int)
		{15, 12, SelectUniform, []int{0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 14}},
		// np.linspace(0, 99, 12, dtype=int)
		{100, 12, SelectUniform, []int{0, 9, 18, 27, 36, 45, 54, 63, 72, 81, 90, 99}},
		// np.linspace(0, 12, 12, dtype=int): step 12/11
		{13, 12, SelectUniform, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12}},
		// np.linspace(0, 33, 12, dtype=int): step exactly 3
		{34, 12, SelectUniform, []int{0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33}},
		// np.linspace(0, 4, 3, dtype=int)
		{5, 3, SelectUniform, []int{0, 2, 4}},
		// np.linspace(0, 9, 1, dtype=int)
		{10, 1, SelectUniform, []int{0}},
		{12, 12, SelectUniform, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{3, 12, SelectUniform, []int{0, 1, 2}},
		{3, 12, SelectTail, []int{0, 1, 2}},
		{15, 4, SelectHead, []int{0, 1, 2, 3}},
		{15, 4, SelectTail, []int{11, 12, 13, 14}},
		{0, 12, SelectUniform, nil},
		{1, 12, SelectUniform, []int{0}},
	} {
		if got := SelectIndices(tc.n, tc.max, tc.sel); !slices.Equal(got, tc.want) {
			t.Errorf("SelectIndices(%d, %d, %s) = %v, want %v", tc.n, tc.max, tc.sel, got, tc.want)
		}
	}
}

// The picker, fed frames one by one, must end with exactly the frames
// SelectIndices picks when the count is within its slack of the estimate,
// including the last frame supplied late.
func TestPickerMatchesSelection(t *testing.T) {
	for _, sel := range []string{SelectUniform, SelectHead, SelectTail} {
		for _, est := range []int{5, 12, 13, 40, 100} {
			hi := est + countSlack
			if sel != SelectUniform {
				hi = est + 20 // head and tail do not depend on the estimate upwards
			}
			for actual := max(1, est-countSlack); actual <= hi; actual++ {
				p := newPicker(12, sel, est, countSlack)
				feedPicker(p, actual)
				frames, exact := p.finish(actual, lateFrom(actual))
				got := times(frames)
				want := SelectIndices(actual, 12, sel)
				if !exact || !slices.Equal(got, want) {
					t.Errorf("%s est=%d actual=%d: got %v (exact %v), want %v", sel, est, actual, got, exact, want)
				}
			}
		}
	}
}

// With no estimate the picker thins frames; the result stays close to the
// exact selection and within the memory bound.
func TestPickerUnknownLength(t *testing.T) {
	for _, n := range []int{1, 7, 12, 48, 49, 500, 3601} {
		p := newPicker(12, SelectUniform, -1, 0)
		maxKept := 0
		for i := range n {
			if p.wants(i) {
				p.add(i, Frame{TimeS: float64(i)})
			}
			maxKept = max(maxKept, len(p.kept))
		}
		frames, _ := p.finish(n, lateFrom(n))
		got, want := times(frames), SelectIndices(n, 12, SelectUniform)
		if len(got) != len(want) {
			t.Fatalf("n=%d: got %d frames %v, want %d", n, len(got), got, len(want))
		}
		tol := p.stride / 2
		for i := range got {
			if abs(got[i]-want[i]) > tol {
				t.Errorf("n=%d: frame %d = %d, want %d±%d", n, i, got[i], want[i], tol)
			}
		}
		if maxKept > 4*12+1 {
			t.Errorf("n=%d: held %d frames at once", n, maxKept)
		}
	}
	p := newPicker(3, SelectTail, -1, 0)
	feedPicker(p, 50)
	if frames, exact := p.finish(50, nil); !exact || !slices.Equal(times(frames), []int{47, 48, 49}) || len(p.kept) != 3 {
		t.Errorf("tail without estimate: %v exact=%v kept=%d", times(frames), exact, len(p.kept))
	}
}

// A count far from the estimate still yields increasing, distinct frames.
func TestPickerFarFromEstimate(t *testing.T) {
	p := newPicker(12, SelectUniform, 100, countSlack)
	feedPicker(p, 60)
	frames, exact := p.finish(60, lateFrom(60))
	got := times(frames)
	if exact {
		t.Error("expected an approximate selection")
	}
	if len(got) < 10 || got[len(got)-1] != 59 {
		t.Errorf("got %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("not strictly increasing: %v", got)
		}
	}
}

func feedPicker(p *picker, n int) {
	for i := range n {
		if p.wants(i) {
			p.add(i, Frame{TimeS: float64(i)})
		}
	}
}

// lateFrom mimics the decoder: the last two frames of an n-frame clip are
// still available.
func lateFrom(n int) func(int) (Frame, bool) {
	return func(i int) (Frame, bool) {
		if i >= n-lateFrames && i < n {
			return Frame{TimeS: float64(i)}, true
		}
		return Frame{}, false
	}
}

func times(frames []Frame) []int {
	out := make([]int, len(frames))
	for i, f := range frames {
		out[i] = int(f.TimeS)
	}
	return out
}

func TestOptions(t *testing.T) {
	o := Options{}.WithDefaults()
	if o.FPS != 1 || o.MaxFrames != 12 || o.Selection != SelectUniform || o.Mode != ModeWhole ||
		o.Size != 224 || o.FFmpegPath != "ffmpeg" || o.FFprobePath != "ffprobe" || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	w := Options{Mode: ModeWindow, WindowS: 10}.WithDefaults()
	if w.StrideS != 10 {
		t.Errorf("stride default %v", w.StrideS)
	}
	for name, bad := range map[string]Options{
		"fps":       {FPS: -1},
		"max":       {MaxFrames: -3},
		"selection": {Selection: "random"},
		"mode":      {Mode: "scenes"},
		"window":    {Mode: ModeWindow},
		"stride":    {Mode: ModeWindow, WindowS: 4, StrideS: -1},
		"size":      {Size: -224},
		"timeout":   {Timeout: -1},
	} {
		err := bad.WithDefaults().Validate()
		if err == nil {
			t.Errorf("%s: no error for %+v", name, bad)
		} else if !strings.Contains(err.Error(), "invalid options") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewDecoder(Options{FFmpegPath: "/nonexistent/ffmpeg"}); err == nil {
		t.Error("NewDecoder accepted a missing ffmpeg")
	}
}

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(8)
	b.Write([]byte("hello "))
	b.Write([]byte("world"))
	if got := b.String(); got != "lo world" {
		t.Errorf("got %q", got)
	}
	b.Write([]byte("0123456789"))
	if got := b.String(); got != "23456789" {
		t.Errorf("got %q", got)
	}
}
