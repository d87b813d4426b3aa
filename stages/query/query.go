// Package query is the query stage: it embeds text queries, fetches
// candidate clips from the store and re-ranks them with dual softmax.
package query

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/encoders"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/telemetry"
)

// Settings are the query stage's tunables, as a deployment sets them:
// how many candidates, how many hits, and how they are re-ranked.
type Settings struct {
	// Candidates is how many clips are fetched from the store per query
	// before re-ranking.
	Candidates int `yaml:"candidates"`
	// TopK is the number of hits returned when a query does not say.
	TopK        int     `yaml:"top_k"`
	Rerank      string  `yaml:"rerank"`
	Temperature float64 `yaml:"temperature"`
	// BankSize is how many recent query embeddings form the text axis of
	// the dual softmax together with the queries of the current batch.
	BankSize int `yaml:"bank_size"`
	// BankFile preloads the bank with captions, one per line.
	BankFile string `yaml:"bank_file"`
	// TextCache is how many recent query texts keep their embedding, so
	// that a text asked again (another page, other filters, a popular
	// query) skips the text tower. Zero means the default; a negative
	// value keeps none.
	TextCache int `yaml:"text_cache"`
}

// WithDefaults fills unset fields.
func (c Settings) WithDefaults() Settings {
	if c.Candidates == 0 {
		c.Candidates = 100
	}
	if c.TopK == 0 {
		c.TopK = 10
	}
	if c.Rerank == "" {
		c.Rerank = RerankSymmetric
	}
	if c.Temperature == 0 {
		c.Temperature = 0.01
	}
	if c.BankSize == 0 {
		c.BankSize = 256
	}
	if c.TextCache == 0 {
		// 2 KiB a 512-d entry: 2 MiB for the last 1024 distinct texts.
		c.TextCache = 1024
	}
	return c
}

// Validate checks the settings after defaults.
func (c Settings) Validate() error {
	switch {
	case c.Candidates < 1 || c.Candidates > 10000:
		return fmt.Errorf("query: candidates %d out of range [1, 10000]", c.Candidates)
	case c.TopK < 1 || c.TopK > schemas.MaxTopK:
		return fmt.Errorf("query: top_k %d out of range [1, %d]", c.TopK, schemas.MaxTopK)
	case !ValidRerank(c.Rerank):
		return fmt.Errorf("query: rerank %q is not none, camoe or symmetric", c.Rerank)
	case !(c.Temperature > 0):
		return fmt.Errorf("query: temperature must be positive")
	case c.BankSize < 0:
		return fmt.Errorf("query: bank_size must not be negative")
	}
	return nil
}

