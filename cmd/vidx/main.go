// Command vidx indexes video into CLIP embeddings over Kafka and answers
// text queries against the index.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `vidx: video-text retrieval over Kafka

Usage:
  vidx up [--embedded] [--config FILE] [flags]   run every stage (embedded: in-process broker and store)
  vidx run STAGE [--config FILE] [flags]         run one stage: sample, encode, pool, index or query
  vidx ingest [flags] --video-id ID URI          publish a video job
  vidx search [flags] TEXT                       publish a query and print its ranked result
  vidx demo [flags]                              generate videos and test models, index, query, check
  vidx models testdata DIR                       write the small generated test model bundles
  vidx version

Run "vidx COMMAND -h" for a command's flags. Settings come from defaults, the
--config YAML file, VIDX_* environment variables and flags, in that order.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "vidx:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return cmdUp(ctx, rest, stderr)
	case "run":
		return cmdRun(ctx, rest, stderr)
	case "ingest":
		return cmdIngest(ctx, rest, stdout, stderr)
	case "search":
		return cmdSearch(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "models":
		return cmdModels(rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "vidx", version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "vidx: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
