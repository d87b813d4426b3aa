package qdrant

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultPort is Qdrant's gRPC port.
const DefaultPort = 6334

// Quantization settings.
const (
	QuantizationNone = "none"
	QuantizationInt8 = "int8"
)

// Config holds the client and collection settings. The server address comes
// from the store URL (qdrant://HOST:6334), everything else from here.
type Config struct {
	// APIKey is sent in the api-key header of every call. Prefer the
	// VIDX_QDRANT_API_KEY environment variable to writing it into a file.
	APIKey string `yaml:"api_key"`
	// TLS encrypts the connection. CAFile is a PEM bundle of certificate
	// authorities to trust instead of the system pool (a private CA).
	TLS    bool   `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// PoolSize is the number of gRPC connections; calls are spread over
	// them round-robin.
	PoolSize int `yaml:"pool_size"`
	// Timeout bounds each call to Qdrant.
	Timeout time.Duration `yaml:"timeout"`
	// RetryFor bounds how long one store call keeps retrying while Qdrant is
	// unavailable or rate-limiting before it returns an error wrapping
	// ErrUnavailable (the index stage then keeps its offsets and retries).
	RetryFor time.Duration `yaml:"retry_for"`

	// Settings of a collection vidx creates. An existing collection keeps
	// the settings it was created with.
	HNSWM           int    `yaml:"hnsw_m"`
	HNSWEfConstruct int    `yaml:"hnsw_ef_construct"`
	OnDisk          bool   `yaml:"on_disk"`
	Quantization    string `yaml:"quantization"` // none | int8
	// Shards is the collection's shard number; 0 leaves it to the cluster
	// (Qdrant then creates one shard per node).
	Shards int `yaml:"shards"`
	// ReplicationFactor is the number of copies of each shard; more than one
	// needs a Qdrant cluster. 0 leaves it to the cluster's default.
	ReplicationFactor int `yaml:"replication_factor"`

	// UpsertBatch is the most points sent in one upsert call.
	UpsertBatch int `yaml:"upsert_batch"`

	// MetadataIndexes are the video metadata keys queries may filter on:
	// each gets a keyword payload index (metadata.KEY) when the collection
	// is ensured, and a filter on any other key is refused.
	MetadataIndexes []string `yaml:"metadata_indexes"`
}

// Default returns the recommended settings.
func Default() Config {
	return Config{
		PoolSize:        3,
		Timeout:         10 * time.Second,
		RetryFor:        30 * time.Second,
		HNSWM:           16,
		HNSWEfConstruct: 100,
		Quantization:    QuantizationNone,
		UpsertBatch:     128,
	}
}

// WithDefaults fills unset fields from Default.
func (c Config) WithDefaults() Config {
	d := Default()
	if c.PoolSize == 0 {
		c.PoolSize = d.PoolSize
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.RetryFor == 0 {
		c.RetryFor = d.RetryFor
	}
	if c.HNSWM == 0 {
		c.HNSWM = d.HNSWM
	}
	if c.HNSWEfConstruct == 0 {
		c.HNSWEfConstruct = d.HNSWEfConstruct
	}
	if c.Quantization == "" {
		c.Quantization = d.Quantization
	}
	if c.UpsertBatch == 0 {
		c.UpsertBatch = d.UpsertBatch
	}
	return c
}

// MaxUpsertBatch bounds UpsertBatch: larger requests gain nothing and risk
// Qdrant's request size limit.
const MaxUpsertBatch = 1024

// Validate checks the settings, naming the offending field.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("store.qdrant."+format, args...)) }
	if c.PoolSize < 1 || c.PoolSize > 64 {
		add("pool_size %d out of range [1, 64]", c.PoolSize)
	}
	if c.Timeout <= 0 {
		add("timeout must be positive, got %s", c.Timeout)
	}
	if c.RetryFor < 0 {
		add("retry_for must not be negative, got %s", c.RetryFor)
	}
	if c.HNSWM < 0 || c.HNSWM > 1024 {
		add("hnsw_m %d out of range [0, 1024] (0 disables the HNSW graph)", c.HNSWM)
	}
	if c.HNSWEfConstruct < 4 || c.HNSWEfConstruct > 4096 {
		add("hnsw_ef_construct %d out of range [4, 4096]", c.HNSWEfConstruct)
	}
	if c.Quantization != QuantizationNone && c.Quantization != QuantizationInt8 {
		add("quantization %q is not none or int8", c.Quantization)
	}
	if c.Shards < 0 || c.Shards > 1024 {
		add("shards %d out of range [0, 1024] (0: the cluster's default)", c.Shards)
	}
	if c.ReplicationFactor < 0 || c.ReplicationFactor > 64 {
		add("replication_factor %d out of range [0, 64] (0: the cluster's default)", c.ReplicationFactor)
	}
	if c.UpsertBatch < 1 || c.UpsertBatch > MaxUpsertBatch {
		add("upsert_batch %d out of range [1, %d] (64 to 256 is recommended)", c.UpsertBatch, MaxUpsertBatch)
	}
	if c.CAFile != "" && !c.TLS {
		add("ca_file is set but tls is false")
	}
	seen := map[string]bool{}
	for i, k := range c.MetadataIndexes {
		switch {
		case k == "" || len(k) > 256 || strings.ContainsAny(k, `.[]" `) || !utf8.ValidString(k):
			// Qdrant's nested-key syntax gives dots, brackets and quotes a meaning.
			add("metadata_indexes[%d] %q must be 1 to 256 bytes without dots, brackets, quotes or spaces", i, k)
		case seen[k]:
			add("metadata_indexes[%d] %q is listed twice", i, k)
		}
		seen[k] = true
	}
	return errors.Join(errs...)
}

