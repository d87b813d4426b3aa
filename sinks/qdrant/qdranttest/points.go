package qdranttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vidx/vidx/sinks"
)

type pointsService struct {
	qc.UnimplementedPointsServer
	s *Server
}

func (ps pointsService) updated(wait bool) *qc.UpdateResult {
	st := qc.UpdateStatus_Acknowledged
	if wait {
		// The embedded store applies a write before it returns.
		st = qc.UpdateStatus_Completed
	}
	return &qc.UpdateResult{OperationId: qc.PtrOf(ps.s.nextOp()), Status: st}
}

func (ps pointsService) Upsert(ctx context.Context, req *qc.UpsertPoints) (*qc.PointsOperationResponse, error) {
	c, err := ps.s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if req.UpdateFilter != nil || req.UpdateMode != nil || req.ShardKeySelector != nil {
		return nil, status.Error(codes.Unimplemented, "test server: conditional, mode-restricted and sharded upserts are not modelled")
	}
	if err := ps.s.checkStrict(ctx, c, len(req.GetPoints())); err != nil {
		return nil, err
	}
	points := make([]sinks.Point, len(req.GetPoints()))
	for i, p := range req.GetPoints() {
		id, err := pointUUID(p.GetId())
		if err != nil {
			return nil, err
		}
		vec, err := denseVector(p.GetVectors())
		if err != nil {
			return nil, err
		}
		payload, err := payloadFromValues(p.GetPayload())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: point %s: %v", id, err)
		}
		points[i] = sinks.Point{ID: id, Vector: vec, Payload: payload}
	}
	store, err := ps.s.state()
	if err != nil {
		return nil, err
	}
	if err := store.Upsert(ctx, c.name, points); err != nil {
		return nil, grpcError(err)
	}
	ps.s.wrote(c)
	return &qc.PointsOperationResponse{Result: ps.updated(req.GetWait())}, nil
}

// checkStrict applies the strict-mode limits before an upsert of n points,
// with Qdrant's messages (lib/collection/src/operations/verification).
func (s *Server) checkStrict(ctx context.Context, c *collection, n int) error {
	lim := s.opts.Strict
	if lim.UpsertMaxBatchsize > 0 && n > lim.UpsertMaxBatchsize {
		return status.Errorf(codes.InvalidArgument, `Bad request: Limit exceeded %d > %d for "upsert limit". Help: Reduce the "upsert limit" parameter to or below %d.`,
			n, lim.UpsertMaxBatchsize, lim.UpsertMaxBatchsize)
	}
	if lim.MaxPointsCount > 0 {
		store, err := s.state()
		if err != nil {
			return err
		}
		have, err := store.Count(ctx, c.name, sinks.Filter{})
		if err != nil {
			return grpcError(err)
		}
		if have >= lim.MaxPointsCount {
			return status.Errorf(codes.InvalidArgument, "Bad request: Max points count limit of %d reached!", lim.MaxPointsCount)
		}
	}
	return nil
}

// wrote marks a collection as optimising after a write.
func (s *Server) wrote(c *collection) {
	s.mu.Lock()
	c.optimizing = true
	s.mu.Unlock()
}

func pointUUID(id *qc.PointId) (string, error) {
	u, ok := id.GetPointIdOptions().(*qc.PointId_Uuid)
	if !ok {
		return "", status.Errorf(codes.Unimplemented, "test server: only UUID point ids are modelled, got %v", id)
	}
	parsed, err := uuid.Parse(u.Uuid)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "Wrong input: Unable to parse UUID: %s", u.Uuid)
	}
	// Qdrant answers with the hyphenated lower-case form whatever it got.
	return parsed.String(), nil
}

func denseVector(v *qc.Vectors) ([]float32, error) {
	vec := v.GetVector()
	if vec == nil {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: point has no unnamed vector")
	}
	if d := vec.GetDense(); d != nil {
		return d.GetData(), nil
	}
	if data := vec.GetData(); len(data) > 0 && vec.Indices == nil && vec.VectorsCount == nil {
		return data, nil // the deprecated flat form
	}
	return nil, status.Error(codes.Unimplemented, "test server: only dense vectors are modelled")
}

// payloadFromValues decodes a Qdrant payload as the JSON object it is and
// then into sinks.Payload. Keys vidx does not know are accepted, as Qdrant
// accepts any payload, and dropped: the embedded store has nowhere to keep
// them. Known keys of the wrong type are refused.
func payloadFromValues(m map[string]*qc.Value) (sinks.Payload, error) {
	obj := make(map[string]any, len(m))
	for k, v := range m {
		obj[k] = valueToJSON(v)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return sinks.Payload{}, err
	}
	var p sinks.Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return sinks.Payload{}, fmt.Errorf("payload does not match the vidx schema: %w", err)
	}
	return p, nil
}

