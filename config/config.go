// Package config loads vidx's configuration: defaults, then a YAML file,
// then VIDX_* environment variables, then command-line flags, validated once.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/stages/pool"
	"github.com/vidx/vidx/stages/query"
	"github.com/vidx/vidx/stages/sample"
	"github.com/vidx/vidx/stages/sample/streams"
)

// Config is the whole configuration of a vidx process.
type Config struct {
	// DataDir holds the embedded store, the embedded broker's log and
	// generated test models.
	DataDir  string `yaml:"data_dir"`
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json; both carry trace and span ids on lines
	// logged while handling a traced message.
	LogFormat string `yaml:"log_format"`

	Kafka     kafka.Config `yaml:"kafka"`
	Embedded  Embedded     `yaml:"embedded"`
	Topics    Topics       `yaml:"topics"`
	Model     Model        `yaml:"model"`
	Store     Store        `yaml:"store"`
	Stages    Stages       `yaml:"stages"`
	Telemetry Telemetry    `yaml:"telemetry"`
	// HTTP is the search API and page, served by the query stage.
	HTTP httpapi.Config `yaml:"http"`
}

// Telemetry configures the metrics and health endpoints. Traces are exported
// when the standard OTEL_EXPORTER_OTLP_* variables are set.
type Telemetry struct {
	// Addr serves /metrics, /healthz and /readyz; empty disables them. Keep
	// it off any public interface.
	Addr string `yaml:"addr"`
	// StuckAfter fails liveness when one batch has been in hand this long.
	StuckAfter time.Duration `yaml:"stuck_after"`
}

// Embedded configures the in-process broker used by `vidx up --embedded`.
type Embedded struct {
	// Broker runs an in-process Kafka broker instead of connecting to
	// kafka.brokers.
	Broker bool `yaml:"broker"`
	// BrokerPort is the loopback port of the embedded broker (0: any free
	// port). Other vidx commands reach it at 127.0.0.1:BrokerPort.
	BrokerPort int `yaml:"broker_port"`
	// Persist keeps the embedded broker's topics under data_dir.
	Persist bool `yaml:"persist"`
}

// Topics names every topic.
type Topics struct {
	Videos          string `yaml:"videos"`
	Clips           string `yaml:"clips"`
	FrameEmbeddings string `yaml:"frame_embeddings"`
	ClipEmbeddings  string `yaml:"clip_embeddings"`
	Queries         string `yaml:"queries"`
	Results         string `yaml:"results"`
	DeadLetters     string `yaml:"dead_letters"`
	// Streams (the stream registry) and StreamState (each stream's resume
	// point and status) are compacted and keyed by stream id.
	Streams     string `yaml:"streams"`
	StreamState string `yaml:"stream_state"`
	// Thumbnails is compacted and keyed by video id and clip index: each
	// clip's thumbnail JPEG, for the HTTP API.
	Thumbnails string `yaml:"thumbnails"`
}

// All returns every topic name.
func (t Topics) All() []string {
	return []string{t.Videos, t.Clips, t.FrameEmbeddings, t.ClipEmbeddings, t.Queries, t.Results, t.DeadLetters}
}

// Compacted returns the compacted topics, which All leaves out: they are
// created with cleanup.policy=compact by the sample and query stages.
func (t Topics) Compacted() []string { return []string{t.Streams, t.StreamState, t.Thumbnails} }

// Model selects the model bundle and how ONNX Runtime runs it.
type Model struct {
	// Bundle is a model bundle directory (vidx-model.yaml).
	Bundle string `yaml:"bundle"`
	// ORTLib is the ONNX Runtime shared library.
	ORTLib         string `yaml:"ort_lib"`
	IntraOpThreads int    `yaml:"intra_op_threads"`
	InterOpThreads int    `yaml:"inter_op_threads"`
	// MaxBatch is the most images per image-encoder run.
	MaxBatch int `yaml:"max_batch"`
	// AllowSpinning lets ONNX Runtime's pool threads busy-wait for work
	// (its own default). Off by default: in vidx up the sampler's ffmpeg and
	// the other stages share the cores, and spinning threads take the CPU
	// they need (BENCHMARKS.md measures it). An encode replica with cores of
	// its own gains a few per cent with it on; a query replica's text tower
	// answers sooner at the median, but its spinning threads slow the scan
	// that follows, and the slowest queries were no faster.
	AllowSpinning bool `yaml:"allow_spinning"`
}

// Store selects the vector store.
type Store struct {
	// URL is "embedded" (a store under data_dir/store),
	// "embedded:///path/to/dir" or "qdrant://HOST:6334" (Qdrant's gRPC port).
	URL        string `yaml:"url"`
	Collection string `yaml:"collection"`
	// ScanWorkers is how many goroutines one search of the embedded store
	// splits its exact scan across (0: one per CPU). A scan is bound by
	// memory bandwidth, so more than the cores it has gains nothing.
	ScanWorkers int `yaml:"scan_workers"`
	// Qdrant configures the client and the collections vidx creates when
	// URL is a qdrant:// URL.
	Qdrant qdrant.Config `yaml:"qdrant"`
}

