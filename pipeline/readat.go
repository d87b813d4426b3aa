package pipeline

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoRecord is returned by ReadAt when the offset holds no record (it was
// compacted away or is past the end).
var ErrNoRecord = errors.New("no record at that offset")

// ReadAt returns the record at offset of one partition, for readers that
// index a compacted topic by offset instead of holding every value.
func ReadAt(ctx context.Context, c KafkaConfig, topic string, partition int, offset int64) (Message, error) {
	c = c.WithDefaults()
	var (
		out   Message
		found bool
	)
	stop := errors.New("stop")
	_, err := readRange(ctx, c, topic, partition, offset, offset+1, func(m Message) error {
		if m.Offset == offset {
			out, found = m, true
		}
		return stop
	})
	if err != nil && !errors.Is(err, stop) {
		return Message{}, err
	}
	if !found {
		return Message{}, fmt.Errorf("%s/%d@%d: %w", topic, partition, offset, ErrNoRecord)
	}
	return out, nil
}
