package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/sinks/qdrant"
)

func TestQdrantStoreSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vidx.yaml")
	yaml := `store:
  url: qdrant://qdrant.internal:6334
  collection: clips_b32
  qdrant:
    tls: true
    pool_size: 6
    timeout: 3s
    hnsw_m: 32
    quantization: int8
    shards: 4
    replication_factor: 2
    upsert_batch: 256
`
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIDX_QDRANT_API_KEY": "from-env"}
	cfg, err := Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := qdrant.Default()
	want.APIKey, want.TLS, want.PoolSize, want.Timeout = "from-env", true, 6, 3*time.Second
	want.HNSWM, want.Quantization, want.Shards, want.ReplicationFactor, want.UpsertBatch = 32, "int8", 4, 2, 256
	if !reflect.DeepEqual(cfg.Store.Qdrant, want) {
		t.Errorf("store.qdrant = %+v, want %+v", cfg.Store.Qdrant, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if b, err := cfg.Store.Backend(); err != nil || b != StoreQdrant {
		t.Errorf("Backend() = %q, %v; want qdrant", b, err)
	}
	if _, err := cfg.StorePath(); err == nil {
		t.Error("StorePath() of a Qdrant store returned a directory")
	}
}

func TestQdrantStoreValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"qdrant url", func(c *Config) { c.Store.URL = "qdrant://localhost:6334" }, ""},
		{"embedded dir", func(c *Config) { c.Store.URL = "embedded:///var/lib/vidx" }, ""},
		{"qdrant without host", func(c *Config) { c.Store.URL = "qdrant://:6334" }, "host is missing"},
		{"qdrant with credentials", func(c *Config) { c.Store.URL = "qdrant://k:secret@localhost:6334" }, "VIDX_QDRANT_API_KEY"},
		{"qdrant setting", func(c *Config) { c.Store.URL = "qdrant://localhost"; c.Store.Qdrant.Quantization = "pq" }, "store.qdrant.quantization"},
		// Qdrant settings do not matter to the embedded store.
		{"embedded ignores qdrant settings", func(c *Config) { c.Store.Qdrant.PoolSize = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Validate() leaks the password in the URL: %v", err)
			}
		})
	}
}
