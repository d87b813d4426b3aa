package qdranttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vidx/vidx/sinks"
)

// collection is what Qdrant knows about a collection beyond the points: the
// create request as received and the payload indexes. The embedded store
// only records dimension, model and pooling.
type collection struct {
	name    string
	create  *qc.CreateCollection
	indexes map[string]qc.PayloadSchemaType
	// optimizing is set by a write to an indexed collection and cleared by
	// the next GetCollectionInfo, which reports yellow meanwhile.
	optimizing bool
}

// indexed reports whether a collection of points vectors is past the
// indexing threshold, where Qdrant builds HNSW and searches approximately.
// Callers hold s.mu.
func (s *Server) indexed(c *collection, points int) bool {
	if s.opts.IndexingThresholdKB < 0 {
		return points > 0
	}
	dim := int(c.create.GetVectorsConfig().GetParams().GetSize())
	return points*dim*4 > s.opts.IndexingThresholdKB*1024
}

type collectionFile struct {
	Create  json.RawMessage   `json:"create"`
	Indexes map[string]string `json:"indexes"`
}

func loadCollections(dir string) (map[string]*collection, error) {
	out := map[string]*collection{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var f collectionFile
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c := &collection{create: &qc.CreateCollection{}, indexes: map[string]qc.PayloadSchemaType{}}
		if err := protojson.Unmarshal(f.Create, c.create); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c.name = c.create.GetCollectionName()
		for k, v := range f.Indexes {
			c.indexes[k] = qc.PayloadSchemaType(qc.PayloadSchemaType_value[v])
		}
		out[c.name] = c
	}
	return out, nil
}

func (c *collection) save(dir string) error {
	create, err := protojson.Marshal(c.create)
	if err != nil {
		return err
	}
	f := collectionFile{Create: create, Indexes: map[string]string{}}
	for k, v := range c.indexes {
		f.Indexes[k] = v.String()
	}
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+c.name+".tmp")
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, c.name+".json"))
}

// lookup returns a collection and the live store, with Qdrant's NotFound
// when the collection does not exist.
func (s *Server) lookup(name string) (*collection, error) {
	if _, err := s.state(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.colls[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
	}
	return c, nil
}

// grpcError maps store errors onto the codes Qdrant uses.
func grpcError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sinks.ErrInvalid):
		return status.Error(codes.InvalidArgument, "Wrong input: "+err.Error())
	case errors.Is(err, sinks.ErrNotFound):
		return status.Error(codes.NotFound, "Not found: "+err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, "Service internal error: "+err.Error())
}

type collectionsService struct {
	qc.UnimplementedCollectionsServer
	s *Server
}

func (cs collectionsService) Create(ctx context.Context, req *qc.CreateCollection) (*qc.CollectionOperationResponse, error) {
	s := cs.s
	store, err := s.state()
	if err != nil {
		return nil, err
	}
	params := req.GetVectorsConfig().GetParams()
	switch {
	case req.GetVectorsConfig().GetParamsMap() != nil || req.GetSparseVectorsConfig() != nil:
		return nil, status.Error(codes.Unimplemented, "test server: only one unnamed dense vector per point is modelled")
	case req.ShardingMethod != nil && req.GetShardingMethod() != qc.ShardingMethod_Auto:
		return nil, status.Error(codes.Unimplemented, "test server: custom sharding is not modelled")
	case params == nil:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: vectors config is required")
	case params.GetSize() == 0:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: Vector size must be greater than 0")
	case params.GetDistance() == qc.Distance_UnknownDistance:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: unknown distance")
	case req.ShardNumber != nil && req.GetShardNumber() == 0:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: shard_number must be at least 1")
	case req.ReplicationFactor != nil && req.GetReplicationFactor() == 0:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: replication_factor must be at least 1")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.colls[req.GetCollectionName()]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Wrong input: Collection `%s` already exists!", req.GetCollectionName())
	}
	// The embedded store scores by cosine only; other distances are kept in
	// the recorded request and queries on them answer Unimplemented.
	spec := sinks.CollectionSpec{
		Name:     req.GetCollectionName(),
		Dim:      int(params.GetSize()),
		Distance: "cosine",
		Model:    req.GetMetadata()["vidx_model"].GetStringValue(),
		Pooling:  req.GetMetadata()["vidx_pooling"].GetStringValue(),
	}
	if err := store.EnsureCollection(ctx, spec); err != nil {
		return nil, grpcError(err)
	}
	c := &collection{name: spec.Name, create: proto.Clone(req).(*qc.CreateCollection), indexes: map[string]qc.PayloadSchemaType{}}
	if err := c.save(filepath.Join(s.opts.Dir, "collections")); err != nil {
		return nil, status.Errorf(codes.Internal, "save collection: %v", err)
	}
	s.colls[spec.Name] = c
	return &qc.CollectionOperationResponse{Result: true}, nil
}

