package media

import (
	"image"
	"math"
	"slices"
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

// windower cuts a stream of timestamped frames into windows on a fixed
// grid of stream time, so that any run of a stream (a restart, a reconnect,
// another replica) cuts the same windows. Windows ending at or before
// skipBefore were emitted by an earlier run and are never opened again.
type windower struct {
	o          Options
	skipBefore float64
	est        int // expected frames per window
	open       []*openWindow
}

type openWindow struct {
	clip          Clip
	n             int
	pick          *picker
	tFirst, tLast float64
	wFirst, wLast time.Time
}

func newWindower(o Options, skipBefore float64) *windower {
	return &windower{o: o, skipBefore: skipBefore, est: max(1, int(math.Round(o.WindowS*o.FPS)))}
}

// add files a frame of stream time t that arrived at wall. next is the
// earliest stream time a later frame can have; windows ending by then are
// complete and returned in order. crop is called at most once, and only if
// some window keeps the frame.
func (w *windower) add(t, next float64, wall time.Time, crop func() *image.RGBA) []Window {
	if t >= 0 {
		s, win := w.o.StrideS, w.o.WindowS
		first := max(0, int(math.Floor((t-win)/s+timeEps))+1)
		last := int(math.Floor(t/s + timeEps))
		var img *image.RGBA
		for k := first; k <= last; k++ {
			ow := w.window(k)
			if ow == nil {
				continue
			}
			local := ow.n
			ow.n++
			if ow.n == 1 {
				ow.tFirst, ow.wFirst = t, wall
			}
			ow.tLast, ow.wLast = t, wall
			if !ow.pick.wants(local) {
				continue
			}
			if img == nil {
				img = crop()
			}
			ow.pick.add(local, Frame{TimeS: t, Image: img})
		}
	}
	var done []Window
	for len(w.open) > 0 && w.open[0].clip.EndS <= next+timeEps {
		done = append(done, w.finish(w.open[0], w.open[0].clip.EndS))
		w.open = w.open[1:]
	}
	return done
}

// window returns open window k, opening it unless it was emitted before.
func (w *windower) window(k int) *openWindow {
	start := float64(k) * w.o.StrideS
	end := start + w.o.WindowS
	if end <= w.skipBefore+timeEps {
		return nil
	}
	i, found := slices.BinarySearchFunc(w.open, k, func(ow *openWindow, k int) int { return ow.clip.Index - k })
	if found {
		return w.open[i]
	}
	ow := &openWindow{
		clip: Clip{Index: k, StartS: start, EndS: end},
		pick: newPicker(w.o.MaxFrames, w.o.Selection, w.est, 1),
	}
	w.open = slices.Insert(w.open, i, ow)
	return ow
}

// flush returns the windows still open when a file ends at stream time
// end, cut short at end.
func (w *windower) flush(end float64) []Window {
	var done []Window
	for _, ow := range w.open {
		done = append(done, w.finish(ow, min(ow.clip.EndS, max(end, ow.tLast))))
	}
	w.open = nil
	return done
}

func (w *windower) finish(ow *openWindow, end float64) Window {
	c := ow.clip
	c.EndS = end
	// A window short of frames (a gap in the source, a partial first
	// window) gets the nearest kept frames: exactness is not expected.
	c.Frames, _ = ow.pick.finish(ow.n, nil)
	win := Window{Clip: c}
	if !ow.wFirst.IsZero() {
		win.WallStart = ow.wFirst.Add(-seconds(ow.tFirst - c.StartS))
		win.WallEnd = ow.wLast.Add(seconds(c.EndS - ow.tLast))
	}
	return win
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
