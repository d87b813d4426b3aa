package app

import (
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline/kafka"
)

// StageSpec is what the rest of vidx knows of a stage without running it:
// its name, the topic it consumes and its runtime settings, each read from
// a configuration. The stage builder, `vidx status` and the crash harness
// all read this one table.
type StageSpec struct {
	Name string
	// Input is the topic the stage's work arrives on (its lag is the
	// stage's backlog); the index stage also reads delete commands on
	// the videos topic.
	Input   func(config.Topics) string
	Runtime func(config.Stages) config.Runtime
}

// Group is the stage's consumer group under cfg.
func (s StageSpec) Group(cfg config.Config) string {
	return kafka.StageConfig{Name: s.Name, Group: s.Runtime(cfg.Stages).Group}.WithDefaults().Group
}

// Stages lists every stage in pipeline order.
var Stages = []StageSpec{
	{StageSample, func(t config.Topics) string { return t.Videos }, func(s config.Stages) config.Runtime { return s.Sample.Runtime }},
	{StageEncode, func(t config.Topics) string { return t.Clips }, func(s config.Stages) config.Runtime { return s.Encode }},
	{StagePool, func(t config.Topics) string { return t.FrameEmbeddings }, func(s config.Stages) config.Runtime { return s.Pool.Runtime }},
	{StageIndex, func(t config.Topics) string { return t.ClipEmbeddings }, func(s config.Stages) config.Runtime { return s.Index }},
	{StageQuery, func(t config.Topics) string { return t.Queries }, func(s config.Stages) config.Runtime { return s.Query.Runtime }},
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
