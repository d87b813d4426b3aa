package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
)

// TestStatusPipeline checks `vidx status` reports each stage's lag from the
// brokers: jobs waiting on videos show as the sample stage's lag.
func TestStatusPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics := config.Default().Topics
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 2, Topics: topics.All()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc := kafka.Config{Brokers: b.Addrs()}
	for i := 0; i < 3; i++ {
		if err := kafka.Produce(ctx, kc, pipeline.Output{Topic: topics.Videos, Key: []byte(strconv.Itoa(i)), Value: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	args := []string{"status", "--json", "--data-dir", t.TempDir(), "--brokers", strings.Join(b.Addrs(), ",")}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var rep statusReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if rep.Pipeline == nil || len(rep.Pipeline.Stages) != 5 {
		t.Fatalf("pipeline status = %+v", rep.Pipeline)
	}
	for _, s := range rep.Pipeline.Stages {
		want := int64(0)
		if s.Stage == "sample" {
			want = 3
		}
		if s.Lag != want || s.Group != "vidx-"+s.Stage {
			t.Errorf("stage %s: lag %d group %s, want %d vidx-%s", s.Stage, s.Lag, s.Group, want, s.Stage)
		}
	}

	// A stage's configured consumer group is the one whose lag is read.
	cfgFile := filepath.Join(t.TempDir(), "vidx.yaml")
	if err := os.WriteFile(cfgFile, []byte("stages:\n  sample: {group: tenant-a-sample}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	args = []string{"status", "--json", "--config", cfgFile, "--data-dir", t.TempDir(), "--brokers", strings.Join(b.Addrs(), ",")}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	rep = statusReport{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if s := rep.Pipeline.Stages[0]; s.Stage != "sample" || s.Group != "tenant-a-sample" || s.Lag != 3 {
		t.Errorf("with stages.sample.group set: %+v, want group tenant-a-sample with lag 3", s)
	}

	// Unreachable brokers: a note, not a failure.
	out.Reset()
	args = []string{"status", "--data-dir", t.TempDir(), "--brokers", "127.0.0.1:1", "--kafka-timeout", "1s"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not reachable") {
		t.Errorf("no note about the brokers:\n%s", out.String())
	}
}
