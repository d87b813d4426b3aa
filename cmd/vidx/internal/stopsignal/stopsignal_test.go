package stopsignal

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestSignalBeforeContext sends SIGTERM before anyone asks for the context,
// as an orchestrator may while the process is still starting: the process
// must not die, and the context must come back already stopping.
func TestSignalBeforeContext(t *testing.T) {
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the signal is delivered meanwhile
	ctx, stop := Context(context.Background())
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled by a SIGTERM received before it was made")
	}
}
