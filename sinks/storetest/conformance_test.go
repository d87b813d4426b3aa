package storetest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/embedded"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
	"github.com/vidx/vidx/sinks/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

// embeddedSetup gives each test a fresh data directory; reopening it is a
// process restart.
func embeddedSetup(t *testing.T) storetest.Opener {
	dir := t.TempDir()
	return func(t testing.TB) sinks.Store {
		s, err := embedded.Open(dir, embedded.Options{NoSync: true, Logger: quiet})
		if err != nil {
			t.Fatalf("open embedded store: %v", err)
		}
		return s
	}
}

// qdrantSetup gives each test a fresh test server; every open after the
// first restarts the server on the same data before connecting again.
func qdrantSetup(t *testing.T) storetest.Opener { return qdrantSetupWith(t, qdranttest.Options{}) }

// qdrantIndexedSetup is qdrantSetup with every collection past the indexing
// threshold, where the server searches approximately unless asked for
// exact results and estimates filtered counts.
func qdrantIndexedSetup(t *testing.T) storetest.Opener {
	return qdrantSetupWith(t, qdranttest.Options{IndexingThresholdKB: -1})
}

func qdrantSetupWith(t *testing.T, opts qdranttest.Options) storetest.Opener {
	srv := qdranttest.New(t, opts)
	opened := false
	return func(t testing.TB) sinks.Store {
		if opened {
			if err := srv.Restart(); err != nil {
				t.Fatalf("restart test server: %v", err)
			}
		}
		opened = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := qdrant.Open(ctx, srv.URL(), qdrant.Config{PoolSize: 2, RetryFor: 5 * time.Second, MetadataIndexes: storetest.MetadataKeys}, quiet)
		if err != nil {
			t.Fatalf("open qdrant store: %v", err)
		}
		return s
	}
}

func TestEmbeddedConformance(t *testing.T) { storetest.Run(t, embeddedSetup) }

func TestQdrantConformance(t *testing.T) { storetest.Run(t, qdrantSetup) }

func TestQdrantIndexedConformance(t *testing.T) { storetest.Run(t, qdrantIndexedSetup) }
