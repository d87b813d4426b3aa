// Package telemetry sets up OpenTelemetry tracing and metrics for a vidx
// process and carries them through contexts, so stages record spans and
// metrics without global state.
//
// Traces are exported over OTLP when the standard OTEL_EXPORTER_OTLP_*
// variables name an endpoint; otherwise the tracer is a no-op and costs
// nothing. Metrics are always kept for the Prometheus /metrics endpoint and
// also pushed over OTLP when an endpoint is set.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of vidx's spans and metrics.
const ScopeName = "github.com/vidx/vidx"

// Telemetry holds the providers and vidx's metric instruments.
type Telemetry struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	inst       *Instruments
	registry   *prometheus.Registry
	shutdown   []func(context.Context) error
}

// Config selects what New sets up.
type Config struct {
	// ServiceName names the process in traces and metrics (e.g. vidx-encode).
	ServiceName string
	// Env reads environment variables; nil means no OTLP export.
	Env func(string) string
}

// New sets up tracing and metrics from the environment.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	env := cfg.Env
	if env == nil {
		env = func(string) string { return "" }
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	t := &Telemetry{registry: prometheus.NewRegistry()}
	var tp trace.TracerProvider = noop.NewTracerProvider()
	if env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.shutdown = append(t.shutdown, sdk.Shutdown)
		tp = sdk
	}
	prom, err := promexporter.New(promexporter.WithRegisterer(t.registry))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(prom), sdkmetric.WithResource(res)}
	if env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(15*time.Second))))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	t.shutdown = append(t.shutdown, mp.Shutdown)
	if err := t.init(tp, mp); err != nil {
		return nil, err
	}
	return t, nil
}

// FromProviders wraps existing providers (tests use in-memory ones).
func FromProviders(tp trace.TracerProvider, mp metric.MeterProvider) (*Telemetry, error) {
	t := &Telemetry{}
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	return t, t.init(tp, mp)
}

func (t *Telemetry) init(tp trace.TracerProvider, mp metric.MeterProvider) error {
	t.tracer = tp.Tracer(ScopeName)
	t.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	inst, err := newInstruments(mp.Meter(ScopeName))
	if err != nil {
		return fmt.Errorf("telemetry: instruments: %w", err)
	}
	t.inst = inst
	return nil
}

// Tracer returns the tracer.
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// Propagator returns the W3C trace-context (and baggage) propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// Instruments returns vidx's metric instruments.
func (t *Telemetry) Instruments() *Instruments { return t.inst }

// MetricsHandler serves the metrics in Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t.registry == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}

type ctxKey struct{}

// With returns a context carrying t.
func With(ctx context.Context, t *Telemetry) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// disabled serves code running without telemetry: no-op tracer and
// instruments, so recording costs nothing.
var disabled = func() *Telemetry {
	t, err := FromProviders(nil, nil)
	if err != nil {
		panic(err)
	}
	return t
}()

// From returns the Telemetry in ctx, or a disabled one.
func From(ctx context.Context) *Telemetry {
	if t, ok := ctx.Value(ctxKey{}).(*Telemetry); ok && t != nil {
		return t
	}
	return disabled
}

// Start starts a span with the tracer in ctx.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return From(ctx).tracer.Start(ctx, name, opts...)
}

// End ends span, recording err when it is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
