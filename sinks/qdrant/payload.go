package qdrant

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vidx/vidx/sinks"
)

// Payload keys. Queries filter on video_id, source and start_s, and
// retention jobs on ingested_at, so those four get payload indexes.
const (
	FieldVideoID    = "video_id"
	FieldSource     = "source"
	FieldClipIndex  = "clip_index"
	FieldStartS     = "start_s"
	FieldEndS       = "end_s"
	FieldFrames     = "frames"
	FieldIngestedAt = "ingested_at"
	FieldMetadata   = "metadata"
	// FieldGeneration is the ingest generation of a job's clip (integer
	// microseconds, exact in Qdrant's float64 ranges); absent for stream
	// windows. Replacing a re-ingested video deletes by it.
	FieldGeneration = "generation"
	// FieldWallStart is a live stream window's wall-clock start (RFC 3339,
	// UTC); absent for clips of video files.
	FieldWallStart = "wall_start"
)

// indexedFields lists the payload indexes a vidx collection gets.
var indexedFields = []struct {
	Name string
	Type qc.FieldType
}{
	{FieldVideoID, qc.FieldType_FieldTypeKeyword},
	{FieldSource, qc.FieldType_FieldTypeKeyword},
	{FieldStartS, qc.FieldType_FieldTypeFloat},
	{FieldIngestedAt, qc.FieldType_FieldTypeDatetime},
	{FieldGeneration, qc.FieldType_FieldTypeInteger},
	{FieldWallStart, qc.FieldType_FieldTypeDatetime},
}

// metadataField is the payload key of one metadata entry, as Qdrant's
// nested-key syntax names it in filters and payload indexes.
func metadataField(key string) string { return FieldMetadata + "." + key }

// encodePayload maps a payload onto Qdrant values. ingested_at is RFC 3339
// in UTC, which Qdrant's datetime index parses. Every field is written, even
// when empty, so that a filter on source "" means the same as in the
// embedded store.
func encodePayload(p sinks.Payload) (map[string]*qc.Value, error) {
	for _, s := range []string{p.VideoID, p.Source} {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("%w: payload string %q is not valid UTF-8", sinks.ErrInvalid, s)
		}
	}
	for _, f := range []float64{p.StartS, p.EndS} {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: payload segment bound %v is not finite", sinks.ErrInvalid, f)
		}
	}
	m := map[string]*qc.Value{
		FieldVideoID:    qc.NewValueString(p.VideoID),
		FieldSource:     qc.NewValueString(p.Source),
		FieldClipIndex:  qc.NewValueInt(int64(p.ClipIndex)),
		FieldStartS:     qc.NewValueDouble(p.StartS),
		FieldEndS:       qc.NewValueDouble(p.EndS),
		FieldFrames:     qc.NewValueInt(int64(p.Frames)),
		FieldIngestedAt: qc.NewValueString(p.IngestedAt.UTC().Format(time.RFC3339Nano)),
	}
	if p.Generation < 0 {
		return nil, fmt.Errorf("%w: payload generation %d is negative", sinks.ErrInvalid, p.Generation)
	}
	if p.Generation > 0 {
		m[FieldGeneration] = qc.NewValueInt(p.Generation)
	}
	if !p.WallStart.IsZero() {
		m[FieldWallStart] = qc.NewValueString(p.WallStart.UTC().Format(time.RFC3339Nano))
	}
	if len(p.Metadata) > 0 {
		fields := make(map[string]*qc.Value, len(p.Metadata))
		for k, v := range p.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("%w: payload metadata %q=%q is not valid UTF-8", sinks.ErrInvalid, k, v)
			}
			fields[k] = qc.NewValueString(v)
		}
		m[FieldMetadata] = qc.NewValueFromFields(fields)
	}
	return m, nil
}

// decodePayload is the inverse of encodePayload. Keys it does not know are
// ignored, so points that other tools enriched still decode; numbers are
// accepted as integers or doubles because JSON does not tell them apart.
func decodePayload(m map[string]*qc.Value) (sinks.Payload, error) {
	var p sinks.Payload
	var err error
	str := func(key string) string {
		v, ok := m[key]
		if !ok || err != nil {
			return ""
		}
		s, isStr := v.GetKind().(*qc.Value_StringValue)
		if !isStr {
			err = fmt.Errorf("payload field %s is %T, want a string", key, v.GetKind())
			return ""
		}
		return s.StringValue
	}
	num := func(key string) float64 {
		v, ok := m[key]
		if !ok || err != nil {
			return 0
		}
		switch k := v.GetKind().(type) {
		case *qc.Value_DoubleValue:
			return k.DoubleValue
		case *qc.Value_IntegerValue:
			return float64(k.IntegerValue)
		}
		err = fmt.Errorf("payload field %s is %T, want a number", key, v.GetKind())
		return 0
	}
	p.VideoID = str(FieldVideoID)
	p.Source = str(FieldSource)
	p.ClipIndex = int(num(FieldClipIndex))
	p.StartS = num(FieldStartS)
	p.EndS = num(FieldEndS)
	p.Frames = int(num(FieldFrames))
	if v, ok := m[FieldGeneration]; ok && err == nil {
		// Read as an integer: a double would lose the low digits.
		switch k := v.GetKind().(type) {
		case *qc.Value_IntegerValue:
			p.Generation = k.IntegerValue
		case *qc.Value_DoubleValue:
			p.Generation = int64(k.DoubleValue)
		default:
			err = fmt.Errorf("payload field %s is %T, want an integer", FieldGeneration, v.GetKind())
		}
	}
	if s := str(FieldIngestedAt); s != "" && err == nil {
		p.IngestedAt, err = time.Parse(time.RFC3339Nano, s)
		if err != nil {
			err = fmt.Errorf("payload field %s: %w", FieldIngestedAt, err)
		}
	}
	if s := str(FieldWallStart); s != "" && err == nil {
		p.WallStart, err = time.Parse(time.RFC3339Nano, s)
		if err != nil {
			err = fmt.Errorf("payload field %s: %w", FieldWallStart, err)
		}
	}
	if v, ok := m[FieldMetadata]; ok && err == nil {
		st, isStruct := v.GetKind().(*qc.Value_StructValue)
		if !isStruct {
			return p, fmt.Errorf("payload field %s is %T, want an object", FieldMetadata, v.GetKind())
		}
		p.Metadata = make(map[string]string, len(st.StructValue.GetFields()))
		for k, fv := range st.StructValue.GetFields() {
			switch x := fv.GetKind().(type) {
			case *qc.Value_StringValue:
				p.Metadata[k] = x.StringValue
			case *qc.Value_IntegerValue:
				p.Metadata[k] = strconv.FormatInt(x.IntegerValue, 10)
			case *qc.Value_DoubleValue:
				p.Metadata[k] = strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
			case *qc.Value_BoolValue:
				p.Metadata[k] = strconv.FormatBool(x.BoolValue)
			default:
				return p, fmt.Errorf("payload field %s.%s is %T, want a string", FieldMetadata, k, fv.GetKind())
			}
		}
	}
	return p, err
}

