package media

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// rawFrame is one decoded RGB24 frame at the size ffmpeg gave it.
type rawFrame struct {
	pix  []byte
	w, h int
}

// maxFrameBytes bounds one frame's pixel data, far above any frame the
// source policy lets through, so a corrupt header cannot ask for more.
const maxFrameBytes = 3 << 30

// ppmReader reads the binary PPM (P6) images ffmpeg's image2pipe muxer
// writes one after another. Each carries its own size, so the reader
// needs nothing from the probe and follows a stream whose frame size
// changes part way through.
type ppmReader struct{ br *bufio.Reader }

func newPPMReader(r io.Reader) *ppmReader {
	// Frames are large, so ReadFull mostly bypasses the buffer and reads
	// straight into the frame; the buffer only absorbs pipe-sized pieces.
	return &ppmReader{br: bufio.NewReaderSize(r, 64<<10)}
}

var errPPM = errors.New("malformed PPM image in ffmpeg's output")

// read fills f with the next image, reusing its buffer. It returns io.EOF
// where the stream ends between images and io.ErrUnexpectedEOF where it
// ends inside one.
func (r *ppmReader) read(f *rawFrame) error {
	m0, err := r.br.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err
	}
	m1, err := r.br.ReadByte()
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	if m0 != 'P' || m1 != '6' {
		return fmt.Errorf("%w: magic %q", errPPM, []byte{m0, m1})
	}
	var v [3]int
	for i := range v {
		n, err := r.number()
		if err != nil {
			return err
		}
		v[i] = n
	}
	w, h, maxval := v[0], v[1], v[2]
	if maxval != 255 {
		return fmt.Errorf("%w: %d levels, want 255 (rgb24)", errPPM, maxval)
	}
	if w <= 0 || h <= 0 || w > maxFrameBytes/3/h {
		return fmt.Errorf("%w: frame size %dx%d", errPPM, w, h)
	}
	size := 3 * w * h
	if cap(f.pix) < size {
		f.pix = make([]byte, size)
	}
	f.pix, f.w, f.h = f.pix[:size], w, h
	if _, err := io.ReadFull(r.br, f.pix); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// number reads one header field: whitespace and comments, then decimal
// digits ended by exactly one whitespace byte, which it consumes (after
// the last field, the pixel data starts right behind it).
func (r *ppmReader) number() (int, error) {
	b, err := r.br.ReadByte()
	for err == nil && (isSpace(b) || b == '#') {
		if b == '#' {
			_, err = r.br.ReadString('\n')
		}
		if err == nil {
			b, err = r.br.ReadByte()
		}
	}
	n, digits := 0, 0
	for err == nil && b >= '0' && b <= '9' {
		if n > maxFrameBytes {
			return 0, fmt.Errorf("%w: header number too large", errPPM)
		}
		n, digits = n*10+int(b-'0'), digits+1
		b, err = r.br.ReadByte()
	}
	switch {
	case errors.Is(err, io.EOF):
		return 0, io.ErrUnexpectedEOF
	case err != nil:
		return 0, err
	case digits == 0 || !isSpace(b):
		return 0, fmt.Errorf("%w: unexpected byte %q in header", errPPM, b)
	}
	return n, nil
}

func isSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}
