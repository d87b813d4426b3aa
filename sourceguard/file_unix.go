//go:build unix

package sourceguard

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
)

// openNoFollow opens path for reading without following a final symbolic
// link and without blocking on a FIFO, which would hang a reader with no
// writer.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// openedPath says which file f really is, where the system can tell.
func openedPath(f *os.File) (string, bool) {
	if runtime.GOOS != "linux" {
		return "", false
	}
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	return p, err == nil
}

// inheritedPath is how a child process given f as its first extra file
// (descriptor 3) opens that same file, where the system has /dev/fd.
func inheritedPath() (string, bool) {
	if runtime.GOOS != "linux" {
		return "", false
	}
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return "", false
	}
	return "/dev/fd/3", true
}