func valueToJSON(v *qc.Value) any {
	switch k := v.GetKind().(type) {
	case *qc.Value_DoubleValue:
		return k.DoubleValue
	case *qc.Value_IntegerValue:
		return k.IntegerValue
	case *qc.Value_StringValue:
		return k.StringValue
	case *qc.Value_BoolValue:
		return k.BoolValue
	case *qc.Value_StructValue:
		out := make(map[string]any, len(k.StructValue.GetFields()))
		for fk, fv := range k.StructValue.GetFields() {
			out[fk] = valueToJSON(fv)
		}
		return out
	case *qc.Value_ListValue:
		out := make([]any, len(k.ListValue.GetValues()))
		for i, lv := range k.ListValue.GetValues() {
			out[i] = valueToJSON(lv)
		}
		return out
	}
	return nil
}

// payloadToValues encodes a stored payload as Qdrant returns JSON: whole
// numbers as integers, others as doubles.
func payloadToValues(p sinks.Payload) (map[string]*qc.Value, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	out := make(map[string]*qc.Value, len(obj))
	for k, v := range obj {
		out[k] = jsonToValue(v)
	}
	return out, nil
}

func jsonToValue(v any) *qc.Value {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return qc.NewValueInt(i)
		}
		f, _ := x.Float64()
		return qc.NewValueDouble(f)
	case string:
		return qc.NewValueString(x)
	case bool:
		return qc.NewValueBool(x)
	case map[string]any:
		fields := make(map[string]*qc.Value, len(x))
		for k, fv := range x {
			fields[k] = jsonToValue(fv)
		}
		return qc.NewValueFromFields(fields)
	case []any:
		vals := make([]*qc.Value, len(x))
		for i, lv := range x {
			vals[i] = jsonToValue(lv)
		}
		return qc.NewValueFromList(vals...)
	}
	return qc.NewValueNull()
}

// filterFromQdrant reads the filters vidx sends: must conditions of keyword
// matches on video_id, source (one value or any of several) and
// metadata.KEY, an inclusive range on start_s and an inclusive datetime
// range on wall_start. Anything else is Unimplemented.
func filterFromQdrant(f *qc.Filter) (sinks.Filter, error) {
	var out sinks.Filter
	if f == nil {
		return out, nil
	}
	if len(f.GetShould()) > 0 || f.MinShould != nil {
		return out, status.Error(codes.Unimplemented, "test server: only must and must_not conditions are modelled")
	}
	if len(f.GetMustNot()) > 0 {
		return out, status.Error(codes.Unimplemented, "test server: must_not is modelled only in olderFilter's form")
	}
	seen := map[string]bool{}
	for _, c := range f.GetMust() {
		fc := c.GetField()
		if fc == nil {
			return out, status.Errorf(codes.Unimplemented, "test server: condition %T is not modelled", c.GetConditionOneOf())
		}
		key := fc.GetKey()
		if seen[key] {
			return out, status.Errorf(codes.Unimplemented, "test server: more than one condition on %q is not modelled", key)
		}
		seen[key] = true
		if mk, ok := strings.CutPrefix(key, "metadata."); ok {
			m, isKW := fc.GetMatch().GetMatchValue().(*qc.Match_Keyword)
			if !isKW {
				return out, status.Errorf(codes.Unimplemented, "test server: only a keyword match on %s is modelled", key)
			}
			if out.Metadata == nil {
				out.Metadata = map[string]string{}
			}
			out.Metadata[mk] = m.Keyword
			continue
		}
		switch key {
		case "wall_start":
			r := fc.GetDatetimeRange()
			if r == nil || r.Gt != nil || r.Lt != nil {
				return out, status.Error(codes.Unimplemented, "test server: only gte/lte datetime ranges on wall_start are modelled")
			}
			if r.Gte != nil {
				t := r.Gte.AsTime()
				out.WallFrom = &t
			}
			if r.Lte != nil {
				t := r.Lte.AsTime()
				out.WallTo = &t
			}
		case "video_id", "source":
			var vals []string
			switch m := fc.GetMatch().GetMatchValue().(type) {
			case *qc.Match_Keyword:
				vals = []string{m.Keyword}
			case *qc.Match_Keywords:
				vals = m.Keywords.GetStrings()
				if len(vals) == 0 {
					// Qdrant matches nothing for "any of none"; sinks.Filter
					// has no way to say so, and vidx never sends it.
					return out, status.Error(codes.Unimplemented, "test server: an empty match-any list is not modelled")
				}
			default:
				return out, status.Errorf(codes.Unimplemented, "test server: match %T on %s is not modelled", fc.GetMatch().GetMatchValue(), key)
			}
			if key == "video_id" {
				out.VideoIDs = vals
			} else {
				out.Sources = vals
			}
		case "start_s":
			r := fc.GetRange()
			if r == nil || r.Gt != nil || r.Lt != nil || fc.GetMatch() != nil {
				return out, status.Error(codes.Unimplemented, "test server: only gte/lte ranges on start_s are modelled")
			}
			out.StartFrom, out.StartTo = r.Gte, r.Lte
		case "generation":
			m, ok := fc.GetMatch().GetMatchValue().(*qc.Match_Integer)
			if !ok {
				return out, status.Error(codes.Unimplemented, "test server: only an integer match on generation is modelled in must")
			}
			out.Generation = &m.Integer
		default:
			return out, status.Errorf(codes.Unimplemented, "test server: filtering on %q is not modelled", key)
		}
	}
	return out, nil
}

