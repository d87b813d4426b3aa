package embedded

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/vidx/vidx/sinks"
)

const (
	specName    = "collection.json"
	logName     = "points.log"
	compactName = "points.log.compact"
)

// collection is one loaded collection: its log file and in-memory index.
//
// Locking: wmu serialises everything that appends to or replaces the log, and
// is held for the whole of a mutation. mu guards the index and is taken for
// writing only for the short in-memory apply step, so searches keep running
// while a batch is being fsynced or the log compacted. Code holding wmu may
// read the index without mu because every writer also holds wmu.
type collection struct {
	spec sinks.CollectionSpec
	dir  string
	dim  int
	log  *slog.Logger
	opts Options
	dot  dotFunc
	// shardMinRows is the smallest range a parallel scan gives a worker.
	shardMinRows int
	// book holds the vectors' int8 codes for scanCoded; nil where this
	// build or CPU has no code kernel or Options.PlainScan is set.
	book    *codebook
	codeDot codeDotFunc
	// codedMinRows is the fewest points for which a scan reads codes.
	codedMinRows int

	wmu     sync.Mutex
	f       *os.File
	size    int64 // offset of the end of the last good record
	records int   // records in the log, live or dead
	failed  error // set when the log state on disk is unknown

	mu       sync.RWMutex
	closed   bool
	vecs     []float32 // slot i is vecs[i*dim : (i+1)*dim]
	ids      []string
	payloads []sinks.Payload
	byID     map[string]int
}

