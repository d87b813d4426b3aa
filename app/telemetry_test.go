package app_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/telemetry"
)

// TestOneClipTraceCoversEveryStage follows one video through the pipeline:
// the trace that starts when the sample stage takes the job must contain a
// process span for every hop and the inference and upsert spans, because
// each stage carries the W3C trace context in Kafka headers.
func TestOneClipTraceCoversEveryStage(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	tel, err := telemetry.FromProviders(tp, sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}

	a := startAppWith(t, ctx, f, nil, app.WithTelemetry(tel))
	cfg := a.Config

	publish(t, ctx, a, "red", job("red", f.videos["red"]))
	waitCount(t, ctx, a.Store(), cfg.Store.Collection, 1)
	// The index stage ends its spans right after committing.
	deadline := time.Now().Add(10 * time.Second)
	var root trace.TraceID
	for time.Now().Before(deadline) {
		for _, s := range spans.GetSpans() {
			if s.Name == "clip-embeddings process" {
				root = s.SpanContext.TraceID()
			}
		}
		if root.IsValid() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !root.IsValid() {
		t.Fatal("no process span for clip-embeddings")
	}
	names := map[string]bool{}
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID() == root {
			names[s.Name] = true
		}
	}
	for _, want := range []string{
		"videos process", "decode", "clips send", "clips process", "preprocess", "inference image",
		"frame-embeddings send", "frame-embeddings process", "clip-embeddings send",
		"clip-embeddings process", "upsert",
	} {
		if !names[want] {
			t.Errorf("trace lacks span %q; it has %v", want, names)
		}
	}

	// A query's trace shows tokenizing, text encoding, the candidate search
	// and the re-rank.
	ask(t, ctx, a, "traced", "red")
	var qroot trace.TraceID
	for time.Now().Before(deadline.Add(10 * time.Second)) {
		for _, s := range spans.GetSpans() {
			if s.Name == "results send" {
				qroot = s.SpanContext.TraceID()
			}
		}
		if qroot.IsValid() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	names = map[string]bool{}
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID() == qroot {
			names[s.Name] = true
		}
	}
	for _, want := range []string{"queries process", "text encode", "tokenize", "candidate search", "rerank", "results send"} {
		if !names[want] {
			t.Errorf("query trace lacks span %q; it has %v", want, names)
		}
	}
}

// TestMetricsEndpoint checks the Prometheus rendering names the runtime and
// stage metrics after traffic.
func TestMetricsEndpoint(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: "vidx-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	a := startAppWith(t, ctx, f, nil, app.WithTelemetry(tel))
	cfg := a.Config
	publish(t, ctx, a, "blue", job("blue", f.videos["blue"]))
	publish(t, ctx, a, "bad", []byte("{not json"))
	waitCount(t, ctx, a.Store(), cfg.Store.Collection, 1)
	ask(t, ctx, a, "m1", "blue")

	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`vidx_messages_consumed_total{`, `stage="encode"`, `vidx_handle_duration_seconds_bucket{`,
		`vidx_inference_duration_seconds_count{`, `model="image"`, `vidx_store_upsert_duration_seconds_count`,
		`vidx_dead_letters_total{`, `class="poison"`, `vidx_clips_encoded_total`, `vidx_frames_sampled_total`,
		`vidx_store_search_duration_seconds_count`, `vidx_query_duration_seconds_count`, `model="text"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}
