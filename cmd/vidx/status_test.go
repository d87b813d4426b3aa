package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/embedded"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
	"github.com/vidx/vidx/sinks/storetest"
)

func fill(t *testing.T, s sinks.Store, name string, n int) sinks.CollectionSpec {
	t.Helper()
	spec := storetest.Spec(name)
	if err := s.EnsureCollection(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	pts := storetest.Points(rand.New(rand.NewPCG(1, 2)), n, spec.Dim, 3)
	if err := s.Upsert(context.Background(), name, pts); err != nil {
		t.Fatal(err)
	}
	return spec
}

func status(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The store tests leave the brokers out; TestStatusPipeline covers them.
	err := run(ctx, append([]string{"status", "--store-only"}, args...), &out, &errOut)
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

// field returns the value printed for key, spaces collapsed.
func field(out, key string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

func TestStatusQdrant(t *testing.T) {
	srv := qdranttest.New(t, qdranttest.Options{})
	s, err := qdrant.Open(context.Background(), srv.URL(), qdrant.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := fill(t, s, "clips", 42)

	out, err := status(t, "--store", srv.URL(), "--collection", "clips")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"store":           srv.URL() + " (qdrant " + qdranttest.DefaultVersion + ")",
		"collection":      "clips",
		"model":           spec.Model,
		"pooling":         spec.Pooling,
		"dimension":       fmt.Sprint(spec.Dim),
		"distance":        "cosine",
		"points":          "42",
		"status":          "green",
		"shards":          "1 (replication factor 1)",
		"hnsw":            "m=16 ef_construct=100",
		"quantization":    "none",
		"payload indexes": "generation (integer), ingested_at (datetime), source (keyword), start_s (float), video_id (keyword), wall_start (datetime)",
	}
	for k, v := range want {
		if got := field(out, k); got != v {
			t.Errorf("%s: %q, want %q\n%s", k, got, v, out)
		}
	}

	out, err = status(t, "--store", srv.URL(), "--collection", "clips", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out)
	}
	if !rep.Exists || rep.Points == nil || *rep.Points != 42 || rep.Spec == nil || *rep.Spec != spec || rep.Qdrant == nil || rep.Qdrant.Metadata["vidx_model"] != spec.Model {
		t.Errorf("JSON report %+v", rep)
	}

	out, err = status(t, "--store", srv.URL(), "--collection", "nothing_yet")
	if err != nil || field(out, "points") != "0" || !strings.Contains(field(out, "note"), "does not exist yet") {
		t.Errorf("missing collection: %v\n%s", err, out)
	}
}

func TestStatusEmbedded(t *testing.T) {
	data := t.TempDir()
	out, err := status(t, "--data-dir", data)
	if err != nil || !strings.Contains(field(out, "note"), "no store") {
		t.Errorf("no store yet: %v\n%s", err, out)
	}

	s, err := embedded.Open(filepath.Join(data, "store"), embedded.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	spec := fill(t, s, "clips", 17)

	// While a running vidx holds the store, the spec is still readable.
	out, err = status(t, "--data-dir", data)
	if err != nil {
		t.Fatal(err)
	}
	if field(out, "model") != spec.Model || field(out, "points") != "unavailable" || !strings.Contains(field(out, "note"), "running vidx") {
		t.Errorf("locked store:\n%s", out)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, err = status(t, "--data-dir", data)
	if err != nil {
		t.Fatal(err)
	}
	if field(out, "points") != "17" || field(out, "dimension") != fmt.Sprint(spec.Dim) || field(out, "note") != "" {
		t.Errorf("closed store:\n%s", out)
	}
}

func TestStatusRejectsUnknownStores(t *testing.T) {
	if _, err := status(t, "--store", "redis://localhost"); err == nil || !strings.Contains(err.Error(), "store url") {
		t.Errorf("redis store: %v", err)
	}
}