// String describes the settings without the API key, so that printing a
// configuration cannot leak it.
func (c Config) String() string {
	key := "unset"
	if c.APIKey != "" {
		key = "set"
	}
	return fmt.Sprintf("{api_key:%s tls:%t ca_file:%q pool_size:%d timeout:%s retry_for:%s hnsw_m:%d hnsw_ef_construct:%d on_disk:%t quantization:%s shards:%d replication_factor:%d upsert_batch:%d metadata_indexes:%v}",
		key, c.TLS, c.CAFile, c.PoolSize, c.Timeout, c.RetryFor, c.HNSWM, c.HNSWEfConstruct, c.OnDisk,
		c.Quantization, c.Shards, c.ReplicationFactor, c.UpsertBatch, c.MetadataIndexes)
}

// Endpoint is the host and gRPC port of a Qdrant server.
type Endpoint struct {
	Host string
	Port int
}

func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// URL returns the store URL that names e.
func (e Endpoint) URL() string { return Scheme + "://" + e.String() }

// Scheme is the URL scheme of a Qdrant store.
const Scheme = "qdrant"

// IsURL reports whether raw names a Qdrant store.
func IsURL(raw string) bool { return strings.HasPrefix(raw, Scheme+"://") }

// ParseURL parses qdrant://HOST[:PORT] (PORT defaults to 6334, the gRPC
// port). Credentials do not belong in the URL: it is printed in logs and
// status output.
func ParseURL(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("store url %q: %w", raw, err)
	}
	if u.Scheme != Scheme {
		return Endpoint{}, fmt.Errorf("store url %q: scheme is not %s://", raw, Scheme)
	}
	if u.User != nil {
		return Endpoint{}, fmt.Errorf("store url %q: credentials do not go in the URL; set store.qdrant.api_key or VIDX_QDRANT_API_KEY", u.Redacted())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Endpoint{}, fmt.Errorf("store url %q: want qdrant://HOST:PORT with nothing after the port", raw)
	}
	host := u.Hostname()
	if host == "" {
		return Endpoint{}, fmt.Errorf("store url %q: host is missing", raw)
	}
	port := DefaultPort
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return Endpoint{}, fmt.Errorf("store url %q: port %q out of range", raw, p)
		}
	}
	return Endpoint{Host: host, Port: port}, nil
}
