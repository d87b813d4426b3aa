package schemas_test

import (
	"encoding/json"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vidx/vidx/schemas"
)

// jsonFields returns the JSON names of t's fields and those without
// omitempty (the ones a JSON Schema must list as required).
func jsonFields(t *testing.T, typ reflect.Type) (names, required []string) {
	t.Helper()
	for f := range typ.Fields() {
		if !f.IsExported() {
			continue
		}
		tag, ok := f.Tag.Lookup("json")
		if !ok {
			t.Fatalf("%s.%s has no json tag", typ.Name(), f.Name)
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		names = append(names, name)
		if o := strings.Split(opts, ","); !slices.Contains(o, "omitempty") && !slices.Contains(o, "omitzero") {
			required = append(required, name)
		}
	}
	slices.Sort(names)
	slices.Sort(required)
	return names, required
}

type jsonSchema struct {
	Schema               string                 `json:"$schema"`
	Type                 string                 `json:"type"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
	Required             []string               `json:"required"`
	Properties           map[string]*jsonSchema `json:"properties"`
	Items                *jsonSchema            `json:"items"`
	Const                any                    `json:"const"`
	Enum                 []string               `json:"enum"`
	MaxLength            *int                   `json:"maxLength"`
	Maximum              *float64               `json:"maximum"`
	MaxProperties        *int                   `json:"maxProperties"`
}

func loadSchema(t *testing.T, name string) *jsonSchema {
	t.Helper()
	raw, err := fs.ReadFile(schemas.JSONSchemas, "jsonschema/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var s jsonSchema
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &s
}

func TestJSONSchemaFilesParse(t *testing.T) {
	files, err := fs.Glob(schemas.JSONSchemas, "jsonschema/*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"jsonschema/query.schema.json", "jsonschema/result.schema.json", "jsonschema/stream-state.schema.json",
		"jsonschema/stream.schema.json", "jsonschema/video-job.schema.json"}
	if !slices.Equal(files, want) {
		t.Fatalf("embedded schema files %v, want %v", files, want)
	}
	for _, f := range files {
		raw, err := fs.ReadFile(schemas.JSONSchemas, f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Errorf("%s is not JSON: %v", f, err)
			continue
		}
		if doc["$schema"] == nil || doc["type"] != "object" {
			t.Errorf("%s: $schema %v, type %v", f, doc["$schema"], doc["type"])
		}
	}
}

// TestJSONSchemaMatchesGoTypes keeps the schema files and the Go types from
// drifting apart: every object lists exactly the Go fields, requires exactly
// those without omitempty and refuses other properties, as the decoders do.
func TestJSONSchemaMatchesGoTypes(t *testing.T) {
	job, query, result := loadSchema(t, "video-job.schema.json"), loadSchema(t, "query.schema.json"), loadSchema(t, "result.schema.json")
	sub := func(s *jsonSchema, name string) *jsonSchema {
		if p := s.Properties[name]; p != nil {
			return p
		}
		t.Fatalf("schema has no property %q", name)
		return nil
	}
	cases := []struct {
		name   string
		schema *jsonSchema
		typ    reflect.Type
	}{
		{"VideoJob", job, reflect.TypeFor[schemas.VideoJob]()},
		{"Segment", sub(job, "segment"), reflect.TypeFor[schemas.Segment]()},
		{"Query", query, reflect.TypeFor[schemas.Query]()},
		{"Filters", sub(query, "filters"), reflect.TypeFor[schemas.Filters]()},
		{"ClipRef", sub(query, "like"), reflect.TypeFor[schemas.ClipRef]()},
		{"Result", result, reflect.TypeFor[schemas.Result]()},
		{"Hit", sub(result, "hits").Items, reflect.TypeFor[schemas.Hit]()},
		{"ResultError", sub(result, "error"), reflect.TypeFor[schemas.ResultError]()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.schema == nil {
				t.Fatal("no schema")
			}
			names, required := jsonFields(t, c.typ)
			var props []string
			for k := range c.schema.Properties {
				props = append(props, k)
			}
			slices.Sort(props)
			if !slices.Equal(props, names) {
				t.Errorf("schema properties %v, Go fields %v", props, names)
			}
			req := slices.Sorted(slices.Values(c.schema.Required))
			if !slices.Equal(req, required) {
				t.Errorf("schema required %v, Go fields without omitempty %v", req, required)
			}
			if string(c.schema.AdditionalProperties) != "false" {
				t.Errorf("schema allows additional properties; the decoder refuses unknown fields")
			}
		})
	}
}

// TestJSONSchemaLimits checks the limits and enums in the schema files
// against the ones the Go validation enforces.
func TestJSONSchemaLimits(t *testing.T) {
	job, query, result := loadSchema(t, "video-job.schema.json"), loadSchema(t, "query.schema.json"), loadSchema(t, "result.schema.json")
	intp := func(p *int) int {
		if p == nil {
			return -1
		}
		return *p
	}
	floatp := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	for name, s := range map[string]*jsonSchema{"video job": job, "query": query, "result": result} {
		if c, ok := s.Properties["schema_version"].Const.(float64); !ok || int(c) != schemas.Version {
			t.Errorf("%s: schema_version const %v, want %d", name, s.Properties["schema_version"].Const, schemas.Version)
		}
	}
	seg, rerank := job.Properties["segment"], []string{"none", "camoe", "symmetric"}
	checks := []struct {
		name      string
		got, want any
	}{
		{"video_id maxLength", intp(job.Properties["video_id"].MaxLength), schemas.MaxIDLen},
		{"uri maxLength", intp(job.Properties["uri"].MaxLength), schemas.MaxURILen},
		{"source maxLength", intp(job.Properties["source"].MaxLength), schemas.MaxIDLen},
		{"metadata maxProperties", intp(job.Properties["metadata"].MaxProperties), schemas.MaxMetadataLen},
		{"segment.mode enum", seg.Properties["mode"].Enum, []string{schemas.ModeWhole, schemas.ModeWindow, schemas.ModeShots}},
		{"segment.selection enum", seg.Properties["selection"].Enum, []string{schemas.SelectUniform, schemas.SelectHead, schemas.SelectTail}},
		{"segment.fps maximum", floatp(seg.Properties["fps"].Maximum), 30.0},
		{"segment.max_frames maximum", floatp(seg.Properties["max_frames"].Maximum), 64.0},
		{"query_id maxLength", intp(query.Properties["query_id"].MaxLength), schemas.MaxIDLen},
		{"text maxLength", intp(query.Properties["text"].MaxLength), schemas.MaxQueryText},
		{"image maxLength", intp(query.Properties["image"].MaxLength), schemas.MaxImageLen},
		{"top_k maximum", floatp(query.Properties["top_k"].Maximum), float64(schemas.MaxTopK)},
		{"query rerank enum", query.Properties["rerank"].Enum, rerank},
		{"result rerank enum", result.Properties["rerank"].Enum, rerank},
		{"result query_id maxLength", intp(result.Properties["query_id"].MaxLength), schemas.MaxIDLen},
		{"result error code enum", result.Properties["error"].Properties["code"].Enum, []string{schemas.ErrCodeInvalidQuery, schemas.ErrCodeUnavailable}},
		{"filters metadata maxProperties", intp(query.Properties["filters"].Properties["metadata"].MaxProperties), schemas.MaxMetadataLen},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: schema has %v, Go has %v", c.name, c.got, c.want)
		}
	}
}