// olderFrom reads the filter that deletes a video's older generations:
// must video_id == V, must_not generation >= G. ok is false for any other
// filter.
func olderFrom(f *qc.Filter) (video string, gen int64, ok bool) {
	if f == nil || len(f.GetMust()) != 1 || len(f.GetMustNot()) != 1 || len(f.GetShould()) > 0 || f.MinShould != nil {
		return "", 0, false
	}
	must, not := f.GetMust()[0].GetField(), f.GetMustNot()[0].GetField()
	kw, isKW := must.GetMatch().GetMatchValue().(*qc.Match_Keyword)
	if must.GetKey() != "video_id" || !isKW || not.GetKey() != "generation" {
		return "", 0, false
	}
	r := not.GetRange()
	if r == nil || r.Gte == nil || r.Gt != nil || r.Lt != nil || r.Lte != nil {
		return "", 0, false
	}
	// Qdrant compares integer payloads with a float64 range; generations
	// are microseconds, exact in a float64.
	return kw.Keyword, int64(math.Ceil(r.GetGte())), true
}

// countOlder counts the points of video with a generation below gen. The
// embedded store's filters cannot say "below", so the video's points are
// listed with a search (any direction ranks them all) and inspected.
func (s *Server) countOlder(ctx context.Context, c *collection, video string, gen int64) (int, error) {
	store, err := s.state()
	if err != nil {
		return 0, err
	}
	f := sinks.Filter{VideoIDs: []string{video}}
	all, err := store.Count(ctx, c.name, f)
	if err != nil || all == 0 {
		return 0, grpcError(err)
	}
	s.mu.Lock()
	dim := int(c.create.GetVectorsConfig().GetParams().GetSize())
	s.mu.Unlock()
	probe := make([]float32, dim)
	probe[0] = 1
	hits, err := store.Search(ctx, c.name, sinks.SearchRequest{Vector: probe, TopK: all, Filter: f})
	if err != nil {
		return 0, grpcError(err)
	}
	n := 0
	for _, h := range hits {
		if h.Payload.Generation < gen {
			n++
		}
	}
	return n, nil
}

