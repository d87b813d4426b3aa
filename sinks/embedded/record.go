package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

const (
	logMagic      = "vidxlog\x01"
	logHeaderSize = len(logMagic)
	recHeaderSize = 8
	// maxRecordSize bounds one record body. Beyond catching oversized
	// payloads, it lets replay tell a garbage length field in a torn header
	// from a real record without trying to allocate gigabytes.
	maxRecordSize = 64 << 20

	recUpsert      byte = 1
	recDelete      byte = 2
	recDeleteOlder byte = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadRecord marks a record whose CRC is valid but whose body cannot be
// decoded; unlike a torn tail, truncating it would silently lose data.
var errBadRecord = errors.New("malformed log record")

// appendUpsert appends an upsert record for an already normalised vector.
func appendUpsert(buf []byte, id string, vec []float32, payloadJSON []byte) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, recHeaderSize)...)
	buf = append(buf, recUpsert)
	buf = binary.AppendUvarint(buf, uint64(len(id)))
	buf = append(buf, id...)
	buf = binary.AppendUvarint(buf, uint64(len(vec)))
	for _, v := range vec {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	buf = binary.AppendUvarint(buf, uint64(len(payloadJSON)))
	buf = append(buf, payloadJSON...)
	return sealRecord(buf, start)
}

// appendDelete appends a delete-video record.
func appendDelete(buf []byte, videoID string) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, recHeaderSize)...)
	buf = append(buf, recDelete)
	buf = binary.AppendUvarint(buf, uint64(len(videoID)))
	buf = append(buf, videoID...)
	return sealRecord(buf, start)
}

// appendDeleteOlder appends a record deleting the points of videoID whose
// generation is below generation.
func appendDeleteOlder(buf []byte, videoID string, generation int64) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, recHeaderSize)...)
	buf = append(buf, recDeleteOlder)
	buf = binary.AppendUvarint(buf, uint64(len(videoID)))
	buf = append(buf, videoID...)
	buf = binary.AppendUvarint(buf, uint64(generation))
	return sealRecord(buf, start)
}

// sealRecord fills in the length and CRC of the record starting at start.
func sealRecord(buf []byte, start int) ([]byte, error) {
	body := buf[start+recHeaderSize:]
	if len(body) > maxRecordSize {
		return buf[:start], fmt.Errorf("%w: record of %d bytes exceeds the %d byte limit", ErrInvalid, len(body), maxRecordSize)
	}
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf, nil
}

// bodyReader decodes the fields of one record body.
type bodyReader struct {
	b   []byte
	err error
}

func (r *bodyReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad varint", errBadRecord)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *bodyReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: field of %d bytes overruns the record", errBadRecord, n)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// floats decodes a length-prefixed float32 array into dst, which must have
// exactly the expected length; reading straight into the slab avoids a copy
// per point during replay.
func (r *bodyReader) floats(dst []float32) {
	n := r.uvarint()
	if r.err != nil {
		return
	}
	if n != uint64(len(dst)) {
		r.err = fmt.Errorf("%w: vector has %d dimensions, collection has %d", errBadRecord, n, len(dst))
		return
	}
	if uint64(len(r.b)) < n*4 {
		r.err = fmt.Errorf("%w: vector overruns the record", errBadRecord)
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(r.b[i*4:]))
	}
	r.b = r.b[n*4:]
}

func (r *bodyReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(r.b))
	}
	return r.err
}
