package schemas

import (
	"errors"
	"fmt"
	"strings"
)

// HeaderReplayedFrom marks a re-submitted message with the dead letter it
// came from (TOPIC/PARTITION@OFFSET).
const HeaderReplayedFrom = "vidx-replayed-from"

// ErrBadFilter is returned for a dead-letter filter that cannot be parsed.
var ErrBadFilter = errors.New("bad dead-letter filter")

// DeadLetterFilter selects dead letters; every condition must hold.
type DeadLetterFilter []filterCond

type filterCond struct {
	field    string
	value    string
	contains bool
}

var deadLetterFields = map[string]func(DeadLetter) string{
	"stage":  func(d DeadLetter) string { return d.Stage },
	"class":  func(d DeadLetter) string { return d.Class },
	"topic":  func(d DeadLetter) string { return d.Topic },
	"key":    func(d DeadLetter) string { return string(d.Key) },
	"reason": func(d DeadLetter) string { return d.Reason },
}

// ParseDeadLetterFilter reads a comma-separated list of conditions:
// FIELD=VALUE (exact) or FIELD~=TEXT (contains, case-insensitive), FIELD
// one of stage, class, topic (the origin topic), key and reason.
func ParseDeadLetterFilter(expr string) (DeadLetterFilter, error) {
	var f DeadLetterFilter
	if strings.TrimSpace(expr) == "" {
		return f, nil
	}
	for _, part := range strings.Split(expr, ",") {
		part = strings.TrimSpace(part)
		c := filterCond{}
		var ok bool
		if c.field, c.value, ok = strings.Cut(part, "~="); ok {
			c.contains = true
		} else if c.field, c.value, ok = strings.Cut(part, "="); !ok {
			return nil, fmt.Errorf("%w: %q is not FIELD=VALUE or FIELD~=TEXT", ErrBadFilter, part)
		}
		c.field = strings.TrimSpace(c.field)
		if _, known := deadLetterFields[c.field]; !known {
			return nil, fmt.Errorf("%w: unknown field %q (want stage, class, topic, key or reason)", ErrBadFilter, c.field)
		}
		if c.value == "" {
			return nil, fmt.Errorf("%w: %q has no value", ErrBadFilter, part)
		}
		f = append(f, c)
	}
	return f, nil
}

// Match reports whether d meets every condition.
func (f DeadLetterFilter) Match(d DeadLetter) bool {
	for _, c := range f {
		v := deadLetterFields[c.field](d)
		if c.contains {
			if !strings.Contains(strings.ToLower(v), strings.ToLower(c.value)) {
				return false
			}
		} else if v != c.value {
			return false
		}
	}
	return true
}

// IsDeadLetterHeader reports the headers a stage adds when dead-lettering
// (and a replay adds); a replay drops them so the message looks as it did.
func IsDeadLetterHeader(k string) bool {
	switch k {
	case HeaderError, HeaderErrorClass, HeaderStage, HeaderOriginTopic, HeaderOriginPart, HeaderOriginOffset,
		HeaderFailedAt, HeaderAttempts, HeaderSchemaVersion, HeaderReplayedFrom:
		return true
	}
	return false
}

// ReplayHeaders are the headers of a dead letter re-submitted to its
// origin: its own (trace context and the like) without the dead-letter
// description, plus where it was replayed from.
func ReplayHeaders(h map[string]string, topic string, partition int, offset int64) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if !IsDeadLetterHeader(k) {
			out[k] = v
		}
	}
	out[HeaderReplayedFrom] = fmt.Sprintf("%s/%d@%d", topic, partition, offset)
	return out
}
