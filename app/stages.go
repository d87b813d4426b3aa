package app

import (
	"context"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
)

// StageSpec is one stage: its name, the topic it consumes, its runtime
// settings in a configuration, and how App builds its handler. The stage
// builder, `vidx status`, the crash harness and the deployment checks all
// read this one table.
type StageSpec struct {
	Name string
	// Input is the topic the stage's work arrives on (its lag is the
	// stage's backlog); the index stage also reads delete commands on
	// the videos topic.
	Input   func(config.Topics) string
	Runtime func(config.Stages) kafka.Runtime
	// build returns the stage's handler, the topics it reads besides
	// Input, and options for its runtime.
	build func(a *App, ctx context.Context) (pipeline.Handler, []string, []kafka.Option, error)
}

// Group is the stage's consumer group under cfg.
func (s StageSpec) Group(cfg config.Config) string {
	return s.Runtime(cfg.Stages).WithDefaults(s.Name).Group
}

// Stages lists every stage in pipeline order.
var Stages = []StageSpec{
	{StageSample, func(t config.Topics) string { return t.Videos }, func(s config.Stages) kafka.Runtime { return s.Sample.Runtime }, (*App).buildSample},
	{StageEncode, func(t config.Topics) string { return t.Clips }, func(s config.Stages) kafka.Runtime { return s.Encode }, (*App).buildEncode},
	{StagePool, func(t config.Topics) string { return t.FrameEmbeddings }, func(s config.Stages) kafka.Runtime { return s.Pool.Runtime }, (*App).buildPool},
	{StageIndex, func(t config.Topics) string { return t.ClipEmbeddings }, func(s config.Stages) kafka.Runtime { return s.Index }, (*App).buildIndex},
	{StageQuery, func(t config.Topics) string { return t.Queries }, func(s config.Stages) kafka.Runtime { return s.Query.Runtime }, (*App).buildQuery},
}

// Spec returns the named stage's entry.
func Spec(name string) (StageSpec, bool) {
	for _, s := range Stages {
		if s.Name == name {
			return s, true
		}
	}
	return StageSpec{}, false
}
