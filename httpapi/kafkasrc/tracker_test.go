package kafkasrc_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/httpapi/kafkasrc"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/sample"
)

// counter is the index: clips per video.
type counter struct {
	mu    sync.Mutex
	clips map[string]int
}

func (c *counter) Count(_ context.Context, _ string, f sinks.Filter) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, id := range f.VideoIDs {
		n += c.clips[id]
	}
	return n, nil
}

func (c *counter) set(id string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clips[id] = n
}

const (
	videos, deadLetters, thumbs, clips = "videos", "dead-letters", "thumbnails", "clips"
)

func jobValue(t *testing.T, id, uri string) []byte {
	t.Helper()
	v, err := schemas.Encode(&schemas.VideoJob{VideoID: id, URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func deadLetter(origin, key string, value []byte, reason string) pipeline.Output {
	d := schemas.DeadLetter{Reason: reason, Class: "poison", Stage: "sample", Topic: origin, FailedAt: time.Now(), Key: []byte(key), Value: value}
	return pipeline.Output{Topic: deadLetters, Key: []byte(key), Value: value, Headers: d.Headers()}
}

// eventually polls until check passes or the test's deadline.
func eventually(t *testing.T, ctx context.Context, what string, check func() error) {
	t.Helper()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestTracker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 3, Topics: []string{videos, deadLetters, thumbs, clips}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc := kafka.Config{Brokers: b.Addrs()}.WithDefaults()
	produce := func(outs ...pipeline.Output) {
		t.Helper()
		if err := kafka.Produce(ctx, kc, outs...); err != nil {
			t.Fatal(err)
		}
	}
	// Written before the tracker starts: read on start-up.
	produce(pipeline.Output{Topic: videos, Key: []byte("early"), Value: jobValue(t, "early", "/v/early.mp4")})

	store := &counter{clips: map[string]int{}}
	tr, err := kafkasrc.New(kafkasrc.Config{Kafka: kc, VideosTopic: videos, DeadLetterTopic: deadLetters, ThumbnailTopic: thumbs,
		ClipTopics: []string{clips}, Store: store, Collection: "clips", CacheBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Ready() == nil {
		t.Fatal("ready before reading anything")
	}
	if _, err := tr.Thumbnail(ctx, "early", 0); !errors.Is(err, httpapi.ErrNotReady) {
		t.Fatalf("thumbnail before reading the topic: %v, want not ready", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tr.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	eventually(t, ctx, "ready", tr.Ready)

	if err := tr.Publish(ctx, schemas.VideoJob{VideoID: "mine", URI: "/v/mine.mp4"}); err != nil {
		t.Fatal(err)
	}
	produce(
		pipeline.Output{Topic: videos, Key: []byte("other"), Value: jobValue(t, "other", "https://v.example.com/o.mp4")},
		pipeline.Output{Topic: videos, Key: []byte("bad"), Value: jobValue(t, "bad", "/etc/passwd")},
		pipeline.Output{Topic: videos, Key: []byte("late"), Value: jobValue(t, "late", "/v/late.mp4")},
		pipeline.Output{Topic: thumbs, Key: []byte(sample.ThumbnailKey("a/b", 3)), Value: []byte("jpeg of a/b clip 3")},
		pipeline.Output{Topic: thumbs, Key: []byte(sample.ThumbnailKey("gone", 0)), Value: []byte("jpeg of gone")},
	)
	produce(
		deadLetter(videos, "bad", jobValue(t, "bad", "/etc/passwd"), "source /etc/passwd refused: outside the allowed file roots"),
		deadLetter(clips, "late", []byte("VIDX..."), "clip is 2000000 bytes, over the message limit"),
		deadLetter("queries", "q-1", []byte(`{}`), "malformed query"),
	)
	store.set("early", 4)

	cases := []struct {
		id   string
		want httpapi.Video
	}{
		{"early", httpapi.Video{ID: "early", Status: httpapi.StatusIndexed, Clips: 4, URI: "/v/early.mp4"}},
		{"mine", httpapi.Video{ID: "mine", Status: httpapi.StatusQueued, URI: "/v/mine.mp4"}},
		{"other", httpapi.Video{ID: "other", Status: httpapi.StatusQueued, URI: "https://v.example.com/o.mp4"}},
		{"bad", httpapi.Video{ID: "bad", Status: httpapi.StatusFailed, URI: "/etc/passwd", Error: "source /etc/passwd refused: outside the allowed file roots"}},
		{"late", httpapi.Video{ID: "late", Status: httpapi.StatusFailed, URI: "/v/late.mp4", Error: "clip is 2000000 bytes, over the message limit"}},
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			eventually(t, ctx, tc.id, func() error {
				got, err := tr.Video(ctx, tc.id)
				if err != nil {
					return err
				}
				if got != tc.want {
					return errors.New("got " + got.Status + " " + got.Error)
				}
				return nil
			})
		})
	}
	for _, id := range []string{"q-1", "nobody"} {
		if _, err := tr.Video(ctx, id); !errors.Is(err, httpapi.ErrNotFound) {
			t.Errorf("%s: %v, want not found", id, err)
		}
	}
	// The cache holds 8 bytes: this thumbnail is read back from the topic.
	eventually(t, ctx, "thumbnail", func() error {
		img, err := tr.Thumbnail(ctx, "a/b", 3)
		if err == nil && !bytes.Equal(img, []byte("jpeg of a/b clip 3")) {
			t.Fatalf("thumbnail %q", img)
		}
		return err
	})
	if _, err := tr.Thumbnail(ctx, "a/b", 4); !errors.Is(err, httpapi.ErrNotFound) {
		t.Errorf("thumbnail of an unknown clip: %v, want not found", err)
	}
	// A tombstone removes a thumbnail.
	eventually(t, ctx, "thumbnail before its tombstone", func() error {
		_, err := tr.Thumbnail(ctx, "gone", 0)
		return err
	})
	produce(pipeline.Output{Topic: thumbs, Key: []byte(sample.ThumbnailKey("gone", 0))})
	eventually(t, ctx, "thumbnail after its tombstone", func() error {
		if _, err := tr.Thumbnail(ctx, "gone", 0); !errors.Is(err, httpapi.ErrNotFound) {
			return errors.New("still there")
		}
		return nil
	})
	if uri, ok := tr.URI("other"); !ok || uri != "https://v.example.com/o.mp4" {
		t.Errorf("URI(other) = %q %v", uri, ok)
	}

	// Deletes: published here, or a tombstone on the jobs topic from
	// elsewhere. Deleting while clips remain, deleted once none do, and a
	// job after the delete queues the video again.
	status := func(id, want string) {
		t.Helper()
		eventually(t, ctx, id+" "+want, func() error {
			got, err := tr.Video(ctx, id)
			if err != nil {
				return err
			}
			if got.Status != want {
				return errors.New("status " + got.Status)
			}
			return nil
		})
	}
	if err := tr.Delete(ctx, "early"); err != nil {
		t.Fatal(err)
	}
	status("early", httpapi.StatusDeleting)
	store.set("early", 0)
	status("early", httpapi.StatusDeleted)
	produce(pipeline.Output{Topic: videos, Key: []byte("other"), Headers: map[string]string{schemas.HeaderCommand: schemas.CommandDelete}})
	status("other", httpapi.StatusDeleted)
	time.Sleep(5 * time.Millisecond) // the next job's timestamp must be later than the delete's
	produce(pipeline.Output{Topic: videos, Key: []byte("other"), Value: jobValue(t, "other", "https://v.example.com/o.mp4")})
	status("other", httpapi.StatusQueued)
}

func TestThumbnailKey(t *testing.T) {
	cases := []struct {
		id  string
		idx int
	}{{"plain", 0}, {"with/slashes/7", 12}, {"a b", 3}}
	for _, tc := range cases {
		id, idx, err := sample.ParseThumbnailKey(sample.ThumbnailKey(tc.id, tc.idx))
		if err != nil || id != tc.id || idx != tc.idx {
			t.Errorf("%q %d: round trip gave %q %d %v", tc.id, tc.idx, id, idx, err)
		}
	}
	for _, bad := range []string{"noindex", "/3", "x/-1", "x/y"} {
		if _, _, err := sample.ParseThumbnailKey(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