// indexedNow reports whether c counts as indexed, i.e. searched and
// counted approximately unless exact is asked for.
func (s *Server) indexedNow(ctx context.Context, c *collection) (bool, error) {
	store, err := s.state()
	if err != nil {
		return false, err
	}
	n, err := store.Count(ctx, c.name, sinks.Filter{})
	if err != nil {
		return false, grpcError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.indexed(c, n), nil
}

// missed reports whether an approximate search of an indexed collection
// misses point id: one point in sixteen, chosen by id so that results are
// reproducible, stands for what an HNSW graph does not reach.
func missed(id string) bool { return id[len(id)-1] == '0' }

func (ps pointsService) query(ctx context.Context, outer string, req *qc.QueryPoints) ([]*qc.ScoredPoint, error) {
	name := req.GetCollectionName()
	if name == "" {
		name = outer
	}
	c, err := ps.s.lookup(name)
	if err != nil {
		return nil, err
	}
	ps.s.mu.Lock()
	dist := c.create.GetVectorsConfig().GetParams().GetDistance()
	ps.s.mu.Unlock()
	if dist != qc.Distance_Cosine {
		return nil, status.Errorf(codes.Unimplemented, "test server: only cosine collections can be queried, %q uses %s", name, dist)
	}
	switch {
	case len(req.GetPrefetch()) > 0 || req.Using != nil || req.ScoreThreshold != nil || req.GetOffset() != 0 || req.LookupFrom != nil || req.ShardKeySelector != nil:
		return nil, status.Error(codes.Unimplemented, "test server: only plain nearest-neighbour queries are modelled")
	}
	if p := req.GetParams(); p != nil && (p.HnswEf != nil || p.Quantization != nil || p.IndexedOnly != nil || p.Acorn != nil) {
		return nil, status.Error(codes.Unimplemented, "test server: search params other than exact are not modelled")
	}
	dense := req.GetQuery().GetNearest().GetDense()
	if dense == nil {
		return nil, status.Errorf(codes.Unimplemented, "test server: query %T is not modelled", req.GetQuery().GetVariant())
	}
	withPayload := false // Qdrant's default
	if wp := req.GetWithPayload(); wp != nil {
		e, ok := wp.GetSelectorOptions().(*qc.WithPayloadSelector_Enable)
		if !ok {
			return nil, status.Error(codes.Unimplemented, "test server: payload include/exclude lists are not modelled")
		}
		withPayload = e.Enable
	}
	withVectors := false
	if wv := req.GetWithVectors(); wv != nil {
		e, ok := wv.GetSelectorOptions().(*qc.WithVectorsSelector_Enable)
		if !ok {
			return nil, status.Error(codes.Unimplemented, "test server: named vector selection is not modelled")
		}
		withVectors = e.Enable
	}
	limit := uint64(10)
	if req.Limit != nil {
		limit = req.GetLimit()
	}
	if limit == 0 {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: limit must be positive")
	}
	f, err := filterFromQdrant(req.GetFilter())
	if err != nil {
		return nil, err
	}
	store, err := ps.s.state()
	if err != nil {
		return nil, err
	}
	approx := false
	if !req.GetParams().GetExact() {
		if approx, err = ps.s.indexedNow(ctx, c); err != nil {
			return nil, err
		}
	}
	topK := int(limit)
	if approx {
		// Enough spare candidates that dropping the missed ones still
		// fills the limit.
		topK = topK*2 + 16
	}
	hits, err := store.Search(ctx, c.name, sinks.SearchRequest{Vector: dense.GetData(), TopK: topK, Filter: f, WithVectors: withVectors})
	if err != nil {
		return nil, grpcError(err)
	}
	if approx {
		kept := hits[:0]
		for _, h := range hits {
			if !missed(h.ID) && len(kept) < int(limit) {
				kept = append(kept, h)
			}
		}
		hits = kept
	}
	out := make([]*qc.ScoredPoint, len(hits))
	for i, h := range hits {
		sp := &qc.ScoredPoint{Id: qc.NewIDUUID(h.ID), Score: h.Score}
		if withPayload {
			if sp.Payload, err = payloadToValues(h.Payload); err != nil {
				return nil, status.Errorf(codes.Internal, "encode payload of %s: %v", h.ID, err)
			}
		}
		if withVectors {
			sp.Vectors = &qc.VectorsOutput{VectorsOptions: &qc.VectorsOutput_Vector{Vector: &qc.VectorOutput{
				Vector: &qc.VectorOutput_Dense{Dense: &qc.DenseVector{Data: h.Vector}},
			}}}
		}
		out[i] = sp
	}
	return out, nil
}

func (ps pointsService) Query(ctx context.Context, req *qc.QueryPoints) (*qc.QueryResponse, error) {
	res, err := ps.query(ctx, "", req)
	if err != nil {
		return nil, err
	}
	return &qc.QueryResponse{Result: res}, nil
}

func (ps pointsService) QueryBatch(ctx context.Context, req *qc.QueryBatchPoints) (*qc.QueryBatchResponse, error) {
	resp := &qc.QueryBatchResponse{Result: make([]*qc.BatchResult, len(req.GetQueryPoints()))}
	for i, q := range req.GetQueryPoints() {
		if q.GetCollectionName() != "" && q.GetCollectionName() != req.GetCollectionName() {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: query %d names collection %q in a batch for %q", i, q.GetCollectionName(), req.GetCollectionName())
		}
		res, err := ps.query(ctx, req.GetCollectionName(), q)
		if err != nil {
			return nil, err
		}
		resp.Result[i] = &qc.BatchResult{Result: res}
	}
	return resp, nil
}

func (ps pointsService) Count(ctx context.Context, req *qc.CountPoints) (*qc.CountResponse, error) {
	c, err := ps.s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	store, err := ps.s.state()
	if err != nil {
		return nil, err
	}
	if video, gen, ok := olderFrom(req.GetFilter()); ok {
		n, err := ps.s.countOlder(ctx, c, video, gen)
		if err != nil {
			return nil, err
		}
		return &qc.CountResponse{Result: &qc.CountResult{Count: uint64(n)}}, nil
	}
	f, err := filterFromQdrant(req.GetFilter())
	if err != nil {
		return nil, err
	}
	n, err := store.Count(ctx, c.name, f)
	if err != nil {
		return nil, grpcError(err)
	}
	if !req.GetExact() && req.GetFilter() != nil {
		// Qdrant estimates a filtered count from its payload indexes unless
		// asked for an exact one; on an indexed collection the estimate
		// here is the unfiltered total, an upper bound as Qdrant's may be.
		indexed, err := ps.s.indexedNow(ctx, c)
		if err != nil {
			return nil, err
		}
		if indexed {
			if n, err = store.Count(ctx, c.name, sinks.Filter{}); err != nil {
				return nil, grpcError(err)
			}
		}
	}
	return &qc.CountResponse{Result: &qc.CountResult{Count: uint64(n)}}, nil
}

// Delete supports the deletes vidx sends: by a filter on video ids, and of
// a video's older generations (olderFrom). They are the deletes the embedded
// store can do.
func (ps pointsService) Delete(ctx context.Context, req *qc.DeletePoints) (*qc.PointsOperationResponse, error) {
	c, err := ps.s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	sel, ok := req.GetPoints().GetPointsSelectorOneOf().(*qc.PointsSelector_Filter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "test server: only deleting by filter is modelled")
	}
	store, err := ps.s.state()
	if err != nil {
		return nil, err
	}
	if video, gen, ok := olderFrom(sel.Filter); ok {
		if _, err := store.DeleteOlder(ctx, c.name, video, gen); err != nil {
			return nil, grpcError(err)
		}
		ps.s.wrote(c)
		return &qc.PointsOperationResponse{Result: ps.updated(req.GetWait())}, nil
	}
	f, err := filterFromQdrant(sel.Filter)
	if err != nil {
		return nil, err
	}
	if len(f.VideoIDs) == 0 || len(f.Sources) > 0 || f.StartFrom != nil || f.StartTo != nil || f.Generation != nil {
		return nil, status.Error(codes.Unimplemented, "test server: only deleting by video_id is modelled")
	}
	for _, v := range f.VideoIDs {
		if _, err := store.DeleteVideo(ctx, c.name, v); err != nil {
			return nil, grpcError(err)
		}
	}
	ps.s.wrote(c)
	return &qc.PointsOperationResponse{Result: ps.updated(req.GetWait())}, nil
}

