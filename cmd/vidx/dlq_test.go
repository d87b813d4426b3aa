package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
)

// TestDLQListAndReplay dead-letters messages through a real stage, lists
// them, replays a filtered subset after "fixing" the handler and checks the
// replayed originals are processed.
func TestDLQListAndReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 2, Topics: []string{"in", "out", "dead-letters"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc := kafka.Config{Brokers: b.Addrs(), Partitions: 2}
	fixed := make(chan struct{})
	h := pipeline.PerMessage(func(_ context.Context, m pipeline.Message) ([]pipeline.Output, error) {
		v := string(m.Value)
		select {
		case <-fixed:
			return []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}, nil
		default:
		}
		switch {
		case strings.HasPrefix(v, "bad"):
			return nil, pipeline.Poisonf("unsupported codec in %s", v)
		case strings.HasPrefix(v, "flaky"):
			return nil, errors.New("decoder crashed")
		}
		return []pipeline.Output{{Topic: "out", Key: m.Key, Value: m.Value}}, nil
	})
	dead := make(chan struct{}, 8)
	st, err := kafka.NewStage(kafka.StageConfig{
		Name:    "sample",
		Topics:  []string{"in"},
		Runtime: kafka.Runtime{MaxAttempts: 2, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond},
	}, kc, h,
		slog.New(slog.DiscardHandler), kafka.Hooks{DeadLettered: func(string, pipeline.Message, error) { dead <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	defer func() { stop(); <-done }()
	var ins []pipeline.Output
	for _, v := range []string{"ok-1", "bad-1", "flaky-1", "bad-2"} {
		ins = append(ins, pipeline.Output{Topic: "in", Key: []byte("k-" + v), Value: []byte(v), Headers: map[string]string{"traceparent": "keep-me"}})
	}
	if err := kafka.Produce(ctx, kc, ins...); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-dead:
		case <-ctx.Done():
			t.Fatal("messages were not dead-lettered")
		}
	}
	// The hook fires before the dead letters are produced; wait until all
	// three are in the topic.
	for countTopic(t, ctx, kc, "dead-letters") < 3 {
		time.Sleep(20 * time.Millisecond)
	}
	brokers := strings.Join(b.Addrs(), ",")
	dlq := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(ctx, append(append([]string{"dlq"}, args...), "--brokers", brokers, "--metrics-addr", ""), &out, &errOut); err != nil {
			t.Fatalf("vidx dlq %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}

	var entries []deadLetterEntry
	for _, line := range strings.Split(strings.TrimSpace(dlq("list", "--json")), "\n") {
		var e deadLetterEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("list --json line %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	byKey := map[string]deadLetterEntry{}
	for _, e := range entries {
		byKey[e.Key] = e
	}
	want := map[string]struct {
		class    string
		attempts int
		reason   string
	}{
		"k-bad-1":   {"poison", 1, "unsupported codec in bad-1"},
		"k-bad-2":   {"poison", 1, "unsupported codec in bad-2"},
		"k-flaky-1": {"unknown", 2, "decoder crashed"},
	}
	if len(entries) != len(want) {
		t.Fatalf("listed %d dead letters, want %d: %+v", len(entries), len(want), entries)
	}
	for k, w := range want {
		e, ok := byKey[k]
		if !ok {
			t.Fatalf("%s not listed", k)
		}
		if e.Class != w.class || e.Attempts != w.attempts || e.Reason != w.reason || e.Stage != "sample" || e.Origin.Topic != "in" {
			t.Errorf("%s: got %+v, want %+v", k, e, w)
		}
	}
	table := dlq("list", "--filter", "class=unknown")
	if !strings.Contains(table, "decoder crashed") || strings.Contains(table, "unsupported codec") || !strings.Contains(table, "1 dead letters") {
		t.Errorf("filtered table:\n%s", table)
	}

	before := countTopic(t, ctx, kc, "in")
	if out := dlq("replay", "--filter", "stage=sample,reason~=CODEC", "--dry-run"); !strings.Contains(out, "would replay 2 dead letters") {
		t.Errorf("dry run output:\n%s", out)
	}
	if n := countTopic(t, ctx, kc, "in"); n != before {
		t.Fatalf("dry run produced %d messages", n-before)
	}
	close(fixed)
	if out := dlq("replay", "--filter", "stage=sample,reason~=CODEC"); !strings.Contains(out, "replayed 2 dead letters") {
		t.Errorf("replay output:\n%s", out)
	}
	tap := kafka.NewTap(kc, "out", true)
	defer tap.Close()
	got := map[string]map[string]string{}
	for len(got) < 3 {
		m, err := tap.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for outputs, have %v: %v", got, err)
		}
		got[string(m.Value)] = m.Headers
	}
	for _, v := range []string{"ok-1", "bad-1", "bad-2"} {
		if _, ok := got[v]; !ok {
			t.Errorf("%s not processed; outputs %v", v, got)
		}
	}
	// The replayed original carries its own headers, not the dead letter's.
	var replayed pipeline.Message
	err = kafka.ScanTopic(ctx, kc, "in", func(m pipeline.Message) error {
		if string(m.Value) == "bad-1" && m.Headers[schemas.HeaderReplayedFrom] != "" {
			replayed = m
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if replayed.Headers["traceparent"] != "keep-me" || replayed.Headers[schemas.HeaderError] != "" {
		t.Errorf("replayed headers = %v", replayed.Headers)
	}
}

func countTopic(t *testing.T, ctx context.Context, kc kafka.Config, topic string) int {
	t.Helper()
	n := 0
	if err := kafka.ScanTopic(ctx, kc, topic, func(pipeline.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
