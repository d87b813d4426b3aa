package schemas

import (
	"fmt"
	"strconv"
	"time"
)

// Dead letters keep the original message value untouched and describe the
// failure in headers, so a dead letter can be replayed onto its original
// topic as it is.
const (
	HeaderError          = "vidx-error"
	HeaderErrorClass     = "vidx-error-class"
	HeaderStage          = "vidx-stage"
	HeaderOriginTopic    = "vidx-origin-topic"
	HeaderOriginPart     = "vidx-origin-partition"
	HeaderOriginOffset   = "vidx-origin-offset"
	HeaderFailedAt       = "vidx-failed-at"
	HeaderAttempts       = "vidx-attempts"
	HeaderSchemaVersion  = "vidx-schema-version"
	deadLetterTimeFormat = time.RFC3339Nano
)

// DeadLetter describes a message that a stage gave up on.
type DeadLetter struct {
	Reason    string
	Class     string // poison or unknown (retries exhausted)
	Stage     string
	Topic     string
	Partition int
	Offset    int64
	Attempts  int
	FailedAt  time.Time
	Key       []byte
	Value     []byte
}

// Headers renders the dead letter's description as Kafka headers.
func (d *DeadLetter) Headers() map[string]string {
	return map[string]string{
		HeaderError:         d.Reason,
		HeaderErrorClass:    d.Class,
		HeaderStage:         d.Stage,
		HeaderOriginTopic:   d.Topic,
		HeaderOriginPart:    strconv.Itoa(d.Partition),
		HeaderOriginOffset:  strconv.FormatInt(d.Offset, 10),
		HeaderAttempts:      strconv.Itoa(d.Attempts),
		HeaderFailedAt:      d.FailedAt.UTC().Format(deadLetterTimeFormat),
		HeaderSchemaVersion: strconv.Itoa(Version),
	}
}

// ParseDeadLetter rebuilds a DeadLetter from a dead-letter message.
func ParseDeadLetter(key, value []byte, headers map[string]string) (DeadLetter, error) {
	d := DeadLetter{
		Reason: headers[HeaderError],
		Class:  headers[HeaderErrorClass],
		Stage:  headers[HeaderStage],
		Topic:  headers[HeaderOriginTopic],
		Key:    key,
		Value:  value,
	}
	if d.Reason == "" || d.Topic == "" {
		return d, invalidf("dead letter", "missing %s or %s header", HeaderError, HeaderOriginTopic)
	}
	var err error
	if d.Partition, err = strconv.Atoi(headers[HeaderOriginPart]); err != nil {
		return d, invalidf("dead letter", "bad %s: %v", HeaderOriginPart, err)
	}
	if d.Offset, err = strconv.ParseInt(headers[HeaderOriginOffset], 10, 64); err != nil {
		return d, invalidf("dead letter", "bad %s: %v", HeaderOriginOffset, err)
	}
	if a := headers[HeaderAttempts]; a != "" {
		if d.Attempts, err = strconv.Atoi(a); err != nil {
			return d, invalidf("dead letter", "bad %s: %v", HeaderAttempts, err)
		}
	}
	if t := headers[HeaderFailedAt]; t != "" {
		if d.FailedAt, err = time.Parse(deadLetterTimeFormat, t); err != nil {
			return d, fmt.Errorf("%w: dead letter: bad %s: %v", ErrInvalid, HeaderFailedAt, err)
		}
	}
	return d, nil
}