// openCollection loads the collection stored in dir, replaying its log.
func openCollection(dir string, opts Options, log *slog.Logger) (*collection, error) {
	raw, err := os.ReadFile(filepath.Join(dir, specName))
	if err != nil {
		return nil, fmt.Errorf("read collection spec: %w", err)
	}
	var spec sinks.CollectionSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, specName), err)
	}
	if err := validateSpec(spec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, specName), err)
	}
	if spec.Name != filepath.Base(dir) {
		return nil, fmt.Errorf("%s names collection %q but lives in directory %q", specName, spec.Name, filepath.Base(dir))
	}
	// A compaction interrupted before its rename left a partial copy; the
	// original log is still authoritative.
	if err := os.Remove(filepath.Join(dir, compactName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale compaction file: %w", err)
	}

	c := &collection{
		spec: spec,
		dir:  dir,
		dim:  spec.Dim,
		log:  log.With("collection", spec.Name),
		opts: opts,
		dot:  pickDot(),
		byID: make(map[string]int),

		shardMinRows: defaultShardMinRows,
		codedMinRows: defaultCodedMinRows,
	}
	if kernel, ok := codeKernel(); (ok || opts.forceCodes) && !opts.PlainScan {
		c.book, c.codeDot = newCodebook(spec.Dim), kernel
	}
	f, err := os.OpenFile(filepath.Join(dir, logName), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if err := c.replay(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("collection %q: %w", spec.Name, err)
	}
	c.f = f
	return c, nil
}

// replay rebuilds the index from the log and cuts off a torn tail.
func (c *collection) replay(f *os.File) error {
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	fileSize := info.Size()
	r := bufio.NewReaderSize(f, 1<<20)

	var magic [logHeaderSize]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != logMagic {
		// The header is written and synced before the collection directory
		// is renamed into place, so a bad one is not a torn write.
		return fmt.Errorf("%s: missing or unknown log header", f.Name())
	}

	// Each record holds at least one full vector, so this bounds the number
	// of points and saves re-growing a large slab during startup.
	if est := (fileSize - int64(logHeaderSize)) / int64(recHeaderSize+4*c.dim); est > 0 {
		c.vecs = make([]float32, 0, int(est)*c.dim)
		c.ids = make([]string, 0, est)
		c.book.reserve(int(est))
	}

	off := int64(logHeaderSize)
	var hdr [recHeaderSize]byte
	var body []byte
	torn := ""
	for off < fileSize {
		if fileSize-off < recHeaderSize {
			torn = "incomplete record header"
			break
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("read log at offset %d: %w", off, err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		if n == 0 || n > maxRecordSize {
			torn = fmt.Sprintf("record length %d out of range", n)
			break
		}
		if n > fileSize-off-recHeaderSize {
			torn = "record extends past end of file"
			break
		}
		if int64(cap(body)) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("read log at offset %d: %w", off, err)
		}
		if crc32.Checksum(body, castagnoli) != sum {
			torn = "checksum mismatch"
			break
		}
		if err := c.applyRecord(body); err != nil {
			return fmt.Errorf("log record at offset %d: %w", off, err)
		}
		off += recHeaderSize + n
		c.records++
	}

	if torn != "" {
		c.log.Warn("discarding torn or corrupt tail of log",
			"path", f.Name(), "offset", off, "bytes_discarded", fileSize-off, "reason", torn)
		if err := f.Truncate(off); err != nil {
			return fmt.Errorf("truncate torn log tail: %w", err)
		}
		// Later appends land at off; the truncation must be durable first or
		// a crash could resurrect the garbage in front of them.
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync truncated log: %w", err)
		}
	}
	c.size = off
	return nil
}

// applyRecord applies one checksummed record body to the index.
func (c *collection) applyRecord(body []byte) error {
	r := bodyReader{b: body[1:]}
	switch body[0] {
	case recUpsert:
		id := string(r.bytes())
		slot, existed := c.byID[id]
		if !existed {
			slot = len(c.ids)
			c.vecs = append(c.vecs, make([]float32, c.dim)...)
		}
		vec := c.vecs[slot*c.dim : (slot+1)*c.dim]
		r.floats(vec)
		raw := r.bytes()
		if err := r.done(); err != nil {
			if !existed {
				c.vecs = c.vecs[:slot*c.dim]
			}
			return err
		}
		var p sinks.Payload
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("%w: payload: %w", errBadRecord, err)
		}
		if id == "" {
			return fmt.Errorf("%w: empty point id", errBadRecord)
		}
		c.book.put(slot, vec)
		if existed {
			c.payloads[slot] = p
		} else {
			c.ids = append(c.ids, id)
			c.payloads = append(c.payloads, p)
			c.byID[id] = slot
		}
	case recDelete:
		video := string(r.bytes())
		if err := r.done(); err != nil {
			return err
		}
		c.removeVideo(video)
	case recDeleteOlder:
		video := string(r.bytes())
		gen := r.uvarint()
		if err := r.done(); err != nil {
			return err
		}
		c.removeOlder(video, int64(gen))
	default:
		return fmt.Errorf("%w: unknown record type %d", errBadRecord, body[0])
	}
	return nil
}

// put inserts or replaces a point whose vector is already normalised.
func (c *collection) put(id string, vec []float32, p sinks.Payload) {
	if slot, ok := c.byID[id]; ok {
		copy(c.vecs[slot*c.dim:(slot+1)*c.dim], vec)
		c.book.put(slot, vec)
		c.payloads[slot] = p
		return
	}
	c.book.put(len(c.ids), vec)
	c.byID[id] = len(c.ids)
	c.ids = append(c.ids, id)
	c.payloads = append(c.payloads, p)
	c.vecs = append(c.vecs, vec...)
}

// removeVideo deletes every point of video.
func (c *collection) removeVideo(video string) int {
	return c.remove(func(p *sinks.Payload) bool { return p.VideoID == video })
}

// removeOlder deletes the points of video whose generation is below gen.
func (c *collection) removeOlder(video string, gen int64) int {
	return c.remove(func(p *sinks.Payload) bool { return p.VideoID == video && p.Generation < gen })
}

