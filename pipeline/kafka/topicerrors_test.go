package kafka

import (
	"strings"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

func TestTopicErrors(t *testing.T) {
	cases := []struct {
		name      string
		errs      map[string]error
		wantNil   bool
		retryable bool
		mention   string
	}{
		{"none", map[string]error{"a": nil}, true, false, ""},
		{"existing topics are fine", map[string]error{"a": kafkago.TopicAlreadyExists}, true, false, ""},
		{"a broker still starting", map[string]error{"a": kafkago.LeaderNotAvailable, "b": kafkago.NotController}, false, true, "a: "},
		{"bad settings", map[string]error{"a": kafkago.InvalidReplicationFactor}, false, false, "a: "},
		{"one bad among temporary", map[string]error{"a": kafkago.LeaderNotAvailable, "b": kafkago.InvalidPartitionNumber}, false, false, "b: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := topicErrors("create topics", c.errs)
			if (err == nil) != c.wantNil {
				t.Fatalf("err = %v", err)
			}
			if err == nil {
				return
			}
			if pipeline.IsRetryable(err) != c.retryable || !strings.Contains(err.Error(), c.mention) {
				t.Errorf("err %v: retryable %v, want %v, mentioning %q", err, pipeline.IsRetryable(err), c.retryable, c.mention)
			}
		})
	}
}
