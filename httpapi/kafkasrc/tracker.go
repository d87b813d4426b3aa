// Package kafkasrc backs the HTTP API with vidx's topics and store: video
// states from the jobs and dead-letter topics and the index, thumbnails
// from the compacted thumbnails topic, jobs published to the jobs topic.
// Every replica reads the topics whole, without a consumer group, so any
// replica answers for any video.
package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/sample"
)

// Counter counts a video's clips in the index (sinks.Store).
type Counter interface {
	Count(ctx context.Context, collection string, f sinks.Filter) (int, error)
}

// Config configures a Tracker.
type Config struct {
	Kafka kafka.Config
	// VideosTopic carries the jobs; DeadLetterTopic the dead letters;
	// ThumbnailTopic the clip thumbnails (compacted).
	VideosTopic, DeadLetterTopic, ThumbnailTopic string
	// ClipTopics are the topics keyed by video id whose dead letters fail
	// a video (clips, frame and clip embeddings).
	ClipTopics []string
	Store      Counter
	Collection string
	// CacheBytes bounds the thumbnail bytes held in memory (default 64 MiB).
	CacheBytes int64
	Log        *slog.Logger
}

type video struct {
	uri      string
	queuedAt time.Time
	failure  string
	failedAt time.Time
	// deletedAt is the latest delete command's time.
	deletedAt time.Time
}

type thumbRef struct {
	partition int
	offset    int64
}

// Tracker implements httpapi.Jobs, httpapi.Deletes, httpapi.Videos and
// httpapi.Thumbnails.
// Run must be running for it to learn anything.
type Tracker struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	videos  map[string]*video
	thumbs  map[string]thumbRef
	cache   *lru
	pending map[string]bool // "topic/partition" not yet read to its end
	// thumbsPending counts thumbnail partitions not yet read to their end:
	// the thumbnails topic is the large one, so readiness does not wait for
	// it; an unknown thumbnail asked for meanwhile is "not ready yet".
	thumbsPending map[string]bool
	started       bool
}

// New checks cfg.
func New(cfg Config) (*Tracker, error) {
	if cfg.VideosTopic == "" || cfg.DeadLetterTopic == "" || cfg.ThumbnailTopic == "" {
		return nil, errors.New("kafkasrc: the videos, dead-letter and thumbnail topics are required")
	}
	if cfg.Store == nil || cfg.Collection == "" {
		return nil, errors.New("kafkasrc: a store and a collection are required")
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = 64 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Tracker{cfg: cfg, log: cfg.Log.With("component", "http-state"), videos: map[string]*video{},
		thumbs: map[string]thumbRef{}, cache: newLRU(cfg.CacheBytes), pending: map[string]bool{}, thumbsPending: map[string]bool{}}, nil
}

// Run reads the three topics from their start and follows them until ctx
// ends. A broken connection is retried; it never stops the process.
func (t *Tracker) Run(ctx context.Context) error {
	topics := []struct {
		name string
		fn   func(pipeline.Message) error
	}{
		{t.cfg.VideosTopic, t.onJob},
		{t.cfg.DeadLetterTopic, t.onDeadLetter},
		{t.cfg.ThumbnailTopic, t.onThumbnail},
	}
	var parts [][]int
	for _, tp := range topics {
		var ps []int
		for {
			var err error
			if ps, err = kafka.Partitions(ctx, t.cfg.Kafka, tp.name); err == nil {
				break
			}
			t.log.Warn("waiting for topic", "topic", tp.name, "err", err)
			if !sleep(ctx, 2*time.Second) {
				return nil
			}
		}
		parts = append(parts, ps)
	}
	t.mu.Lock()
	for i, tp := range topics {
		for _, p := range parts[i] {
			key := fmt.Sprintf("%s/%d", tp.name, p)
			if tp.name == t.cfg.ThumbnailTopic {
				t.thumbsPending[key] = true
			} else {
				t.pending[key] = true
			}
		}
	}
	t.started = true
	t.mu.Unlock()
	var wg sync.WaitGroup
	for i, tp := range topics {
		for _, p := range parts[i] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.tail(ctx, tp.name, p, tp.fn)
			}()
		}
	}
	wg.Wait()
	return nil
}

