package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
)

func cmdDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("delete", stderr, "delete [flags] VIDEO_ID...")
	var cf configFlags
	cf.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return err
	}
	return deleteVideos(ctx, cfg, fs.Args(), stdout)
}

// deleteVideos publishes one delete command per video: a tombstone keyed by
// the video id with the delete header on the videos topic, which the index stage turns into a
// delete from the store. Every id is checked before anything is published.
func deleteVideos(ctx context.Context, cfg config.Config, ids []string, stdout io.Writer) error {
	outs := make([]pipeline.Output, len(ids))
	for i, id := range ids {
		if err := (&schemas.VideoJob{VideoID: id, URI: "-"}).Validate(); err != nil {
			return fmt.Errorf("video id %q: %w", id, err)
		}
		outs[i] = pipeline.Output{Topic: cfg.Topics.Videos, Key: []byte(id), Headers: map[string]string{schemas.HeaderCommand: schemas.CommandDelete}}
	}
	if err := kafka.Produce(ctx, cfg.Kafka, outs...); err != nil {
		return fmt.Errorf("publish deletes: %w (is a broker running at %v?)", err, cfg.Kafka.Brokers)
	}
	for _, id := range ids {
		fmt.Fprintf(stdout, "delete of %s published to %s; the index stage removes its clips\n", id, cfg.Topics.Videos)
	}
	return nil
}
