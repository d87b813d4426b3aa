package onnx

import (
	"context"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/testmodels"
)

// Both benchmarks run the tiny CLIP image model on batches of benchBatch with
// the same thread settings, so images/s of ImageEncoder over BareORT is the
// encoder's overhead (tensor wrapping, output copy and shape checks).
const (
	benchBatch   = 8
	benchThreads = 2
)

func BenchmarkImageEncoder(b *testing.B) {
	r := newTestRuntime(b)
	tiny, _ := bundleDirs(b)
	enc, err := r.NewImageEncoder(loadBundle(b, tiny), SessionOptions{IntraOpThreads: benchThreads, MaxBatch: benchBatch})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	px := randomPixels(benchBatch, enc.ImageSize(), 3)
	ctx := context.Background()
	// Warm up outside the timer: the first runs allocate ONNX Runtime's arena.
	for range 2 {
		if _, err := enc.EncodeImages(ctx, px, benchBatch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := enc.EncodeImages(ctx, px, benchBatch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchBatch*b.N)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkBareORT is the floor: plain onnxruntime_go with tensors
// allocated once and bound at session creation.
func BenchmarkBareORT(b *testing.B) {
	newTestRuntime(b) // only to initialise the process-wide environment
	tiny, _ := bundleDirs(b)
	const size = testmodels.ImageSize
	in, err := ort.NewTensor(ort.NewShape(benchBatch, 3, size, size), randomPixels(benchBatch, size, 3))
	if err != nil {
		b.Fatal(err)
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(benchBatch, testmodels.TinyDim))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Destroy()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(benchThreads); err != nil {
		b.Fatal(err)
	}
	s, err := ort.NewAdvancedSession(filepath.Join(tiny, testmodels.ImageFile),
		[]string{testmodels.ImageInput}, []string{testmodels.ImageOutput},
		[]ort.Value{in}, []ort.Value{out}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destroy()
	for range 2 {
		if err := s.Run(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if err := s.Run(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchBatch*b.N)/b.Elapsed().Seconds(), "images/s")
}
