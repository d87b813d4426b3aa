package media

import (
	"image"
	"math"
	"slices"
	"sort"
	"time"
)

// Window is a complete window of a stream, emitted as one clip.
type Window struct {
	// Clip holds the window number (Index: window k covers stream time
	// [k*StrideS, k*StrideS+WindowS)), its bounds and its selected frames.
	// Frame times are stream time.
	Clip
	// Live says the times are the source's clock (true) or the position in
	// a file or VOD playlist (false).
	Live bool
	// WallStart and WallEnd are when the window's bounds were seen, derived
	// from when its first and last frames arrived; zero for files.
	WallStart, WallEnd time.Time
}

// timeEps absorbs float error in window arithmetic; stream times are
// milliseconds apart at the very least.
const timeEps = 1e-6

// windower is the one windowing engine, for files and streams alike: fed
// frames with their times as they are decoded, it collects each clip's
// frames, cropping only those some clip may select, and returns every clip
// as soon as no later frame can fall in it. Where clips lie is the
// layout's arithmetic: a grid of stream time for streams (timeGrid), the
// frame indices of a file's windows, shots or whole video (frameSpans).
type windower struct {
	o    Options // MaxFrames and Selection
	lay  layout
	open []*openWindow // by clip number, which is also end order
	seq  int           // frames fed so far

	// late, when set, returns the seq-th frame if it is still at hand
	// although no clip kept it: a selection may need a frame past the
	// estimated count.
	late func(seq int) (Frame, bool)
	// approx, when set, hears of a clip whose selection had to take the
	// nearest kept frames because its count was far from the estimate.
	approx func(c Clip, n int)
}

// layout places clips over the frames a windower is fed.
type layout interface {
	// clips calls open with the number of every clip that holds the
	// seq-th frame fed (0-based), at stream time t.
	clips(seq int, t float64, open func(k int))
	// bounds are clip k's start and end in seconds.
	bounds(k int) (start, end float64)
	// complete reports whether clip c has all its frames once the seq-th
	// frame was fed, the next one coming at stream time next at the
	// earliest.
	complete(c *Clip, seq int, next float64) bool
	// plan is how many frames clip k is expected to hold, and how far the
	// real count may be from it and still get the exact selection.
	plan(k int) (est, slack int)
	// cut is where a clip still open when the source ends at end is cut,
	// its last frame at tLast.
	cut(clipEnd, end, tLast float64) float64
}

type openWindow struct {
	clip          Clip
	first         int // seq of its first frame
	n             int
	pick          *picker
	tFirst, tLast float64
	wFirst, wLast time.Time
}

func newWindower(o Options, lay layout) *windower {
	return &windower{o: o, lay: lay}
}

// add files a frame of stream time t that arrived at wall (zero for
// files). next is the earliest stream time a later frame can have; clips
// complete by then are returned in order. crop is called at most once,
// and only if some clip keeps the frame.
func (w *windower) add(t, next float64, wall time.Time, crop func() *image.RGBA) []Window {
	seq := w.seq
	w.seq++
	var img *image.RGBA
	w.lay.clips(seq, t, func(k int) {
		ow := w.window(k)
		local := ow.n
		ow.n++
		if ow.n == 1 {
			ow.first, ow.tFirst, ow.wFirst = seq, t, wall
		}
		ow.tLast, ow.wLast = t, wall
		if !ow.pick.wants(local) {
			return
		}
		if img == nil {
			img = crop()
		}
		ow.pick.add(local, Frame{TimeS: t, Image: img})
	})
	var done []Window
	for len(w.open) > 0 && w.lay.complete(&w.open[0].clip, seq, next) {
		done = append(done, w.finish(w.open[0], w.open[0].clip.EndS))
		w.open = w.open[1:]
	}
	return done
}

// window returns open clip k, opening it at its first frame.
func (w *windower) window(k int) *openWindow {
	i, found := slices.BinarySearchFunc(w.open, k, func(ow *openWindow, k int) int { return ow.clip.Index - k })
	if found {
		return w.open[i]
	}
	start, end := w.lay.bounds(k)
	est, slack := w.lay.plan(k)
	ow := &openWindow{
		clip: Clip{Index: k, StartS: start, EndS: end},
		pick: newPicker(w.o.MaxFrames, w.o.Selection, est, slack),
	}
	w.open = slices.Insert(w.open, i, ow)
	return ow
}

// flush returns the clips still open when the source ends at stream time
// end, cut as the layout says.
func (w *windower) flush(end float64) []Window {
	var done []Window
	for _, ow := range w.open {
		done = append(done, w.finish(ow, w.lay.cut(ow.clip.EndS, end, ow.tLast)))
	}
	w.open = nil
	return done
}

