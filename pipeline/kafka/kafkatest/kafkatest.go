// Package kafkatest gives tests the brokers to run against: the embedded
// broker (franz-go's kfake, in process, one per test) and a real Apache
// Kafka started by scripts/kafka.sh and shared by every test of a run.
//
// VIDX_TEST_KAFKA picks them: embedded (the default), real or both.
// VIDX_TEST_KAFKA_BROKERS is the real broker's bootstrap address (what
// `scripts/kafka.sh start` prints; `make test` starts one and sets both).
// Tests on the shared real broker stay apart by naming their topics and
// consumer groups through Broker.Name.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
)

// Kind is a kind of broker.
type Kind string

// The kinds of broker a test can run against.
const (
	Embedded Kind = "embedded"
	Real     Kind = "real"
)

// Environment variables that select the brokers.
const (
	EnvKinds   = "VIDX_TEST_KAFKA"
	EnvBrokers = "VIDX_TEST_KAFKA_BROKERS"
)

// Kinds returns the kinds VIDX_TEST_KAFKA selects.
func Kinds() ([]Kind, error) {
	switch v := strings.TrimSpace(os.Getenv(EnvKinds)); v {
	case "", string(Embedded):
		return []Kind{Embedded}, nil
	case string(Real):
		return []Kind{Real}, nil
	case "both":
		return []Kind{Embedded, Real}, nil
	default:
		return nil, fmt.Errorf("%s=%q: want embedded, real or both", EnvKinds, v)
	}
}

// Broker is one broker a test runs against.
type Broker struct {
	Kind  Kind
	Addrs []string
	// Partitions is the partition count of the topics the test creates.
	Partitions int
	suffix     string
}

// Config returns the connection settings for the broker.
func (b *Broker) Config() kafka.Config {
	return kafka.Config{Brokers: append([]string(nil), b.Addrs...), Partitions: b.Partitions}.WithDefaults()
}

// Name returns the name a test uses for a topic or consumer group: base
// itself on a broker of its own, base with a suffix unique to the test on
// the shared real broker.
func (b *Broker) Name(base string) string {
	if b.suffix == "" {
		return base
	}
	return base + "-" + b.suffix
}

// Names maps Name over bases.
func (b *Broker) Names(bases ...string) []string {
	out := make([]string, len(bases))
	for i, s := range bases {
		out[i] = b.Name(s)
	}
	return out
}

// Real reports whether the broker is a real Apache Kafka.
func (b *Broker) Real() bool { return b.Kind == Real }

// Each runs fn as a subtest named after each selected kind of broker, with
// a broker of that kind whose topics (names as given to Name) exist.
func Each(t *testing.T, partitions int, topics []string, fn func(t *testing.T, b *Broker)) {
	t.Helper()
	kinds, err := Kinds()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			fn(t, Start(t, k, partitions, topics...))
		})
	}
}

// Start returns a broker of kind k for the test: a new embedded broker, or
// the shared real one. The topics, passed through Name, are created.
func Start(t *testing.T, k Kind, partitions int, topics ...string) *Broker {
	t.Helper()
	if partitions <= 0 {
		partitions = 2
	}
	b := &Broker{Kind: k, Partitions: partitions}
	switch k {
	case Embedded:
		eb, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: partitions, Topics: topics})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eb.Close)
		b.Addrs = eb.Addrs()
		return b
	case Real:
		addrs := strings.TrimSpace(os.Getenv(EnvBrokers))
		if addrs == "" {
			t.Fatalf("%s=%s needs a running Apache Kafka: start one with `scripts/kafka.sh start` and set %s to the address it prints (make test does both)",
				EnvKinds, os.Getenv(EnvKinds), EnvBrokers)
		}
		b.Addrs = strings.Split(addrs, ",")
		b.suffix = uniqueSuffix()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := kafka.Ping(ctx, b.Config()); err != nil {
			t.Fatalf("real broker at %s: %v", addrs, err)
		}
		if len(topics) > 0 {
			if err := kafka.EnsureTopics(ctx, b.Config(), b.Names(topics...)...); err != nil {
				t.Fatal(err)
			}
		}
		return b
	default:
		t.Fatalf("unknown broker kind %q", k)
		return nil
	}
}

func uniqueSuffix() string {
	var id [5]byte
	_, _ = rand.Read(id[:])
	return "t" + hex.EncodeToString(id[:])
}
