package telemetry

import (
	"errors"

	"go.opentelemetry.io/otel/metric"
)

// Instruments are the metrics vidx records. Names follow OpenTelemetry
// conventions (dots, units in the unit field); the Prometheus exporter turns
// them into vidx_..._total and vidx_..._seconds series.
type Instruments struct {
	// Runtime, per stage (attribute "stage").
	Consumed      metric.Int64Counter
	Produced      metric.Int64Counter
	DeadLetters   metric.Int64Counter // attribute "class"
	Retries       metric.Int64Counter
	BatchSize     metric.Int64Histogram
	HandleSeconds metric.Float64Histogram
	CommitSeconds metric.Float64Histogram
	// Consumer lag per partition (attributes stage, topic, partition).
	Lag metric.Int64Gauge

	// Stages.
	FramesSampled    metric.Int64Counter
	ClipsEncoded     metric.Int64Counter
	InferenceBatch   metric.Int64Histogram   // attribute "model" (image, text, temporal)
	InferenceSeconds metric.Float64Histogram // attribute "model"
	UpsertSeconds    metric.Float64Histogram
	SearchSeconds    metric.Float64Histogram
	QuerySeconds     metric.Float64Histogram // end to end, from the query's produce time
	StreamState      metric.Int64Gauge       // attributes stream, state

	// StoreRefusals counts writes the vector store refused although the
	// data was fine (attribute "reason": capacity, rejected); alert on it.
	StoreRefusals metric.Int64Counter
	// ClipsReplaced counts points of older ingest generations deleted
	// after a re-ingested video's new clips were indexed.
	ClipsReplaced metric.Int64Counter
}

var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newInstruments(m metric.Meter) (*Instruments, error) {
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	seconds := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(latencyBuckets...))
		errs = append(errs, err)
		return h
	}
	sizes := func(name, desc string) metric.Int64Histogram {
		h, err := m.Int64Histogram(name, metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256))
		errs = append(errs, err)
		return h
	}
	gauge := func(name, desc string) metric.Int64Gauge {
		g, err := m.Int64Gauge(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	in := &Instruments{
		Consumed:         counter("vidx.messages.consumed", "Messages fetched by a stage."),
		Produced:         counter("vidx.messages.produced", "Messages produced by a stage, dead letters included."),
		DeadLetters:      counter("vidx.dead_letters", "Messages sent to the dead-letter topic, by error class."),
		Retries:          counter("vidx.retries", "Handler retries."),
		BatchSize:        sizes("vidx.batch.size", "Messages per handler call."),
		HandleSeconds:    seconds("vidx.handle.duration", "Handler time per batch."),
		CommitSeconds:    seconds("vidx.commit.duration", "Produce-and-commit time per batch."),
		Lag:              gauge("vidx.consumer.lag", "Messages between the committed offset and the end of a partition."),
		FramesSampled:    counter("vidx.frames.sampled", "Frames kept by the sample stage."),
		ClipsEncoded:     counter("vidx.clips.encoded", "Clips whose frames were embedded."),
		InferenceBatch:   sizes("vidx.inference.batch.size", "Inputs per model run."),
		InferenceSeconds: seconds("vidx.inference.duration", "Model run time."),
		UpsertSeconds:    seconds("vidx.store.upsert.duration", "Vector store upsert time."),
		SearchSeconds:    seconds("vidx.store.search.duration", "Vector store search time."),
		QuerySeconds:     seconds("vidx.query.duration", "Query latency from publish to answer."),
		StreamState:      gauge("vidx.stream.state", "1 for a stream's current state."),
	}
	in.StoreRefusals = counter("vidx.store.refusals", "Writes the vector store refused for its capacity or limits, not the data, by reason.")
	in.ClipsReplaced = counter("vidx.index.clips_replaced", "Clips of older ingest generations deleted after a video was re-indexed.")
	return in, errors.Join(errs...)
}
