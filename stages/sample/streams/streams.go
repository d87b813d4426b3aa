package streams

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/stages/sample"
	"github.com/vidx/vidx/telemetry"
)

// StreamsConfig configures continuous indexing of registered streams by the
// sample stage.
type Config struct {
	// Group is the consumer group on the streams topic through which the
	// sample stage's replicas share the streams; default "vidx-sample-streams".
	Group string `yaml:"group"`
	// Window defaults for streams whose spec does not set them: WindowS
	// (default 10) seconds every StrideS (default WindowS) seconds, FPS
	// frames a second (default 1), at most MaxFrames (default 12) per window.
	WindowS   float64 `yaml:"window_s"`
	StrideS   float64 `yaml:"stride_s"`
	FPS       float64 `yaml:"fps"`
	MaxFrames int     `yaml:"max_frames"`
	Selection string  `yaml:"selection"`
	// StallTimeout is how long a stream may go without a frame before its
	// decoder is killed and restarted; default 30s.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// BackoffMin and BackoffMax bound the exponential delay between
	// restarts of a failing source; default 1s and 1m.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// MaxStreams bounds the streams one replica runs; 0 is no bound.
	MaxStreams int `yaml:"max_streams"`
	// Static streams are registered by configuration. A record on the
	// streams topic with the same stream_id overrides one.
	Static []Static `yaml:"static"`
}

// StaticStream is a stream registered in the configuration.
type Static struct {
	StreamID  string            `yaml:"stream_id"`
	URI       string            `yaml:"uri"`
	Source    string            `yaml:"source"`
	WindowS   float64           `yaml:"window_s"`
	StrideS   float64           `yaml:"stride_s"`
	FPS       float64           `yaml:"fps"`
	MaxFrames int               `yaml:"max_frames"`
	Selection string            `yaml:"selection"`
	Metadata  map[string]string `yaml:"metadata"`
}

// Spec returns the stream's registry record.
func (s Static) Spec() schemas.StreamSpec {
	spec := schemas.StreamSpec{SchemaVersion: schemas.Version, StreamID: s.StreamID, URI: s.URI, Source: s.Source, Metadata: s.Metadata}
	if s.WindowS != 0 || s.StrideS != 0 || s.FPS != 0 || s.MaxFrames != 0 || s.Selection != "" {
		spec.Segment = &schemas.Segment{WindowS: s.WindowS, StrideS: s.StrideS, FPS: s.FPS, MaxFrames: s.MaxFrames, Selection: s.Selection}
	}
	return spec
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Group == "" {
		c.Group = "vidx-sample-streams"
	}
	if c.WindowS == 0 {
		c.WindowS = 10
	}
	if c.FPS == 0 {
		c.FPS = 1
	}
	if c.MaxFrames == 0 {
		c.MaxFrames = 12
	}
	if c.Selection == "" {
		c.Selection = media.SelectUniform
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 30 * time.Second
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = time.Minute
	}
	return c
}

// Validate checks the configuration, static streams included.
func (c Config) Validate() error {
	var errs []error
	o := media.StreamOptions{FPS: c.FPS, MaxFrames: c.MaxFrames, Selection: c.Selection, WindowS: c.WindowS, StrideS: c.StrideS}
	if err := o.WindowOptions().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.StallTimeout < 0 || c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("stall_timeout must be positive and backoff_min <= backoff_max (%v, %v)", c.BackoffMin, c.BackoffMax))
	}
	if c.MaxStreams < 0 {
		errs = append(errs, fmt.Errorf("max_streams %d must not be negative", c.MaxStreams))
	}
	seen := map[string]bool{}
	for i, s := range c.Static {
		spec := s.Spec()
		if err := spec.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("static[%d]: %w", i, err))
		}
		if seen[s.StreamID] {
			errs = append(errs, fmt.Errorf("static[%d]: stream_id %q is listed twice", i, s.StreamID))
		}
		seen[s.StreamID] = true
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sample: streams: %w", err)
	}
	return nil
}

// StreamsEnv is what the stream manager runs against.
type Env struct {
	Kafka kafka.Config
	// RegistryTopic ("streams") and StateTopic ("stream-state") are
	// compacted and keyed by stream_id; ClipsTopic receives the windows.
	RegistryTopic, StateTopic, ClipsTopic string
	// ThumbnailTopic, when set, receives each window's thumbnail.
	ThumbnailTopic string
	// Guard checks every stream's source; required.
	Guard *sourceguard.Guard
	// Codec and Quality encode the frames as for video jobs; Size is the
	// crop side (default 224).
	Codec   string
	Quality int
	Size    int
	// FFmpegPath defaults to "ffmpeg" on PATH.
	FFmpegPath string
	// Owner names this replica in state records; default host name and
	// process id.
	Owner  string
	Logger *slog.Logger
}

