// Package embedded is a pure-Go implementation of sinks.Store that keeps every
// collection in memory and persists it to a data directory, for deployments
// that do not want to run a separate vector database.
//
// Search is exact: a brute-force cosine scan over one contiguous []float32
// slab per collection, split into one contiguous shard per worker
// (Options.ScanWorkers, default GOMAXPROCS), each keeping its k best in a
// bounded heap; the shards' heaps are merged by the same order. The dot
// product is vek's AVX2+FMA kernel where the CPU has it. Reading every
// float vector runs at about memory bandwidth: roughly 12 ms per 100,000
// 512-d clips on a small cloud VM, ten times that per million.
// SearchBatch answers several queries in the same pass, scoring each vector
// against all of them while it is in cache, so a micro-batch of queries
// costs far less than one scan each. It never returns approximate results.
//
// A build with Go's simd/archsimd (GOEXPERIMENT=simd, as make builds) on a
// CPU with AVX2 also keeps an int8 copy of every vector, a quarter of the
// bytes, with one scale and one error bound per point. A scan of 4,096
// points or more reads the codes first: an int32 dot product with the
// query coded in int16 bounds each point's float32 score from above and
// below, the running k-th best lower bound discards every point whose
// upper bound falls short of it, and the few left are scored from their
// float vectors with the same kernel and ranked by the same order. The
// answer is the float scan's to the bit, at 2.5 times its speed (about 5
// ms per 100,000 512-d clips). Where the CPU has AVX-512 the code kernel
// takes 32 codes an instruction instead of 16 (1.1-1.2 times faster). The codes cost 4+dim bytes a point of
// memory; Options.PlainScan does without them.
//
// Results are ordered by score, then by id for equal scores, and do not
// depend on the number of workers or on where a point sits in the slab.
// Scores are float32 dot products of the stored unit vectors; they differ
// from the exact value by at most about dim*2^-24 (float32 rounding of a
// sum of dim products), so a build with a different kernel may order
// points whose scores are that close differently.
//
// # Directory layout
//
//	<dir>/LOCK                    advisory lock (flock) held while a Store is open
//	<dir>/<collection>/collection.json   the sinks.CollectionSpec, JSON
//	<dir>/<collection>/points.log        append-only record log
//
// A collection directory is built under a temporary name and renamed into
// place, so a crash never leaves a half-created collection behind. Collection
// names must be safe path components: 1 to 128 characters of [A-Za-z0-9_.-]
// starting with a letter or digit.
//
// # Log format
//
// points.log starts with the 8-byte magic "vidxlog" followed by the format
// version byte 0x01. Records follow back to back. All integers are little
// endian; "uvarint" is encoding/binary's unsigned varint.
//
//	offset  size  field
//	0       4     uint32 body length N (1 .. 64 MiB)
//	4       4     uint32 CRC-32C (Castagnoli) of the body
//	8       N     body
//
// The body starts with a one-byte record type:
//
//	1 upsert point:  uvarint len, id bytes
//	                 uvarint dim, dim x float32 (IEEE 754 bits, L2-normalised)
//	                 uvarint len, payload as JSON (sinks.Payload)
//	2 delete video:  uvarint len, video id bytes
//	3 delete older:  uvarint len, video id bytes
//	                 uvarint generation
//
// A delete-older record removes the points of the video whose payload
// generation is below the given one (points without a generation count as
// 0); a re-ingested video writes it after all its new clips. Builds that
// predate it refuse a log holding one ("unknown record type 3") rather than
// resurrecting the deleted points.
//
// The payload is JSON rather than a fixed binary layout so that fields added
// to sinks.Payload later are persisted without a format change.
//
// Opening a collection replays the log in order: an upsert replaces any point
// with the same id, a delete removes every point of the video (or of its older
// generations). Replay stops at
// the first record whose header is incomplete, whose length is out of range or
// runs past the end of the file, or whose CRC does not match; that is what a
// crash in the middle of an append leaves behind. The file is truncated to the
// last good record and a warning is logged, instead of refusing to start. A
// record with a valid CRC that cannot be decoded is a real inconsistency and
// fails Open.
//
// # Durability
//
// Upsert, DeleteVideo and DeleteOlder encode the whole batch, append it with one write and
// fsync the file before touching the in-memory index or returning, so a caller
// may commit its input offsets as soon as the call returns. Options.NoSync
// skips the fsync for tests and throwaway indexes.
//
// # Compaction
//
// Replaced and deleted points leave dead records in the log. When dead records
// exceed Options.CompactMinDead and outnumber the live points, and again on
// Close, the live points are written to points.log.compact, which is fsynced,
// renamed over points.log, and the directory fsynced. A crash at any point
// leaves either the old or the new log, both describing the same points.
package embedded
