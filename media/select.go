package media

// SelectIndices returns, in increasing order, the indices of the frames kept
// from a clip of n sampled frames: all of them when n <= max, otherwise the
// first max (head), the last max (tail), or CLIP4Clip's
// np.linspace(0, n-1, num=max, dtype=int) (uniform). An unknown selection is
// treated as uniform; Options.Validate rejects it earlier.
func SelectIndices(n, maxFrames int, selection string) []int {
	max := maxFrames
	if n <= 0 || max <= 0 {
		return nil
	}
	if n <= max {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, max)
	switch selection {
	case SelectHead:
		for i := range idx {
			idx[i] = i
		}
	case SelectTail:
		for i := range idx {
			idx[i] = n - max + i
		}
	default:
		if max == 1 {
			return []int{0} // linspace with num=1 yields only the start
		}
		// Same float64 operations as numpy (i * step, endpoint forced to
		// stop, truncation by astype(int)), so rounding edge cases agree.
		step := float64(n-1) / float64(max-1)
		for i := range idx {
			idx[i] = int(float64(i) * step)
		}
		idx[max-1] = n - 1
	}
	return idx
}

// picker decides, while frames stream by, which ones a clip must keep so that
// the final selection can be made without holding every frame. The number of
// frames a clip will have is only estimated (from the probed duration), so it
// keeps what any count within slack of the estimate would select; a count
// outside that range falls back to the nearest kept frames.
type picker struct {
	max, est, slack int
	selection       string
	want            map[int]bool // uniform with a known estimate
	stride          int          // uniform without an estimate: keep every stride-th frame
	kept            map[int]Frame
}

// newPicker plans for a clip expected to have est frames (est < 0: unknown).
func newPicker(maxFrames int, selection string, est, slack int) *picker {
	p := &picker{max: maxFrames, est: est, slack: slack, selection: selection, stride: 1, kept: map[int]Frame{}}
	if selection == SelectUniform && est >= 0 {
		p.want = map[int]bool{}
		for n := max(1, est-slack); n <= est+slack; n++ {
			for _, i := range SelectIndices(n, p.max, selection) {
				p.want[i] = true
			}
		}
	}
	return p
}

// wants reports whether frame i (0-based within the clip) may be selected.
func (p *picker) wants(i int) bool {
	switch p.selection {
	case SelectHead:
		return i < p.max
	case SelectTail:
		return p.est < 0 || i >= p.est-p.slack-p.max
	default:
		if p.want != nil {
			return p.want[i]
		}
		return i%p.stride == 0
	}
}

// add keeps frame i, which wants(i) accepted, dropping frames that can no
// longer be selected so memory stays bounded by a few times max.
func (p *picker) add(i int, f Frame) {
	p.kept[i] = f
	switch {
	case p.selection == SelectTail:
		delete(p.kept, i-p.max)
	case p.selection == SelectUniform && p.want == nil && len(p.kept) > 4*p.max:
		// Unknown length: halve the sampling density, which keeps the
		// final choice within stride/2 frames of the exact linspace.
		p.stride *= 2
		for k := range p.kept {
			if k%p.stride != 0 {
				delete(p.kept, k)
			}
		}
	}
}

// finish returns the selected frames of a clip that turned out to have n
// frames. late supplies frames that were not kept but are still available
// (the most recent ones). exact is false when some selected frame was gone
// and its nearest kept neighbour stood in for it.
func (p *picker) finish(n int, late func(i int) (Frame, bool)) (frames []Frame, exact bool) {
	exact = true
	last := -1
	for _, i := range SelectIndices(n, p.max, p.selection) {
		f, ok := p.kept[i]
		if !ok && late != nil {
			f, ok = late(i)
		}
		j := i
		if !ok {
			exact = false
			if j, ok = p.nearest(i, n); !ok {
				continue
			}
			f = p.kept[j]
		}
		if j <= last {
			continue // a stand-in already used: keep timestamps increasing
		}
		last = j
		frames = append(frames, f)
	}
	return frames, exact
}

func (p *picker) nearest(i, n int) (int, bool) {
	best, found := 0, false
	for k := range p.kept {
		if k >= n {
			continue
		}
		if !found || abs(k-i) < abs(best-i) || (abs(k-i) == abs(best-i) && k < best) {
			best, found = k, true
		}
	}
	return best, found
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
