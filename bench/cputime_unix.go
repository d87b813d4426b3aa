//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

// cpuTime is CPU time spent by this process and by the children it has
// waited for (ffmpeg and ffprobe in the pipeline), user plus system.
type cpuTime struct {
	self, children float64 // seconds
}

func cpuNow() cpuTime {
	var self, kids syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) != nil || syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids) != nil {
		return cpuTime{}
	}
	sec := func(tv syscall.Timeval) float64 { return time.Duration(tv.Nano()).Seconds() }
	return cpuTime{
		self:     sec(self.Utime) + sec(self.Stime),
		children: sec(kids.Utime) + sec(kids.Stime),
	}
}

func (c cpuTime) sub(o cpuTime) cpuTime {
	return cpuTime{self: c.self - o.self, children: c.children - o.children}
}

func (c cpuTime) String() string {
	return fmt.Sprintf("CPU %.1f s: vidx %.1f, ffmpeg and ffprobe %.1f", c.self+c.children, c.self, c.children)
}
