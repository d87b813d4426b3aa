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
	"strings"

	"github.com/vidx/vidx/cmd/vidx/internal/stopsignal"
	"github.com/vidx/vidx/telemetry"
)

const usage = `vidx: video-text retrieval over Kafka

Usage:
  vidx up [--embedded] [--config FILE] [flags]   run every stage (embedded: in-process broker and store)
  vidx run STAGE [--config FILE] [flags]         run one stage: sample, encode, pool, index or query
  vidx ingest [flags] PATH|GLOB|URL...            publish video jobs (folders recursively), follow them with progress
  vidx search [flags] TEXT                       publish a query and print its ranked result
  vidx delete [flags] VIDEO_ID...                remove videos' clips from the index (through Kafka)
  vidx config check FILE                         list every problem of a configuration file, with its path
  vidx config print [--config FILE] [flags]      the effective configuration as YAML, secrets redacted
  vidx demo [flags]                              generate videos and test models, index, query, check
  vidx status [flags]                            show the collection: point count and settings
  vidx dlq list [--json] [--filter EXPR]         show dead letters: reason, class, stage, origin
  vidx dlq replay [--filter EXPR] [--dry-run]    re-submit dead letters to their original topics
  vidx broker [--port N] [--data-dir DIR]        run the embedded Kafka broker on its own (loopback only)
  vidx eval --bundle DIR --dataset FILE [--json] retrieval metrics (R@1/5/10, MdR, MnR) on a dataset
  vidx eval --example DIR                        write a small generated captioned dataset
  vidx tokenize (--bundle DIR | --vocab DIR) [--json]   CLIP token ids, one text per stdin line
  vidx embed-text --bundle DIR [--json] TEXT...  text embeddings
  vidx embed-video --bundle DIR [--json] FILE    frame and pooled video embeddings
  vidx sample --dump DIR FILE                    write the sampled 224x224 crops as PNG + frames.json
  vidx models testdata DIR                       write the small generated test model bundles
  vidx models inspect DIR                        show a bundle and check it against its ONNX models
  vidx models pull URL|NAME DIR                  download a model bundle with checksum verification
  vidx models quantize SRC DST                   copy a bundle with int8 image and text models
  vidx bench [--quick] [--json]                  measure vidx against bare ONNX Runtime and ffmpeg
  vidx version

Run "vidx COMMAND -h" for a command's flags. Settings come from defaults, the
--config YAML file, VIDX_* environment variables and flags, in that order.
`

func main() {
	ctx, stop := stopsignal.Context(context.Background())
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
	case "delete":
		return cmdDelete(ctx, rest, stdout, stderr)
	case "config":
		return cmdConfig(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "models":
		return cmdModels(ctx, rest, stdout, stderr)
	case "status":
		return cmdStatus(ctx, rest, stdout, stderr)
	case "eval":
		return cmdEval(ctx, rest, stdout, stderr)
	case "tokenize":
		return cmdTokenize(ctx, rest, os.Stdin, stdout, stderr)
	case "embed-text":
		return cmdEmbedText(ctx, rest, stdout, stderr)
	case "embed-video":
		return cmdEmbedVideo(ctx, rest, stdout, stderr)
	case "sample":
		return cmdSample(ctx, rest, stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, rest, stdout, stderr)
	case "broker":
		return cmdBroker(ctx, rest, stdout, stderr)
	case "bench":
		return cmdBench(ctx, rest, stdout, stderr)
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
	return newFormatLogger(w, level, "text")
}

// newFormatLogger logs as text or JSON; either way lines logged while a
// traced message is handled carry its trace and span ids.
func newFormatLogger(w io.Writer, level, format string) *slog.Logger {
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
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(telemetry.NewLogHandler(h))
}
