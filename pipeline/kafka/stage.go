package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/telemetry"
)

// Runtime holds the runtime settings a deployment tunes per stage. The zero
// value of each field means its default.
type Runtime struct {
	// Group is the consumer group; replicas of a stage share it. Defaults to
	// "vidx-" + the stage's name. Two deployments on one Kafka cluster need
	// their own.
	Group string `yaml:"group"`
	// MaxBatch and MaxWait bound a batch: the handler is called with up to
	// MaxBatch messages, waiting at most MaxWait after the first one.
	MaxBatch int           `yaml:"max_batch"`
	MaxWait  time.Duration `yaml:"max_wait"`
	// Eager ends a batch as soon as no further message is already fetched,
	// instead of waiting up to MaxWait for more: a lone message (a query
	// when no other is pending) is handled at once, while a backlog still
	// fills batches from what the reader has prefetched.
	Eager bool `yaml:"eager"`
	// MaxBatchBytes stops gathering a batch once its message values reach
	// this many bytes (the message that crosses it is kept), so a burst of
	// large messages cannot grow a batch, and the handler's work on it,
	// past a known bound. Default 16 MiB.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MaxAttempts bounds retries of unclassified errors before the message is
	// dead-lettered. Retryable errors are retried until they succeed.
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffMin and BackoffMax bound the exponential retry backoff.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// Replicas runs this many consumers of the group in one process.
	Replicas int `yaml:"replicas"`
	// DrainTimeout bounds how long a stopping stage keeps working on the
	// batch it holds before giving up on it (it is then redelivered). Keep
	// it below the pod's termination grace period.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// LagInterval is how often the consumer lag metric is refreshed.
	LagInterval time.Duration `yaml:"lag_interval"`
}

// WithDefaults fills unset fields; name is the stage's, for its group.
func (c Runtime) WithDefaults(name string) Runtime {
	if c.Group == "" {
		c.Group = "vidx-" + name
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 20 * time.Millisecond
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 16 << 20
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 100 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 10 * time.Second
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.LagInterval <= 0 {
		c.LagInterval = 15 * time.Second
	}
	return c
}

// Validate checks the settings as given; unset fields are valid (they take
// their defaults).
func (c Runtime) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_batch", int64(c.MaxBatch)}, {"max_wait", int64(c.MaxWait)}, {"max_batch_bytes", int64(c.MaxBatchBytes)},
		{"max_attempts", int64(c.MaxAttempts)}, {"backoff_min", int64(c.BackoffMin)}, {"backoff_max", int64(c.BackoffMax)},
		{"replicas", int64(c.Replicas)}, {"drain_timeout", int64(c.DrainTimeout)}, {"lag_interval", int64(c.LagInterval)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", f.name))
		}
	}
	if c.BackoffMin > 0 && c.BackoffMax > 0 && c.BackoffMax < c.BackoffMin {
		errs = append(errs, errors.New("backoff_max is below backoff_min"))
	}
	return errors.Join(errs...)
}

func (c Runtime) backoff() pipeline.Backoff {
	return pipeline.Backoff{Min: c.BackoffMin, Max: c.BackoffMax}
}

// StageConfig configures one stage's consumption: what it reads and where
// its dead letters go, and its Runtime settings.
type StageConfig struct {
	// Name identifies the stage in logs and dead letters.
	Name string `yaml:"name"`
	// Topics are consumed together.
	Topics []string `yaml:"topics"`
	// DeadLetterTopic receives messages the handler gave up on.
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	Runtime         `yaml:",inline"`
}

// WithDefaults fills unset fields.
func (c StageConfig) WithDefaults() StageConfig {
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = "dead-letters"
	}
	c.Runtime = c.Runtime.WithDefaults(c.Name)
	return c
}

// Validate checks the configuration.
func (c StageConfig) Validate() error {
	if c.Name == "" {
		return errors.New("stage: name is required")
	}
	if len(c.Topics) == 0 {
		return fmt.Errorf("stage %s: at least one input topic is required", c.Name)
	}
	for _, t := range c.Topics {
		if t == c.DeadLetterTopic {
			return fmt.Errorf("stage %s: input topic %q is also the dead-letter topic", c.Name, t)
		}
	}
	if err := c.Runtime.Validate(); err != nil {
		return fmt.Errorf("stage %s: %w", c.Name, err)
	}
	return nil
}

// Stage consumes its topics with a consumer group and runs a Handler.
type Stage struct {
	cfg     StageConfig
	kafka   Config
	handler pipeline.Handler
	// chain is handler wrapped in the runtime's middleware.
	chain  pipeline.Handler
	log    *slog.Logger
	writer *kafkago.Writer
	hooks  Hooks
	reply  pipeline.ReplyFunc
	tel    *telemetry.Telemetry
	// busySince is when the batch in hand was fetched (unix nanoseconds), 0
	// while waiting for messages.
	busySince atomic.Int64
}

