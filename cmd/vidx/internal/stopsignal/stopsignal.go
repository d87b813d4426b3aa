// Package stopsignal starts listening for SIGTERM and SIGINT while the
// program is still initialising. A stage restarted by an orchestrator can
// be told to stop again at once; if the signal arrived before main had
// installed its handler, the default action would kill the process
// uncleanly. Go initialises packages in import-path order as far as their
// imports allow, so this small package runs long before the heavy ones
// (gRPC, protobuf, OpenTelemetry) and main.
package stopsignal

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// early receives stop signals from package initialisation on. It is the
// one process-wide value here: a signal disposition belongs to the process.
var early = make(chan os.Signal, 1)

func init() {
	signal.Notify(early, os.Interrupt, syscall.SIGTERM)
}

// Context returns a context cancelled by the first stop signal, including
// one that arrived before Context was called, and a function that stops the
// listening. After the first signal the default action is back, so a
// second one ends a process that is slow to drain, as with
// signal.NotifyContext.
func Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-early:
			cancel()
			signal.Stop(early)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel()
		signal.Stop(early)
	}
}
