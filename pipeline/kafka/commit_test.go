package kafka

import (
	"fmt"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

func msgs(topic string, partition int, offsets ...int64) []pipeline.Message {
	out := make([]pipeline.Message, len(offsets))
	for i, o := range offsets {
		out[i] = pipeline.Message{Topic: topic, Partition: partition, Offset: o}
	}
	return out
}

func render(ms []kafkago.Message) string {
	s := ""
	for _, m := range ms {
		s += fmt.Sprintf("%s/%d@%d ", m.Topic, m.Partition, m.Offset)
	}
	return s
}

// TestWatermarks checks commits never pass a fetched message that is not
// finished, whatever order batches finish in.
func TestWatermarks(t *testing.T) {
	type step struct {
		fetch, finish []pipeline.Message
		want          string // commits after the step, then marked committed
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{
			{fetch: msgs("a", 0, 0, 1, 2), finish: msgs("a", 0, 0, 1, 2), want: "a/0@2 "},
			{fetch: msgs("a", 0, 3), finish: msgs("a", 0, 3), want: "a/0@3 "},
		}},
		{"later batch first holds at the gap", []step{
			{fetch: append(msgs("a", 0, 0, 1), msgs("a", 0, 2, 3)...)},
			{finish: msgs("a", 0, 2, 3), want: ""},
			{finish: msgs("a", 0, 0, 1), want: "a/0@3 "},
		}},
		{"retried subset keeps the commit below it", []step{
			{fetch: msgs("a", 0, 5, 6, 7, 8)},
			{finish: msgs("a", 0, 5, 7, 8), want: "a/0@5 "},
			{finish: msgs("a", 0, 6), want: "a/0@8 "},
		}},
		{"partitions are independent", []step{
			{fetch: append(msgs("a", 0, 10, 11), msgs("a", 1, 4, 5)...)},
			{finish: append(msgs("a", 0, 11), msgs("a", 1, 4, 5)...), want: "a/1@5 "},
			{finish: msgs("a", 0, 10), want: "a/0@11 "},
		}},
		{"topics are independent", []step{
			{fetch: append(msgs("a", 0, 1), msgs("b", 0, 1)...), finish: msgs("b", 0, 1), want: "b/0@1 "},
		}},
		{"first offset pending commits nothing", []step{
			{fetch: msgs("a", 0, 0, 1), finish: msgs("a", 0, 1), want: ""},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatermarks()
			for i, s := range tc.steps {
				w.fetched(s.fetch)
				w.finished(s.finish)
				c := w.commits()
				if got := render(c); got != s.want {
					t.Fatalf("step %d: commits %q, want %q", i, got, s.want)
				}
				w.committed(c)
			}
		})
	}
}
