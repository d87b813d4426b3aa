package kafka

import (
	"slices"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/vidx/vidx/pipeline"
)

type topicPartition struct {
	topic     string
	partition int
}

// watermarks decides which offsets may be committed. Kafka stores one
// offset per partition, meaning "everything before this is done", so a
// commit must never pass a fetched message that is still in flight: if it
// did, a crash would lose that message. Messages are tracked from fetch
// until their outputs are acknowledged; the commit offset of a partition is
// the highest done offset below which nothing is pending.
//
// A consumer processes its batches one at a time and a batch only finishes
// as a whole, so today each commit covers its whole batch. The tracker keeps
// that safe if batches or retried subsets ever finish out of order.
type watermarks struct {
	pending map[topicPartition][]int64 // fetched, not done; ascending
	done    map[topicPartition][]int64 // done, not yet committed; ascending
}

func newWatermarks() *watermarks {
	return &watermarks{pending: map[topicPartition][]int64{}, done: map[topicPartition][]int64{}}
}

// fetched records messages handed to the handler.
func (w *watermarks) fetched(batch []pipeline.Message) {
	for _, m := range batch {
		tp := topicPartition{m.Topic, m.Partition}
		w.pending[tp] = insertSorted(w.pending[tp], m.Offset)
	}
}

// finished records messages whose outputs are acknowledged.
func (w *watermarks) finished(batch []pipeline.Message) {
	for _, m := range batch {
		tp := topicPartition{m.Topic, m.Partition}
		p := w.pending[tp]
		if i, found := slices.BinarySearch(p, m.Offset); found {
			w.pending[tp] = slices.Delete(p, i, i+1)
		}
		w.done[tp] = insertSorted(w.done[tp], m.Offset)
	}
}

func insertSorted(s []int64, v int64) []int64 {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

// commits returns one message per partition whose offset is safe to commit
// (kafka-go commits offset+1): the highest done offset below every pending
// one. Only offsets this consumer finished are committed.
func (w *watermarks) commits() []kafkago.Message {
	var out []kafkago.Message
	for tp, d := range w.done {
		n := len(d)
		if p := w.pending[tp]; len(p) > 0 {
			n, _ = slices.BinarySearch(d, p[0])
		}
		if n == 0 {
			continue
		}
		out = append(out, kafkago.Message{Topic: tp.topic, Partition: tp.partition, Offset: d[n-1]})
	}
	slices.SortFunc(out, func(a, b kafkago.Message) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return a.Partition - b.Partition
	})
	return out
}

// committed forgets done offsets that commits covered.
func (w *watermarks) committed(msgs []kafkago.Message) {
	for _, m := range msgs {
		tp := topicPartition{m.Topic, m.Partition}
		d := w.done[tp]
		n, found := slices.BinarySearch(d, m.Offset)
		if found {
			n++
		}
		if d = d[n:]; len(d) == 0 {
			delete(w.done, tp)
		} else {
			w.done[tp] = d
		}
		if len(w.pending[tp]) == 0 {
			delete(w.pending, tp)
		}
	}
}
