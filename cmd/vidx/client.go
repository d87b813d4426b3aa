package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/query"
)

func publishJob(ctx context.Context, cfg config.Config, job *schemas.VideoJob) error {
	job.SchemaVersion = schemas.Version
	if err := job.Validate(); err != nil {
		return err
	}
	value, err := schemas.Encode(job)
	if err != nil {
		return err
	}
	return kafka.Produce(ctx, cfg.Kafka, pipeline.Output{Topic: cfg.Topics.Videos, Key: []byte(job.VideoID), Value: value})
}

func cmdSearch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("search", stderr, "search [flags] TEXT | --image FILE | --like VIDEO_ID:CLIP_INDEX")
	var cf configFlags
	cf.register(fs, false)
	topK := fs.Int("top-k", 5, "number of results")
	rerank := fs.String("rerank", "", "re-ranking: none, camoe or symmetric (default: the query stage's)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the result")
	asJSON := fs.Bool("json", false, "print the result message as JSON")
	minScore := fs.Float64("min-score", math.Inf(-1), "drop hits scored below this by the rerank mode in use")
	var meta keyValues
	var videos, sources listFlag
	fs.Var(&meta, "metadata", "keep clips whose video metadata has KEY=VALUE (repeatable; all must match)")
	fs.Var(&videos, "video", "keep clips of this video id (repeatable)")
	fs.Var(&sources, "source", "keep clips of this source (repeatable)")
	imageFile := fs.String("image", "", "search with a JPEG or PNG file instead of text")
	like := fs.String("like", "", "search with an indexed clip, VIDEO_ID:CLIP_INDEX, instead of text")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 && *imageFile == "" && *like == "" {
		fs.Usage()
		return errUsage
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return err
	}
	q := schemas.Query{Text: strings.Join(fs.Args(), " "), TopK: *topK, Rerank: *rerank}
	if *imageFile != "" {
		data, err := os.ReadFile(*imageFile)
		if err != nil {
			return err
		}
		q.Image = base64.StdEncoding.EncodeToString(data)
	}
	if *like != "" {
		i := strings.LastIndex(*like, ":")
		n, err := strconv.Atoi((*like)[i+1:])
		if i < 1 || err != nil {
			return fmt.Errorf("--like %q is not VIDEO_ID:CLIP_INDEX", *like)
		}
		q.Like = &schemas.ClipRef{VideoID: (*like)[:i], ClipIndex: n}
	}
	if !math.IsInf(*minScore, -1) {
		q.MinScore = minScore
	}
	if len(meta) > 0 || len(videos) > 0 || len(sources) > 0 {
		q.Filters = &schemas.Filters{Metadata: map[string]string(meta), VideoIDs: videos, Sources: sources}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := search(ctx, cfg, q)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if res.Error == nil {
		printResult(stdout, res)
	}
	if e := res.Error; e != nil {
		return fmt.Errorf("query %s was not answered (%s): %s", res.QueryID, e.Code, e.Message)
	}
	return nil
}

// keyValues collects repeated KEY=VALUE flags.
type keyValues map[string]string

func (kv *keyValues) String() string {
	parts := make([]string, 0, len(*kv))
	for k, v := range *kv {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (kv *keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	if *kv == nil {
		*kv = keyValues{}
	}
	(*kv)[k] = v
	return nil
}

// listFlag collects a repeated flag's values.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// search publishes a query and waits for its result.
func search(ctx context.Context, cfg config.Config, q schemas.Query) (schemas.Result, error) {
	res, err := query.Ask(ctx, cfg.Kafka, cfg.Topics.Queries, cfg.Topics.Results, q)
	if err != nil {
		return schemas.Result{}, fmt.Errorf("%w (is a query stage running against %v?)", err, cfg.Kafka.Brokers)
	}
	return res, nil
}

func printResult(w io.Writer, r schemas.Result) {
	what := fmt.Sprintf("%q", r.Text)
	if r.Text == "" {
		what = "by example"
	}
	fmt.Fprintf(w, "query %s  (rerank %s, %d candidates, bank %d, %.1f ms)\n", what, r.Rerank, r.Candidates, r.BankSize, r.TookMS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tVIDEO\tCLIP\tSTART\tEND\tSCORE\tCOSINE")
	for _, h := range r.Hits {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.1fs\t%.1fs\t%.4f\t%.4f\n", h.Rank, h.VideoID, h.ClipIndex, h.StartS, h.EndS, h.Score, h.Cosine)
	}
	tw.Flush()
}

// fileRootsOf returns the file roots a `vidx up` with cfg starts with.
func fileRootsOf(cfg *config.Config) []string {
	if len(cfg.Stages.Sample.Sources.FileRoots) > 0 {
		return cfg.Stages.Sample.Sources.FileRoots
	}
	return defaultFileRoots(cfg)
}

// underAny reports whether path lies inside one of roots, symbolic links
// resolved where they exist.
func underAny(path string, roots []string) bool {
	resolve := func(p string) string {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return p
	}
	path = resolve(path)
	for _, r := range roots {
		rel, err := filepath.Rel(resolve(r), path)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}
