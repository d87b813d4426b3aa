package media

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestPPMReader(t *testing.T) {
	pixels := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i)
		}
		return b
	}
	type frame struct {
		w, h int
		pix  []byte
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want []frame
		err  error // after the frames; nil means a clean io.EOF
	}{
		{"empty", nil, nil, nil},
		{"two sizes",
			append(append([]byte("P6\n2 1\n255\n"), pixels(6, 1)...), append([]byte("P6\n1 2\n255\n"), pixels(6, 9)...)...),
			[]frame{{2, 1, pixels(6, 1)}, {1, 2, pixels(6, 9)}}, nil},
		{"comments and spacing", append([]byte("P6 # made by hand\n 1\t1\r\n255\n"), 10, 32, 35),
			[]frame{{1, 1, []byte{10, 32, 35}}}, nil},
		{"data starting with whitespace bytes", append([]byte("P6\n1 1\n255\n"), '\n', ' ', '#'),
			[]frame{{1, 1, []byte{'\n', ' ', '#'}}}, nil},
		{"cut in the magic", []byte("P"), nil, io.ErrUnexpectedEOF},
		{"cut in the header", []byte("P6\n2 1\n25"), nil, io.ErrUnexpectedEOF},
		{"cut in the pixels", append([]byte("P6\n2 1\n255\n"), pixels(5, 0)...), nil, io.ErrUnexpectedEOF},
		{"cut after a frame", append(append([]byte("P6\n1 1\n255\n"), 1, 2, 3), "P6\n1"...),
			[]frame{{1, 1, []byte{1, 2, 3}}}, io.ErrUnexpectedEOF},
		{"greyscale", []byte("P5\n1 1\n255\n\x00"), nil, errPPM},
		{"16 bits", []byte("P6\n1 1\n65535\n\x00\x00\x00\x00\x00\x00"), nil, errPPM},
		{"no width", []byte("P6\n0 1\n255\n"), nil, errPPM},
		{"too large", []byte("P6\n100000 100000\n255\n"), nil, errPPM},
		{"number overflow", []byte("P6\n99999999999999999999999 1\n255\n"), nil, errPPM},
		{"not a number", []byte("P6\n2x2\n255\n"), nil, errPPM},
		{"no separator after maxval", []byte("P6\n1 1\n255\x00\x00\x00"), nil, errPPM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newPPMReader(bytes.NewReader(tc.in))
			var f rawFrame
			for i := 0; ; i++ {
				err := r.read(&f)
				if err != nil {
					if i != len(tc.want) {
						t.Fatalf("read %d frames, want %d: %v", i, len(tc.want), err)
					}
					want := tc.err
					if want == nil {
						want = io.EOF
					}
					if !errors.Is(err, want) {
						t.Fatalf("error %v, want %v", err, want)
					}
					return
				}
				if i >= len(tc.want) {
					t.Fatalf("frame %d (%dx%d) past the %d expected", i, f.w, f.h, len(tc.want))
				}
				w := tc.want[i]
				if f.w != w.w || f.h != w.h || !bytes.Equal(f.pix, w.pix) {
					t.Fatalf("frame %d: %dx%d %v, want %dx%d %v", i, f.w, f.h, f.pix, w.w, w.h, w.pix)
				}
			}
		})
	}
}

// TestPPMReaderReusesBuffer: frames of one size decode into the same
// memory, as the sampler's ring expects.
func TestPPMReaderReusesBuffer(t *testing.T) {
	in := strings.Repeat("P6\n2 2\n255\n"+strings.Repeat("x", 12), 3)
	r := newPPMReader(strings.NewReader(in))
	f := rawFrame{pix: make([]byte, 12)}
	first := &f.pix[0]
	for range 3 {
		if err := r.read(&f); err != nil {
			t.Fatal(err)
		}
		if &f.pix[0] != first {
			t.Fatal("frame buffer reallocated for a frame that fits")
		}
	}
}
