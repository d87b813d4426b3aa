//go:build !unix

package media

import "os/exec"

// setProcessGroup keeps exec's default: cancellation kills the process.
func setProcessGroup(*exec.Cmd) {}
