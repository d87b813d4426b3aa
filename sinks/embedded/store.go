package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vidx/vidx/sinks"
)

// DefaultCompactMinDead is the dead-record threshold used when
// Options.CompactMinDead is zero.
const DefaultCompactMinDead = 4096

const (
	lockName = "LOCK"
	// tmpPrefix cannot clash with a collection name, which must start with a
	// letter or digit.
	tmpPrefix = ".tmp-"
)

var (
	// ErrClosed is returned by every call on a closed Store.
	ErrClosed = errors.New("embedded store is closed")
	// ErrInvalid is returned for input that can never succeed: a bad
	// collection spec, a vector of the wrong dimension, non-finite or without
	// direction (sinks.CheckVector).
	// Retrying the same request is pointless.
	ErrInvalid = sinks.ErrInvalid
)

// Options tunes a Store. The zero value is the safe default.
type Options struct {
	// NoSync skips the fsync after each write batch. A crash may then lose
	// writes that were already acknowledged; only for tests and indexes that
	// can be rebuilt.
	NoSync bool
	// CompactMinDead is how many dead records (replaced or deleted points) a
	// collection's log may accumulate before it is compacted; compaction also
	// waits until dead records outnumber live points, which bounds the log at
	// about twice its compacted size without rewriting a large collection
	// for a few updates. Zero means DefaultCompactMinDead; a negative value
	// disables compaction except on Close.
	CompactMinDead int
	// ScanWorkers is how many goroutines one search splits its scan
	// across. Zero means GOMAXPROCS; 1 scans on the caller's goroutine
	// only, which suits a process serving many searches at once. Results
	// are the same for every value. Collections too small to be worth
	// splitting are scanned by one goroutine regardless.
	ScanWorkers int
	// PlainScan keeps no int8 codes of the vectors, saving a quarter of
	// the vectors' memory, and scans the float vectors alone. Results are
	// the same either way (see scanCoded); only speed differs. Builds
	// without GOEXPERIMENT=simd, or CPUs without AVX2, always scan plainly.
	PlainScan bool
	// forceCodes keeps codes even where only the portable code kernel
	// exists, so tests reach the coded scan in every build.
	forceCodes bool
	// Logger receives warnings about recovered logs and compaction. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Store is an embedded sinks.Store. It is safe for concurrent use; searches
// run in parallel with each other and with the disk part of writes.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File

	mu     sync.RWMutex // guards closed and colls
	closed bool
	colls  map[string]*collection
}

var _ sinks.Store = (*Store)(nil)

// Open opens or creates a store in dir and loads every collection in it. It
// fails if another Store holds dir.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty data directory", ErrInvalid)
	}
	if opts.ScanWorkers < 0 {
		return nil, fmt.Errorf("%w: scan workers must be >= 0, got %d", ErrInvalid, opts.ScanWorkers)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("store", "embedded", "dir", dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts, log: log, lock: lock, colls: make(map[string]*collection)}
	if err := s.load(); err != nil {
		// Nothing was written yet, so there is nothing to compact or sync.
		for _, c := range s.colls {
			c.f.Close()
		}
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read data directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(s.dir, name)
		if strings.HasPrefix(name, tmpPrefix) {
			// A collection whose creation did not finish; it was never
			// visible, so nobody can have written to it.
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("remove unfinished collection %s: %w", path, err)
			}
			continue
		}
		if validName(name) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(path, specName)); errors.Is(err, os.ErrNotExist) {
			s.log.Warn("ignoring directory without a collection spec", "path", path)
			continue
		}
		c, err := openCollection(path, s.opts, s.log)
		if err != nil {
			return err
		}
		s.colls[name] = c
		s.log.Info("loaded collection", "collection", name, "points", len(c.ids), "log_records", c.records)
	}
	return nil
}

// get returns a loaded collection.
func (s *Store) get(ctx context.Context, name string) (*collection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	c, ok := s.colls[name]
	if !ok {
		return nil, fmt.Errorf("collection %q: %w", name, sinks.ErrNotFound)
	}
	return c, nil
}

// EnsureCollection creates the collection when missing. An existing one is
// left untouched and must be Compatible with spec.
func (s *Store) EnsureCollection(ctx context.Context, spec sinks.CollectionSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validateSpec(spec); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if c, ok := s.colls[spec.Name]; ok {
		return c.spec.Compatible(spec)
	}
	c, err := s.create(spec)
	if err != nil {
		return fmt.Errorf("create collection %q: %w", spec.Name, err)
	}
	s.colls[spec.Name] = c
	s.log.Info("created collection", "collection", spec.Name, "dim", spec.Dim, "model", spec.Model, "pooling", spec.Pooling)
	return nil
}

// create builds the collection directory under a temporary name and renames
// it into place, so a crash leaves either nothing or a complete collection.
func (s *Store) create(spec sinks.CollectionSpec) (*collection, error) {
	final := filepath.Join(s.dir, spec.Name)
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("%s exists but holds no loadable collection", final)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	tmp, err := os.MkdirTemp(s.dir, tmpPrefix+spec.Name+"-")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()

	raw, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(tmp, specName), append(raw, '\n')); err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(tmp, logName), []byte(logMagic)); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	done = true
	if err := syncDir(s.dir); err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.dir, err)
	}
	return openCollection(final, s.opts, s.log)
}

