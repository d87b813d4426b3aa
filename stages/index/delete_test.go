package index

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

// TestDeleteCommand sends a tombstone for one video on the videos topic,
// on both stores: its clips go, the other video's stay, a job on the same
// topic is skipped, a clip of a run that began before the delete is
// dropped and a run begun after it is indexed.
func TestDeleteCommand(t *testing.T) {
	deleteAt := ingested.Add(time.Hour)
	before, after := ingested.UnixMicro(), deleteAt.Add(time.Minute).UnixMicro()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			store := st.open(t)
			h, err := New(ctx, spec(), store, WithLogger(slog.New(slog.DiscardHandler)), WithVideosTopic("videos"))
			if err != nil {
				t.Fatal(err)
			}
			h.now = func() time.Time { return ingested }
			countOf := func(video string) int {
				t.Helper()
				n, err := store.Count(ctx, collect, sinks.Filter{VideoIDs: []string{video}})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			handle := func(batch []pipeline.Message) {
				t.Helper()
				for i, r := range h.Handle(ctx, batch) {
					if r.Err != nil || len(r.Outputs) != 0 {
						t.Fatalf("message %d: err %v, %d outputs", i, r.Err, len(r.Outputs))
					}
				}
			}
			handle(msgs(t, append(run("doomed", before, 30, 10), run("kept", before, 20, 10)...)...))
			if countOf("doomed") != 3 || countOf("kept") != 2 {
				t.Fatalf("indexed %d and %d clips, want 3 and 2", countOf("doomed"), countOf("kept"))
			}

			job := pipeline.Message{Topic: "videos", Key: []byte("kept"), Value: []byte(`{"schema_version":1,"video_id":"kept","uri":"/v/kept.mp4"}`)}
			del := map[string]string{schemas.HeaderCommand: schemas.CommandDelete}
			tomb := pipeline.Message{Topic: "videos", Key: []byte("doomed"), Time: deleteAt, Headers: del}
			// An empty message without the header is not a delete.
			handle([]pipeline.Message{{Topic: "videos", Key: []byte("doomed")}})
			if n := countOf("doomed"); n != 3 {
				t.Fatalf("an empty message deleted the video (%d clips left)", n)
			}
			handle([]pipeline.Message{job, tomb})
			if n := countOf("doomed"); n != 0 {
				t.Errorf("%d clips of the deleted video remain", n)
			}
			if n := countOf("kept"); n != 2 {
				t.Errorf("the other video has %d clips, want 2", n)
			}

			// A late clip of the run the delete removed stays out; a new run
			// of the same id is indexed.
			late := run("doomed", before, 40, 10)[3]
			handle(msgs(t, late))
			if n := countOf("doomed"); n != 0 {
				t.Errorf("a late clip of a deleted run was indexed (%d clips)", n)
			}
			handle(msgs(t, run("doomed", after, 20, 10)...))
			if n := countOf("doomed"); n != 2 {
				t.Errorf("re-ingest after the delete: %d clips, want 2", n)
			}
			// The same delete read again (a new consumer group) leaves the
			// newer run alone.
			handle([]pipeline.Message{tomb})
			if n := countOf("doomed"); n != 2 {
				t.Errorf("a replayed delete removed the newer run: %d clips, want 2", n)
			}

			// Deleting an unknown video is a no-op; a bad key is poison.
			handle([]pipeline.Message{{Topic: "videos", Key: []byte("never-seen"), Headers: del}})
			res := h.Handle(ctx, []pipeline.Message{{Topic: "videos", Key: nil, Headers: del}})
			if pipeline.Classify(res[0].Err) != pipeline.ClassPoison {
				t.Errorf("tombstone without a key: %v, want poison", res[0].Err)
			}
		})
	}
}