// Hooks observe a stage; all fields are optional. They exist for metrics and
// tests and must not block.
type Hooks struct {
	// Committed is called after a batch's offsets are committed.
	Committed func(stage string, msgs []pipeline.Message)
	// DeadLettered is called after a message is written to the dead-letter topic.
	DeadLettered func(stage string, m pipeline.Message, err error)
	// Retrying is called before a retry.
	Retrying func(stage string, m pipeline.Message, attempt int, err error)
}

// NewStage validates the configuration and prepares a stage.
func NewStage(cfg StageConfig, kc Config, h pipeline.Handler, log *slog.Logger, hooks Hooks, opts ...Option) (*Stage, error) {
	cfg = cfg.WithDefaults()
	kc = kc.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := kc.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("stage %s: nil handler", cfg.Name)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Stage{
		cfg:     cfg,
		kafka:   kc,
		handler: h,
		log:     log.With("stage", cfg.Name),
		writer:  NewWriter(kc),
		hooks:   hooks,
		tel:     telemetry.From(context.Background()),
	}
	for _, o := range opts {
		o(s)
	}
	s.chain = pipeline.Chain(h,
		pipeline.Tracing(s.tel, cfg.Name, cfg.Group),
		pipeline.Metrics(s.tel, cfg.Name),
		pipeline.DeadLetterReplying(cfg.Name, cfg.DeadLetterTopic, s.log, s.deadLettered, s.reply),
		pipeline.Retry(cfg.MaxAttempts, cfg.backoff(), s.log, s.retrying),
		pipeline.Recoverer(s.log),
	)
	return s, nil
}

// retrying and deadLettered count retries and dead letters for the
// metrics and the hooks.
func (s *Stage) retrying(m pipeline.Message, attempt int, err error) {
	s.tel.Instruments().Retries.Add(context.Background(), 1, metric.WithAttributes(attribute.String("stage", s.cfg.Name)))
	if s.hooks.Retrying != nil {
		s.hooks.Retrying(s.cfg.Name, m, attempt, err)
	}
}

func (s *Stage) deadLettered(m pipeline.Message, err error, class pipeline.ErrorClass, _ int) {
	s.tel.Instruments().DeadLetters.Add(context.Background(), 1,
		metric.WithAttributes(attribute.String("stage", s.cfg.Name), attribute.String("class", class.String())))
	if s.hooks.DeadLettered != nil {
		s.hooks.DeadLettered(s.cfg.Name, m, err)
	}
}

// Live reports an error when one batch has been in hand for longer than
// maxBusy: the handler is stuck. Waiting for messages counts as healthy, so
// an idle stage is never restarted for being idle.
func (s *Stage) Live(maxBusy time.Duration) error {
	since := s.busySince.Load()
	if since == 0 {
		return nil
	}
	if d := time.Since(time.Unix(0, since)); d > maxBusy {
		return fmt.Errorf("stage %s: one batch in hand for %s (limit %s)", s.cfg.Name, d.Round(time.Second), maxBusy)
	}
	return nil
}

// Name returns the stage name.
func (s *Stage) Name() string { return s.cfg.Name }

// Run consumes until ctx is cancelled, then finishes the batch in hand
// (bounded by DrainTimeout), leaves the group and returns nil. It returns an
// error only when the stage cannot run at all.
func (s *Stage) Run(ctx context.Context) error {
	defer s.writer.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.reportLag(ctx, s.cfg.LagInterval)
	}()
	errs := make(chan error, s.cfg.Replicas)
	for i := 0; i < s.cfg.Replicas; i++ {
		wg.Add(1)
		go func(replica int) {
			defer wg.Done()
			if err := s.consume(ctx, replica); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

func (s *Stage) newReader() *kafkago.Reader {
	cfg := kafkago.ReaderConfig{
		Brokers:     s.kafka.Brokers,
		GroupID:     s.cfg.Group,
		GroupTopics: s.cfg.Topics,
		// MaxBytes must admit the largest message (a 12-frame clip).
		MinBytes: 1,
		MaxBytes: 4 << 20,
		// The reader prefetches up to QueueCapacity messages; kafka-go's
		// default of 100 would hold 100 MiB of 1 MiB messages per replica.
		QueueCapacity:     max(2*s.cfg.MaxBatch, 8),
		MaxWait:           500 * time.Millisecond,
		ReadBatchTimeout:  2 * time.Second,
		StartOffset:       kafkago.FirstOffset,
		CommitInterval:    0, // synchronous commits: CommitMessages returns once stored
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		Logger:            kafkaLogger{s.log, slog.LevelDebug - 4},
		ErrorLogger:       kafkaLogger{s.log, slog.LevelDebug},
		Dialer:            s.kafka.dialer(),
	}
	return kafkago.NewReader(cfg)
}

func (s *Stage) consume(ctx context.Context, replica int) error {
	log := s.log.With("replica", replica)
	log.Info("stage started", "topics", s.cfg.Topics, "group", s.cfg.Group)
	for attempt := 1; ; attempt++ {
		err := s.consumeWith(ctx, log)
		if ctx.Err() != nil {
			log.Info("stage stopped")
			return nil
		}
		// A batch that could not be finished leaves the reader ahead of
		// the committed offsets: a new reader rejoins the group and
		// resumes from them, so the batch is redelivered, not skipped, and
		// the stage carries on rather than exits.
		wait := s.cfg.backoff().Delay(attempt)
		log.Warn("batch not committed; rejoining the group, it will be redelivered", "err", err, "retry_in", wait)
		if pipeline.Sleep(ctx, wait) != nil {
			log.Info("stage stopped")
			return nil
		}
	}
}

// consumeWith runs one reader until ctx ends (nil) or a batch cannot be
// finished (its error).
func (s *Stage) consumeWith(ctx context.Context, log *slog.Logger) error {
	r := s.newReader()
	defer func() {
		if err := r.Close(); err != nil {
			s.log.Debug("closing reader", "err", err)
		}
	}()
	wm := newWatermarks()
	for {
		batch, err := s.fetchBatch(ctx, r)
		if len(batch) == 0 {
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				log.Warn("fetch failed", "err", err)
				if pipeline.Sleep(ctx, s.cfg.BackoffMin) != nil {
					return nil
				}
			}
			continue
		}
		// Work on a batch in hand survives the stop signal for DrainTimeout so
		// a rolling restart does not redo finished work.
		work, cancel := drainContext(ctx, s.cfg.DrainTimeout)
		s.busySince.Store(time.Now().UnixNano())
		wm.fetched(batch)
		err = s.process(work, log, r, wm, batch)
		s.busySince.Store(0)
		cancel()
		if err != nil {
			return fmt.Errorf("%d messages: %w", len(batch), err)
		}
	}
}

// drainContext returns a context that stays alive for grace after parent
// is cancelled.
func drainContext(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	})
	return ctx, func() { stop(); cancel() }
}