// Store backends.
const (
	StoreEmbedded = "embedded"
	StoreQdrant   = "qdrant"
)

// Backend names the store the URL selects.
func (s Store) Backend() (string, error) {
	switch {
	case s.URL == "embedded" || strings.HasPrefix(s.URL, "embedded://"):
		return StoreEmbedded, nil
	case qdrant.IsURL(s.URL):
		return StoreQdrant, nil
	}
	return "", fmt.Errorf("config: store url %q is not supported (want embedded, embedded:///dir or qdrant://HOST:6334)", s.URL)
}

// Sample configures the sample stage.
type Sample struct {
	kafka.Runtime   `yaml:",inline"`
	sample.Settings `yaml:",inline"`
	// Sources is the allow-list every video job and stream is checked
	// against: schemes, hosts, networks, file roots and size limits.
	Sources sourceguard.SourcePolicy `yaml:"sources"`
	// Streams configures continuous indexing of registered streams.
	Streams streams.Config `yaml:"streams"`
}

// Pool configures the pool stage.
type Pool struct {
	kafka.Runtime `yaml:",inline"`
	pool.Settings `yaml:",inline"`
}

// Query configures the query stage.
type Query struct {
	kafka.Runtime  `yaml:",inline"`
	query.Settings `yaml:",inline"`
}