func (ps pointsService) CreateFieldIndex(_ context.Context, req *qc.CreateFieldIndexCollection) (*qc.PointsOperationResponse, error) {
	c, err := ps.s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if req.FieldType == nil {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: field type is required")
	}
	var t qc.PayloadSchemaType
	switch req.GetFieldType() {
	case qc.FieldType_FieldTypeKeyword:
		t = qc.PayloadSchemaType_Keyword
	case qc.FieldType_FieldTypeInteger:
		t = qc.PayloadSchemaType_Integer
	case qc.FieldType_FieldTypeFloat:
		t = qc.PayloadSchemaType_Float
	case qc.FieldType_FieldTypeDatetime:
		t = qc.PayloadSchemaType_Datetime
	case qc.FieldType_FieldTypeBool:
		t = qc.PayloadSchemaType_Bool
	default:
		return nil, status.Errorf(codes.Unimplemented, "test server: %s indexes are not modelled", req.GetFieldType())
	}
	ps.s.mu.Lock()
	defer ps.s.mu.Unlock()
	c.indexes[req.GetFieldName()] = t
	if err := c.save(filepath.Join(ps.s.opts.Dir, "collections")); err != nil {
		return nil, status.Errorf(codes.Internal, "save collection: %v", err)
	}
	st := qc.UpdateStatus_Acknowledged
	if req.GetWait() {
		st = qc.UpdateStatus_Completed
	}
	ps.s.opID++
	return &qc.PointsOperationResponse{Result: &qc.UpdateResult{OperationId: qc.PtrOf(ps.s.opID), Status: st}}, nil
}