// fetchBatch blocks for the first message, then gathers more for up to
// MaxWait.
func (s *Stage) fetchBatch(ctx context.Context, r *kafkago.Reader) ([]pipeline.Message, error) {
	first, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []pipeline.Message{fromKafkaMessage(first)}
	if s.cfg.MaxBatch == 1 {
		return batch, nil
	}
	size := len(first.Value)
	wait, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	defer cancel()
	for len(batch) < s.cfg.MaxBatch && size < s.cfg.MaxBatchBytes {
		if s.cfg.Eager && r.Stats().QueueLength == 0 {
			break
		}
		m, err := r.FetchMessage(wait)
		if err != nil {
			break
		}
		batch = append(batch, fromKafkaMessage(m))
		size += len(m.Value)
	}
	return batch, nil
}

// process runs the handler chain on a batch, produces every output (dead
// letters included) and commits the batch. A message left failed (the stage
// stopped while it was being retried) fails the batch: nothing is committed
// and the batch is redelivered.
func (s *Stage) process(ctx context.Context, log *slog.Logger, r *kafkago.Reader, wm *watermarks, batch []pipeline.Message) error {
	results := s.chain.Handle(s.withEmitter(ctx, log), batch)
	var outputs []kafkago.Message
	var parents []trace.SpanContext
	for i, res := range results {
		if res.Err != nil {
			m := batch[i]
			return fmt.Errorf("%s/%d offset %d not finished: %w", m.Topic, m.Partition, m.Offset, res.Err)
		}
		for _, o := range res.Outputs {
			outputs = append(outputs, kafkago.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Headers: toKafkaHeaders(o.Headers)})
			parents = append(parents, res.SpanContext())
		}
	}
	start := time.Now()
	sends := s.sendSpans(ctx, outputs, parents)
	err := s.produce(ctx, log, outputs)
	for _, sp := range sends {
		telemetry.End(sp, err)
	}
	if err != nil {
		return err
	}
	stage := metric.WithAttributes(attribute.String("stage", s.cfg.Name))
	s.tel.Instruments().Produced.Add(ctx, int64(len(outputs)), stage)
	wm.finished(batch)
	if commits := wm.commits(); len(commits) > 0 {
		if err := s.cfg.backoff().Until(ctx, func() error { return r.CommitMessages(ctx, commits...) }, func(attempt int, err error) {
			log.Warn("commit failed, retrying", "attempt", attempt, "err", err)
		}); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		wm.committed(commits)
	}
	s.tel.Instruments().CommitSeconds.Record(ctx, time.Since(start).Seconds(), stage)
	if s.hooks.Committed != nil {
		s.hooks.Committed(s.cfg.Name, batch)
	}
	return nil
}

// produce writes outputs, retrying until they are acknowledged or ctx ends.
func (s *Stage) produce(ctx context.Context, log *slog.Logger, msgs []kafkago.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return s.cfg.backoff().Until(ctx, func() error { return s.writer.WriteMessages(ctx, msgs...) }, func(attempt int, err error) {
		log.Warn("produce failed, retrying", "attempt", attempt, "messages", len(msgs), "err", err)
	})
}
