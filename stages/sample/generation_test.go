package sample

import (
	"context"
	"testing"
	"time"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
)

// TestJobClipsCarryTheirGeneration checks what re-ingest relies on: every
// clip of one run of a job carries the run's generation (its start time in
// microseconds, so a later run has a larger one), and only the run's last clip carries the number of clips.
func TestJobClipsCarryTheirGeneration(t *testing.T) {
	dir := t.TempDir()
	path := mediatest.StepVideo(t, dir, 7)
	tests := []struct {
		name    string
		segment *schemas.Segment
		clips   int
	}{
		{"whole", nil, 1},
		{"windows", &schemas.Segment{Mode: media.ModeWindow, WindowS: 2, StrideS: 2}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewStage(StageConfig{Options: media.Options{Size: 16, MaxFrames: 2, Logger: testLog(t)}})
			if err != nil {
				t.Fatal(err)
			}
			job, err := schemas.Encode(&schemas.VideoJob{SchemaVersion: schemas.Version, VideoID: "steps", URI: path, Segment: tc.segment})
			if err != nil {
				t.Fatal(err)
			}
			for run, at := range []time.Time{time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 7000, time.UTC)} {
				st.now = func() time.Time { return at }
				res := st.Handle(context.Background(), []pipeline.Message{{Topic: "videos", Value: job}})
				if res[0].Err != nil {
					t.Fatal(res[0].Err)
				}
				if len(res[0].Outputs) != tc.clips {
					t.Fatalf("run %d: %d clips, want %d", run, len(res[0].Outputs), tc.clips)
				}
				for i, out := range res[0].Outputs {
					c, err := schemas.DecodeClip(out.Value)
					if err != nil {
						t.Fatal(err)
					}
					if c.Header.Generation != at.UnixMicro() {
						t.Errorf("run %d clip %d: generation %d, want %d", run, i, c.Header.Generation, at.UnixMicro())
					}
					want := 0
					if i == tc.clips-1 {
						want = tc.clips
					}
					if c.Header.GenerationClips != want {
						t.Errorf("run %d clip %d: generation_clips %d, want %d", run, i, c.Header.GenerationClips, want)
					}
				}
			}
		})
	}
}
