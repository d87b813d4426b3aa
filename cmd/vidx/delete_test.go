package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
)

// TestDeletePublishesTombstones checks `vidx delete` puts one tombstone per
// video id on the videos topic, and publishes nothing when an id is bad.
func TestDeletePublishesTombstones(t *testing.T) {
	topic := config.Default().Topics.Videos
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 1, Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	bad := strings.Repeat("x", 300)
	if err := run(ctx, []string{"delete", "--brokers", b.Addrs()[0], "ok-1", bad}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "video id") {
		t.Fatalf("a bad id: %v, want an error naming the video id", err)
	}
	if err := run(ctx, []string{"delete", "--brokers", b.Addrs()[0], "beach", "a/b c"}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	if !strings.Contains(out.String(), "delete of beach published") {
		t.Errorf("stdout %q", out.String())
	}
	tap := kafka.NewTap(kafka.Config{Brokers: b.Addrs()}.WithDefaults(), topic, true)
	defer tap.Close()
	var got []string
	for range 2 {
		m, err := tap.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !schemas.IsDeleteCommand(m.Value, m.Headers) {
			t.Errorf("message for %q (value %q, headers %v) is not a delete command", m.Key, m.Value, m.Headers)
		}
		got = append(got, string(m.Key))
	}
	if strings.Join(got, ",") != "beach,a/b c" {
		t.Errorf("tombstones for %v, want beach and a/b c only", got)
	}
}
