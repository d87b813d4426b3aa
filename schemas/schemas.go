// Package schemas holds the message contracts of every vidx topic.
//
// JSON topics (videos, queries, results) carry a "schema_version" field and
// have a JSON Schema file under jsonschema/. Internal high-volume topics
// (clips, frame embeddings, clip embeddings) use the binary layout documented
// in binary.go. Decoders reject unknown versions, unknown fields and invalid
// values with an error wrapping ErrInvalid, which stages treat as poison.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the schema version this build writes and the only one it reads.
const Version = 1

// ErrInvalid marks a message that does not satisfy its contract.
var ErrInvalid = errors.New("invalid message")

// ErrVersion marks a message with a schema version this build cannot read.
var ErrVersion = errors.New("unsupported schema version")

// JSONSchemas holds the JSON Schema documents of the JSON topics.
//
//go:embed jsonschema/*.json
var JSONSchemas embed.FS

func invalidf(kind, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, kind, fmt.Sprintf(format, args...))
}

// decodeStrict decodes one JSON object, refusing unknown fields, trailing
// data and versions other than Version.
func decodeStrict(kind string, data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return invalidf(kind, "empty message")
	}
	// Peek at the version first so an old or future message gets a version
	// error rather than a confusing unknown-field error.
	var probe struct {
		SchemaVersion *int `json:"schema_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return invalidf(kind, "malformed JSON: %v", err)
	}
	if probe.SchemaVersion == nil {
		return invalidf(kind, "schema_version is required")
	}
	if *probe.SchemaVersion != Version {
		return fmt.Errorf("%w: %s: got %d, this build reads %d", ErrVersion, kind, *probe.SchemaVersion, Version)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidf(kind, "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidf(kind, "trailing data after the JSON object")
	}
	return nil
}
