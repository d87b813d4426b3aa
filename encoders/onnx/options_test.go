package onnx

import (
	"context"
	"testing"
)

func TestSessionOptionsSpinning(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	m := loadBundle(t, tiny)
	keys := []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"}
	for _, tc := range []struct {
		name string
		opts SessionOptions
		want string // "" when the entry must be absent (ONNX Runtime's default: spinning)
	}{
		{"default", SessionOptions{IntraOpThreads: 2}, ""},
		{"no spinning", SessionOptions{IntraOpThreads: 2, NoSpinning: true}, "0"},
		{"no spinning parallel", SessionOptions{IntraOpThreads: 2, InterOpThreads: 2, NoSpinning: true}, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			so, err := tc.opts.ORTOptions()
			if err != nil {
				t.Fatal(err)
			}
			defer so.Destroy()
			for _, k := range keys {
				has, err := so.HasSessionConfigEntry(k)
				if err != nil {
					t.Fatal(err)
				}
				got := ""
				if has {
					if got, err = so.GetSessionConfigEntry(k); err != nil {
						t.Fatal(err)
					}
				}
				if got != tc.want {
					t.Errorf("%s = %q, want %q", k, got, tc.want)
				}
			}
			// The session opens and runs with the entries set.
			enc, err := r.NewImageEncoder(m, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			if _, err := enc.EncodeImages(context.Background(), randomPixels(2, enc.ImageSize(), 1), 2); err != nil {
				t.Fatal(err)
			}
		})
	}
}
