package encode_test

import (
	"context"
	"image"
	"image/color"
	"os"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/encode"
	"github.com/vidx/vidx/telemetry"
)

// BenchmarkEncodeTelemetry measures the encode stage's handler on the tiny
// ViT (4 clips x 12 frames per batch) with telemetry off (no-op tracer and
// meter) and on (sampled spans exported in batches, SDK metrics), so the
// cost of tracing and metrics shows as a ratio of clips/s.
func BenchmarkEncodeTelemetry(b *testing.B) {
	lib := onnx.DefaultLibPath()
	if _, err := os.Stat(lib); err != nil {
		b.Skipf("ONNX Runtime not installed at %s (run make setup)", lib)
	}
	dir := b.TempDir()
	if err := testmodels.WriteTinyCLIPBundle(dir); err != nil {
		b.Fatal(err)
	}
	m, err := bundle.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := onnx.NewRuntime(lib)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	enc, err := rt.NewImageEncoder(m, onnx.SessionOptions{IntraOpThreads: 2, MaxBatch: 8})
	if err != nil {
		b.Fatal(err)
	}
	h, err := encode.New(encode.Config{Model: m.Name}, enc)
	if err != nil {
		b.Fatal(err)
	}
	batch := benchClips(b, 4, 12)

	on := func() *telemetry.Telemetry {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		t, err := telemetry.FromProviders(tp, mp)
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	// Off and on alternate within one loop, so load from elsewhere on the
	// machine hits both alike; the ratio is the number to read.
	ctxs := []context.Context{context.Background(), telemetry.With(context.Background(), on())}
	var spent [2]time.Duration
	for i := 0; i < b.N; i++ {
		for j := range ctxs {
			k := (i + j) % 2 // which goes first alternates too
			ctx := ctxs[k]
			start := time.Now()
			for _, r := range h.Handle(ctx, batch) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			spent[k] += time.Since(start)
		}
	}
	clips := float64(b.N * len(batch))
	b.ReportMetric(clips/spent[0].Seconds(), "off-clips/s")
	b.ReportMetric(clips/spent[1].Seconds(), "on-clips/s")
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "on/off")
}

func benchClips(b *testing.B, clips, frames int) []pipeline.Message {
	var out []pipeline.Message
	for c := 0; c < clips; c++ {
		h := schemas.ClipHeader{VideoID: "v", ClipIndex: c, EndS: float64(frames), Codec: schemas.CodecJPEG, Size: 224}
		clip := schemas.Clip{}
		for f := 0; f < frames; f++ {
			img := image.NewRGBA(image.Rect(0, 0, 224, 224))
			for y := 0; y < 224; y++ {
				for x := 0; x < 224; x++ {
					img.SetRGBA(x, y, color.RGBA{uint8(x + c*40), uint8(y + f*20), uint8(x ^ y), 255})
				}
			}
			data, err := schemas.EncodeFrame(img, schemas.CodecJPEG, 95)
			if err != nil {
				b.Fatal(err)
			}
			clip.Frames = append(clip.Frames, data)
			h.FrameTimes = append(h.FrameTimes, float64(f))
		}
		clip.Header = h
		value, err := schemas.EncodeClip(&clip)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, pipeline.Message{Topic: "clips", Value: value})
	}
	return out
}
