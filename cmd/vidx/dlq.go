package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
)

const dlqUsage = `Usage:
  vidx dlq list [--json] [--filter EXPR] [flags]            show dead letters: reason, class, stage, origin
  vidx dlq replay [--filter EXPR] [--dry-run] [flags]       re-submit originals to their original topics

EXPR is a comma-separated list of conditions that must all hold:
  stage=NAME  class=poison|unknown  topic=ORIGIN_TOPIC  key=KEY   exact match
  reason~=TEXT                                                    reason contains TEXT (case-insensitive)
`

// deadLetterEntry is one dead letter as `vidx dlq list --json` prints it.
type deadLetterEntry struct {
	// Partition and Offset locate the dead letter in the dead-letter topic.
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Stage     string    `json:"stage"`
	Class     string    `json:"class"`
	Reason    string    `json:"reason"`
	Attempts  int       `json:"attempts"`
	FailedAt  time.Time `json:"failed_at"`
	Origin    origin    `json:"origin"`
	Key       string    `json:"key,omitempty"`
	Bytes     int       `json:"bytes"`
	// Invalid is set for a message in the topic that is not a dead letter
	// (its headers are missing or malformed); it is never replayed.
	Invalid string `json:"invalid,omitempty"`

	value   []byte
	headers map[string]string
}

type origin struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	sub := args[0]
	fs := newFlagSet("dlq "+sub, stderr, "dlq "+sub+" [flags]")
	var cf configFlags
	cf.register(fs, false)
	filterExpr := fs.String("filter", "", "only dead letters matching EXPR (see vidx dlq)")
	topic := fs.String("topic", "", "dead-letter topic (default: topics.dead_letters)")
	asJSON := fs.Bool("json", false, "list: print one JSON object per dead letter")
	dryRun := fs.Bool("dry-run", false, "replay: show what would be re-submitted, produce nothing")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the brokers")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	filter, err := schemas.ParseDeadLetterFilter(*filterExpr)
	if err != nil {
		return err
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return err
	}
	if *topic == "" {
		*topic = cfg.Topics.DeadLetters
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	entries, err := readDeadLetters(ctx, cfg.Kafka, *topic, filter)
	if err != nil {
		return err
	}
	if sub == "list" {
		return printDeadLetters(stdout, entries, *asJSON)
	}
	return replayDeadLetters(ctx, cfg.Kafka, *topic, entries, *dryRun, stdout)
}

func readDeadLetters(ctx context.Context, kc kafka.Config, topic string, filter schemas.DeadLetterFilter) ([]deadLetterEntry, error) {
	var out []deadLetterEntry
	err := kafka.ScanTopic(ctx, kc, topic, func(m pipeline.Message) error {
		e := deadLetterEntry{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Bytes: len(m.Value), value: m.Value, headers: m.Headers}
		d, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
		if err != nil {
			e.Invalid = err.Error()
		}
		e.Stage, e.Class, e.Reason, e.Attempts, e.FailedAt = d.Stage, d.Class, d.Reason, d.Attempts, d.FailedAt
		e.Origin = origin{Topic: d.Topic, Partition: d.Partition, Offset: d.Offset}
		if filter.Match(d) {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func printDeadLetters(w io.Writer, entries []deadLetterEntry, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ\tFAILED AT\tSTAGE\tCLASS\tATTEMPTS\tORIGIN\tKEY\tREASON")
	for _, e := range entries {
		reason := e.Reason
		if e.Invalid != "" {
			reason = "not a dead letter: " + e.Invalid
		}
		failed := "-"
		if !e.FailedAt.IsZero() {
			failed = e.FailedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d@%d\t%s\t%s\t%s\t%d\t%s/%d@%d\t%s\t%s\n", e.Partition, e.Offset, failed, e.Stage, e.Class,
			e.Attempts, e.Origin.Topic, e.Origin.Partition, e.Origin.Offset, truncate(e.Key, 32), truncate(reason, 120))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d dead letters\n", len(entries))
	return nil
}

func replayDeadLetters(ctx context.Context, kc kafka.Config, topic string, entries []deadLetterEntry, dryRun bool, w io.Writer) error {
	var outs []pipeline.Output
	skipped := 0
	for _, e := range entries {
		if e.Invalid != "" || e.Origin.Topic == "" {
			skipped++
			continue
		}
		if e.Origin.Topic == topic {
			return fmt.Errorf("dead letter %d@%d names the dead-letter topic %s as its origin; refusing to replay it", e.Partition, e.Offset, topic)
		}
		h := schemas.ReplayHeaders(e.headers, topic, e.Partition, e.Offset)
		outs = append(outs, pipeline.Output{Topic: e.Origin.Topic, Key: []byte(e.Key), Value: e.value, Headers: h})
		verb := "replaying"
		if dryRun {
			verb = "would replay"
		}
		fmt.Fprintf(w, "%s %d@%d to %s (stage %s, %s: %s)\n", verb, e.Partition, e.Offset, e.Origin.Topic, e.Stage, e.Class, truncate(e.Reason, 80))
	}
	if !dryRun && len(outs) > 0 {
		if err := kafka.Produce(ctx, kc, outs...); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(w, "%s %d dead letters", verb, len(outs))
	if skipped > 0 {
		fmt.Fprintf(w, " (%d messages without dead-letter headers skipped)", skipped)
	}
	fmt.Fprintln(w)
	return nil
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
