// Package qdrant implements sinks.Store on a Qdrant server over gRPC (port
// 6334), for deployments that index many streams and want a sharded,
// replicated vector database.
//
// # Collections
//
// EnsureCollection creates a missing collection with one unnamed cosine
// vector of the bundle's dimension, the HNSW, on-disk and quantization
// settings of Config, and shard number and replication factor only where
// Config sets them (the cluster's defaults otherwise). It adds payload
// indexes on video_id and source (keyword), start_s (float), ingested_at
// (datetime) and generation (integer), and records the bundle name, pooling
// mode and dimension in the collection's metadata (vidx_model,
// vidx_pooling, vidx_dim; Qdrant 1.15.4 or newer). An existing collection
// with another dimension, distance, model or pooling, or without vidx
// metadata, is refused with an error wrapping sinks.ErrIncompatible; a
// collection is never recreated or dropped.
//
// # Writes
//
// Point ids are sinks.PointID UUIDs, so a redelivered clip overwrites its
// point. Upsert validates every point first (id, sinks.CheckVector, UTF-8
// payload) so that a bad point fails the whole call with sinks.ErrInvalid
// before anything is sent, then sends batches of Config.UpsertBatch points
// with wait=true: when Upsert returns nil every point has been applied.
// Writes carry Qdrant's timeout field, shorter than the call's own timeout,
// so that the server gives up first and retries never overlap there.
//
// # Failures
//
// Unavailable, rate limits with retry-after and timeouts are retried with
// exponential backoff, or after the server's retry-after hint, for at most
// Config.RetryFor; then the error wraps ErrUnavailable. Strict-mode
// capacity limits and a full node map to sinks.ErrCapacity, batches refused
// for their size are split, and what stays refused (a rate limit without
// retry-after: "never retry") maps to sinks.ErrRejected. Other
// InvalidArgument maps to sinks.ErrInvalid, NotFound to sinks.ErrNotFound
// and a rejected API key to ErrAuth.
package qdrant

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blang/semver/v4"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/vidx/vidx/sinks"
)

// MinServerVersion is the oldest Qdrant that keeps collection metadata over
// gRPC, where vidx records which model produced a collection's vectors.
const MinServerVersion = "1.15.4"

// maxMessage bounds gRPC messages both ways. gRPC's 4 MiB default is too
// small for a batch of queries that return their vectors.
const maxMessage = 256 << 20

// Store is a sinks.Store on a Qdrant server. It is safe for concurrent use.
type Store struct {
	cfg     Config
	ep      Endpoint
	client  *qc.Client
	log     *slog.Logger
	version string

	mu sync.Mutex
	// specs caches collection specs so that writes and queries can be
	// validated without a round trip; a collection's dimension and model
	// never change while it exists.
	specs map[string]sinks.CollectionSpec

	// batch is the number of points per upsert call: Config.UpsertBatch,
	// lowered for good when the server refuses batches of that size.
	batch atomic.Int64

	// conn is held for reading around every RPC and for writing by Close,
	// which empties the client's connection pool.
	conn   sync.RWMutex
	closed bool
}

// ErrClosed is returned by every call on a closed Store.
var ErrClosed = errors.New("qdrant store is closed")

var _ sinks.Store = (*Store)(nil)

// Open connects to the Qdrant server named by rawURL (qdrant://HOST:6334) and
// checks that it answers and is recent enough. Unreachable servers are
// retried for cfg.RetryFor.
func Open(ctx context.Context, rawURL string, cfg Config, log *slog.Logger) (*Store, error) {
	ep, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("store", "qdrant", "addr", ep.String())
	if cfg.Timeout < 2*time.Second {
		log.Warn("store.qdrant.timeout under 2s: Qdrant's own timeout (whole seconds) cannot end before the call's, so a slow write may still run on the server while it is retried",
			"timeout", cfg.Timeout)
	}

	opts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(retryAfterInterceptor),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		// Reconnect soon after a Qdrant restart instead of after gRPC's
		// default backoff, which grows to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if cfg.APIKey != "" {
		opts = append(opts, grpc.WithChainUnaryInterceptor(apiKeyInterceptor(cfg.APIKey)))
		if !cfg.TLS {
			log.Warn("an API key is configured without TLS; it travels in clear text (set store.qdrant.tls)")
		}
	}
	var tlsCfg *tls.Config
	if cfg.TLS {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: ep.Host}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("store.qdrant.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("store.qdrant.ca_file %s: no PEM certificates", cfg.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
	}
	client, err := qc.NewClient(&qc.Config{
		Host:      ep.Host,
		Port:      ep.Port,
		UseTLS:    cfg.TLS,
		TLSConfig: tlsCfg,
		PoolSize:  uint(cfg.PoolSize),
		// Open checks the version itself and logs through vidx's logger.
		SkipCompatibilityCheck: true,
		GrpcOptions:            opts,
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant client for %s: %w", ep, err)
	}
	s := &Store{cfg: cfg, ep: ep, client: client, log: log, specs: map[string]sinks.CollectionSpec{}}
	s.batch.Store(int64(cfg.UpsertBatch))
	if err := s.checkServer(ctx); err != nil {
		client.Close()
		return nil, err
	}
	log.Info("connected to qdrant", "version", s.version, "tls", cfg.TLS, "pool_size", cfg.PoolSize, "api_key_set", cfg.APIKey != "")
	return s, nil
}

