package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/qdrant"
)

// statusReport is what `vidx status` prints.
type statusReport struct {
	Store      string `json:"store"`
	Backend    string `json:"backend"`
	Collection string `json:"collection"`
	Exists     bool   `json:"exists"`
	// Points is nil when the count is unavailable: the embedded store is
	// locked by a running vidx.
	Points *int                  `json:"points"`
	Spec   *sinks.CollectionSpec `json:"spec,omitempty"`
	Note   string                `json:"note,omitempty"`
	// Qdrant holds the server version and collection settings.
	QdrantVersion string                 `json:"qdrant_version,omitempty"`
	Qdrant        *qdrant.CollectionInfo `json:"qdrant,omitempty"`
	// Pipeline is the Kafka side: stage lag and stream states.
	Pipeline *pipelineStatus `json:"pipeline,omitempty"`
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr, "status [--config FILE] [flags]")
	var cf configFlags
	cf.register(fs, false)
	collection := fs.String("collection", "", "collection to describe (default: store.collection)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the store")
	storeOnly := fs.Bool("store-only", false, "skip the brokers (stage lag and stream states)")
	kafkaWait := fs.Duration("kafka-timeout", 3*time.Second, "how long to wait for the brokers")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return err
	}
	if *collection != "" {
		cfg.Store.Collection = *collection
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// Only warnings: the report goes to stdout, and a store's connection
	// chatter would bury it.
	rep, err := collectStatus(ctx, cfg, newLogger(stderr, "warn"))
	if err != nil {
		return err
	}
	if !*storeOnly {
		p := collectPipeline(ctx, cfg, *kafkaWait)
		rep.Pipeline = &p
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(stdout, rep)
	if rep.Pipeline != nil {
		printPipeline(stdout, *rep.Pipeline)
	}
	return nil
}

func collectStatus(ctx context.Context, cfg config.Config, log *slog.Logger) (statusReport, error) {
	backend, err := cfg.Store.Backend()
	if err != nil {
		return statusReport{}, err
	}
	rep := statusReport{Store: cfg.Store.URL, Backend: backend, Collection: cfg.Store.Collection}
	if backend == config.StoreEmbedded {
		return embeddedStatus(ctx, cfg, rep, log)
	}
	store, err := app.OpenStore(ctx, cfg, log)
	if err != nil {
		return rep, err
	}
	defer store.Close()
	q, ok := store.(*qdrant.Store)
	if !ok {
		return rep, fmt.Errorf("store %s is a %T, not a Qdrant store", cfg.Store.URL, store)
	}
	rep.QdrantVersion = q.ServerVersion()
	info, err := q.Info(ctx, cfg.Store.Collection)
	if errors.Is(err, sinks.ErrNotFound) {
		rep.Note = "the collection does not exist yet: the index stage creates it"
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	n, err := q.Count(ctx, cfg.Store.Collection, sinks.Filter{})
	if err != nil {
		return rep, err
	}
	rep.Exists, rep.Points, rep.Qdrant = true, &n, &info
	if info.Spec.Dim > 0 {
		rep.Spec = &info.Spec
	}
	return rep, nil
}

// embeddedStatus reads an embedded store without creating one where there
// is none. While a running vidx holds the store, only the collection spec
// can be read; the point count lives in that process's memory.
func embeddedStatus(ctx context.Context, cfg config.Config, rep statusReport, log *slog.Logger) (statusReport, error) {
	dir, err := cfg.StorePath()
	if err != nil {
		return rep, err
	}
	rep.Store = cfg.Store.URL + " (" + dir + ")"
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		rep.Note = "no store in " + dir + " yet: the index stage creates it"
		return rep, nil
	}
	store, err := app.OpenStore(ctx, cfg, log)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		raw, rerr := os.ReadFile(filepath.Join(dir, cfg.Store.Collection, "collection.json"))
		if errors.Is(rerr, os.ErrNotExist) {
			rep.Note = "the collection does not exist yet (the store is open in a running vidx)"
			return rep, nil
		}
		if rerr != nil {
			return rep, rerr
		}
		var spec sinks.CollectionSpec
		if err := json.Unmarshal(raw, &spec); err != nil {
			return rep, fmt.Errorf("%s: %w", filepath.Join(dir, cfg.Store.Collection, "collection.json"), err)
		}
		rep.Exists, rep.Spec = true, &spec
		rep.Note = "the store is open in a running vidx process, which holds the points; the count is unavailable until it stops"
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	defer store.Close()
	spec, err := store.Collection(ctx, cfg.Store.Collection)
	if errors.Is(err, sinks.ErrNotFound) {
		rep.Note = "the collection does not exist yet: the index stage creates it"
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	n, err := store.Count(ctx, cfg.Store.Collection, sinks.Filter{})
	if err != nil {
		return rep, err
	}
	rep.Exists, rep.Spec, rep.Points = true, &spec, &n
	return rep, nil
}

func printStatus(w io.Writer, rep statusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, args...)...)
	}
	store := rep.Store
	if rep.QdrantVersion != "" {
		store += " (qdrant " + rep.QdrantVersion + ")"
	}
	line("store", "%s", store)
	line("collection", "%s", rep.Collection)
	if s := rep.Spec; s != nil {
		line("model", "%s", s.Model)
		line("pooling", "%s", s.Pooling)
		line("dimension", "%d", s.Dim)
		line("distance", "%s", s.Distance)
	}
	switch {
	case rep.Points != nil:
		line("points", "%d", *rep.Points)
	case rep.Exists:
		line("points", "unavailable")
	default:
		line("points", "0")
	}
	if q := rep.Qdrant; q != nil {
		line("status", "%s", q.Status)
		line("indexed", "%d vectors in %d segments", q.IndexedVectors, q.Segments)
		line("shards", "%d (replication factor %d)", q.Shards, q.ReplicationFactor)
		line("hnsw", "m=%d ef_construct=%d", q.HNSWM, q.HNSWEfConstruct)
		line("on_disk", "%t", q.OnDisk)
		line("quantization", "%s", q.Quantization)
		var idx []string
		for _, k := range slices.Sorted(maps.Keys(q.PayloadIndexes)) {
			idx = append(idx, k+" ("+q.PayloadIndexes[k]+")")
		}
		line("payload indexes", "%s", orNone(strings.Join(idx, ", ")))
		var meta []string
		for _, k := range slices.Sorted(maps.Keys(q.Metadata)) {
			meta = append(meta, k+"="+q.Metadata[k])
		}
		line("metadata", "%s", orNone(strings.Join(meta, " ")))
		for _, warn := range q.Warnings {
			line("warning", "%s", warn)
		}
	}
	if rep.Note != "" {
		line("note", "%s", rep.Note)
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
