package streams

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
)

// streamsHarness runs stream managers against one broker.
type streamsHarness struct {
	t     *testing.T
	kc    kafka.Config
	guard *sourceguard.Guard
	cfg   Config
	root  string // the only file root
	// The topics, named for this test on a shared broker.
	registryTopic, stateTopic, clipsTopic string
}

// newHarness runs the harness on an embedded broker of its own.
func newHarness(t *testing.T, cfg Config) *streamsHarness {
	t.Helper()
	return newHarnessOn(t, kafkatest.Start(t, kafkatest.Embedded, 2), cfg)
}

func newHarnessOn(t *testing.T, b *kafkatest.Broker, cfg Config) *streamsHarness {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	root := t.TempDir()
	if cfg.Group == "" {
		cfg.Group = b.Name("vidx-sample-streams")
	}
	h := &streamsHarness{t: t, kc: b.Config(), cfg: cfg, root: root,
		guard: mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{IOTimeout: 3 * time.Second, FileRoots: []string{root},
			Resolver: mediatest.Resolver{"metadata.test": {"169.254.169.254"}}}),
		registryTopic: b.Name("streams"), stateTopic: b.Name("stream-state"), clipsTopic: b.Name("clips")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, h.kc, h.clipsTopic); err != nil {
		t.Fatal(err)
	}
	return h
}

// replica is one running stream manager.
type replica struct {
	s      *Service
	cancel context.CancelFunc
	done   chan error
}

func (h *streamsHarness) start(owner string) *replica {
	h.t.Helper()
	s, err := New(h.cfg, Env{
		Kafka: h.kc, RegistryTopic: h.registryTopic, StateTopic: h.stateTopic, ClipsTopic: h.clipsTopic,
		Guard: h.guard, Owner: owner, Logger: testLog(h.t).With("replica", owner),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

// stop cancels the replica like a SIGTERM and waits for it to let go.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("streams: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("streams did not stop")
	}
}

func (h *streamsHarness) register(spec schemas.StreamSpec) {
	h.t.Helper()
	v, err := schemas.EncodeStream(&spec)
	if err != nil {
		h.t.Fatal(err)
	}
	h.put(spec.StreamID, v)
}

func (h *streamsHarness) put(key string, value []byte) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureCompactedTopics(ctx, h.kc, h.registryTopic, h.stateTopic); err != nil {
		h.t.Fatal(err)
	}
	if err := kafka.Produce(ctx, h.kc, pipeline.Output{Topic: h.registryTopic, Key: []byte(key), Value: value}); err != nil {
		h.t.Fatal(err)
	}
}

