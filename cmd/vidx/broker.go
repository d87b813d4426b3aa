package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/vidx/vidx/pipeline/kafka/embedded"
)

// cmdBroker runs the embedded broker in a process of its own, so that it
// can be stopped and restarted independently of the stages (the crash
// harness does; so can a developer running stages as separate processes).
func cmdBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker", stderr, "broker [--port N] [--data-dir DIR] [--partitions N]")
	port := fs.Int("port", 9092, "loopback port to listen on (0: any free port)")
	dataDir := fs.String("data-dir", "", "persist topics and committed offsets here across restarts (empty: memory only)")
	partitions := fs.Int("partitions", 4, "partitions of auto-created topics")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	b, err := embedded.StartBroker(embedded.BrokerConfig{Port: *port, DataDir: *dataDir, Partitions: *partitions})
	if err != nil {
		return err
	}
	// The address line is what scripts wait for.
	fmt.Fprintf(stdout, "broker listening on %s\n", strings.Join(b.Addrs(), ","))
	<-ctx.Done()
	b.Close()
	fmt.Fprintln(stdout, "broker stopped")
	return nil
}