func (t *Tracker) tail(ctx context.Context, topic string, partition int, fn func(pipeline.Message) error) {
	caughtUp := func() {
		t.mu.Lock()
		key := fmt.Sprintf("%s/%d", topic, partition)
		delete(t.pending, key)
		delete(t.thumbsPending, key)
		t.mu.Unlock()
	}
	for ctx.Err() == nil {
		// Records are applied idempotently, so reading a partition again
		// after a broken connection changes nothing.
		err := kafka.TailPartition(ctx, t.cfg.Kafka, topic, partition, fn, caughtUp)
		if err == nil || ctx.Err() != nil {
			return
		}
		t.log.Warn("reading topic failed; retrying", "topic", topic, "partition", partition, "err", err)
		sleep(ctx, 2*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Ready fails until every partition of the jobs and dead-letter topics has
// been read to the end it had when reading started: before that a video may
// be reported unknown wrongly. The thumbnails topic goes on loading after.
func (t *Tracker) Ready() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.started {
		return errors.New("topics not read yet")
	}
	if n := len(t.pending); n > 0 {
		return fmt.Errorf("still reading %d partitions of the jobs and dead-letter topics", n)
	}
	return nil
}

func (t *Tracker) onJob(m pipeline.Message) error {
	if schemas.IsDeleteCommand(m.Value, m.Headers) {
		if id := string(m.Key); id != "" {
			t.mu.Lock()
			defer t.mu.Unlock()
			v := t.video(id)
			if m.Time.After(v.deletedAt) {
				v.deletedAt = m.Time
			}
		}
		return nil
	}
	job, err := schemas.DecodeVideoJob(m.Value)
	if err != nil {
		return nil // a malformed job is the sample stage's to dead-letter
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.video(job.VideoID)
	v.uri = job.URI
	if m.Time.After(v.queuedAt) {
		v.queuedAt = m.Time
	}
	return nil
}

func (t *Tracker) onDeadLetter(m pipeline.Message) error {
	origin := m.Headers[schemas.HeaderOriginTopic]
	var id string
	switch {
	case origin == t.cfg.VideosTopic:
		job, err := schemas.DecodeVideoJob(m.Value)
		if err == nil {
			id = job.VideoID
		} else {
			id = string(m.Key) // jobs are keyed by video id
		}
	case containsString(t.cfg.ClipTopics, origin):
		id = string(m.Key)
	}
	if id == "" {
		return nil
	}
	reason := m.Headers[schemas.HeaderError]
	if reason == "" {
		reason = "dead-lettered by the " + m.Headers[schemas.HeaderStage] + " stage"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.video(id)
	if !m.Time.Before(v.failedAt) {
		v.failure, v.failedAt = reason, m.Time
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (t *Tracker) onThumbnail(m pipeline.Message) error {
	key := string(m.Key)
	if _, _, err := sample.ParseThumbnailKey(key); err != nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m.Value == nil { // a tombstone: the clip was removed
		delete(t.thumbs, key)
		t.cache.remove(key)
		return nil
	}
	t.thumbs[key] = thumbRef{partition: m.Partition, offset: m.Offset}
	t.cache.add(key, m.Value)
	return nil
}

// video returns id's entry, creating it; t.mu must be held.
func (t *Tracker) video(id string) *video {
	v := t.videos[id]
	if v == nil {
		v = &video{}
		t.videos[id] = v
	}
	return v
}

// Publish implements httpapi.Jobs. The video reads as queued on this
// replica at once, before the job comes back from the topic.
func (t *Tracker) Publish(ctx context.Context, job schemas.VideoJob) error {
	job.SchemaVersion = schemas.Version
	value, err := schemas.Encode(&job)
	if err != nil {
		return err
	}
	if err := kafka.Produce(ctx, t.cfg.Kafka, pipeline.Output{Topic: t.cfg.VideosTopic, Key: []byte(job.VideoID), Value: value}); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.video(job.VideoID)
	v.uri, v.queuedAt = job.URI, time.Now()
	return nil
}

// Video implements httpapi.Videos: indexed when the index holds clips of
// the video, else failed when its latest dead letter is newer than its
// latest job, else queued.
func (t *Tracker) Video(ctx context.Context, id string) (httpapi.Video, error) {
	n, err := t.cfg.Store.Count(ctx, t.cfg.Collection, sinks.Filter{VideoIDs: []string{id}})
	if err != nil && !errors.Is(err, sinks.ErrNotFound) {
		return httpapi.Video{}, fmt.Errorf("count clips: %w", err)
	}
	t.mu.Lock()
	var v video
	known := t.videos[id] != nil
	if known {
		v = *t.videos[id]
	}
	t.mu.Unlock()
	out := httpapi.Video{ID: id, URI: v.uri, Clips: n}
	deleted := known && !v.deletedAt.IsZero() && !v.deletedAt.Before(v.queuedAt)
	switch {
	case deleted && n > 0:
		out.Status = httpapi.StatusDeleting
	case deleted:
		out.Status = httpapi.StatusDeleted
	case n > 0:
		out.Status = httpapi.StatusIndexed
	case !known:
		return httpapi.Video{}, fmt.Errorf("video %q: %w", id, httpapi.ErrNotFound)
	case v.failure != "" && !v.failedAt.Before(v.queuedAt):
		out.Status, out.Error = httpapi.StatusFailed, v.failure
	default:
		out.Status = httpapi.StatusQueued
	}
	return out, nil
}

// Delete implements httpapi.Deletes: a tombstone keyed by the video id on
// the jobs topic.
func (t *Tracker) Delete(ctx context.Context, videoID string) error {
	cmd := pipeline.Output{Topic: t.cfg.VideosTopic, Key: []byte(videoID), Headers: map[string]string{schemas.HeaderCommand: schemas.CommandDelete}}
	if err := kafka.Produce(ctx, t.cfg.Kafka, cmd); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.video(videoID).deletedAt = time.Now()
	return nil
}

// URI implements httpapi.Videos.
func (t *Tracker) URI(id string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v := t.videos[id]; v != nil && v.uri != "" {
		return v.uri, true
	}
	return "", false
}

// Thumbnail implements httpapi.Thumbnails: from memory, or read back from
// the topic at the offset it was seen at.
func (t *Tracker) Thumbnail(ctx context.Context, videoID string, clipIndex int) ([]byte, error) {
	key := sample.ThumbnailKey(videoID, clipIndex)
	t.mu.Lock()
	img, cached := t.cache.get(key)
	ref, known := t.thumbs[key]
	t.mu.Unlock()
	if cached {
		return img, nil
	}
	if !known {
		t.mu.Lock()
		loading := !t.started || len(t.thumbsPending) > 0
		t.mu.Unlock()
		if loading {
			return nil, fmt.Errorf("thumbnail %s: %w", key, httpapi.ErrNotReady)
		}
		return nil, fmt.Errorf("thumbnail %s: %w", key, httpapi.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := kafka.ReadAt(ctx, t.cfg.Kafka, t.cfg.ThumbnailTopic, ref.partition, ref.offset)
	if errors.Is(err, kafka.ErrNoRecord) || (err == nil && (m.Value == nil || string(m.Key) != key)) {
		return nil, fmt.Errorf("thumbnail %s: %w", key, httpapi.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.cache.add(key, m.Value)
	t.mu.Unlock()
	return m.Value, nil
}

// String names the tracker's topics for logs.
func (t *Tracker) String() string {
	return strings.Join([]string{t.cfg.VideosTopic, t.cfg.DeadLetterTopic, t.cfg.ThumbnailTopic}, ",")
}
