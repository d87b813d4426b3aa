package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/vidx/vidx/encoders/pull"
)

func cmdModelsPull(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("models pull", stderr, "models pull [flags] URL|NAME DIR\n\n"+
		"URL is an https .tar/.tar.gz/.tgz archive or a .json index of files, optionally\n"+
		"pinned with #sha256=HEX; NAME is an entry of the catalogue (--list).")
	list := fs.Bool("list", false, "list the built-in catalogue and exit")
	insecure := fs.Bool("insecure-http", false, "allow plain http to hosts other than loopback")
	noVerify := fs.Bool("no-verify", false, "accept files with no published checksum (each is reported as NOT VERIFIED)")
	quiet := fs.Bool("quiet", false, "no progress output; only warnings and errors")
	kind := fs.String("kind", "", "archive or index, for a URL whose name does not tell")
	attempts := fs.Int("attempts", pull.DefaultAttempts, "tries per request on 5xx and network errors")
	stall := fs.Duration("stall-timeout", pull.DefaultStallTimeout, "retry a download that receives nothing for this long")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return errUsage
	}
	if *list {
		return printCatalogue(stdout)
	}
	if len(pos) != 2 {
		fs.Usage()
		return errUsage
	}
	src, dir := pos[0], pos[1]

	var logOut io.Writer = stderr
	var progress pull.Progress
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	if isTerminal(stderr) && !*quiet {
		bar := pull.NewBar(stderr)
		logOut, progress = bar, bar
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	if progress == nil && !*quiet {
		progress = pull.NewLogProgress(log, 0)
	}

	p, err := pull.New(pull.Options{
		InsecureHTTP: *insecure,
		NoVerify:     *noVerify,
		Kind:         *kind,
		Attempts:     *attempts,
		StallTimeout: *stall,
		Progress:     progress,
		Log:          log,
	})
	if err != nil {
		return err
	}
	res, err := p.Pull(ctx, src, dir)
	if res != nil && len(res.Files) > 0 {
		printPullResult(stdout, res)
	}
	if res != nil {
		if u := res.Unverified(); len(u) > 0 {
			fmt.Fprintf(stderr, "WARNING: NOT VERIFIED (--no-verify, no checksum published): %s\n", strings.Join(u, ", "))
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted; run the same command again to resume: %w", err)
		}
		return err
	}
	if res.Manifest != nil {
		fmt.Fprintf(stdout, "bundle %s ready in %s: use it with --bundle %s\n", res.Manifest.Name, dir, dir)
	} else {
		fmt.Fprintf(stdout, "files ready in %s; it has no vidx-model.yaml: see `vidx models inspect %s`\n", dir, dir)
	}
	return nil
}

// parseInterspersed lets flags follow the positional arguments, as in
// `vidx models pull NAME DIR --quiet`.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printCatalogue(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIM\tSOURCE\tDESCRIPTION")
	for _, e := range pull.Catalogue() {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.Name, e.Manifest.EmbeddingDim, e.Homepage, e.Description)
	}
	return tw.Flush()
}

func printPullResult(w io.Writer, res *pull.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if a := res.Archive; a != nil {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Path, sizeOf(a.Size), a.Action, checksumNote(*a))
	}
	for _, f := range res.Files {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Path, sizeOf(f.Size), f.Action, checksumNote(f))
	}
	tw.Flush()
}

func sizeOf(n int64) string {
	if n <= 0 {
		return "-"
	}
	return pull.FormatBytes(n)
}

func checksumNote(f pull.FileResult) string {
	switch {
	case f.Verified.Known():
		return fmt.Sprintf("verified %s:%s (%s)", f.Verified.Algo, f.Verified.Hex, f.Verified.Source)
	case f.Action == pull.Extracted:
		return "sha256:" + f.SHA256 + " (covered by the archive's checksum)"
	case f.Action == pull.Written || f.Action == pull.Kept:
		return "sha256:" + f.SHA256
	}
	return "NOT VERIFIED sha256:" + f.SHA256
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