// Config configures the query stage: its Settings and what the process
// wires in.
type Config struct {
	Collection string `yaml:"collection"`
	// Model and Pooling must match the collection's; vectors of another model
	// are meaningless to this text encoder.
	Model        string `yaml:"model"`
	Pooling      string `yaml:"pooling"`
	Settings     `yaml:",inline"`
	ResultsTopic string `yaml:"results_topic"`
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Collection == "" {
		c.Collection = "clips"
	}
	c.Settings = c.Settings.WithDefaults()
	if c.ResultsTopic == "" {
		c.ResultsTopic = "results"
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error { return c.Settings.Validate() }

// Searcher is the part of sinks.Store the query stage uses.
type Searcher interface {
	Search(ctx context.Context, collection string, req sinks.SearchRequest) ([]sinks.Hit, error)
}

// BatchSearcher is implemented by stores that answer several searches in
// one round trip (Qdrant's QueryBatchPoints). A micro-batch of queries then
// costs one call; other stores are searched once per query.
type BatchSearcher interface {
	// SearchBatch returns one result per request, in order.
	SearchBatch(ctx context.Context, collection string, reqs []sinks.SearchRequest) ([][]sinks.Hit, error)
}

// Handler answers queries. It is safe for concurrent use.
type Handler struct {
	cfg   Config
	text  encoders.TextEncoder
	store Searcher
	bank  *Bank[[]float32]
	log   *slog.Logger
	// texts maps a query text to its normalised embedding; nil where
	// TextCache keeps none. Cached vectors are shared: read only.
	texts *lru.Cache[string, []float32]

	// image answers image queries; nil refuses them.
	image     encoders.ImageEncoder
	mean, std [3]float32
}

// New builds the handler and preloads the query bank.
func New(ctx context.Context, cfg Config, text encoders.TextEncoder, store Searcher, log *slog.Logger, opts ...Option) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{cfg: cfg, text: text, store: store, bank: NewBank[[]float32](cfg.BankSize), log: log}
	if cfg.TextCache > 0 {
		c, err := lru.New[string, []float32](cfg.TextCache)
		if err != nil {
			return nil, fmt.Errorf("query: text cache: %w", err)
		}
		h.texts = c
	}
	for _, o := range opts {
		o(h)
	}
	if cfg.BankFile != "" {
		if err := h.preload(ctx, cfg.BankFile); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *Handler) preload(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("query bank: %w", err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			texts = append(texts, t)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("query bank %s: %w", path, err)
	}
	if len(texts) > h.cfg.BankSize {
		texts = texts[len(texts)-h.cfg.BankSize:]
	}
	const chunk = 64
	for i := 0; i < len(texts); i += chunk {
		part := texts[i:min(i+chunk, len(texts))]
		vecs, err := h.text.EncodeTexts(ctx, part)
		if err != nil {
			return fmt.Errorf("query bank %s: encode: %w", path, err)
		}
		for j, v := range vecs {
			h.bank.Add(part[j], Normalize(v))
		}
	}
	h.log.Info("query bank preloaded", "captions", len(texts), "file", path)
	return nil
}

// BankLen returns the number of embeddings in the query bank.
func (h *Handler) BankLen() int { return h.bank.Len() }

// Handle answers a micro-batch of queries together: they share the text
// axis of the dual softmax with the bank. A query that cannot be answered
// fails as poison; Reply then tells its asker why.
func (h *Handler) Handle(ctx context.Context, batch []pipeline.Message) []pipeline.Result {
	start := time.Now()
	res := make([]pipeline.Result, len(batch))
	queries := make([]schemas.Query, 0, len(batch))
	slot := make([]int, 0, len(batch))
	for i, m := range batch {
		q, err := schemas.DecodeQuery(m.Value)
		if err != nil {
			res[i].Err = pipeline.Poison(err)
			continue
		}
		queries = append(queries, q)
		slot = append(slot, i)
	}
	if len(queries) == 0 {
		return res
	}
	answers, err := h.Answer(ctx, queries)
	if err != nil {
		for _, i := range slot {
			res[i].Err = err
		}
		return res
	}
	took := float64(time.Since(start).Microseconds()) / 1000
	now := time.Now()
	for _, i := range slot {
		// End to end: from when the query was produced to its answer.
		if t := batch[i].Time; !t.IsZero() && now.After(t) {
			telemetry.From(ctx).Instruments().QuerySeconds.Record(ctx, now.Sub(t).Seconds())
		}
	}
	for k, a := range answers {
		if a.Error != nil {
			res[slot[k]].Err = pipeline.Poison(&QueryError{Code: a.Error.Code, Msg: a.Error.Message})
			continue
		}
		a.TookMS = took
		value, err := schemas.Encode(&a)
		if err != nil {
			res[slot[k]].Err = err
			continue
		}
		res[slot[k]].Outputs = []pipeline.Output{{Topic: h.cfg.ResultsTopic, Key: []byte(a.QueryID), Value: value}}
	}
	return res
}

// QueryError is why one query of a batch cannot be answered; the others
// are answered as usual. Code is one of the schemas.ErrCode* values.
type QueryError struct {
	Code string
	Msg  string
}

func (e *QueryError) Error() string { return e.Msg }

// Reply answers a query the stage dead-letters (pipeline.WithReply): a
// Result keyed by the query's id with Error set and no hits, so the asker
// hears why at once instead of waiting out its timeout. A message without
// a usable query id (neither in the JSON nor as the key) has nobody to
// answer and gets no reply.
func (h *Handler) Reply(m pipeline.Message, err error, class pipeline.ErrorClass) []pipeline.Output {
	var probe struct {
		QueryID string `json:"query_id"`
		Text    string `json:"text"`
		Rerank  string `json:"rerank"`
	}
	_ = json.Unmarshal(m.Value, &probe)
	id := probe.QueryID
	if !usableID(id) {
		id = string(m.Key)
	}
	if !usableID(id) {
		return nil
	}
	r := h.errorResult(id, probe.Text, probe.Rerank, err, class)
	value, encErr := schemas.Encode(&r)
	if encErr != nil {
		h.log.Error("cannot encode an error result", "query_id", id, "err", encErr)
		return nil
	}
	return []pipeline.Output{{Topic: h.cfg.ResultsTopic, Key: []byte(id), Value: value}}
}

func usableID(id string) bool {
	return id != "" && len(id) <= schemas.MaxIDLen && utf8.ValidString(id)
}

func (h *Handler) errorResult(id, text, rerank string, err error, class pipeline.ErrorClass) schemas.Result {
	code := schemas.ErrCodeUnavailable
	var qe *QueryError
	switch {
	case errors.As(err, &qe):
		code = qe.Code
	case class == pipeline.ClassPoison:
		code = schemas.ErrCodeInvalidQuery
	}
	if !ValidRerank(rerank) {
		rerank = h.cfg.Rerank
	}
	if !utf8.ValidString(text) || len(text) > schemas.MaxQueryText {
		text = ""
	}
	return schemas.Result{
		SchemaVersion: schemas.Version,
		QueryID:       id,
		Text:          text,
		Rerank:        rerank,
		Model:         h.cfg.Model,
		Hits:          []schemas.Hit{},
		AnsweredAt:    time.Now().UTC(),
		Error:         &schemas.ResultError{Code: code, Message: err.Error()},
	}
}

// Answer ranks clips for each query. Queries are re-ranked against each
// other and the bank, then added to the bank. A query that cannot be
// answered gets a Result with Error set; the error return is for failures
// of the whole batch (encoder or store down), which a retry may cure.
func (h *Handler) Answer(ctx context.Context, queries []schemas.Query) ([]schemas.Result, error) {
	out := make([]schemas.Result, len(queries))
	for i, q := range queries {
		if err := q.Validate(); err != nil {
			out[i] = h.errorResult(q.QueryID, q.Text, q.Rerank, err, pipeline.ClassPoison)
		}
	}
	valid := make([]int, 0, len(queries))
	for i := range queries {
		if out[i].Error == nil {
			valid = append(valid, i)
		}
	}
	if len(valid) == 0 {
		return out, nil
	}
	sub := make([]schemas.Query, len(valid))
	for k, i := range valid {
		sub[k] = queries[i]
	}
	answers, err := h.answer(ctx, sub)
	if err != nil {
		return nil, err
	}
	for k, i := range valid {
		out[i] = answers[k]
	}
	return out, nil
}

func (h *Handler) answer(ctx context.Context, queries []schemas.Query) ([]schemas.Result, error) {
	qvecs := make([][]float32, len(queries))
	failed := make([]error, len(queries))
	var textIdx, imageIdx []int
	for i, q := range queries {
		switch {
		case q.Image != "":
			imageIdx = append(imageIdx, i)
		case q.Like != nil:
			v, err := h.clipVector(ctx, *q.Like)
			var qe *QueryError
			switch {
			case errors.As(err, &qe):
				failed[i] = err
			case err != nil:
				return nil, err
			default:
				qvecs[i] = v
			}
		default:
			textIdx = append(textIdx, i)
		}
	}
	texts := make([]string, len(textIdx))
	for k, i := range textIdx {
		texts[k] = queries[i].Text
	}
	if len(texts) > 0 {
		vecs, err := h.encodeTexts(ctx, texts)
		if err != nil {
			return nil, err
		}
		for k, i := range textIdx {
			qvecs[i] = vecs[k]
		}
	}
	if len(imageIdx) > 0 {
		if err := h.encodeImages(ctx, queries, imageIdx, qvecs, failed); err != nil {
			return nil, err
		}
	}
	inBatch := map[string]bool{}
	for _, t := range texts {
		inBatch[t] = true
	}
	// The text axis: this batch's text queries (distinct texts) and the
	// bank, which excludes texts of this batch. Image and clip queries stay
	// off it (and out of the bank): an image-image cosine dwarfs every
	// text-clip cosine and would flatten the text axis for everyone else.
	var axis []axisRow
	for k, t := range texts {
		if !slices.ContainsFunc(axis, func(r axisRow) bool { return r.text == t }) {
			axis = append(axis, axisRow{t, qvecs[textIdx[k]]})
		}
	}
	for _, v := range h.bank.Snapshot(func(t string) bool { return inBatch[t] }) {
		axis = append(axis, axisRow{vec: v})
	}

	// Search for the queries that still stand.
	var live []int
	for i := range queries {
		if failed[i] == nil {
			live = append(live, i)
		}
	}
	sub, subVecs := make([]schemas.Query, len(live)), make([][]float32, len(live))
	for k, i := range live {
		sub[k], subVecs[k] = queries[i], qvecs[i]
		if sub[k].Like != nil {
			// One more, since the clip itself is left out.
			sub[k].TopK = min(cmp.Or(sub[k].TopK, h.cfg.TopK)+1, schemas.MaxTopK+1)
		}
	}
	subHits, subFailed, err := h.candidates(ctx, sub, subVecs)
	if err != nil {
		return nil, err
	}
	candidates := make([][]sinks.Hit, len(queries))
	for k, i := range live {
		candidates[i], failed[i] = subHits[k], subFailed[k]
		if l := queries[i].Like; l != nil {
			candidates[i] = slices.DeleteFunc(candidates[i], func(hit sinks.Hit) bool {
				return hit.Payload.VideoID == l.VideoID && hit.Payload.ClipIndex == l.ClipIndex
			})
		}
	}
	_, span := telemetry.Start(ctx, "rerank", trace.WithAttributes(
		attribute.Int("vidx.queries", len(queries)), attribute.Int("vidx.text_axis", len(axis))))
	out := make([]schemas.Result, len(queries))
	for i, q := range queries {
		if failed[i] != nil {
			out[i] = h.errorResult(q.QueryID, q.Text, q.Rerank, failed[i], pipeline.ClassPoison)
			continue
		}
		r, err := h.rank(q, candidates[i], axis)
		if err != nil {
			telemetry.End(span, err)
			return nil, err
		}
		r.BankSize = len(axis)
		if q.Text != "" {
			r.BankSize-- // the query's own row
		}
		out[i] = r
	}
	span.End()
	for k, t := range texts {
		h.bank.Add(t, qvecs[textIdx[k]])
	}
	return out, nil
}

// encodeTexts returns the normalised embedding of each text: from the
// cache where it holds the text, from one text-tower run over the distinct
// others.
func (h *Handler) encodeTexts(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var missing []string
	at := map[string][]int{} // a missing text's positions in texts
	for i, t := range texts {
		if h.texts != nil {
			if v, ok := h.texts.Get(t); ok {
				out[i] = v
				continue
			}
		}
		if _, seen := at[t]; !seen {
			missing = append(missing, t)
		}
		at[t] = append(at[t], i)
	}
	if len(missing) == 0 {
		return out, nil
	}
	ectx, span := telemetry.Start(ctx, "text encode", trace.WithAttributes(
		attribute.Int("vidx.batch_size", len(missing)), attribute.Int("vidx.text_cache_hits", len(texts)-len(missing))))
	start := time.Now()
	raw, err := h.text.EncodeTexts(ectx, missing)
	model := metric.WithAttributes(attribute.String("model", "text"))
	telemetry.From(ctx).Instruments().InferenceSeconds.Record(ctx, time.Since(start).Seconds(), model)
	telemetry.From(ctx).Instruments().InferenceBatch.Record(ctx, int64(len(missing)), model)
	telemetry.End(span, err)
	if err != nil {
		return nil, fmt.Errorf("encode queries: %w", err)
	}
	if len(raw) != len(missing) {
		return nil, fmt.Errorf("text encoder returned %d vectors for %d queries", len(raw), len(missing))
	}
	for k, t := range missing {
		v := Normalize(raw[k])
		if h.texts != nil {
			h.texts.Add(t, v)
		}
		for _, i := range at[t] {
			out[i] = v
		}
	}
	return out, nil
}

// axisRow is one text on the text axis of the dual softmax; bank rows have
// no text because they never coincide with a query of the batch.
type axisRow struct {
	text string
	vec  []float32
}

// candidates fetches each query's candidate clips, in one store call when
// the store can answer a batch. A search the store refuses as invalid (a
// filter on a key it cannot filter on) fails only its own query: failed[i]
// says why, and the rest of the batch is answered.
func (h *Handler) candidates(ctx context.Context, queries []schemas.Query, qvecs [][]float32) (_ [][]sinks.Hit, failed []error, err error) {
	ctx, span := telemetry.Start(ctx, "candidate search", trace.WithAttributes(
		attribute.String("vidx.collection", h.cfg.Collection), attribute.Int("vidx.queries", len(queries))))
	start := time.Now()
	defer func() {
		telemetry.From(ctx).Instruments().SearchSeconds.Record(ctx, time.Since(start).Seconds())
		telemetry.End(span, err)
	}()
	reqs := make([]sinks.SearchRequest, len(queries))
	for i, q := range queries {
		reqs[i] = sinks.SearchRequest{
			Vector:      qvecs[i],
			TopK:        max(h.cfg.Candidates, cmp.Or(q.TopK, h.cfg.TopK)),
			Filter:      toFilter(q.Filters),
			WithVectors: cmp.Or(q.Rerank, h.cfg.Rerank) != RerankNone,
		}
	}
	out := make([][]sinks.Hit, len(reqs))
	failed = make([]error, len(reqs))
	if bs, ok := h.store.(BatchSearcher); ok && len(reqs) > 1 {
		hits, err := bs.SearchBatch(ctx, h.cfg.Collection, reqs)
		if err == nil && len(hits) != len(reqs) {
			err = fmt.Errorf("store answered %d of %d searches", len(hits), len(reqs))
		}
		if err == nil {
			return hits, failed, nil
		}
		if !errors.Is(err, sinks.ErrInvalid) {
			return out, failed, searchError(h.cfg.Collection, err)
		}
		// One query's filter spoiled the batch: search one by one to
		// find which.
	}
	for i, r := range reqs {
		hits, err := h.store.Search(ctx, h.cfg.Collection, r)
		if errors.Is(err, sinks.ErrInvalid) {
			failed[i] = &QueryError{Code: schemas.ErrCodeInvalidQuery, Msg: err.Error()}
			continue
		}
		if err != nil {
			return out, failed, searchError(h.cfg.Collection, err)
		}
		out[i] = hits
	}
	return out, failed, nil
}

// searchError classifies a failed search; nothing indexed yet is an empty
// answer, not a failure.
func searchError(collection string, err error) error {
	if errors.Is(err, sinks.ErrNotFound) {
		return nil
	}
	return pipeline.Retryable(fmt.Errorf("search %s: %w", collection, err))
}

func (h *Handler) rank(q schemas.Query, hits []sinks.Hit, axis []axisRow) (schemas.Result, error) {
	mode := cmp.Or(q.Rerank, h.cfg.Rerank)
	topK := cmp.Or(q.TopK, h.cfg.TopK)
	scores := make([]float64, len(hits))
	for j, hit := range hits {
		scores[j] = float64(hit.Score)
	}
	if mode != RerankNone && len(hits) > 0 {
		// Row 0 is this query; the other rows (the rest of the text axis)
		// only shape the text-axis softmax.
		texts := make([][]float32, 0, len(axis))
		for _, t := range axis {
			if q.Text != "" && t.text == q.Text {
				continue
			}
			texts = append(texts, t.vec)
		}
		vecs := make([][]float32, len(hits))
		for j, hit := range hits {
			vecs[j] = hit.Vector
		}
		sims := append([][]float64{scores}, similarities(texts, vecs)...)
		rescored, err := FirstRowDualSoftmax(mode, h.cfg.Temperature, sims)
		if err != nil {
			return schemas.Result{}, err
		}
		scores = rescored
	}
	order := make([]int, len(hits))
	for j := range order {
		order[j] = j
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(scores[b], scores[a]); c != 0 {
			return c
		}
		return cmp.Compare(hits[b].Score, hits[a].Score)
	})
	if q.MinScore != nil {
		order = slices.DeleteFunc(order, func(j int) bool { return scores[j] < *q.MinScore })
	}
	if len(order) > topK {
		order = order[:topK]
	}
	r := schemas.Result{
		SchemaVersion: schemas.Version,
		QueryID:       q.QueryID,
		Text:          q.Text,
		Rerank:        mode,
		Model:         h.cfg.Model,
		Candidates:    len(hits),
		AnsweredAt:    time.Now().UTC(),
		Hits:          make([]schemas.Hit, 0, len(order)),
	}
	for rank, j := range order {
		p := hits[j].Payload
		r.Hits = append(r.Hits, schemas.Hit{
			Rank:      rank + 1,
			VideoID:   p.VideoID,
			Source:    p.Source,
			ClipIndex: p.ClipIndex,
			StartS:    p.StartS,
			EndS:      p.EndS,
			Score:     scores[j],
			Cosine:    float64(hits[j].Score),
		})
	}
	return r, nil
}

func toFilter(f *schemas.Filters) sinks.Filter {
	if f == nil {
		return sinks.Filter{}
	}
	return sinks.Filter{VideoIDs: f.VideoIDs, Sources: f.Sources, StartFrom: f.StartFrom, StartTo: f.StartTo,
		Metadata: f.Metadata, WallFrom: f.WallFrom, WallTo: f.WallTo}
}

// Normalize returns v scaled to unit L2 norm (a zero vector stays zero),
// summing in float64 so every caller gets the same bits.
func Normalize(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if s == 0 {
		return out
	}
	inv := 1 / math.Sqrt(s)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// Dot is the float64-accumulated dot product of two vectors.
func Dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
