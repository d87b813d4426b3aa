package httpapi

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the HTTP API and the search page.
type Config struct {
	// Addr is where the API listens; empty serves nothing. `vidx up`
	// defaults it to 127.0.0.1:8080.
	Addr string `yaml:"addr"`
	// AuthToken, when set, is the bearer token every /v1 request but the
	// OpenAPI document needs (env VIDX_HTTP_AUTH_TOKEN; keep it out of
	// files).
	AuthToken string `yaml:"auth_token"`
	// MaxBodyBytes bounds a request body (default 64 KiB); a larger one is
	// answered 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout and ReadTimeout bound how long a client may take to
	// send its headers and its whole request: a slow body is cut off.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response (media responses, which stream
	// a whole video, are exempt).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// SearchTimeout bounds one search (text encoding, candidate search and
	// re-ranking); past it the request gets 504. Publishing a job, a status
	// and a thumbnail lookup are bounded by it too.
	SearchTimeout time.Duration `yaml:"search_timeout"`
	// ThumbnailCacheBytes bounds the thumbnails held in memory; older ones
	// are read back from the thumbnails topic when asked for.
	ThumbnailCacheBytes int64 `yaml:"thumbnail_cache_bytes"`
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 15 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.SearchTimeout == 0 {
		c.SearchTimeout = 30 * time.Second
	}
	if c.ThumbnailCacheBytes == 0 {
		c.ThumbnailCacheBytes = 64 << 20
	}
	return c
}

// Validate checks a configuration with defaults applied.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("http.max_body_bytes %d out of range [1024, 16777216]", c.MaxBodyBytes))
	}
	if c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.SearchTimeout < 0 {
		errs = append(errs, errors.New("http: timeouts must not be negative"))
	}
	if c.ThumbnailCacheBytes < 0 {
		errs = append(errs, errors.New("http.thumbnail_cache_bytes must not be negative"))
	}
	return errors.Join(errs...)
}