// encodeFilter maps a filter onto Qdrant conditions, all of which must hold.
// It returns nil for the zero filter. A metadata key outside indexed is
// refused with ErrInvalid: without a payload index Qdrant scans every point
// (or, in strict mode, refuses the filter), so an operator must list the
// key in store.qdrant.metadata_indexes first.
func encodeFilter(f sinks.Filter, indexed []string) (*qc.Filter, error) {
	var must []*qc.Condition
	if len(f.VideoIDs) > 0 {
		must = append(must, qc.NewMatchKeywords(FieldVideoID, slices.Clone(f.VideoIDs)...))
	}
	if len(f.Sources) > 0 {
		must = append(must, qc.NewMatchKeywords(FieldSource, slices.Clone(f.Sources)...))
	}
	if f.StartFrom != nil || f.StartTo != nil {
		r := &qc.Range{}
		if f.StartFrom != nil {
			r.Gte = qc.PtrOf(*f.StartFrom)
		}
		if f.StartTo != nil {
			r.Lte = qc.PtrOf(*f.StartTo)
		}
		must = append(must, qc.NewRange(FieldStartS, r))
	}
	if f.Generation != nil {
		must = append(must, qc.NewMatchInt(FieldGeneration, *f.Generation))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		if !slices.Contains(indexed, k) {
			return nil, fmt.Errorf("%w: metadata key %q has no payload index in Qdrant (indexed: %v); add it to store.qdrant.metadata_indexes",
				sinks.ErrInvalid, k, indexed)
		}
		must = append(must, qc.NewMatchKeyword(metadataField(k), f.Metadata[k]))
	}
	if f.WallFrom != nil || f.WallTo != nil {
		r := &qc.DatetimeRange{}
		if f.WallFrom != nil {
			r.Gte = timestamppb.New(*f.WallFrom)
		}
		if f.WallTo != nil {
			r.Lte = timestamppb.New(*f.WallTo)
		}
		must = append(must, qc.NewDatetimeRange(FieldWallStart, r))
	}
	if len(must) == 0 {
		return nil, nil
	}
	return &qc.Filter{Must: must}, nil
}

// olderFilter selects the points of a video whose generation is below gen.
// It is phrased as "not at least gen" so that points without a generation
// (stream windows, points written before generations existed) match too,
// as they do in the embedded store.
func olderFilter(videoID string, gen int64) *qc.Filter {
	return &qc.Filter{
		Must:    []*qc.Condition{qc.NewMatchKeyword(FieldVideoID, videoID)},
		MustNot: []*qc.Condition{qc.NewRange(FieldGeneration, &qc.Range{Gte: qc.PtrOf(float64(gen))})},
	}
}

// metadata keys that record what produced a collection's vectors.
const (
	metaModel   = "vidx_model"
	metaPooling = "vidx_pooling"
	metaDim     = "vidx_dim"
)

func encodeMetadata(spec sinks.CollectionSpec) map[string]*qc.Value {
	return map[string]*qc.Value{
		metaModel:   qc.NewValueString(spec.Model),
		metaPooling: qc.NewValueString(spec.Pooling),
		metaDim:     qc.NewValueInt(int64(spec.Dim)),
	}
}

// decodeMetadata reads the model and pooling recorded at creation; ok is
// false when the collection carries no vidx metadata.
func decodeMetadata(m map[string]*qc.Value) (model, pooling string, ok bool) {
	mv, hasModel := m[metaModel]
	pv, hasPooling := m[metaPooling]
	if !hasModel || !hasPooling {
		return "", "", false
	}
	return mv.GetStringValue(), pv.GetStringValue(), true
}

// metadataString renders collection metadata for status output.
func metadataString(m map[string]*qc.Value) map[string]string {
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := m[k].GetKind().(type) {
		case *qc.Value_StringValue:
			out[k] = v.StringValue
		case *qc.Value_IntegerValue:
			out[k] = strconv.FormatInt(v.IntegerValue, 10)
		case *qc.Value_DoubleValue:
			out[k] = strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
		case *qc.Value_BoolValue:
			out[k] = strconv.FormatBool(v.BoolValue)
		default:
			out[k] = fmt.Sprint(m[k])
		}
	}
	return out
}