func (s *Store) checkServer(ctx context.Context) error {
	var reply *qc.HealthCheckReply
	err := s.call(ctx, "health check", func(ctx context.Context) (err error) {
		reply, err = s.client.GetQdrantClient().HealthCheck(ctx, &qc.HealthCheckRequest{})
		return err
	})
	if err != nil {
		return fmt.Errorf("connect to qdrant at %s: %w", s.ep, err)
	}
	s.version = reply.GetVersion()
	have, err := semver.ParseTolerant(s.version)
	if err != nil {
		s.log.Warn("cannot parse the qdrant server version; assuming it keeps collection metadata", "version", s.version)
		return nil
	}
	want := semver.MustParse(MinServerVersion)
	// A pre-release or build of a supported version is fine: compare the
	// release numbers only.
	have.Pre, have.Build = nil, nil
	if have.LT(want) {
		return fmt.Errorf("qdrant at %s is version %s; vidx needs %s or newer, which keeps collection metadata over gRPC where vidx records the model of a collection's vectors",
			s.ep, s.version, MinServerVersion)
	}
	return nil
}

// serverTimeout is the timeout field of writes and collection creation:
// the server gives up (DeadlineExceeded) before the attempt's own timeout
// cancels the call, so a slow write is never still running on the server
// while vidx sends it again. Qdrant counts it in whole seconds.
func (s *Store) serverTimeout() *uint64 {
	margin := max(time.Second, s.cfg.Timeout/5)
	return qc.PtrOf(uint64(max(1, (s.cfg.Timeout-margin)/time.Second)))
}

// Endpoint returns the server address.
func (s *Store) Endpoint() Endpoint { return s.ep }

// ServerVersion returns the version the server reported when the store
// connected.
func (s *Store) ServerVersion() string { return s.version }

// Close closes every connection; calls in flight fail. Closing again is a
// no-op.
func (s *Store) Close() error {
	s.conn.Lock()
	defer s.conn.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.client.Close()
}

func validateSpec(spec sinks.CollectionSpec) error {
	switch {
	case spec.Name == "":
		return fmt.Errorf("%w: collection name is empty", sinks.ErrInvalid)
	case strings.ContainsAny(spec.Name, "/\\:*?\"<>|\x00"):
		return fmt.Errorf("%w: collection name %q has characters Qdrant does not allow", sinks.ErrInvalid, spec.Name)
	case spec.Dim <= 0 || spec.Dim > 65536:
		return fmt.Errorf("%w: collection %q: dimension %d out of range [1, 65536]", sinks.ErrInvalid, spec.Name, spec.Dim)
	case spec.Distance != "cosine":
		return fmt.Errorf("%w: collection %q: distance %q is not supported, only \"cosine\"", sinks.ErrInvalid, spec.Name, spec.Distance)
	}
	return nil
}

// EnsureCollection creates the collection when missing and checks an
// existing one. It never changes an existing collection's vectors or
// settings, only adds payload indexes it lacks.
func (s *Store) EnsureCollection(ctx context.Context, spec sinks.CollectionSpec) error {
	if err := validateSpec(spec); err != nil {
		return err
	}
	info, err := s.info(ctx, spec.Name)
	if errors.Is(err, sinks.ErrNotFound) {
		if err := s.create(ctx, spec); err != nil {
			// Another replica may have created it in between (Qdrant then
			// answers AlreadyExists), or a retried create may have
			// succeeded the first time: look again before giving up.
			var again error
			info, again = s.info(ctx, spec.Name)
			if again != nil {
				return fmt.Errorf("create collection %q: %w", spec.Name, err)
			}
		} else if info, err = s.info(ctx, spec.Name); err != nil {
			return fmt.Errorf("read back created collection %q: %w", spec.Name, err)
		}
	} else if err != nil {
		return err
	}
	have, err := specOf(spec.Name, info)
	if err != nil {
		return err
	}
	if err := have.Compatible(spec); err != nil {
		return err
	}
	if err := s.ensureIndexes(ctx, spec.Name, info); err != nil {
		return err
	}
	s.remember(have)
	s.noteSettings(spec.Name, info)
	return nil
}

