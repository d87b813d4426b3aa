package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
)

// videoExtensions are the file extensions a folder walk takes as videos.
var videoExtensions = []string{".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv", ".3gp", ".ogv"}

func isVideoFile(name string) bool {
	return slices.Contains(videoExtensions, strings.ToLower(filepath.Ext(name)))
}

// ingestInput is one video to publish.
type ingestInput struct {
	VideoID string `json:"video_id"`
	URI     string `json:"uri"`
}

// skippedInput is an argument or file that is not published, and why.
type skippedInput struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// collectInputs expands the arguments: URLs as they are, globs to their
// matches, folders recursively to the video files in them (other files
// are skipped with a reason), files as named. Video ids are the path
// relative to the folder (or the file name) without extension, made unique.
func collectInputs(args []string) ([]ingestInput, []skippedInput) {
	var inputs []ingestInput
	var skipped []skippedInput
	used := map[string]int{}
	add := func(id, uri string) {
		id = strings.TrimSuffix(filepath.ToSlash(id), filepath.Ext(id))
		if id == "" || id == "." {
			id = "video"
		}
		used[id]++
		if n := used[id]; n > 1 {
			id = fmt.Sprintf("%s~%d", id, n)
		}
		inputs = append(inputs, ingestInput{VideoID: id, URI: uri})
	}
	var visit func(path string, named bool)
	visit = func(path string, named bool) {
		abs, err := filepath.Abs(path)
		if err != nil {
			skipped = append(skipped, skippedInput{path, err.Error()})
			return
		}
		info, err := os.Stat(abs)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			skipped = append(skipped, skippedInput{path, "does not exist"})
			return
		case err != nil:
			skipped = append(skipped, skippedInput{path, err.Error()})
			return
		case info.IsDir():
			walkErr := filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					skipped = append(skipped, skippedInput{p, err.Error()})
					if d != nil && d.IsDir() {
						return fs.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					return nil
				}
				if !d.Type().IsRegular() || !isVideoFile(p) {
					skipped = append(skipped, skippedInput{p, "not a video file (extensions: " + strings.Join(videoExtensions, " ") + ")"})
					return nil
				}
				rel, _ := filepath.Rel(abs, p)
				add(rel, p)
				return nil
			})
			if walkErr != nil {
				skipped = append(skipped, skippedInput{path, walkErr.Error()})
			}
		case !named && !isVideoFile(abs):
			skipped = append(skipped, skippedInput{path, "not a video file"})
		default:
			add(filepath.Base(abs), abs)
		}
	}
	for _, arg := range args {
		switch {
		case strings.Contains(arg, "://"):
			name := arg[strings.LastIndex(arg, "/")+1:]
			if i := strings.IndexAny(name, "?#"); i >= 0 {
				name = name[:i]
			}
			add(name, arg)
		case strings.ContainsAny(arg, "*?["):
			matches, err := filepath.Glob(arg)
			if err != nil || len(matches) == 0 {
				skipped = append(skipped, skippedInput{arg, "matches nothing"})
				continue
			}
			for _, m := range matches {
				visit(m, false)
			}
		default:
			visit(arg, true)
		}
	}
	return inputs, skipped
}

func cmdIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ingest", stderr, "ingest [flags] PATH|GLOB|URL...")
	var cf configFlags
	cf.register(fs, false)
	id := fs.String("video-id", "", "video id of a single input (default: the path without extension)")
	source := fs.String("source", "", "source label stored with the clips")
	mode := fs.String("mode", "", "segment mode: whole, window or shots")
	window := fs.Float64("window", 0, "window length in seconds (window mode)")
	stride := fs.Float64("stride", 0, "window stride in seconds (window mode)")
	noWait := fs.Bool("no-wait", false, "publish the jobs and return without following them")
	asJSON := fs.Bool("json", false, "print the summary as JSON (no progress bar)")
	timeout := fs.Duration("timeout", 0, "stop following after this long (0: until every video is done)")
	var meta keyValues
	fs.Var(&meta, "metadata", "KEY=VALUE stored with every clip of these videos (repeatable)")
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
	inputs, skipped := collectInputs(fs.Args())
	if *id != "" {
		if len(inputs) != 1 {
			return fmt.Errorf("--video-id names one video, but the arguments give %d", len(inputs))
		}
		inputs[0].VideoID = *id
	}
	jobs := make([]schemas.VideoJob, 0, len(inputs))
	for _, in := range inputs {
		job := schemas.VideoJob{SchemaVersion: schemas.Version, VideoID: in.VideoID, URI: in.URI, Source: *source}
		if len(meta) > 0 {
			job.Metadata = map[string]string(meta)
		}
		if *mode != "" || *window != 0 {
			job.Segment = &schemas.Segment{Mode: *mode, WindowS: *window, StrideS: *stride}
		}
		if err := job.Validate(); err != nil {
			skipped = append(skipped, skippedInput{in.URI, err.Error()})
			continue
		}
		jobs = append(jobs, job)
	}
	if !*asJSON {
		for _, s := range skipped {
			fmt.Fprintf(stderr, "skipped %s: %s\n", s.Path, s.Reason)
		}
	}
	if len(jobs) == 0 {
		if *asJSON {
			_ = writeIngestJSON(stdout, ingestSummary{Skipped: skipped})
		}
		return errors.New("nothing to ingest")
	}

	var follow *follower
	if !*noWait {
		// Read the end offsets before publishing, so nothing the jobs
		// cause is missed.
		if follow, err = newFollower(ctx, cfg, jobs); err != nil {
			return err
		}
	}
	outs := make([]pipeline.Output, len(jobs))
	for i := range jobs {
		value, err := schemas.Encode(&jobs[i])
		if err != nil {
			return err
		}
		outs[i] = pipeline.Output{Topic: cfg.Topics.Videos, Key: []byte(jobs[i].VideoID), Value: value}
	}
	if err := kafka.Produce(ctx, cfg.Kafka, outs...); err != nil {
		return fmt.Errorf("publish %d jobs: %w (is a broker running at %v?)", len(jobs), err, cfg.Kafka.Brokers)
	}
	if !*asJSON {
		fmt.Fprintf(stderr, "published %d jobs to %s\n", len(jobs), cfg.Topics.Videos)
		notOutside(stderr, &cfg, jobs)
	}
	summary := ingestSummary{Published: len(jobs), Skipped: skipped}
	if *noWait {
		for _, j := range jobs {
			summary.Videos = append(summary.Videos, videoProgress{VideoID: j.VideoID, URI: j.URI, Status: "queued"})
		}
		if *asJSON {
			return writeIngestJSON(stdout, summary)
		}
		for _, j := range jobs {
			fmt.Fprintf(stdout, "published %s (%s)\n", j.VideoID, j.URI)
		}
		return nil
	}
	fctx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var bar *progressbar.ProgressBar
	if !*asJSON {
		bar = progressbar.NewOptions(len(jobs),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("indexing"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	summary.Videos = follow.run(fctx, func(done, failed, clips int) {
		if bar != nil {
			bar.Describe(fmt.Sprintf("videos %d/%d, clips %d, failed %d", done+failed, len(jobs), clips, failed))
			_ = bar.Set(done + failed)
		}
	})
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(stderr)
	}
	for _, v := range summary.Videos {
		summary.Clips += v.Clips
		switch v.Status {
		case "indexed":
			summary.Indexed++
		case "failed":
			summary.Failed++
		default:
			summary.Pending++
		}
	}
	if *asJSON {
		if err := writeIngestJSON(stdout, summary); err != nil {
			return err
		}
	} else {
		printIngestSummary(stdout, summary)
	}
	switch {
	case summary.Failed > 0:
		return fmt.Errorf("%d of %d videos failed", summary.Failed, len(jobs))
	case summary.Pending > 0:
		return fmt.Errorf("%d of %d videos not done when following stopped", summary.Pending, len(jobs))
	}
	return nil
}

func notOutside(stderr io.Writer, cfg *config.Config, jobs []schemas.VideoJob) {
	roots := fileRootsOf(cfg)
	for _, j := range jobs {
		if !strings.Contains(j.URI, "://") && !underAny(j.URI, roots) {
			fmt.Fprintf(stderr, "note: %s is outside the folders local videos are read from by default (the working directory and %s):\n"+
				"  start vidx with its folder, `vidx up --embedded %s`, or list it in stages.sample.sources.file_roots;\n"+
				"  otherwise the job is refused (`vidx dlq list` shows why)\n", j.URI, cfg.DataDir, filepath.Dir(j.URI))
			return
		}
	}
}

// ingestSummary is what `vidx ingest` reports.
type ingestSummary struct {
	Published int             `json:"published"`
	Indexed   int             `json:"indexed"`
	Failed    int             `json:"failed"`
	Pending   int             `json:"pending"`
	Clips     int             `json:"clips"`
	Videos    []videoProgress `json:"videos"`
	Skipped   []skippedInput  `json:"skipped"`
}

func writeIngestJSON(w io.Writer, s ingestSummary) error {
	if s.Videos == nil {
		s.Videos = []videoProgress{}
	}
	if s.Skipped == nil {
		s.Skipped = []skippedInput{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func printIngestSummary(w io.Writer, s ingestSummary) {
	fmt.Fprintf(w, "%d videos published: %d indexed (%d clips), %d failed, %d not done; %d inputs skipped\n",
		s.Published, s.Indexed, s.Clips, s.Failed, s.Pending, len(s.Skipped))
	for _, v := range s.Videos {
		if v.Status == "failed" {
			fmt.Fprintf(w, "  failed %s (%s): %s\n", v.VideoID, v.URI, v.Error)
		}
	}
}

// videoProgress is one video followed through the pipeline.
type videoProgress struct {
	VideoID string `json:"video_id"`
	URI     string `json:"uri"`
	Status  string `json:"status"` // queued, indexed or failed
	Clips   int    `json:"clips"`
	// Total is the clip count of the video's run, known once its last
	// clip is seen.
	Total int    `json:"total,omitempty"`
	Error string `json:"error,omitempty"`

	// last is the highest clip-embeddings offset of the video's clips in
	// each partition: the video is indexed once the index stage has
	// committed past every one of them.
	last map[int]int64
}

// follower watches the index stage's input (clip-embeddings) and the
// dead letters for the clips and failures of the published videos. A video
// is indexed when every clip of its run has reached the index stage's
// topic and the index stage has committed past them (it commits only once
// the store has the clips or they are dead-lettered); failed when a dead
// letter names it.
type follower struct {
	cfg    config.Config
	topics map[string]map[int]int64 // end offsets before publishing
	// indexGroup is the index stage's consumer group.
	indexGroup string

	mu     sync.Mutex
	videos map[string]*videoProgress
	order  []string
}

func newFollower(ctx context.Context, cfg config.Config, jobs []schemas.VideoJob) (*follower, error) {
	f := &follower{cfg: cfg, topics: map[string]map[int]int64{}, videos: map[string]*videoProgress{}}
	if spec, ok := app.Spec(app.StageIndex); ok {
		f.indexGroup = spec.Group(cfg)
	}
	for _, t := range []string{cfg.Topics.ClipEmbeddings, cfg.Topics.DeadLetters} {
		end, err := kafka.EndOffsets(ctx, cfg.Kafka, t)
		if err != nil {
			return nil, fmt.Errorf("follow %s: %w (is a broker running at %v?)", t, err, cfg.Kafka.Brokers)
		}
		f.topics[t] = end
	}
	for _, j := range jobs {
		f.videos[j.VideoID] = &videoProgress{VideoID: j.VideoID, URI: j.URI, Status: "queued"}
		f.order = append(f.order, j.VideoID)
	}
	return f, nil
}

// run follows until every video is indexed or failed, or ctx ends, calling
// progress after each change; it returns the videos in publishing order.
func (f *follower) run(ctx context.Context, progress func(done, failed, clips int)) []videoProgress {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for topic, ends := range f.topics {
		for part, from := range ends {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := kafka.TailFrom(ctx, f.cfg.Kafka, topic, part, from, func(m pipeline.Message) error {
					if f.observe(m) {
						select {
						case changed <- struct{}{}:
						default:
						}
					}
					return nil
				})
				if err != nil && ctx.Err() == nil {
					f.mu.Lock()
					for _, v := range f.videos {
						if v.Status == "queued" && v.Error == "" {
							v.Error = "following stopped: " + err.Error()
						}
					}
					f.mu.Unlock()
				}
			}()
		}
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		done, failed, clips := f.counts()
		progress(done, failed, clips)
		if done+failed == len(f.order) {
			break
		}
		select {
		case <-ctx.Done():
		case <-changed:
			continue
		case <-tick.C:
			f.checkIndexed(ctx)
			continue
		}
		break
	}
	cancel()
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]videoProgress, len(f.order))
	for i, id := range f.order {
		out[i] = *f.videos[id]
	}
	return out
}

func (f *follower) counts() (done, failed, clips int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.videos {
		clips += v.Clips
		switch v.Status {
		case "indexed":
			done++
		case "failed":
			failed++
		}
	}
	return done, failed, clips
}

// observe records one message; it reports whether a video changed.
func (f *follower) observe(m pipeline.Message) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.Topic == f.cfg.Topics.DeadLetters {
		origin := m.Headers[schemas.HeaderOriginTopic]
		if origin != f.cfg.Topics.Videos && origin != f.cfg.Topics.Clips && origin != f.cfg.Topics.FrameEmbeddings && origin != f.cfg.Topics.ClipEmbeddings {
			return false
		}
		v := f.videos[string(m.Key)] // jobs and clips are keyed by video id
		if v == nil || v.Status != "queued" {
			return false
		}
		v.Status, v.Error = "failed", m.Headers[schemas.HeaderError]
		if v.Error == "" {
			v.Error = "dead-lettered by the " + m.Headers[schemas.HeaderStage] + " stage"
		}
		return true
	}
	e, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, m.Value)
	if err != nil {
		return false
	}
	v := f.videos[e.Header.VideoID]
	if v == nil || v.Status != "queued" || e.Header.StreamID != "" {
		return false
	}
	v.Clips++
	if v.last == nil {
		v.last = map[int]int64{}
	}
	if off, ok := v.last[m.Partition]; !ok || m.Offset > off {
		v.last[m.Partition] = m.Offset
	}
	if n := e.Header.GenerationClips; n > 0 {
		v.Total = n
	}
	return true
}

// checkIndexed marks the videos whose clips have all reached the index
// stage and that the stage has committed past.
func (f *follower) checkIndexed(ctx context.Context) {
	lags, err := kafka.GroupLag(ctx, f.cfg.Kafka, f.indexGroup, []string{f.cfg.Topics.ClipEmbeddings})
	if err != nil {
		return // asked again on the next tick
	}
	committed := map[int]int64{}
	for _, l := range lags {
		committed[l.Partition] = l.Committed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.videos {
		if v.Status != "queued" || v.Total == 0 || v.Clips < v.Total {
			continue
		}
		indexed := true
		for p, off := range v.last {
			if committed[p] <= off {
				indexed = false
			}
		}
		if indexed {
			v.Status = "indexed"
		}
	}
}
