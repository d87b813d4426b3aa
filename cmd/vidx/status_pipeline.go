package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/sample/streams"
)

// pipelineStatus is the Kafka side of `vidx status`: each stage's consumer
// lag and every registered stream's state.
type pipelineStatus struct {
	Stages  []stageLag                     `json:"stages,omitempty"`
	Streams map[string]schemas.StreamState `json:"streams,omitempty"`
	Note    string                         `json:"note,omitempty"`
}

type stageLag struct {
	Stage string `json:"stage"`
	Group string `json:"group"`
	Topic string `json:"topic"`
	// Lag is the number of messages not yet committed, over all partitions.
	Lag        int64                `json:"lag"`
	Partitions []kafka.PartitionLag `json:"partitions"`
}

// collectPipeline asks the brokers; an unreachable broker is a note in the
// report, not a failure, because the store part is still worth printing.
func collectPipeline(ctx context.Context, cfg config.Config, wait time.Duration) pipelineStatus {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var st pipelineStatus
	if err := kafka.Ping(ctx, cfg.Kafka); err != nil {
		st.Note = fmt.Sprintf("brokers %v not reachable: no lag or stream states", cfg.Kafka.Brokers)
		return st
	}
	for _, spec := range app.Stages {
		group, input := spec.Group(cfg), spec.Input(cfg.Topics)
		lags, err := kafka.GroupLag(ctx, cfg.Kafka, group, []string{input})
		if err != nil {
			st.Note = fmt.Sprintf("lag of %s: %v", spec.Name, err)
			continue
		}
		sl := stageLag{Stage: spec.Name, Group: group, Topic: input, Partitions: lags}
		for _, l := range lags {
			sl.Lag += l.Lag
		}
		st.Stages = append(st.Stages, sl)
	}
	if cfg.Topics.StreamState != "" {
		states, err := streams.ReadStates(ctx, cfg.Kafka, cfg.Topics.StreamState)
		if err != nil {
			st.Note = fmt.Sprintf("stream states: %v", err)
		}
		st.Streams = states
	}
	return st
}

func printPipeline(w io.Writer, st pipelineStatus) {
	if len(st.Stages) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STAGE\tGROUP\tTOPIC\tLAG")
		for _, s := range st.Stages {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", s.Stage, s.Group, s.Topic, s.Lag)
		}
		tw.Flush()
	}
	if len(st.Streams) > 0 {
		fmt.Fprintln(w)
		_ = writeStreamTable(w, st.Streams, time.Now())
	}
	if st.Note != "" {
		fmt.Fprintf(w, "\nnote: %s\n", st.Note)
	}
}