// remove deletes every point whose payload matches by moving the last slot
// into each hole, which keeps the slab dense so scans never skip tombstones.
func (c *collection) remove(match func(*sinks.Payload) bool) int {
	removed := 0
	// Walking backwards means the point swapped into slot i has already been
	// inspected.
	for i := len(c.ids) - 1; i >= 0; i-- {
		if !match(&c.payloads[i]) {
			continue
		}
		last := len(c.ids) - 1
		delete(c.byID, c.ids[i])
		if i != last {
			copy(c.vecs[i*c.dim:(i+1)*c.dim], c.vecs[last*c.dim:])
			c.book.move(i, last)
			c.ids[i] = c.ids[last]
			c.payloads[i] = c.payloads[last]
			c.byID[c.ids[i]] = i
		}
		// Clear the vacated slot so its strings and metadata can be freed.
		c.ids[last] = ""
		c.payloads[last] = sinks.Payload{}
		c.ids = c.ids[:last]
		c.payloads = c.payloads[:last]
		c.vecs = c.vecs[:last*c.dim]
		c.book.truncate(last)
		removed++
	}
	return removed
}

// countMatching reports how many live points match.
func (c *collection) countMatching(match func(*sinks.Payload) bool) int {
	n := 0
	for i := range c.payloads {
		if match(&c.payloads[i]) {
			n++
		}
	}
	return n
}

// writable reports why the log cannot take appends; callers hold wmu.
func (c *collection) writable() error {
	if c.closed {
		return ErrClosed
	}
	if c.failed != nil {
		return fmt.Errorf("collection %q: log unusable after an earlier write failure, reopen the store: %w", c.spec.Name, c.failed)
	}
	return nil
}

// appendRecords makes buf, holding n encoded records, durable at the end of
// the log. Callers hold wmu and apply the change to the index only after it
// returns nil, so memory never runs ahead of disk.
func (c *collection) appendRecords(buf []byte, n int) error {
	if _, err := c.f.WriteAt(buf, c.size); err != nil {
		// Cut off the partial batch so the next append does not land behind
		// garbage that replay would stop at.
		if terr := c.f.Truncate(c.size); terr != nil {
			c.failed = errors.Join(err, terr)
		}
		return fmt.Errorf("collection %q: append to log: %w", c.spec.Name, err)
	}
	if !c.opts.NoSync {
		if err := c.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the dirty
			// pages, so what is on disk is unknown until the log is replayed.
			c.failed = err
			return fmt.Errorf("collection %q: sync log: %w", c.spec.Name, err)
		}
	}
	c.size += int64(len(buf))
	c.records += n
	return nil
}

// dead is the number of log records that no longer describe a live point.
func (c *collection) dead() int { return c.records - len(c.ids) }

// maybeCompact compacts when dead records dominate. The triggering write is
// already durable, so a failure here is logged rather than returned.
func (c *collection) maybeCompact() {
	minDead := c.opts.CompactMinDead
	if minDead == 0 {
		minDead = DefaultCompactMinDead
	}
	if minDead < 0 {
		return
	}
	if d := c.dead(); d > minDead && d > len(c.ids) {
		if err := c.compact(); err != nil {
			c.log.Warn("log compaction failed; will retry on a later write", "err", err)
		}
	}
}

