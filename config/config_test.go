package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleFileIsTheDefaults(t *testing.T) {
	cfg, err := Load("../deploy/vidx.example.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("deploy/vidx.example.yaml differs from Default():\nfile:    %+v\ndefault: %+v", cfg, Default())
	}
	// The defaults validate; the bundle is checked when a stage needs it.
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadLayers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vidx.yaml")
	yaml := "kafka:\n  brokers: [file:9092]\nstages:\n  query:\n    rerank: camoe\n    max_wait: 50ms\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIDX_BROKERS": "env1:9092, env2:9092", "VIDX_BUNDLE": "/models/b32"}
	cfg, err := Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Kafka.Brokers; !reflect.DeepEqual(got, []string{"env1:9092", "env2:9092"}) {
		t.Errorf("brokers = %v, want the environment's", got)
	}
	if cfg.Stages.Query.Rerank != "camoe" || cfg.Stages.Query.MaxWait != 50*time.Millisecond {
		t.Errorf("query = %+v, want the file's rerank and max_wait", cfg.Stages.Query)
	}
	if cfg.Stages.Query.Candidates != 100 || cfg.Model.Bundle != "/models/b32" {
		t.Errorf("defaults or env lost: candidates %d, bundle %q", cfg.Stages.Query.Candidates, cfg.Model.Bundle)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", "kafka:\n  brokerz: [x:1]\n", "brokerz"},
		{"bad type", "stages:\n  sample:\n    fps: fast\n", "line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vidx.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	if _, err := Load("/nonexistent/vidx.yaml", nil); err == nil {
		t.Error("missing file accepted")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"broker address", func(c *Config) { c.Kafka.Brokers = []string{"nohost"} }, "nohost"},
		{"no brokers", func(c *Config) { c.Kafka.Brokers = nil }, "broker"},
		{"embedded needs no brokers", func(c *Config) { c.Kafka.Brokers = nil; c.Embedded.Broker = true }, ""},
		{"fps", func(c *Config) { c.Stages.Sample.FPS = 0 }, "stages.sample.fps"},
		{"max frames", func(c *Config) { c.Stages.Sample.MaxFrames = 100 }, "stages.sample.max_frames"},
		{"codec", func(c *Config) { c.Stages.Sample.Codec = "webp" }, "stages.sample.codec"},
		{"quality", func(c *Config) { c.Stages.Sample.Quality = 0 }, "stages.sample.quality"},
		{"window mode without a width", func(c *Config) { c.Stages.Sample.Mode = "window" }, "stages.sample.decoding"},
		{"rerank", func(c *Config) { c.Stages.Query.Rerank = "max" }, "rerank"},
		{"duplicate topic", func(c *Config) { c.Topics.Clips = c.Topics.Videos }, "used twice"},
		{"store", func(c *Config) { c.Store.URL = "redis://x" }, "store url"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"pool mode", func(c *Config) { c.Stages.Pool.Mode = "maxP" }, "stages.pool.mode"},
		{"pool mode seqTransf", func(c *Config) { c.Stages.Pool.Mode = "seqTransf" }, ""},
		{"pool mode spelling", func(c *Config) { c.Stages.Pool.Mode = "seqtransf" }, "want meanP or seqTransf"},
		{"negative batch", func(c *Config) { c.Stages.Encode.MaxBatch = -1 }, "stages.encode: max_batch must not be negative"},
		{"scan workers", func(c *Config) { c.Store.ScanWorkers = -2 }, "store.scan_workers -2"},
		{"backoff order", func(c *Config) {
			c.Stages.Index.BackoffMin, c.Stages.Index.BackoffMax = time.Second, time.Millisecond
		}, "stages.index: backoff_max is below backoff_min"},
		{"unset kafka settings", func(c *Config) { c.Kafka.StartupTimeout, c.Kafka.Partitions = 0, 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			tt.mutate(&cfg)
			before := fmt.Sprintf("%#v", cfg)
			err := cfg.Validate()
			if after := fmt.Sprintf("%#v", cfg); after != before {
				t.Errorf("Validate changed the configuration:\n%s\n%s", before, after)
			}
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestEffective checks the filled-in configuration is still valid, fills
// each package's defaults, and is a fixed point.
func TestEffective(t *testing.T) {
	cfg := Default()
	cfg.Stages.Sample.Mode = "window"
	cfg.Stages.Sample.WindowS = 8
	before := fmt.Sprintf("%#v", cfg)
	eff := cfg.Effective()
	if after := fmt.Sprintf("%#v", cfg); after != before {
		t.Errorf("Effective changed its receiver")
	}
	if err := eff.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"stage groups", eff.Stages.Encode.Group == "vidx-encode" && eff.Stages.Query.Group == "vidx-query"},
		{"runtime defaults", eff.Stages.Index.MaxAttempts == 3 && eff.Stages.Pool.DrainTimeout == 30*time.Second},
		{"window stride", eff.Stages.Sample.StrideS == 8},
		{"query settings", eff.Stages.Query.Candidates == 100},
		{"kafka", eff.Kafka.Partitions == 4 && eff.Kafka.BatchTimeout == time.Millisecond},
		{"streams", eff.Stages.Sample.Streams.Group != ""},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s not filled: %+v", c.name, eff.Stages)
		}
	}
	if again := eff.Effective(); fmt.Sprintf("%#v", again) != fmt.Sprintf("%#v", eff) {
		t.Errorf("Effective is not a fixed point")
	}
}
