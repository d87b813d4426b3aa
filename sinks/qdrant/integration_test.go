//go:build qdrant

// Integration tests against a real Qdrant. Start one and point QDRANT_URL at
// its gRPC port:
//
//	docker run -p 6333:6333 -p 6334:6334 qdrant/qdrant
//	QDRANT_URL=qdrant://localhost:6334 go test -tags qdrant -run Integration -v ./sinks/qdrant/
//
// QDRANT_API_KEY and QDRANT_TLS=1 reach a secured server. The tests create
// collections named vidxconf_* and vidxit_* and delete them afterwards.
package qdrant_test

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"

	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/storetest"
)

func realQdrant(t *testing.T) (string, qdrant.Config) {
	t.Helper()
	url := os.Getenv("QDRANT_URL")
	if url == "" {
		t.Skip("QDRANT_URL is not set; start Qdrant with `docker run -p 6333:6333 -p 6334:6334 qdrant/qdrant` and set QDRANT_URL=qdrant://localhost:6334")
	}
	return url, qdrant.Config{APIKey: os.Getenv("QDRANT_API_KEY"), TLS: os.Getenv("QDRANT_TLS") == "1", RetryFor: 10 * time.Second,
		MetadataIndexes: storetest.MetadataKeys}
}

// dropCreated deletes, when the test ends, the collections with prefix that
// did not exist when it started.
func dropCreated(t *testing.T, url string, cfg qdrant.Config, prefix string) {
	t.Helper()
	ep, err := qdrant.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := qc.NewClient(&qc.Config{Host: ep.Host, Port: ep.Port, APIKey: cfg.APIKey, UseTLS: cfg.TLS, PoolSize: 1, SkipCompatibilityCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, err := raw.ListCollections(ctx)
	if err != nil {
		t.Fatalf("list collections: %v", err)
	}
	t.Cleanup(func() {
		defer raw.Close()
		after, err := raw.ListCollections(ctx)
		if err != nil {
			t.Errorf("list collections: %v", err)
			return
		}
		for _, name := range after {
			if strings.HasPrefix(name, prefix) && !slices.Contains(before, name) {
				if err := raw.DeleteCollection(ctx, name); err != nil {
					t.Errorf("drop %s: %v", name, err)
				}
			}
		}
	})
}

func TestIntegrationConformance(t *testing.T) {
	url, cfg := realQdrant(t)
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dropCreated(t, url, cfg, storetest.CollectionPrefix)
		return func(t testing.TB) sinks.Store {
			s, err := qdrant.Open(context.Background(), url, cfg, quiet)
			if err != nil {
				t.Fatalf("open %s: %v", url, err)
			}
			return s
		}
	})
}

func TestIntegrationBootstrap(t *testing.T) {
	url, cfg := realQdrant(t)
	dropCreated(t, url, cfg, "vidxit_")
	ctx := testCtx(t)
	cfg.HNSWM, cfg.HNSWEfConstruct, cfg.OnDisk, cfg.Quantization = 24, 128, true, qdrant.QuantizationInt8
	s, err := qdrant.Open(ctx, url, cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	name := fmt.Sprintf("vidxit_%08x", mrand.Uint32())
	sp := storetest.Spec(name)
	if err := s.EnsureCollection(ctx, sp); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes := map[string]string{"video_id": "keyword", "source": "keyword", "start_s": "float", "ingested_at": "datetime", "generation": "integer", "wall_start": "datetime"}
	if fmt.Sprint(info.PayloadIndexes) != fmt.Sprint(wantIndexes) {
		t.Errorf("payload indexes %v, want %v", info.PayloadIndexes, wantIndexes)
	}
	if info.Spec != sp || info.HNSWM != 24 || info.HNSWEfConstruct != 128 || !info.OnDisk || info.Quantization != "int8" {
		t.Errorf("info %+v does not reflect the configuration", info)
	}
	pts := storetest.Points(mrand.New(mrand.NewPCG(1, 2)), 300, sp.Dim, 6)
	if err := s.Upsert(ctx, name, pts); err != nil {
		t.Fatal(err)
	}
	reqs := []sinks.SearchRequest{
		{Vector: pts[0].Vector, TopK: 100, WithVectors: true},
		{Vector: pts[1].Vector, TopK: 5, Filter: sinks.Filter{VideoIDs: []string{"video-01"}}},
	}
	batch, err := s.SearchBatch(ctx, name, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		one, err := s.Search(ctx, name, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(one) != len(batch[i]) || len(one) == 0 || one[0].ID != batch[i][0].ID {
			t.Errorf("request %d: batch and single search disagree", i)
		}
	}

	// A model change is refused and leaves the collection alone.
	other := sp
	other.Model = "another-model"
	if err := s.EnsureCollection(ctx, other); !errors.Is(err, sinks.ErrIncompatible) {
		t.Errorf("another model: %v, want ErrIncompatible", err)
	}
	if n, err := s.Count(ctx, name, sinks.Filter{}); err != nil || n != len(pts) {
		t.Errorf("after the refusal Count = %d, %v; want %d", n, err, len(pts))
	}
}