// compact rewrites the live points into a fresh log and swaps it in. Callers
// hold wmu.
func (c *collection) compact() (err error) {
	start := time.Now()
	dead := c.dead()
	tmpPath := filepath.Join(c.dir, compactName)
	f, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create compaction file: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmpPath)
		}
	}()

	w := bufio.NewWriterSize(f, 1<<20)
	size := int64(logHeaderSize)
	if _, err := w.WriteString(logMagic); err != nil {
		return fmt.Errorf("write compaction file: %w", err)
	}
	var rec []byte
	for slot, id := range c.ids {
		pj, err := json.Marshal(c.payloads[slot])
		if err != nil {
			return fmt.Errorf("encode payload of %q: %w", id, err)
		}
		rec, err = appendUpsert(rec[:0], id, c.vecs[slot*c.dim:(slot+1)*c.dim], pj)
		if err != nil {
			return fmt.Errorf("encode point %q: %w", id, err)
		}
		if _, err := w.Write(rec); err != nil {
			return fmt.Errorf("write compaction file: %w", err)
		}
		size += int64(len(rec))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write compaction file: %w", err)
	}
	// Synced even with NoSync: renaming an unsynced file over the log could
	// lose the whole collection in a crash, not just the latest writes.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync compaction file: %w", err)
	}
	if err := os.Rename(tmpPath, filepath.Join(c.dir, logName)); err != nil {
		return fmt.Errorf("install compacted log: %w", err)
	}
	renamed = true
	old := c.f
	c.f, c.size, c.records = f, size, len(c.ids)
	old.Close()
	if err := syncDir(c.dir); err != nil {
		// Both the old and the new log hold the same points, so whichever
		// survives a crash is correct.
		return fmt.Errorf("sync collection directory: %w", err)
	}
	c.log.Info("compacted log", "live", len(c.ids), "dropped_records", dead,
		"bytes", size, "took", time.Since(start))
	return nil
}

// close compacts if worthwhile, flushes and releases the log. The index is
// dropped so a closed store does not pin memory.
func (c *collection) close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	var errs []error
	if c.failed == nil {
		if c.dead() > 0 {
			if err := c.compact(); err != nil {
				errs = append(errs, fmt.Errorf("collection %q: compact on close: %w", c.spec.Name, err))
			}
		}
		// Covers batches appended with NoSync.
		if err := c.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("collection %q: sync log: %w", c.spec.Name, err))
		}
	}
	if err := c.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("collection %q: close log: %w", c.spec.Name, err))
	}
	c.mu.Lock()
	c.closed = true
	c.vecs, c.ids, c.payloads, c.byID, c.book = nil, nil, nil, nil, nil
	c.mu.Unlock()
	return errors.Join(errs...)
}

// upsert validates, logs and applies a batch. The whole batch is rejected if
// any point is invalid, so a bad message cannot half-apply.
func (c *collection) upsert(points []sinks.Point) error {
	type prepared struct {
		id  string
		vec []float32
		p   sinks.Payload
	}
	batch := make([]prepared, len(points))
	buf := make([]byte, 0, len(points)*(64+4*c.dim+256))
	for i, pt := range points {
		if pt.ID == "" {
			return fmt.Errorf("%w: point %d has an empty id", ErrInvalid, i)
		}
		vec, err := normalize(pt.Vector, c.dim)
		if err != nil {
			return fmt.Errorf("point %q: %w", pt.ID, err)
		}
		pj, err := json.Marshal(pt.Payload)
		if err != nil {
			return fmt.Errorf("%w: point %q: encode payload: %w", ErrInvalid, pt.ID, err)
		}
		if buf, err = appendUpsert(buf, pt.ID, vec, pj); err != nil {
			return fmt.Errorf("point %q: %w", pt.ID, err)
		}
		// The stored payload must not alias the caller's map, and should
		// look the same now as after a restart, which drops the monotonic
		// clock reading.
		p := pt.Payload
		p.Metadata = maps.Clone(p.Metadata)
		p.IngestedAt = p.IngestedAt.Round(0)
		batch[i] = prepared{id: pt.ID, vec: vec, p: p}
	}

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return err
	}
	if err := c.appendRecords(buf, len(batch)); err != nil {
		return err
	}
	c.mu.Lock()
	for _, b := range batch {
		c.put(b.id, b.vec, b.p)
	}
	c.mu.Unlock()
	c.maybeCompact()
	return nil
}

func (c *collection) deleteVideo(video string) (int, error) {
	return c.deleteWhere(func(p *sinks.Payload) bool { return p.VideoID == video },
		func() ([]byte, error) { return appendDelete(nil, video) })
}