// Stages configures each stage.
type Stages struct {
	Sample Sample        `yaml:"sample"`
	Encode kafka.Runtime `yaml:"encode"`
	Pool   Pool          `yaml:"pool"`
	Index  kafka.Runtime `yaml:"index"`
	Query  Query         `yaml:"query"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		DataDir:   ".vidx",
		LogLevel:  "info",
		LogFormat: "text",
		Kafka:     kafka.Config{Brokers: []string{"127.0.0.1:9092"}}.WithDefaults(),
		Embedded:  Embedded{BrokerPort: 9092},
		Topics: Topics{
			Videos: "videos", Clips: "clips", FrameEmbeddings: "frame-embeddings",
			ClipEmbeddings: "clip-embeddings", Queries: "queries", Results: "results",
			DeadLetters: "dead-letters", Streams: "streams", StreamState: "stream-state", Thumbnails: "thumbnails",
		},
		Model:     Model{IntraOpThreads: 2, InterOpThreads: 1, MaxBatch: 8},
		Store:     Store{URL: "embedded", Collection: "clips", Qdrant: qdrant.Default()},
		Telemetry: Telemetry{Addr: ":9464", StuckAfter: 15 * time.Minute},
		HTTP:      httpapi.Config{}.WithDefaults(),
		Stages: Stages{
			// Two sample consumers: one video's decode keeps about 1.5 cores
			// busy (ffprobe and ffmpeg start-up, then frame threads), so a
			// second video fills the gaps; whole-pipeline frames/s rose 5%
			// (fp32) and 10% (int8) on 2 cores (BENCHMARKS.md).
			Sample: Sample{Runtime: kafka.Runtime{MaxBatch: 1, Replicas: 2}, Settings: sample.Settings{}.WithDefaults()},
			Encode: kafka.Runtime{MaxBatch: 4, MaxWait: 20 * time.Millisecond},
			Pool:   Pool{Runtime: kafka.Runtime{MaxBatch: 16, MaxWait: 10 * time.Millisecond}, Settings: pool.Settings{}.WithDefaults()},
			Index:  kafka.Runtime{MaxBatch: 64, MaxWait: 20 * time.Millisecond},
			Query: Query{Runtime: kafka.Runtime{MaxBatch: 32, MaxWait: 10 * time.Millisecond, Eager: true},
				Settings: query.Settings{}.WithDefaults()},
		},
	}
}

// Load builds the configuration from defaults, the YAML file at path (when
// not empty) and the environment. Flags are applied by the caller with
// Override before Validate.
func Load(path string, env func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if env == nil {
		env = os.Getenv
	}
	if err := cfg.applyEnv(env); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Env lists the environment variables Load reads.
var Env = []string{"VIDX_BROKERS", "VIDX_BUNDLE", "VIDX_ORT_LIB", "VIDX_DATA_DIR", "VIDX_STORE", "VIDX_QDRANT_API_KEY", "VIDX_KAFKA_SASL_PASSWORD", "VIDX_LOG_LEVEL", "VIDX_EMBEDDED_BROKER_PORT", "VIDX_HTTP_AUTH_TOKEN"}

func (c *Config) applyEnv(env func(string) string) error {
	if v := env("VIDX_BROKERS"); v != "" {
		c.Kafka.Brokers = splitList(v)
	}
	if v := env("VIDX_BUNDLE"); v != "" {
		c.Model.Bundle = v
	}
	if v := env("VIDX_ORT_LIB"); v != "" {
		c.Model.ORTLib = v
	}
	if v := env("VIDX_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if v := env("VIDX_STORE"); v != "" {
		c.Store.URL = v
	}
	if v := env("VIDX_KAFKA_SASL_PASSWORD"); v != "" {
		c.Kafka.SASL.Password = v
	}
	if v := env("VIDX_QDRANT_API_KEY"); v != "" {
		c.Store.Qdrant.APIKey = v
	}
	if v := env("VIDX_HTTP_AUTH_TOKEN"); v != "" {
		c.HTTP.AuthToken = v
	}
	if v := env("VIDX_LOG_LEVEL"); v != "" {
		c.LogLevel = v
	}
	if v := env("VIDX_EMBEDDED_BROKER_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("config: VIDX_EMBEDDED_BROKER_PORT=%q is not a port", v)
		}
		c.Embedded.BrokerPort = p
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// StorePath returns the embedded store's directory.
func (c *Config) StorePath() (string, error) {
	switch {
	case c.Store.URL == "embedded":
		return filepath.Join(c.DataDir, "store"), nil
	case strings.HasPrefix(c.Store.URL, "embedded://"):
		return strings.TrimPrefix(c.Store.URL, "embedded://"), nil
	}
	return "", fmt.Errorf("config: store url %q is not an embedded store (want embedded or embedded:///dir)", c.Store.URL)
}

// Effective returns c with every unset setting at the default its own
// package gives it: what the stages will run with. c is unchanged.
func (c Config) Effective() Config {
	c.Kafka = c.Kafka.WithDefaults()
	st := &c.Stages
	st.Sample.Runtime = st.Sample.Runtime.WithDefaults("sample")
	st.Sample.Settings = st.Sample.Settings.WithDefaults()
	st.Sample.Sources = st.Sample.Sources.WithDefaults()
	st.Sample.Streams = st.Sample.Streams.WithDefaults()
	st.Encode = st.Encode.WithDefaults("encode")
	st.Pool.Runtime = st.Pool.Runtime.WithDefaults("pool")
	st.Pool.Settings = st.Pool.Settings.WithDefaults()
	st.Index = st.Index.WithDefaults("index")
	st.Query.Runtime = st.Query.Runtime.WithDefaults("query")
	st.Query.Settings = st.Query.Settings.WithDefaults()
	c.Store.Qdrant = c.Store.Qdrant.WithDefaults()
	c.HTTP = c.HTTP.WithDefaults()
	return c
}

// Validate checks the whole configuration once, naming the offending field.
// It changes nothing: each package fills its own defaults where it is
// built.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		add("data_dir is required")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("log_format %q is not text or json", c.LogFormat)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		add("log_level %q is not debug, info, warn or error", c.LogLevel)
	}
	if !c.Embedded.Broker {
		if err := c.Kafka.WithDefaults().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Embedded.BrokerPort < 0 || c.Embedded.BrokerPort > 65535 {
		add("embedded.broker_port %d out of range", c.Embedded.BrokerPort)
	}
	seen := map[string]bool{}
	for _, t := range append(c.Topics.All(), c.Topics.Compacted()...) {
		if t == "" {
			add("topics: every topic needs a name")
		} else if seen[t] {
			add("topics: %q is used twice", t)
		}
		seen[t] = true
	}
	if c.Model.IntraOpThreads < 0 || c.Model.InterOpThreads < 0 || c.Model.MaxBatch < 0 {
		add("model: threads and max_batch must not be negative")
	}
	switch backend, err := c.Store.Backend(); {
	case err != nil:
		errs = append(errs, err)
	case backend == StoreQdrant:
		if _, err := qdrant.ParseURL(c.Store.URL); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
		if err := c.Store.Qdrant.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Store.Collection == "" {
		add("store.collection is required")
	}
	if c.Store.ScanWorkers < 0 {
		add("store.scan_workers %d must not be negative", c.Store.ScanWorkers)
	}
	if c.Telemetry.StuckAfter <= 0 {
		add("telemetry.stuck_after must be positive")
	}
	for _, st := range []struct {
		name string
		s    kafka.Runtime
	}{{"sample", c.Stages.Sample.Runtime}, {"encode", c.Stages.Encode}, {"pool", c.Stages.Pool.Runtime},
		{"index", c.Stages.Index}, {"query", c.Stages.Query.Runtime}} {
		if err := st.s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("stages.%s: %w", st.name, err))
		}
	}
	s := c.Stages.Sample
	if err := s.Settings.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("stages.sample.%w", err))
	}
	if _, err := sourceguard.NewGuard(s.Sources); err != nil {
		errs = append(errs, fmt.Errorf("stages.sample.sources: %w", err))
	}
	if err := s.Streams.WithDefaults().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("stages.sample.streams: %w", err))
	}
	if err := c.Stages.Pool.Settings.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("stages.pool.%w", err))
	}
	if err := c.Stages.Query.Settings.WithDefaults().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("stages.%w", err))
	}
	if err := c.HTTP.WithDefaults().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