// clips returns the headers of every clip of stream id produced so far.
func (h *streamsHarness) clips(id string) []schemas.ClipHeader {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []schemas.ClipHeader
	err := kafka.ReadCompacted(ctx, h.kc, h.clipsTopic, func(m pipeline.Message) error {
		if string(m.Key) != id {
			return nil
		}
		c, err := schemas.DecodeClip(m.Value)
		if err != nil {
			return err
		}
		out = append(out, c.Header)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *streamsHarness) waitClips(id string, n int, timeout time.Duration) []schemas.ClipHeader {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := h.clips(id)
		if len(c) >= n {
			return c
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("stream %s: %d clips after %v, want %d", id, len(c), timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *streamsHarness) states() map[string]schemas.StreamState {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ReadStates(ctx, h.kc, h.stateTopic)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *streamsHarness) waitState(id string, cond func(schemas.StreamState) bool, timeout time.Duration) schemas.StreamState {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, ok := h.states()[id]
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("stream %s: state %+v after %v", id, st, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkContiguous asserts the clips of one stream name each window once,
// with no window missing between the first and the last.
func checkContiguous(t *testing.T, clips []schemas.ClipHeader, window float64) {
	t.Helper()
	idx := make([]int, len(clips))
	for i, c := range clips {
		idx[i] = c.ClipIndex
		if c.StreamID != c.VideoID || c.StreamID == "" {
			t.Errorf("clip %d: stream id %q, video id %q", c.ClipIndex, c.StreamID, c.VideoID)
		}
		if c.StartS != float64(c.ClipIndex)*window || c.EndS != c.StartS+window {
			t.Errorf("clip %d covers [%v, %v)", c.ClipIndex, c.StartS, c.EndS)
		}
		if c.WallStart.IsZero() || c.WallEnd.Before(c.WallStart) {
			t.Errorf("clip %d wall clock [%v, %v]", c.ClipIndex, c.WallStart, c.WallEnd)
		}
	}
	sorted := slices.Sorted(slices.Values(idx))
	for i := 1; i < len(sorted); i++ {
		switch {
		case sorted[i] == sorted[i-1]:
			t.Errorf("window %d emitted twice (windows %v)", sorted[i], idx)
		case sorted[i] != sorted[i-1]+1:
			t.Errorf("windows %d..%d missing (windows %v)", sorted[i-1]+1, sorted[i]-1, idx)
		}
	}
}

// TestStreamsRestartMidStream stops the sample stage while a live stream
// plays and starts another one: the windows on the clips topic continue
// where they stopped, none repeated, none missing.
func TestStreamsRestartMidStream(t *testing.T) {
	t.Parallel()
	kafkatest.Each(t, 2, nil, testStreamsRestartMidStream)
}

func testStreamsRestartMidStream(t *testing.T, b *kafkatest.Broker) {
	live := mediatest.NewLiveHLS(t, 4*time.Second)
	h := newHarnessOn(t, b, Config{WindowS: 2, StallTimeout: 10 * time.Second, BackoffMin: 200 * time.Millisecond})
	h.register(schemas.StreamSpec{StreamID: "cam-1", URI: live.URL(), Source: "test", Metadata: map[string]string{"site": "lab"}})

	a := h.start("replica-a")
	h.waitClips("cam-1", 3, 30*time.Second)
	a.stop(t)
	stopped := h.waitState("cam-1", func(s schemas.StreamState) bool { return s.State == schemas.StreamStopped }, 5*time.Second)
	if stopped.LastWindow == nil || !stopped.Live || stopped.Owner != "replica-a" {
		t.Fatalf("state after stop: %+v", stopped)
	}
	before := len(h.clips("cam-1"))
	time.Sleep(3 * time.Second) // the stream plays on while no one reads it

	h.start("replica-b")
	clips := h.waitClips("cam-1", before+3, 30*time.Second)
	checkContiguous(t, clips, 2)
	if clips[0].Source != "test" || clips[0].Metadata["site"] != "lab" || clips[0].URI != live.URL() {
		t.Errorf("clip header %+v lacks the spec's source, metadata or uri", clips[0])
	}
	st := h.waitState("cam-1", func(s schemas.StreamState) bool {
		return s.State == schemas.StreamRunning && s.Owner == "replica-b" && s.LastWindow != nil && s.LastWindow.Index >= clips[len(clips)-1].ClipIndex
	}, 10*time.Second)
	if st.Windows < int64(len(clips)) {
		t.Errorf("state counts %d windows, the clips topic has %d", st.Windows, len(clips))
	}
}

// TestStreamsStallReconnect stalls the source: the watchdog restarts the
// decoder, the stream reports reconnecting with the reason, and once the
// source is back the windows continue without a gap or a repeat (the
// playlist still holds the segments published meanwhile).
func TestStreamsStallReconnect(t *testing.T) {
	t.Parallel()
	live := mediatest.NewLiveHLS(t, 4*time.Second)
	h := newHarness(t, Config{WindowS: 2, StallTimeout: 2 * time.Second, BackoffMin: 300 * time.Millisecond, BackoffMax: time.Second})
	h.register(schemas.StreamSpec{StreamID: "cam-2", URI: live.URL()})
	r := h.start("replica-a")
	h.waitClips("cam-2", 2, 30*time.Second)
	live.Stall()
	st := h.waitState("cam-2", func(s schemas.StreamState) bool { return s.State == schemas.StreamReconnecting }, 15*time.Second)
	if !strings.Contains(st.Error, "stalled") && !strings.Contains(st.Error, "timed out") {
		t.Errorf("reconnecting because %q, want the stall", st.Error)
	}
	status := r.s.Status()
	if len(status) != 1 || status[0].State != schemas.StreamReconnecting || status[0].LastError == "" || status[0].LastWindow == nil {
		t.Errorf("status while stalled: %+v", status)
	}
	stalledAt := len(h.clips("cam-2"))
	time.Sleep(2 * time.Second)
	live.Release()
	clips := h.waitClips("cam-2", stalledAt+3, 30*time.Second)
	checkContiguous(t, clips, 2)
	st = h.waitState("cam-2", func(s schemas.StreamState) bool { return s.State == schemas.StreamRunning }, 10*time.Second)
	if st.Restarts < 1 {
		t.Errorf("restarts %d after a stall", st.Restarts)
	}
}

// TestStreamsRefusedInvalidRemoved: a stream the policy refuses fails with
// the reason, an unreadable registry record fails its stream, and removing
// a stream stops it.
func TestStreamsRefusedInvalidRemoved(t *testing.T) {
	t.Parallel()
	live := mediatest.NewLiveHLS(t, 4*time.Second)
	h := newHarness(t, Config{WindowS: 2, BackoffMin: 200 * time.Millisecond,
		Static: []Static{{StreamID: "from-config", URI: live.URL() + "?cfg", WindowS: 2}}})
	h.register(schemas.StreamSpec{StreamID: "metadata", URI: "http://metadata.test/latest/meta-data/"})
	h.register(schemas.StreamSpec{StreamID: "passwd", URI: "file:///etc/passwd", Segment: &schemas.Segment{WindowS: 5}})
	h.put("garbled", []byte(`{"schema_version": 1, "stream_id": "garbled", "uri": 7}`))
	h.register(schemas.StreamSpec{StreamID: "cam-3", URI: live.URL()})
	r := h.start("replica-a")

	for id, want := range map[string]string{
		"metadata": "resolves to no allowed address",
		"passwd":   "outside the allowed file roots",
		"garbled":  "invalid stream spec",
	} {
		st := h.waitState(id, func(s schemas.StreamState) bool { return s.State == schemas.StreamFailed }, 20*time.Second)
		if !strings.Contains(st.Error, want) {
			t.Errorf("%s failed with %q, want it to mention %q", id, st.Error, want)
		}
	}
	h.waitClips("from-config", 1, 30*time.Second)
	h.waitClips("cam-3", 1, 30*time.Second)
	h.register(schemas.StreamSpec{StreamID: "cam-3", Action: schemas.ActionRemove})
	h.waitState("cam-3", func(s schemas.StreamState) bool { return s.State == schemas.StreamRemoved }, 10*time.Second)
	n := len(h.clips("cam-3"))
	time.Sleep(3 * time.Second)
	if m := len(h.clips("cam-3")); m != n {
		t.Errorf("a removed stream produced %d more clips", m-n)
	}
	for _, s := range r.s.Status() {
		if s.StreamID == "cam-3" {
			t.Errorf("removed stream still in the status: %+v", s)
		}
	}
}

// TestStreamsOwnership runs two replicas: each stream runs on exactly one
// of them, and when one replica stops the other takes its streams over.
func TestStreamsOwnership(t *testing.T) {
	t.Parallel()
	live := mediatest.NewLiveHLS(t, 4*time.Second)
	h := newHarness(t, Config{WindowS: 2, BackoffMin: 200 * time.Millisecond})
	ids := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	for _, id := range ids {
		h.register(schemas.StreamSpec{StreamID: id, URI: live.URL() + "?" + id})
	}
	a, b := h.start("replica-a"), h.start("replica-b")
	owners := func() map[string][]string {
		out := map[string][]string{}
		for name, r := range map[string]*replica{"a": a, "b": b} {
			for _, s := range r.s.Status() {
				if s.State == schemas.StreamRunning {
					out[s.StreamID] = append(out[s.StreamID], name)
				}
			}
		}
		return out
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		o := owners()
		shared := len(o) == len(ids)
		for _, names := range o {
			if len(names) != 1 {
				shared = false
			}
		}
		var onA int
		for _, names := range o {
			if len(names) == 1 && names[0] == "a" {
				onA++
			}
		}
		if shared && onA > 0 && onA < len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams not shared out between the replicas: %v", o)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.stop(t)
	for {
		o := owners()
		if len(o) == len(ids) {
			for id, names := range o {
				if len(names) != 1 || names[0] != "b" {
					t.Errorf("stream %s runs on %v after replica a stopped", id, names)
				}
			}
			break
		}
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("replica b did not take the streams over: %v", o)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, id := range ids {
		clips := h.waitClips(id, 2, 20*time.Second)
		checkContiguous(t, clips, 2)
	}
}

// TestStreamsFileToEnd indexes a file registered as a stream to its end,
// then again when a new version of the spec is registered.
func TestStreamsFileToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{WindowS: 4, BackoffMin: 200 * time.Millisecond})
	path := mediatest.MakeVideo(t, h.root, "archive.mp4", "testsrc=size=96x64:rate=10:duration=9")
	h.register(schemas.StreamSpec{StreamID: "archive", URI: path, Version: 1})
	h.start("replica-a")
	st := h.waitState("archive", func(s schemas.StreamState) bool { return s.State == schemas.StreamEnded }, 30*time.Second)
	clips := h.clips("archive")
	if len(clips) != 3 || st.Live || st.Windows != 3 || st.LastWindow == nil || st.LastWindow.EndS != 9 {
		t.Fatalf("ended with state %+v and %d clips, want 3 windows in file time, the last ending at 9", st, len(clips))
	}
	for i, c := range clips {
		if c.ClipIndex != i || !c.WallStart.IsZero() {
			t.Errorf("clip %d: index %d, wall clock %v (a file has none)", i, c.ClipIndex, c.WallStart)
		}
	}
	h.register(schemas.StreamSpec{StreamID: "archive", URI: path, Version: 2})
	st = h.waitState("archive", func(s schemas.StreamState) bool {
		return s.State == schemas.StreamEnded && s.SpecVersion == 2
	}, 30*time.Second)
	if n := len(h.clips("archive")); n != 6 || st.Windows != 6 {
		t.Errorf("version 2: %d clips, %d windows counted; want the file indexed again (6)", n, st.Windows)
	}
	// An older version is ignored.
	h.register(schemas.StreamSpec{StreamID: "archive", URI: path, Version: 1})
	time.Sleep(time.Second)
	if n := len(h.clips("archive")); n != 6 {
		t.Errorf("an older spec version re-ran the stream: %d clips", n)
	}
}
