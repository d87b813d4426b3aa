//go:build unix

package media

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the tool in its own process group and makes
// cancellation kill the whole group: ffmpeg may run helpers, and SIGKILL to
// the leader alone would leave them holding the output pipe.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