// StreamStatus is one stream as the replica running it sees it.
type Status struct {
	StreamID    string
	URI         string // password redacted
	State       string // schemas.StreamRunning, ...
	Live        bool
	LastWindow  *schemas.StreamWindow
	Windows     int64 // emitted since the stream was registered
	Restarts    int64
	LastError   string
	Since       time.Time // when State was entered
	SpecVersion int64
}

// Service runs the registered streams this replica owns: those whose
// stream_id hashes to a partition of the registry topic that the consumer
// group assigned to it. When a group generation ends (a replica joined or
// left) every stream is stopped, its state flushed, and the new owner
// resumes it from the state topic.
type Service struct {
	cfg Config
	env Env
	log *slog.Logger
	p   *kafka.Producer
	now func() time.Time

	mu     sync.Mutex
	status map[string]*Status
}

// New validates the configuration.
func New(cfg Config, env Env) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.Guard == nil {
		return nil, errors.New("sample: streams need a source Guard")
	}
	if env.RegistryTopic == "" || env.StateTopic == "" || env.ClipsTopic == "" {
		return nil, errors.New("sample: streams need registry, state and clips topics")
	}
	env.Kafka = env.Kafka.WithDefaults()
	if err := env.Kafka.Validate(); err != nil {
		return nil, err
	}
	// The sample stage's defaults: windows travel as its clips do.
	def := sample.Settings{}.WithDefaults()
	env.Codec = cmp.Or(env.Codec, def.Codec)
	env.Quality = cmp.Or(env.Quality, def.Quality)
	env.FFmpegPath = cmp.Or(env.FFmpegPath, def.FFmpeg)
	env.Size = cmp.Or(env.Size, media.Options{}.WithDefaults().Size)
	if env.Owner == "" {
		host, _ := os.Hostname()
		env.Owner = host + "/" + strconv.Itoa(os.Getpid())
	}
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	return &Service{
		cfg: cfg, env: env, log: env.Logger.With("component", "streams"),
		p: kafka.NewProducer(env.Kafka, cfg.backoff(), env.Logger.With("component", "streams")), now: time.Now, status: map[string]*Status{},
	}, nil
}

// Status returns the streams this replica runs, by stream id.
func (s *Service) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.status))
	for _, st := range s.status {
		c := *st
		if st.LastWindow != nil {
			w := *st.LastWindow
			c.LastWindow = &w
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Status) int {
		switch {
		case a.StreamID < b.StreamID:
			return -1
		case a.StreamID > b.StreamID:
			return 1
		}
		return 0
	})
	return out
}

// Run takes part in the registry's consumer group and runs the streams
// assigned to this replica until ctx ends; then it stops them, writes their
// state and leaves the group.
func (s *Service) Run(ctx context.Context) error {
	defer s.p.Close()
	for {
		err := kafka.EnsureCompactedTopics(ctx, s.env.Kafka, s.env.RegistryTopic, s.env.StateTopic)
		if err == nil {
			break
		}
		s.log.Warn("creating the stream topics failed, retrying", "err", err)
		if pipeline.Sleep(ctx, s.cfg.BackoffMin) != nil {
			return nil
		}
	}
	s.log.Info("streams started", "registry", s.env.RegistryTopic, "group", s.cfg.Group)
	m := kafka.Member{Group: s.cfg.Group, Topic: s.env.RegistryTopic, Backoff: s.cfg.backoff(), Log: s.log}
	if err := m.Run(ctx, s.env.Kafka, s.generation); err != nil {
		return fmt.Errorf("sample: streams group: %w", err)
	}
	s.log.Info("streams stopped")
	return nil
}

// registryRecord is a record of the registry topic, decoded or not.
type registryRecord struct {
	id   string
	spec schemas.StreamSpec
	err  error
}

// runner is one stream's goroutine.
type runner struct {
	spec   schemas.StreamSpec
	cancel context.CancelFunc
	done   chan struct{}
	state  *schemas.StreamState // the runner's; read only after done
}