func (s *Store) create(ctx context.Context, spec sinks.CollectionSpec) error {
	req := &qc.CreateCollection{
		CollectionName: spec.Name,
		VectorsConfig: qc.NewVectorsConfig(&qc.VectorParams{
			Size:     uint64(spec.Dim),
			Distance: qc.Distance_Cosine,
			OnDisk:   qc.PtrOf(s.cfg.OnDisk),
		}),
		HnswConfig: &qc.HnswConfigDiff{
			M:           qc.PtrOf(uint64(s.cfg.HNSWM)),
			EfConstruct: qc.PtrOf(uint64(s.cfg.HNSWEfConstruct)),
		},
		Metadata: encodeMetadata(spec),
		Timeout:  s.serverTimeout(),
	}
	// Unset shards and replication leave the choice to the cluster (one
	// shard per node, its default replication factor).
	if s.cfg.Shards > 0 {
		req.ShardNumber = qc.PtrOf(uint32(s.cfg.Shards))
	}
	if s.cfg.ReplicationFactor > 0 {
		req.ReplicationFactor = qc.PtrOf(uint32(s.cfg.ReplicationFactor))
	}
	if s.cfg.Quantization == QuantizationInt8 {
		// Quantized vectors stay in RAM even when the originals are on disk;
		// that is the point of quantizing. The 0.99 quantile clips outliers.
		req.QuantizationConfig = qc.NewQuantizationScalar(&qc.ScalarQuantization{
			Type:      qc.QuantizationType_Int8,
			Quantile:  qc.PtrOf(float32(0.99)),
			AlwaysRam: qc.PtrOf(true),
		})
	}
	err := s.call(ctx, "create collection", func(ctx context.Context) error {
		_, err := s.client.GetCollectionsClient().Create(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	s.log.Info("created collection", "collection", spec.Name, "dim", spec.Dim, "model", spec.Model, "pooling", spec.Pooling,
		"hnsw_m", s.cfg.HNSWM, "hnsw_ef_construct", s.cfg.HNSWEfConstruct, "on_disk", s.cfg.OnDisk,
		"quantization", s.cfg.Quantization, "shards", s.cfg.Shards, "replication_factor", s.cfg.ReplicationFactor)
	return nil
}

// ensureIndexes adds the payload indexes a collection lacks, for example one
// created by hand or by an older vidx.
func (s *Store) ensureIndexes(ctx context.Context, name string, info *qc.CollectionInfo) error {
	schema := info.GetPayloadSchema()
	fields := slices.Clone(indexedFields)
	for _, k := range s.cfg.MetadataIndexes {
		fields = append(fields, struct {
			Name string
			Type qc.FieldType
		}{metadataField(k), qc.FieldType_FieldTypeKeyword})
	}
	for _, f := range fields {
		want := payloadSchemaType(f.Type)
		if have, ok := schema[f.Name]; ok {
			if have.GetDataType() != want {
				s.log.Warn("payload index has an unexpected type; filters on it may be slow or fail",
					"collection", name, "field", f.Name, "type", have.GetDataType().String(), "want", want.String())
			}
			continue
		}
		err := s.call(ctx, "create payload index", func(ctx context.Context) error {
			resp, err := s.client.GetPointsClient().CreateFieldIndex(ctx, &qc.CreateFieldIndexCollection{
				CollectionName: name,
				Wait:           qc.PtrOf(true),
				FieldName:      f.Name,
				FieldType:      qc.PtrOf(f.Type),
				Timeout:        s.serverTimeout(),
			})
			if err != nil {
				return err
			}
			return checkUpdate(resp.GetResult())
		})
		if err != nil {
			return fmt.Errorf("collection %q: index payload field %s: %w", name, f.Name, err)
		}
		s.log.Info("created payload index", "collection", name, "field", f.Name, "type", want.String())
	}
	return nil
}

func payloadSchemaType(t qc.FieldType) qc.PayloadSchemaType {
	switch t {
	case qc.FieldType_FieldTypeKeyword:
		return qc.PayloadSchemaType_Keyword
	case qc.FieldType_FieldTypeFloat:
		return qc.PayloadSchemaType_Float
	case qc.FieldType_FieldTypeDatetime:
		return qc.PayloadSchemaType_Datetime
	case qc.FieldType_FieldTypeInteger:
		return qc.PayloadSchemaType_Integer
	}
	return qc.PayloadSchemaType_UnknownType
}

// noteSettings logs where an existing collection's settings differ from the
// configured ones: they apply only to collections vidx creates.
func (s *Store) noteSettings(name string, info *qc.CollectionInfo) {
	ci := describe(info)
	var diffs []any
	add := func(key string, have, want any) {
		if have != want {
			diffs = append(diffs, slog.Group(key, "collection", have, "config", want))
		}
	}
	add("hnsw_m", ci.HNSWM, uint64(s.cfg.HNSWM))
	add("hnsw_ef_construct", ci.HNSWEfConstruct, uint64(s.cfg.HNSWEfConstruct))
	add("on_disk", ci.OnDisk, s.cfg.OnDisk)
	add("quantization", ci.Quantization, s.cfg.Quantization)
	if s.cfg.Shards > 0 {
		add("shards", ci.Shards, uint32(s.cfg.Shards))
	}
	if s.cfg.ReplicationFactor > 0 {
		add("replication_factor", ci.ReplicationFactor, uint32(s.cfg.ReplicationFactor))
	}
	if len(diffs) > 0 {
		s.log.Info("existing collection keeps its own settings", append([]any{"collection", name}, diffs...)...)
	}
}

func (s *Store) info(ctx context.Context, name string) (*qc.CollectionInfo, error) {
	var resp *qc.GetCollectionInfoResponse
	err := s.call(ctx, "get collection", func(ctx context.Context) (err error) {
		resp, err = s.client.GetCollectionsClient().Get(ctx, &qc.GetCollectionInfoRequest{CollectionName: name})
		return err
	})
	if err != nil {
		if errors.Is(err, sinks.ErrNotFound) {
			s.forget(name)
			return nil, fmt.Errorf("collection %q: %w", name, sinks.ErrNotFound)
		}
		return nil, fmt.Errorf("collection %q: %w", name, err)
	}
	return resp.GetResult(), nil
}

// specOf reads the vidx view of a collection. A collection vidx cannot use
// (named vectors, no vidx metadata) is an ErrIncompatible error.
func specOf(name string, info *qc.CollectionInfo) (sinks.CollectionSpec, error) {
	vc := info.GetConfig().GetParams().GetVectorsConfig()
	params := vc.GetParams()
	if params == nil {
		return sinks.CollectionSpec{}, fmt.Errorf("%w: collection %q has named or no vectors; vidx needs one unnamed vector", sinks.ErrIncompatible, name)
	}
	spec := sinks.CollectionSpec{
		Name:     name,
		Dim:      int(params.GetSize()),
		Distance: strings.ToLower(params.GetDistance().String()),
	}
	model, pooling, ok := decodeMetadata(info.GetConfig().GetMetadata())
	if !ok {
		return spec, fmt.Errorf("%w: collection %q exists but carries no vidx metadata (%s, %s): it was not created by vidx, or by a Qdrant older than %s; refusing to mix vectors into it, pick another store.collection",
			sinks.ErrIncompatible, name, metaModel, metaPooling, MinServerVersion)
	}
	spec.Model, spec.Pooling = model, pooling
	return spec, nil
}

// Collection returns the spec of an existing collection, or an error
// wrapping sinks.ErrNotFound. A collection without vidx metadata is reported
// with an empty model and pooling, which no spec is Compatible with.
func (s *Store) Collection(ctx context.Context, name string) (sinks.CollectionSpec, error) {
	info, err := s.info(ctx, name)
	if err != nil {
		return sinks.CollectionSpec{}, err
	}
	spec, err := specOf(name, info)
	if err != nil {
		if errors.Is(err, sinks.ErrIncompatible) && spec.Dim > 0 {
			return spec, nil
		}
		return sinks.CollectionSpec{}, err
	}
	s.remember(spec)
	return spec, nil
}

func (s *Store) remember(spec sinks.CollectionSpec) {
	s.mu.Lock()
	s.specs[spec.Name] = spec
	s.mu.Unlock()
}

func (s *Store) forget(name string) {
	s.mu.Lock()
	delete(s.specs, name)
	s.mu.Unlock()
}

// spec returns the cached spec of a collection vidx can use, loading it on
// first use.
func (s *Store) spec(ctx context.Context, name string) (sinks.CollectionSpec, error) {
	s.mu.Lock()
	spec, ok := s.specs[name]
	s.mu.Unlock()
	if ok {
		return spec, nil
	}
	info, err := s.info(ctx, name)
	if err != nil {
		return sinks.CollectionSpec{}, err
	}
	spec, err = specOf(name, info)
	if err != nil {
		return sinks.CollectionSpec{}, err
	}
	if spec.Distance != "cosine" {
		return sinks.CollectionSpec{}, fmt.Errorf("%w: collection %q uses distance %q; vidx scores by cosine", sinks.ErrIncompatible, name, spec.Distance)
	}
	s.remember(spec)
	return spec, nil
}

// CollectionInfo is what `vidx status` shows about a Qdrant collection.
type CollectionInfo struct {
	Spec              sinks.CollectionSpec `json:"spec"`
	Status            string               `json:"status"` // green, yellow, grey or red
	Points            uint64               `json:"points"` // Qdrant's estimate; Count is exact
	IndexedVectors    uint64               `json:"indexed_vectors"`
	Segments          uint64               `json:"segments"`
	Shards            uint32               `json:"shards"`
	ReplicationFactor uint32               `json:"replication_factor"`
	HNSWM             uint64               `json:"hnsw_m"`
	HNSWEfConstruct   uint64               `json:"hnsw_ef_construct"`
	OnDisk            bool                 `json:"on_disk"`
	Quantization      string               `json:"quantization"`
	// PayloadIndexes maps each indexed payload field to its index type.
	PayloadIndexes map[string]string `json:"payload_indexes"`
	Metadata       map[string]string `json:"metadata"`
	Warnings       []string          `json:"warnings,omitempty"`
}

// Info describes a collection: its spec, Qdrant status and settings.
func (s *Store) Info(ctx context.Context, name string) (CollectionInfo, error) {
	info, err := s.info(ctx, name)
	if err != nil {
		return CollectionInfo{}, err
	}
	ci := describe(info)
	spec, err := specOf(name, info)
	if err != nil && !errors.Is(err, sinks.ErrIncompatible) {
		return CollectionInfo{}, err
	}
	ci.Spec = spec
	if err != nil {
		ci.Warnings = append(ci.Warnings, err.Error())
	}
	return ci, nil
}

func describe(info *qc.CollectionInfo) CollectionInfo {
	cfg := info.GetConfig()
	params := cfg.GetParams()
	vp := params.GetVectorsConfig().GetParams()
	ci := CollectionInfo{
		Status:            strings.ToLower(info.GetStatus().String()),
		Points:            info.GetPointsCount(),
		IndexedVectors:    info.GetIndexedVectorsCount(),
		Segments:          info.GetSegmentsCount(),
		Shards:            params.GetShardNumber(),
		ReplicationFactor: params.GetReplicationFactor(),
		HNSWM:             cfg.GetHnswConfig().GetM(),
		HNSWEfConstruct:   cfg.GetHnswConfig().GetEfConstruct(),
		OnDisk:            vp.GetOnDisk(),
		Quantization:      QuantizationNone,
		PayloadIndexes:    map[string]string{},
		Metadata:          metadataString(cfg.GetMetadata()),
	}
	// A per-vector setting overrides the collection's.
	if h := vp.GetHnswConfig(); h != nil {
		if h.M != nil {
			ci.HNSWM = h.GetM()
		}
		if h.EfConstruct != nil {
			ci.HNSWEfConstruct = h.GetEfConstruct()
		}
	}
	q := cfg.GetQuantizationConfig()
	if vq := vp.GetQuantizationConfig(); vq != nil {
		q = vq
	}
	switch {
	case q.GetScalar() != nil && q.GetScalar().GetType() == qc.QuantizationType_Int8:
		ci.Quantization = QuantizationInt8
	case q.GetScalar() != nil:
		ci.Quantization = "scalar"
	case q.GetProduct() != nil:
		ci.Quantization = "product"
	case q.GetBinary() != nil:
		ci.Quantization = "binary"
	}
	for _, k := range slices.Sorted(maps.Keys(info.GetPayloadSchema())) {
		ci.PayloadIndexes[k] = strings.ToLower(info.GetPayloadSchema()[k].GetDataType().String())
	}
	for _, w := range info.GetWarnings() {
		ci.Warnings = append(ci.Warnings, w.GetMessage())
	}
	return ci
}

// checkUpdate turns the status of a write that was sent with wait=true into
// an error.
func checkUpdate(r *qc.UpdateResult) error {
	switch r.GetStatus() {
	case qc.UpdateStatus_Completed, qc.UpdateStatus_Acknowledged:
		return nil
	case qc.UpdateStatus_WaitTimeout:
		return errWaitTimeout
	}
	return fmt.Errorf("qdrant reported update status %s", r.GetStatus())
}