func (cs collectionsService) Get(ctx context.Context, req *qc.GetCollectionInfoRequest) (*qc.GetCollectionInfoResponse, error) {
	c, err := cs.s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	store, err := cs.s.state()
	if err != nil {
		return nil, err
	}
	n, err := store.Count(ctx, c.name, sinks.Filter{})
	if err != nil {
		return nil, grpcError(err)
	}
	cs.s.mu.Lock()
	defer cs.s.mu.Unlock()
	info := c.info(uint64(n))
	if cs.s.indexed(c, n) {
		info.IndexedVectorsCount = qc.PtrOf(uint64(n))
		if c.optimizing {
			info.Status = qc.CollectionStatus_Yellow
			c.optimizing = false
		}
	}
	return &qc.GetCollectionInfoResponse{Result: info}, nil
}

// info answers GetCollectionInfo with Qdrant's defaults where the create
// request left a setting out. Callers hold s.mu.
func (c *collection) info(points uint64) *qc.CollectionInfo {
	cr := c.create
	hnsw := &qc.HnswConfigDiff{M: qc.PtrOf(uint64(16)), EfConstruct: qc.PtrOf(uint64(100)), FullScanThreshold: qc.PtrOf(uint64(10000))}
	if h := cr.GetHnswConfig(); h != nil {
		if h.M != nil {
			hnsw.M = qc.PtrOf(h.GetM())
		}
		if h.EfConstruct != nil {
			hnsw.EfConstruct = qc.PtrOf(h.GetEfConstruct())
		}
		if h.OnDisk != nil {
			hnsw.OnDisk = qc.PtrOf(h.GetOnDisk())
		}
	}
	shards, replicas := uint32(1), uint32(1)
	if cr.ShardNumber != nil {
		shards = cr.GetShardNumber()
	}
	if cr.ReplicationFactor != nil {
		replicas = cr.GetReplicationFactor()
	}
	info := &qc.CollectionInfo{
		Status:          qc.CollectionStatus_Green,
		OptimizerStatus: &qc.OptimizerStatus{Ok: true},
		SegmentsCount:   1,
		PointsCount:     qc.PtrOf(points),
		// Qdrant builds no HNSW index below the indexing threshold.
		IndexedVectorsCount: qc.PtrOf(uint64(0)),
		Config: &qc.CollectionConfig{
			Params: &qc.CollectionParams{
				ShardNumber:            shards,
				ReplicationFactor:      qc.PtrOf(replicas),
				WriteConsistencyFactor: qc.PtrOf(uint32(1)),
				OnDiskPayload:          cr.GetOnDiskPayload(),
				VectorsConfig:          proto.Clone(cr.GetVectorsConfig()).(*qc.VectorsConfig),
			},
			HnswConfig:      hnsw,
			OptimizerConfig: &qc.OptimizersConfigDiff{},
			WalConfig:       &qc.WalConfigDiff{},
			Metadata:        map[string]*qc.Value{},
		},
		PayloadSchema: map[string]*qc.PayloadSchemaInfo{},
	}
	if q := cr.GetQuantizationConfig(); q != nil {
		info.Config.QuantizationConfig = proto.Clone(q).(*qc.QuantizationConfig)
	}
	for _, k := range slices.Sorted(maps.Keys(cr.GetMetadata())) {
		info.Config.Metadata[k] = proto.Clone(cr.GetMetadata()[k]).(*qc.Value)
	}
	for k, t := range c.indexes {
		info.PayloadSchema[k] = &qc.PayloadSchemaInfo{DataType: t, Points: qc.PtrOf(points)}
	}
	return info
}

func (cs collectionsService) List(context.Context, *qc.ListCollectionsRequest) (*qc.ListCollectionsResponse, error) {
	if _, err := cs.s.state(); err != nil {
		return nil, err
	}
	cs.s.mu.Lock()
	defer cs.s.mu.Unlock()
	resp := &qc.ListCollectionsResponse{}
	for _, name := range slices.Sorted(maps.Keys(cs.s.colls)) {
		resp.Collections = append(resp.Collections, &qc.CollectionDescription{Name: name})
	}
	return resp, nil
}

func (cs collectionsService) CollectionExists(_ context.Context, req *qc.CollectionExistsRequest) (*qc.CollectionExistsResponse, error) {
	if _, err := cs.s.state(); err != nil {
		return nil, err
	}
	cs.s.mu.Lock()
	defer cs.s.mu.Unlock()
	_, ok := cs.s.colls[req.GetCollectionName()]
	return &qc.CollectionExistsResponse{Result: &qc.CollectionExists{Exists: ok}}, nil
}
