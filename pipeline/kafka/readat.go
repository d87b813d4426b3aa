package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/vidx/vidx/pipeline"
)

// ErrNoRecord is returned by ReadAt when the offset holds no record (it was
// compacted away or is past the end).
var ErrNoRecord = errors.New("no record at that offset")

// ReadAt returns the record at offset of one partition, for readers that
// index a compacted topic by offset instead of holding every value.
func ReadAt(ctx context.Context, c Config, topic string, partition int, offset int64) (pipeline.Message, error) {
	c = c.WithDefaults()
	var (
		out   pipeline.Message
		found bool
	)
	stop := errors.New("stop")
	_, err := readRange(ctx, c, topic, partition, offset, offset+1, func(m pipeline.Message) error {
		if m.Offset == offset {
			out, found = m, true
		}
		return stop
	})
	if err != nil && !errors.Is(err, stop) {
		return pipeline.Message{}, err
	}
	if !found {
		return pipeline.Message{}, fmt.Errorf("%s/%d@%d: %w", topic, partition, offset, ErrNoRecord)
	}
	return out, nil
}
