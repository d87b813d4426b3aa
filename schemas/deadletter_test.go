package schemas_test

import (
	"errors"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
)

func TestDeadLetterRoundTrip(t *testing.T) {
	for _, in := range []schemas.DeadLetter{
		{
			Reason:    "invalid message: clip: frame 0: unexpected EOF",
			Class:     "poison",
			Stage:     "encode",
			Topic:     "clips",
			Partition: 7,
			Offset:    1234567890123,
			Attempts:  1,
			FailedAt:  time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600)),
			Key:       []byte("video7"),
			Value:     []byte{0x56, 0x49, 0x44, 0x58, 0, 1, 2},
		},
		{
			Reason:   "store unavailable",
			Class:    "unknown",
			Stage:    "index",
			Topic:    "clip-embeddings",
			Attempts: 5,
			FailedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		},
	} {
		t.Run(in.Stage, func(t *testing.T) {
			h := in.Headers()
			if h[schemas.HeaderSchemaVersion] != strconv.Itoa(schemas.Version) {
				t.Errorf("schema version header %q", h[schemas.HeaderSchemaVersion])
			}
			if !strings.HasSuffix(h[schemas.HeaderFailedAt], "Z") {
				t.Errorf("failed-at header %q is not UTC", h[schemas.HeaderFailedAt])
			}
			out, err := schemas.ParseDeadLetter(in.Key, in.Value, h)
			if err != nil {
				t.Fatal(err)
			}
			if !out.FailedAt.Equal(in.FailedAt) {
				t.Fatalf("FailedAt %v, want %v", out.FailedAt, in.FailedAt)
			}
			want := in
			want.FailedAt = out.FailedAt
			if !reflect.DeepEqual(out, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", out, want)
			}
		})
	}
}

func TestParseDeadLetterRejects(t *testing.T) {
	d := schemas.DeadLetter{Reason: "bad", Class: "poison", Stage: "pool", Topic: "frame-embeddings", Partition: 1, Offset: 2, Attempts: 1, FailedAt: time.Now()}
	valid := d.Headers()
	cases := []struct {
		name string
		edit func(h map[string]string)
		want string // empty: valid
	}{
		{"valid", func(h map[string]string) {}, ""},
		{"no attempts", func(h map[string]string) { delete(h, schemas.HeaderAttempts) }, ""},
		{"no failed-at", func(h map[string]string) { delete(h, schemas.HeaderFailedAt) }, ""},
		{"no headers", func(h map[string]string) { clear(h) }, schemas.HeaderError},
		{"missing error", func(h map[string]string) { delete(h, schemas.HeaderError) }, schemas.HeaderError},
		{"missing origin topic", func(h map[string]string) { delete(h, schemas.HeaderOriginTopic) }, schemas.HeaderOriginTopic},
		{"missing partition", func(h map[string]string) { delete(h, schemas.HeaderOriginPart) }, schemas.HeaderOriginPart},
		{"bad partition", func(h map[string]string) { h[schemas.HeaderOriginPart] = "one" }, schemas.HeaderOriginPart},
		{"missing offset", func(h map[string]string) { delete(h, schemas.HeaderOriginOffset) }, schemas.HeaderOriginOffset},
		{"bad offset", func(h map[string]string) { h[schemas.HeaderOriginOffset] = "1.5" }, schemas.HeaderOriginOffset},
		{"bad attempts", func(h map[string]string) { h[schemas.HeaderAttempts] = "x" }, schemas.HeaderAttempts},
		{"bad failed-at", func(h map[string]string) { h[schemas.HeaderFailedAt] = "yesterday" }, schemas.HeaderFailedAt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := maps.Clone(valid)
			c.edit(h)
			_, err := schemas.ParseDeadLetter(nil, []byte("v"), h)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalid naming %s", err, c.want)
			}
		})
	}
}