// writeFileSync writes a new file and fsyncs it. Always synced, even with
// NoSync, because a collection directory missing its spec after a crash
// would make the whole collection unloadable.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Upsert stores points, replacing any with the same ID. It returns after the
// batch is durable on disk (unless Options.NoSync). Vectors are stored
// L2-normalised. If any point is invalid nothing is written and the error
// wraps ErrInvalid.
func (s *Store) Upsert(ctx context.Context, collection string, points []sinks.Point) error {
	c, err := s.get(ctx, collection)
	if err != nil {
		return err
	}
	if len(points) == 0 {
		return nil
	}
	if err := c.upsert(points); err != nil {
		return fmt.Errorf("upsert into %q: %w", collection, err)
	}
	return nil
}

// Search returns the req.TopK points with the highest cosine similarity to
// req.Vector among those matching req.Filter, best first; equal scores are
// ordered by ID.
func (s *Store) Search(ctx context.Context, collection string, req sinks.SearchRequest) ([]sinks.Hit, error) {
	c, err := s.get(ctx, collection)
	if err != nil {
		return nil, err
	}
	hits, err := c.search(ctx, []sinks.SearchRequest{req})
	if err != nil {
		return nil, fmt.Errorf("search %q: %w", collection, err)
	}
	return hits[0], nil
}

// SearchBatch answers several searches in one pass over the collection;
// result i answers reqs[i] and equals what Search(reqs[i]) returns. A scan
// is bound by reading the vectors, so a batch costs little more than one
// search. If any request is invalid nothing is searched and the error wraps
// ErrInvalid.
func (s *Store) SearchBatch(ctx context.Context, collection string, reqs []sinks.SearchRequest) ([][]sinks.Hit, error) {
	c, err := s.get(ctx, collection)
	if err != nil {
		return nil, err
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	hits, err := c.search(ctx, reqs)
	if err != nil {
		return nil, fmt.Errorf("search %q (batch of %d): %w", collection, len(reqs), err)
	}
	return hits, nil
}

// DeleteVideo removes every point of videoID and returns how many there were.
func (s *Store) DeleteVideo(ctx context.Context, collection, videoID string) (int, error) {
	c, err := s.get(ctx, collection)
	if err != nil {
		return 0, err
	}
	n, err := c.deleteVideo(videoID)
	if err != nil {
		return 0, fmt.Errorf("delete video %q from %q: %w", videoID, collection, err)
	}
	return n, nil
}

// DeleteOlder removes the points of videoID whose generation is below
// generation (points without one included) and returns how many there were.
func (s *Store) DeleteOlder(ctx context.Context, collection, videoID string, generation int64) (int, error) {
	c, err := s.get(ctx, collection)
	if err != nil {
		return 0, err
	}
	n, err := c.deleteOlder(videoID, generation)
	if err != nil {
		return 0, fmt.Errorf("delete generations of video %q older than %d from %q: %w", videoID, generation, collection, err)
	}
	return n, nil
}

// Count returns the number of points matching f.
func (s *Store) Count(ctx context.Context, collection string, f sinks.Filter) (int, error) {
	c, err := s.get(ctx, collection)
	if err != nil {
		return 0, err
	}
	n, err := c.count(f)
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", collection, err)
	}
	return n, nil
}

// Collection returns the spec the collection was created with.
func (s *Store) Collection(ctx context.Context, name string) (sinks.CollectionSpec, error) {
	c, err := s.get(ctx, name)
	if err != nil {
		return sinks.CollectionSpec{}, err
	}
	return c.spec, nil
}

// Close compacts logs that hold dead records, syncs and closes every
// collection and releases the directory lock. Later calls fail with
// ErrClosed; closing again is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	colls := s.colls
	s.colls = nil
	s.mu.Unlock()

	var errs []error
	for _, c := range colls {
		// In-flight writes finish first: close waits for the write lock.
		if err := c.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("release directory lock: %w", err))
	}
	return errors.Join(errs...)
}

func validateSpec(spec sinks.CollectionSpec) error {
	if err := validName(spec.Name); err != nil {
		return err
	}
	if spec.Dim <= 0 {
		return fmt.Errorf("%w: collection %q: dimension must be positive, got %d", ErrInvalid, spec.Name, spec.Dim)
	}
	if spec.Distance != "cosine" {
		return fmt.Errorf("%w: collection %q: distance %q is not supported, only \"cosine\"", ErrInvalid, spec.Name, spec.Distance)
	}
	return nil
}

// validName accepts names that are safe as a single path component on any
// file system: no separators, no "." or "..", nothing hidden.
func validName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("%w: collection name must be 1 to 128 characters, got %q", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		alnum := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%w: collection name %q must start with a letter or digit", ErrInvalid, name)
		}
		if !alnum && ch != '_' && ch != '-' && ch != '.' {
			return fmt.Errorf("%w: collection name %q may only contain letters, digits, '_', '-' and '.'", ErrInvalid, name)
		}
	}
	return nil
}
