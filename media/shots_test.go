package media

import (
	"context"
	"math"
	"testing"

	"github.com/vidx/vidx/media/mediatest"
)

func TestShotSegments(t *testing.T) {
	cases := []struct {
		name     string
		cuts     []float64
		duration float64
		min, max float64
		want     []segment
	}{
		{"no cuts, short video", nil, 4, 1, 10, []segment{{0, 4}}},
		{"cuts become bounds", []float64{2, 5}, 9, 1, 10, []segment{{0, 2}, {2, 5}, {5, 9}}},
		{"unsorted cuts", []float64{5, 2}, 9, 1, 10, []segment{{0, 2}, {2, 5}, {5, 9}}},
		{"a short shot joins the next", []float64{2, 2.4, 5}, 9, 1, 10, []segment{{0, 2}, {2, 5}, {5, 9}}},
		{"a cut near the end joins the last shot", []float64{2, 8.5}, 9, 1, 10, []segment{{0, 2}, {2, 9}}},
		{"a long shot splits into equal windows", []float64{2}, 11, 1, 4, []segment{{0, 2}, {2, 5}, {5, 8}, {8, 11}}},
		{"min zero keeps every cut", []float64{1, 1.2}, 3, 0, 10, []segment{{0, 1}, {1, 1.2}, {1.2, 3}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := shotSegments(tc.cuts, tc.duration, tc.min, tc.max)
			if len(got) != len(tc.want) {
				t.Fatalf("segments %v, want %v", got, tc.want)
			}
			for i := range got {
				if math.Abs(got[i].start-tc.want[i].start) > 1e-9 || math.Abs(got[i].end-tc.want[i].end) > 1e-9 {
					t.Errorf("segments %v, want %v", got, tc.want)
					break
				}
			}
		})
	}
}

// TestShotsModeFindsKnownCuts generates a video of three shots with cuts
// at 2 s and 5 s (25 fps): the cuts must be found within one frame
// interval, and the clips must follow the shots, the 4 s last shot split
// in two by MaxShotS 3.
func TestShotsModeFindsKnownCuts(t *testing.T) {
	dir := t.TempDir()
	const rate = 25
	graph := "color=c=black:s=160x120:r=25:d=2[a];testsrc=s=160x120:r=25:d=3[b];color=c=white:s=160x120:r=25:d=4[c];[a][b][c]concat=n=3:v=1:a=0"
	path := mediatest.MakeVideo(t, dir, "shots.mp4", graph)
	d := newTestDecoder(t, Options{Mode: ModeShots, FPS: 5, MaxFrames: 4, MinShotS: 1, MaxShotS: 3, Size: 32})

	src, err := parseSource(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.probe(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	cuts, err := d.detectCuts(context.Background(), src, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{2, 5}
	if len(cuts) != len(want) {
		t.Fatalf("cuts %v, want %v", cuts, want)
	}
	for i, c := range cuts {
		if math.Abs(c-want[i]) > 1.0/rate+1e-9 {
			t.Errorf("cut %d at %.3fs, want %.3fs within one frame interval (%.3fs)", i, c, want[i], 1.0/rate)
		}
	}

	clips := collect(t, d, path)
	spans := []segment{{0, 2}, {2, 5}, {5, 7}, {7, 9}}
	if len(clips) != len(spans) {
		t.Fatalf("%d clips %+v, want %d", len(clips), clips, len(spans))
	}
	for i, c := range clips {
		if math.Abs(c.StartS-spans[i].start) > 1.0/rate || math.Abs(c.EndS-spans[i].end) > 1.0/rate {
			t.Errorf("clip %d spans [%.3f, %.3f], want [%.3f, %.3f]", i, c.StartS, c.EndS, spans[i].start, spans[i].end)
		}
		if len(c.Frames) == 0 || len(c.Frames) > 4 {
			t.Errorf("clip %d has %d frames, want 1..4", i, len(c.Frames))
		}
		for _, f := range c.Frames {
			if f.TimeS < c.StartS-1e-9 || f.TimeS >= c.EndS+1e-9 {
				t.Errorf("clip %d [%.2f, %.2f) holds a frame at %.2f", i, c.StartS, c.EndS, f.TimeS)
			}
		}
	}
}