func (w *windower) finish(ow *openWindow, end float64) Window {
	c := ow.clip
	c.EndS = end
	var late func(int) (Frame, bool)
	if w.late != nil {
		late = func(i int) (Frame, bool) { return w.late(ow.first + i) }
	}
	// A clip short of frames (a gap in the source, a partial first
	// window, a count off the probe) gets the nearest kept frames.
	var exact bool
	c.Frames, exact = ow.pick.finish(ow.n, late)
	if !exact && w.approx != nil {
		w.approx(c, ow.n)
	}
	win := Window{Clip: c}
	if !ow.wFirst.IsZero() {
		win.WallStart = ow.wFirst.Add(-seconds(ow.tFirst - c.StartS))
		win.WallEnd = ow.wLast.Add(seconds(c.EndS - ow.tLast))
	}
	return win
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// timeGrid lays a stream's windows on a fixed grid of stream time, so that
// any run of a stream (a restart, a reconnect, another replica) cuts the
// same windows. Frames before time 0 belong to none. Windows ending at or
// before skipBefore were emitted by an earlier run and are never opened
// again. A window is complete once the next frame is past its end: frame
// times come from the source and may have gaps.
type timeGrid struct {
	strideS, windowS float64
	skipBefore       float64
	est              int // expected frames per window
}

func newTimeGrid(o Options, skipBefore float64) timeGrid {
	return timeGrid{strideS: o.StrideS, windowS: o.WindowS, skipBefore: skipBefore,
		est: max(1, int(math.Round(o.WindowS*o.FPS)))}
}

func (g timeGrid) clips(_ int, t float64, open func(k int)) {
	if t < 0 {
		return
	}
	s, win := g.strideS, g.windowS
	first := max(0, int(math.Floor((t-win)/s+timeEps))+1)
	last := int(math.Floor(t/s + timeEps))
	for k := first; k <= last; k++ {
		if _, end := g.bounds(k); end <= g.skipBefore+timeEps {
			continue
		}
		open(k)
	}
}

func (g timeGrid) bounds(k int) (start, end float64) {
	start = float64(k) * g.strideS
	return start, start + g.windowS
}

func (g timeGrid) complete(c *Clip, _ int, next float64) bool { return c.EndS <= next+timeEps }

func (g timeGrid) plan(int) (est, slack int) { return g.est, 1 }

// cut keeps the last frame inside its window.
func (g timeGrid) cut(clipEnd, end, tLast float64) float64 { return min(clipEnd, max(end, tLast)) }

// frameSpans lays a file's clips over the frames ffmpeg's fps filter
// emits, the g-th at g/FPS: a clip holds the frames from its start's frame
// index up to its end's, counted exactly, so a clip is complete at its
// last frame. Whole mode is one clip of every frame.
type frameSpans struct {
	o    Options
	est  int       // the video's frame count expected from the probe; -1 unknown
	segs []segment // shots mode: the clips' spans
}

// index is the first sampled-frame index at or after t seconds. The
// epsilon keeps k*StrideS*FPS that is an integer in exact arithmetic from
// rounding up to the next frame.
func (f *frameSpans) index(t float64) int {
	return int(math.Ceil(t*f.o.FPS - 1e-9))
}

// span is clip k's bounds; ok is false past the last clip.
func (f *frameSpans) span(k int) (start, end float64, ok bool) {
	switch f.o.Mode {
	case ModeWhole:
		return 0, math.Inf(1), k == 0
	case ModeShots:
		if k >= len(f.segs) {
			return 0, 0, false
		}
		return f.segs[k].start, f.segs[k].end, true
	}
	start = float64(k) * f.o.StrideS
	return start, start + f.o.WindowS, true
}

func (f *frameSpans) clips(g int, _ float64, open func(k int)) {
	if f.o.Mode == ModeWhole {
		open(0)
		return
	}
	n := len(f.segs)
	if f.o.Mode == ModeWindow {
		// Windows from n on start after frame g.
		n = int(float64(g)/(f.o.FPS*f.o.StrideS)) + 2
	}
	// Clip ends grow with k: skip the clips that ended before frame g.
	k := sort.Search(n, func(k int) bool {
		_, end, _ := f.span(k)
		return f.index(end) > g
	})
	for ; k < n; k++ {
		start, _, ok := f.span(k)
		if !ok || f.index(start) > g {
			return
		}
		open(k) // a clip shorter than a frame interval never gets here
	}
}

func (f *frameSpans) bounds(k int) (start, end float64) {
	start, end, _ = f.span(k)
	return start, end
}

func (f *frameSpans) complete(c *Clip, g int, _ float64) bool {
	return !math.IsInf(c.EndS, 1) && f.index(c.EndS) <= g+1
}

// countSlack is how far the decoded frame count may be from the estimate
// (round(duration * fps)) and still get the exact selection; beyond it the
// nearest kept frames stand in. Each unit of slack costs up to MaxFrames
// extra crops per clip.
const countSlack = 1

func (f *frameSpans) plan(k int) (est, slack int) {
	if f.o.Mode == ModeWhole {
		return f.est, countSlack
	}
	start, stop, _ := f.span(k)
	first, end := f.index(start), f.index(stop)
	est = end - first
	if f.est >= 0 && end > f.est-countSlack {
		// May be cut short by the end of the video.
		return min(max(f.est-first, 1), est), countSlack
	}
	return est, 0
}

// cut clamps a clip to the end of the video; the whole video's clip ends
// there.
func (f *frameSpans) cut(clipEnd, end, _ float64) float64 { return min(clipEnd, end) }
