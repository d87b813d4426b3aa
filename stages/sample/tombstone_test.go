package sample

import (
	"context"
	"testing"

	"github.com/vidx/vidx/pipeline"
)

// A tombstone on the videos topic is a delete command for the index stage:
// the sample stage skips it, while an empty (non-nil) value is still a bad
// job.
func TestTombstoneIsSkipped(t *testing.T) {
	st, err := NewStage(StageConfig{Options: Options{Logger: testLog(t)}, OutputTopic: "clips"})
	if err != nil {
		t.Fatal(err)
	}
	res := st.Handle(context.Background(), []pipeline.Message{
		{Topic: "videos", Key: []byte("gone")},
		{Topic: "videos", Key: []byte("empty"), Value: []byte{}},
	})
	if res[0].Err != nil || len(res[0].Outputs) != 0 {
		t.Errorf("tombstone: err %v, %d outputs; want skipped", res[0].Err, len(res[0].Outputs))
	}
	if !pipeline.IsPoison(res[1].Err) {
		t.Errorf("empty job: err %v, want poison", res[1].Err)
	}
}
