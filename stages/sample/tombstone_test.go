package sample

import (
	"context"
	"testing"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
)

// A delete command on the videos topic is for the index stage: the sample
// stage skips it, while an empty message without the header (null or
// empty value alike) is still a bad job.
func TestTombstoneIsSkipped(t *testing.T) {
	st, err := NewStage(StageConfig{Options: media.Options{Logger: testLog(t)}, OutputTopic: "clips"})
	if err != nil {
		t.Fatal(err)
	}
	res := st.Handle(context.Background(), []pipeline.Message{
		{Topic: "videos", Key: []byte("gone"), Headers: map[string]string{schemas.HeaderCommand: schemas.CommandDelete}},
		{Topic: "videos", Key: []byte("empty"), Value: []byte{}},
		{Topic: "videos", Key: []byte("null")},
	})
	if res[0].Err != nil || len(res[0].Outputs) != 0 {
		t.Errorf("delete command: err %v, %d outputs; want skipped", res[0].Err, len(res[0].Outputs))
	}
	for _, r := range res[1:] {
		if !pipeline.IsPoison(r.Err) {
			t.Errorf("empty job: err %v, want poison", r.Err)
		}
	}
}