// generation runs the streams of the registry partitions this replica got.
func (s *Service) generation(ctx context.Context, id int32, parts []int) {
	log := s.log.With("generation", id, "partitions", parts)
	log.Info("streams assigned")
	states, err := s.readStates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("reading stream states failed; giving the generation up", "err", err)
		}
		return
	}
	all, err := s.registryPartitions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("reading the registry's partitions failed; giving the generation up", "err", err)
		}
		return
	}
	specs := map[string]registryRecord{}
	for _, st := range s.cfg.Static {
		if slices.Contains(parts, kafka.PartitionFor([]byte(st.StreamID), all)) {
			specs[st.StreamID] = registryRecord{id: st.StreamID, spec: st.Spec()}
		}
	}

	records := make(chan registryRecord)
	caught := make(chan struct{}, len(parts))
	failed := make(chan error, len(parts))
	var tails sync.WaitGroup
	for _, p := range parts {
		tails.Add(1)
		go func() {
			defer tails.Done()
			err := kafka.TailPartition(ctx, s.env.Kafka, s.env.RegistryTopic, p, func(m pipeline.Message) error {
				if len(m.Key) == 0 {
					// Without a key a record can be neither compacted nor removed.
					log.Warn("ignoring a stream registry record without a key", "partition", m.Partition, "offset", m.Offset)
					return nil
				}
				spec, err := schemas.DecodeStreamSpec(m.Key, m.Value)
				select {
				case records <- registryRecord{id: string(m.Key), spec: spec, err: err}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}, func() { caught <- struct{}{} })
			if err != nil && ctx.Err() == nil {
				failed <- fmt.Errorf("partition %d: %w", p, err)
			}
		}()
	}
	apply := func(specs map[string]registryRecord, r registryRecord) {
		if r.err == nil && r.spec.Removed() {
			delete(specs, r.id)
			return
		}
		if old, ok := specs[r.id]; ok && r.err == nil && old.err == nil && r.spec.Version < old.spec.Version {
			log.Warn("ignoring an older version of a stream spec", "stream", r.id, "version", r.spec.Version, "running", old.spec.Version)
			return
		}
		specs[r.id] = r
	}
	// Start nothing before the registry is read up to now: a stream removed
	// later in the log must not start.
	for n := 0; n < len(parts); {
		select {
		case r := <-records:
			apply(specs, r)
		case <-caught:
			n++
		case err := <-failed:
			// Ending the generation makes the group start a new one.
			log.Error("reading the stream registry failed; rejoining", "err", err)
			return
		case <-ctx.Done():
			tails.Wait()
			return
		}
	}
	runners := map[string]*runner{}
	stop := func(id string) *schemas.StreamState {
		r := runners[id]
		if r == nil {
			return nil
		}
		r.cancel()
		<-r.done
		delete(runners, id)
		if r.state != nil {
			states[id] = *r.state
		}
		return r.state
	}
	start := func(rec registryRecord, st schemas.StreamState) {
		if rec.err != nil {
			s.failInvalid(ctx, rec, st)
			return
		}
		if s.cfg.MaxStreams > 0 && len(runners) >= s.cfg.MaxStreams {
			st.StreamID = rec.id
			s.setState(ctx, &st, schemas.StreamFailed, fmt.Errorf("this replica already runs max_streams=%d streams", s.cfg.MaxStreams))
			return
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{spec: rec.spec, cancel: cancel, done: make(chan struct{})}
		runners[rec.id] = r
		go func() {
			defer close(r.done)
			final := s.runStream(rctx, rec.spec, st)
			r.state = &final
		}()
	}
	for _, id := range slices.Sorted(maps.Keys(specs)) {
		start(specs[id], states[id])
	}
	for {
		select {
		case r := <-records:
			before, had := specs[r.id]
			apply(specs, r)
			after, has := specs[r.id]
			switch {
			case had && has && reflect.DeepEqual(before, after):
			case !has:
				if stop(r.id) != nil || had {
					final := states[r.id]
					final.StreamID = r.id
					wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
					s.setState(wctx, &final, schemas.StreamRemoved, nil)
					cancel()
					states[r.id] = final
					s.forget(r.id)
				}
			default:
				stop(r.id)
				start(after, states[r.id])
			}
		case err := <-failed:
			log.Error("reading the stream registry failed; rejoining", "err", err)
			s.release(runners, stop)
			return
		case <-ctx.Done():
			s.release(runners, stop)
			tails.Wait()
			log.Info("streams released")
			return
		}
	}
}

// release stops every runner (each writes its state) and forgets every
// stream: the next generation may give them to another replica.
func (s *Service) release(runners map[string]*runner, stop func(string) *schemas.StreamState) {
	for _, r := range runners {
		r.cancel()
	}
	for _, id := range slices.Collect(maps.Keys(runners)) {
		stop(id)
	}
	s.mu.Lock()
	clear(s.status)
	s.mu.Unlock()
}

func (s *Service) registryPartitions(ctx context.Context) ([]int, error) {
	for {
		parts, err := kafka.Partitions(ctx, s.env.Kafka, s.env.RegistryTopic)
		if err == nil || ctx.Err() != nil {
			return parts, err
		}
		s.log.Warn("reading the registry's partitions failed, retrying", "err", err)
		if pipeline.Sleep(ctx, s.cfg.BackoffMin) != nil {
			return nil, ctx.Err()
		}
	}
}

// readStates reads the state topic, retrying until it succeeds or ctx ends.
func (s *Service) readStates(ctx context.Context) (map[string]schemas.StreamState, error) {
	for {
		states, err := ReadStates(ctx, s.env.Kafka, s.env.StateTopic)
		if err == nil || ctx.Err() != nil {
			return states, err
		}
		s.log.Warn("reading stream states failed, retrying", "err", err)
		if pipeline.Sleep(ctx, s.cfg.BackoffMin) != nil {
			return nil, ctx.Err()
		}
	}
}

// ReadStreamStates reads the last state record of every stream from the
// state topic: the resume points, and what `vidx status` shows.
func ReadStates(ctx context.Context, kc kafka.Config, topic string) (map[string]schemas.StreamState, error) {
	states := map[string]schemas.StreamState{}
	err := kafka.ReadCompacted(ctx, kc, topic, func(m pipeline.Message) error {
		if m.Value == nil {
			delete(states, string(m.Key))
			return nil
		}
		st, err := schemas.DecodeStreamState(m.Value)
		if err != nil {
			// One unreadable record must not block every stream.
			return nil
		}
		states[st.StreamID] = st
		return nil
	})
	return states, err
}

// failInvalid reports a registry record that could not be decoded.
func (s *Service) failInvalid(ctx context.Context, rec registryRecord, st schemas.StreamState) {
	s.log.Warn("invalid stream spec", "stream", rec.id, "err", rec.err)
	if rec.id == "" {
		return
	}
	st.StreamID = rec.id
	s.setState(ctx, &st, schemas.StreamFailed, fmt.Errorf("invalid stream spec: %w", rec.err))
}

func (s *Service) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.status, id)
}

