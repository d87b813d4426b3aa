package pipeline

import (
	"errors"
	"fmt"
)

// ErrorClass tells the runtime what to do with a message whose handler failed.
type ErrorClass int

const (
	// ClassUnknown errors are retried a bounded number of times, then the
	// message is dead-lettered so one bad message cannot stall a partition.
	ClassUnknown ErrorClass = iota
	// ClassRetryable errors come from the environment (a store or broker that
	// is down). They are retried with backoff until they succeed or the stage
	// stops; the offset is not committed meanwhile, so nothing is lost.
	ClassRetryable
	// ClassPoison errors come from the message itself. Retrying cannot help, so
	// the message goes straight to the dead-letter topic with the reason.
	ClassPoison
)

func (c ErrorClass) String() string {
	switch c {
	case ClassRetryable:
		return "retryable"
	case ClassPoison:
		return "poison"
	default:
		return "unknown"
	}
}

type classifiedError struct {
	class ErrorClass
	err   error
}

func (e *classifiedError) Error() string { return e.err.Error() }
func (e *classifiedError) Unwrap() error { return e.err }

// Poison marks err as caused by the message content.
func Poison(err error) error {
	if err == nil {
		return nil
	}
	return &classifiedError{class: ClassPoison, err: err}
}

// Poisonf is Poison(fmt.Errorf(format, args...)).
func Poisonf(format string, args ...any) error { return Poison(fmt.Errorf(format, args...)) }

// Retryable marks err as transient: the same message will succeed later.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &classifiedError{class: ClassRetryable, err: err}
}

// Classify reports the class of the outermost classified error in err's chain.
func Classify(err error) ErrorClass {
	var ce *classifiedError
	if errors.As(err, &ce) {
		return ce.class
	}
	return ClassUnknown
}

// IsPoison reports whether err was marked with Poison.
func IsPoison(err error) bool { return Classify(err) == ClassPoison }

// IsRetryable reports whether err was marked with Retryable.
func IsRetryable(err error) bool { return Classify(err) == ClassRetryable }
