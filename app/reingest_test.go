package app_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
)

// TestReingestReplacesThroughThePipeline ingests a video whole and then
// again in windows, through every stage, on both stores: once the windows
// are indexed the whole-video clip is gone and a search finds only them.
func TestReingestReplacesThroughThePipeline(t *testing.T) {
	f := requireTools(t)
	stores := []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"embedded", func(*testing.T) string { return "" }},
		{"qdrant", func(t *testing.T) string { return qdranttest.New(t, qdranttest.Options{}).URL() }},
	}
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			url := sc.store(t)
			a := startAppWith(t, ctx, f, func(c *config.Config) {
				if url != "" {
					c.Store.URL = url
				}
			})
			publish(t, ctx, a, "beach", job("beach", f.videos["red"]))
			waitClips(t, ctx, a.Store(), a.Config.Store.Collection, "beach", []string{"[0,3]"})

			windows, err := schemas.Encode(&schemas.VideoJob{VideoID: "beach", URI: f.videos["red"], Source: "test",
				Segment: &schemas.Segment{Mode: schemas.ModeWindow, WindowS: 1, StrideS: 1}})
			if err != nil {
				t.Fatal(err)
			}
			publish(t, ctx, a, "beach", windows)
			waitClips(t, ctx, a.Store(), a.Config.Store.Collection, "beach", []string{"[0,1]", "[1,2]", "[2,3]"})

			r := ask(t, ctx, a, "q-beach", "a red video")
			for _, h := range r.Hits {
				if h.VideoID == "beach" && h.EndS-h.StartS > 1.001 {
					t.Errorf("search still finds the replaced clip [%g, %g]", h.StartS, h.EndS)
				}
			}
		})
	}
}

// waitClips waits until video's clips in the store are exactly want
// ("[start,end]", seconds), and fails if the video ever has none once it
// had some.
func waitClips(t *testing.T, ctx context.Context, s sinks.Store, collection, video string, want []string) {
	t.Helper()
	probe := []float32{1}
	var got []string
	for {
		spec, err := s.Collection(ctx, collection)
		if err == nil {
			if len(probe) != spec.Dim {
				probe = make([]float32, spec.Dim)
				probe[0] = 1
			}
			hits, err := s.Search(ctx, collection, sinks.SearchRequest{Vector: probe, TopK: 100, Exact: true,
				Filter: sinks.Filter{VideoIDs: []string{video}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > 0 && len(hits) == 0 {
				t.Fatalf("%s had clips %v and then none", video, got)
			}
			got = got[:0]
			for _, h := range hits {
				got = append(got, fmt.Sprintf("[%g,%g]", h.Payload.StartS, h.Payload.EndS))
			}
			slices.Sort(got)
			if slices.Equal(got, want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s has clips %v, want %v", video, got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