// setState records a transition: in memory for Status, and on the state
// topic for `vidx status` and the next owner. The window fields are left
// as they are, so the resume point survives every transition.
func (s *Service) setState(ctx context.Context, st *schemas.StreamState, state string, cause error) {
	if st.State != state {
		s.log.Info("stream "+state, "stream", st.StreamID, "err", cause)
		// One series per (stream, state), 1 for the current state.
		gauge := telemetry.From(ctx).Instruments().StreamState
		if st.State != "" {
			gauge.Record(ctx, 0, metric.WithAttributes(attribute.String("stream", st.StreamID), attribute.String("state", st.State)))
		}
		gauge.Record(ctx, 1, metric.WithAttributes(attribute.String("stream", st.StreamID), attribute.String("state", state)))
	}
	st.State, st.Owner, st.UpdatedAt = state, s.env.Owner, s.now().UTC()
	st.Error = ""
	if cause != nil {
		st.Error = cause.Error()
	}
	s.publishStatus(st)
	if err := s.writeState(ctx, st); err != nil {
		s.log.Warn("writing stream state failed", "stream", st.StreamID, "state", state, "err", err)
	}
}

func (s *Service) publishStatus(st *schemas.StreamState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.status[st.StreamID]
	if cur == nil || cur.State != st.State {
		cur = &Status{StreamID: st.StreamID, Since: st.UpdatedAt}
		s.status[st.StreamID] = cur
	}
	cur.URI, cur.State, cur.Live, cur.Windows, cur.Restarts = st.URI, st.State, st.Live, st.Windows, st.Restarts
	cur.LastError, cur.SpecVersion = st.Error, st.SpecVersion
	if st.State == schemas.StreamRunning && st.Error == "" {
		cur.LastError = ""
	}
	if w := st.LastWindow; w != nil {
		c := *w
		cur.LastWindow = &c
	}
}

func (s *Service) writeState(ctx context.Context, st *schemas.StreamState) error {
	value, err := schemas.EncodeStream(st)
	if err != nil {
		return err
	}
	return s.produce(ctx, pipeline.Output{Topic: s.env.StateTopic, Key: []byte(st.StreamID), Value: value})
}

// produce writes outs, retrying with backoff until they are acknowledged
// or ctx ends.
func (s *Service) produce(ctx context.Context, outs ...pipeline.Output) error {
	return s.p.Produce(ctx, outs...)
}

// backoff paces the streams' retries: restarts of a failed stream, and
// writes to its topics.
func (c Config) backoff() pipeline.Backoff {
	return pipeline.Backoff{Min: c.BackoffMin, Max: c.BackoffMax}
}