func (c *collection) deleteOlder(video string, gen int64) (int, error) {
	if gen < 0 {
		return 0, fmt.Errorf("%w: generation %d is negative", ErrInvalid, gen)
	}
	return c.deleteWhere(func(p *sinks.Payload) bool { return p.VideoID == video && p.Generation < gen },
		func() ([]byte, error) { return appendDeleteOlder(nil, video, gen) })
}

// deleteWhere logs the delete record and then removes the matching points.
// A crash before the record is durable leaves every point in place.
func (c *collection) deleteWhere(match func(*sinks.Payload) bool, record func() ([]byte, error)) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return 0, err
	}
	// Nothing to delete means nothing to log; redelivered deletes stay free.
	if c.countMatching(match) == 0 {
		return 0, nil
	}
	buf, err := record()
	if err != nil {
		return 0, err
	}
	if err := c.appendRecords(buf, 1); err != nil {
		return 0, err
	}
	c.mu.Lock()
	n := c.remove(match)
	c.shrink()
	c.mu.Unlock()
	c.maybeCompact()
	return n, nil
}

// shrink releases slab memory after large deletes; callers hold mu.
func (c *collection) shrink() {
	if cap(c.vecs) > 1<<16 && len(c.vecs) < cap(c.vecs)/4 {
		c.vecs = append([]float32(nil), c.vecs...)
		c.ids = append([]string(nil), c.ids...)
		c.payloads = append([]sinks.Payload(nil), c.payloads...)
		c.book.shrink()
	}
}

// prepare validates a search request and turns it into a scan query.
func (c *collection) prepare(req *sinks.SearchRequest) (scanQuery, error) {
	if req.TopK < 1 {
		return scanQuery{}, fmt.Errorf("%w: top_k must be positive, got %d", ErrInvalid, req.TopK)
	}
	q, err := normalize(req.Vector, c.dim)
	if err != nil {
		return scanQuery{}, fmt.Errorf("query: %w", err)
	}
	return scanQuery{
		vec: q,
		k:   req.TopK,
		// Reflection rather than a field list, so a field added to
		// sinks.Filter later cannot be skipped by this shortcut.
		filtered: !reflect.ValueOf(req.Filter).IsZero(),
		filter:   &req.Filter,
	}, nil
}

// search answers the requests in one scan. A request that can never succeed
// fails the whole call with ErrInvalid, before anything is scanned.
func (c *collection) search(ctx context.Context, reqs []sinks.SearchRequest) ([][]sinks.Hit, error) {
	qs := make([]scanQuery, len(reqs))
	for i := range reqs {
		var err error
		if qs[i], err = c.prepare(&reqs[i]); err != nil {
			if len(reqs) > 1 {
				err = fmt.Errorf("search %d of %d: %w", i, len(reqs), err)
			}
			return nil, err
		}
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrClosed
	}
	best, err := c.scan(ctx, qs, c.shards(len(c.ids)))
	if err != nil {
		return nil, err
	}
	out := make([][]sinks.Hit, len(reqs))
	for j, cands := range best {
		hits := make([]sinks.Hit, len(cands))
		for i, cand := range cands {
			slot := int(cand.slot)
			p := c.payloads[slot]
			p.Metadata = maps.Clone(p.Metadata)
			hits[i] = sinks.Hit{Point: sinks.Point{ID: c.ids[slot], Payload: p}, Score: cand.score}
			if reqs[j].WithVectors {
				hits[i].Vector = append([]float32(nil), c.vecs[slot*c.dim:(slot+1)*c.dim]...)
			}
		}
		out[j] = hits
	}
	return out, nil
}

func (c *collection) count(f sinks.Filter) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0, ErrClosed
	}
	if reflect.ValueOf(f).IsZero() {
		return len(c.ids), nil
	}
	n := 0
	for i := range c.payloads {
		if f.Match(c.payloads[i]) {
			n++
		}
	}
	return n, nil
}
