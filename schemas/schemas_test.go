package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
)

func validJob() schemas.VideoJob {
	return schemas.VideoJob{
		VideoID: "video7",
		URI:     "file:///data/msrvtt/video7.mp4",
		Source:  "msrvtt",
		Segment: &schemas.Segment{
			Mode:      schemas.ModeWindow,
			FPS:       1,
			MaxFrames: 12,
			Selection: schemas.SelectUniform,
			WindowS:   10,
			StrideS:   5,
		},
		Metadata: map[string]string{"title": "a man is cooking", "lang": "en"},
	}
}

func validQuery() schemas.Query {
	from, to := 2.5, 60.0
	return schemas.Query{
		QueryID: "q-42",
		Text:    "a dog catches a frisbee",
		TopK:    10,
		Rerank:  "camoe",
		Filters: &schemas.Filters{
			VideoIDs:  []string{"video7", "video9"},
			Sources:   []string{"msrvtt"},
			StartFrom: &from,
			StartTo:   &to,
		},
	}
}

func validResult() schemas.Result {
	return schemas.Result{
		QueryID:    "q-42",
		Text:       "a dog catches a frisbee",
		Rerank:     "camoe",
		Model:      "clip-vit-b32",
		Candidates: 120,
		BankSize:   64,
		TookMS:     12.5,
		AnsweredAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Hits: []schemas.Hit{
			{Rank: 1, VideoID: "video7", Source: "msrvtt", ClipIndex: 3, StartS: 30, EndS: 40, Score: 0.91, Cosine: 0.31},
			{Rank: 2, VideoID: "video9", ClipIndex: 0, StartS: 0, EndS: 10, Score: 0.05, Cosine: 0.27},
		},
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := schemas.Encode(v)
	if err != nil {
		t.Fatalf("Encode(%T): %v", v, err)
	}
	return b
}

func TestJSONRoundTrip(t *testing.T) {
	t.Run("video job", func(t *testing.T) {
		in := validJob()
		in.SchemaVersion = 99 // Encode must stamp the current version
		got, err := schemas.DecodeVideoJob(mustEncode(t, &in))
		if err != nil {
			t.Fatal(err)
		}
		if in.SchemaVersion != schemas.Version || got.SchemaVersion != schemas.Version {
			t.Fatalf("schema_version: encoded %d, decoded %d, want %d", in.SchemaVersion, got.SchemaVersion, schemas.Version)
		}
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, in)
		}
	})
	t.Run("minimal video job", func(t *testing.T) {
		in := schemas.VideoJob{VideoID: "v", URI: "/v.mp4"}
		b := mustEncode(t, &in)
		if want := `{"schema_version":1,"video_id":"v","uri":"/v.mp4"}`; string(b) != want {
			t.Fatalf("encoded %s, want %s", b, want)
		}
		got, err := schemas.DecodeVideoJob(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, in)
		}
	})
	t.Run("query", func(t *testing.T) {
		in := validQuery()
		got, err := schemas.DecodeQuery(mustEncode(t, &in))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, in)
		}
	})
	t.Run("result", func(t *testing.T) {
		in := validResult()
		got, err := schemas.DecodeResult(mustEncode(t, &in))
		if err != nil {
			t.Fatal(err)
		}
		if !got.AnsweredAt.Equal(in.AnsweredAt) {
			t.Fatalf("answered_at %v, want %v", got.AnsweredAt, in.AnsweredAt)
		}
		got.AnsweredAt = in.AnsweredAt
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, in)
		}
	})
	t.Run("not a message type", func(t *testing.T) {
		for _, v := range []any{validJob(), &schemas.Segment{}, "x", nil} {
			if _, err := schemas.Encode(v); err == nil {
				t.Errorf("Encode(%T) succeeded", v)
			}
		}
	})
}

// edit decodes msg into a generic object, applies fn and re-encodes it.
func edit(t *testing.T, msg []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJSONDecodeRejectsEnvelope checks the failures every JSON topic shares.
func TestJSONDecodeRejectsEnvelope(t *testing.T) {
	job, query, result := validJob(), validQuery(), validResult()
	decoders := []struct {
		name   string
		valid  []byte
		decode func([]byte) error
	}{
		{"video job", mustEncode(t, &job), func(b []byte) error { _, err := schemas.DecodeVideoJob(b); return err }},
		{"query", mustEncode(t, &query), func(b []byte) error { _, err := schemas.DecodeQuery(b); return err }},
		{"result", mustEncode(t, &result), func(b []byte) error { _, err := schemas.DecodeResult(b); return err }},
	}
	for _, d := range decoders {
		if err := d.decode(d.valid); err != nil {
			t.Fatalf("%s: valid message rejected: %v", d.name, err)
		}
		withVersion := func(v any) []byte {
			return edit(t, d.valid, func(m map[string]any) { m["schema_version"] = v })
		}
		cases := []struct {
			name    string
			msg     []byte
			wantErr error
			want    string // substring of the error message
		}{
			{"malformed JSON", d.valid[:len(d.valid)/2], schemas.ErrInvalid, "malformed JSON"},
			{"not JSON", []byte("schema_version=1"), schemas.ErrInvalid, "malformed JSON"},
			{"empty", nil, schemas.ErrInvalid, "empty message"},
			{"blank", []byte(" \n\t "), schemas.ErrInvalid, "empty message"},
			{"array", []byte(`[1]`), schemas.ErrInvalid, "malformed JSON"},
			{"null", []byte(`null`), schemas.ErrInvalid, "schema_version is required"},
			{"missing schema_version", edit(t, d.valid, func(m map[string]any) { delete(m, "schema_version") }), schemas.ErrInvalid, "schema_version is required"},
			{"schema_version null", withVersion(nil), schemas.ErrInvalid, "schema_version is required"},
			{"schema_version string", withVersion("1"), schemas.ErrInvalid, "malformed JSON"},
			{"future version", withVersion(2), schemas.ErrVersion, "got 2"},
			{"version zero", withVersion(0), schemas.ErrVersion, "got 0"},
			{"old version", withVersion(-3), schemas.ErrVersion, "got -3"},
			{"unknown field", edit(t, d.valid, func(m map[string]any) { m["priority"] = 5 }), schemas.ErrInvalid, "priority"},
			{"trailing object", append(append([]byte{}, d.valid...), []byte(` {}`)...), schemas.ErrInvalid, ""},
			{"trailing garbage", append(append([]byte{}, d.valid...), 'x'), schemas.ErrInvalid, ""},
			{"two messages", append(append([]byte{}, d.valid...), d.valid...), schemas.ErrInvalid, ""},
		}
		for _, c := range cases {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				err := d.decode(c.msg)
				if err == nil {
					t.Fatalf("decoded %q", c.msg)
				}
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("error %q does not wrap %q", err, c.wantErr)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %q does not mention %q", err, c.want)
				}
			})
		}
		t.Run(d.name+"/trailing whitespace", func(t *testing.T) {
			if err := d.decode(append(append([]byte{}, d.valid...), " \n"...)); err != nil {
				t.Fatalf("trailing whitespace rejected: %v", err)
			}
		})
	}
}

func TestDecodeVideoJobFields(t *testing.T) {
	metadata := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprint("k", i)] = "v"
		}
		return m
	}
	cases := []struct {
		name string
		edit func(j *schemas.VideoJob)
		want string // empty: valid
	}{
		{"valid", func(j *schemas.VideoJob) {}, ""},
		{"no segment", func(j *schemas.VideoJob) { j.Segment = nil }, ""},
		{"empty segment", func(j *schemas.VideoJob) { j.Segment = &schemas.Segment{} }, ""},
		{"whole, head", func(j *schemas.VideoJob) {
			j.Segment = &schemas.Segment{Mode: schemas.ModeWhole, Selection: schemas.SelectHead, FPS: 30, MaxFrames: 64}
		}, ""},
		{"tail", func(j *schemas.VideoJob) { j.Segment.Selection = schemas.SelectTail }, ""},
		{"shots", func(j *schemas.VideoJob) {
			j.Segment = &schemas.Segment{Mode: schemas.ModeShots, SceneThreshold: 0.4, MinShotS: 0.5, MaxShotS: 8}
		}, ""},
		{"id of max length", func(j *schemas.VideoJob) { j.VideoID = strings.Repeat("a", schemas.MaxIDLen) }, ""},
		{"metadata at limit", func(j *schemas.VideoJob) { j.Metadata = metadata(schemas.MaxMetadataLen) }, ""},

		{"empty video_id", func(j *schemas.VideoJob) { j.VideoID = "" }, "video_id is required"},
		{"video_id too long", func(j *schemas.VideoJob) { j.VideoID = strings.Repeat("a", schemas.MaxIDLen+1) }, "video_id longer than 256"},
		{"video_id with newline", func(j *schemas.VideoJob) { j.VideoID = "a\nb" }, "video_id must be printable"},
		{"video_id with NUL", func(j *schemas.VideoJob) { j.VideoID = "a\x00b" }, "video_id must be printable"},
		{"empty uri", func(j *schemas.VideoJob) { j.URI = "" }, "uri is required"},
		{"uri too long", func(j *schemas.VideoJob) { j.URI = "/" + strings.Repeat("u", schemas.MaxURILen) }, "uri longer than"},
		{"source too long", func(j *schemas.VideoJob) { j.Source = strings.Repeat("s", schemas.MaxIDLen+1) }, "source longer than"},
		{"too much metadata", func(j *schemas.VideoJob) { j.Metadata = metadata(schemas.MaxMetadataLen + 1) }, "metadata entries"},
		{"bad mode", func(j *schemas.VideoJob) { j.Segment.Mode = "sliding" }, `segment.mode "sliding"`},
		{"scene threshold of 1", func(j *schemas.VideoJob) { j.Segment.Mode, j.Segment.SceneThreshold = "shots", 1 }, "segment.scene_threshold 1"},
		{"min shot over max", func(j *schemas.VideoJob) { j.Segment.Mode, j.Segment.MinShotS, j.Segment.MaxShotS = "shots", 5, 2 }, "min at most max"},
		{"mode wrong case", func(j *schemas.VideoJob) { j.Segment.Mode = "Whole" }, "segment.mode"},
		{"bad selection", func(j *schemas.VideoJob) { j.Segment.Selection = "random" }, `segment.selection "random"`},
		{"negative fps", func(j *schemas.VideoJob) { j.Segment.FPS = -1 }, "segment.fps"},
		{"fps above 30", func(j *schemas.VideoJob) { j.Segment.FPS = 30.5 }, "segment.fps"},
		{"max_frames above 64", func(j *schemas.VideoJob) { j.Segment.MaxFrames = 65 }, "segment.max_frames"},
		{"negative max_frames", func(j *schemas.VideoJob) { j.Segment.MaxFrames = -1 }, "segment.max_frames"},
		{"negative window", func(j *schemas.VideoJob) { j.Segment.WindowS = -1 }, "window_s and stride_s"},
		{"negative stride", func(j *schemas.VideoJob) { j.Segment.StrideS = -0.5 }, "window_s and stride_s"},
		{"window mode without window", func(j *schemas.VideoJob) { j.Segment.WindowS = 0 }, "window_s is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := validJob()
			c.edit(&j)
			got, err := schemas.DecodeVideoJob(mustEncode(t, &j))
			if c.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if !reflect.DeepEqual(got, j) {
					t.Fatalf("decoded %+v, want %+v", got, j)
				}
				return
			}
			if !errors.Is(err, schemas.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestDecodeQueryFields(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	wall := func(s int) *time.Time {
		w := time.Date(2026, 5, 1, 8, 0, s, 0, time.UTC)
		return &w
	}
	cases := []struct {
		name string
		edit func(q *schemas.Query)
		want string // empty: valid
	}{
		{"valid", func(q *schemas.Query) {}, ""},
		{"defaults", func(q *schemas.Query) { q.TopK, q.Rerank, q.Filters = 0, "", nil }, ""},
		{"rerank none", func(q *schemas.Query) { q.Rerank = "none" }, ""},
		{"rerank symmetric", func(q *schemas.Query) { q.Rerank = "symmetric" }, ""},
		{"top_k max", func(q *schemas.Query) { q.TopK = schemas.MaxTopK }, ""},
		{"text of max length", func(q *schemas.Query) { q.Text = strings.Repeat("é", schemas.MaxQueryText/2) }, ""},
		{"empty time range", func(q *schemas.Query) { q.Filters.StartFrom, q.Filters.StartTo = f(5), f(5) }, ""},
		{"open time range", func(q *schemas.Query) { q.Filters.StartTo = nil }, ""},
		{"min_score", func(q *schemas.Query) { q.MinScore = f(-0.5) }, ""},
		{"image instead of text", func(q *schemas.Query) { q.Text, q.Image = "", "iVBORw0KGgo=" }, ""},
		{"like instead of text", func(q *schemas.Query) { q.Text, q.Like = "", &schemas.ClipRef{VideoID: "v", ClipIndex: 3} }, ""},
		{"metadata filter", func(q *schemas.Query) { q.Filters.Metadata = map[string]string{"camera": "north", "site": ""} }, ""},
		{"wall-clock window", func(q *schemas.Query) { q.Filters.WallFrom, q.Filters.WallTo = wall(0), wall(60) }, ""},

		{"empty query_id", func(q *schemas.Query) { q.QueryID = "" }, "query_id is required"},
		{"query_id too long", func(q *schemas.Query) { q.QueryID = strings.Repeat("q", schemas.MaxIDLen+1) }, "query_id longer than"},
		{"query_id with CR", func(q *schemas.Query) { q.QueryID = "q\r1" }, "query_id must be printable"},
		{"empty text", func(q *schemas.Query) { q.Text = "" }, "text is required"},
		{"blank text", func(q *schemas.Query) { q.Text = " \t\n" }, "text is required"},
		{"text too long", func(q *schemas.Query) { q.Text = strings.Repeat("x", schemas.MaxQueryText+1) }, "text must be valid UTF-8 of at most"},
		{"negative top_k", func(q *schemas.Query) { q.TopK = -1 }, "top_k -1"},
		{"top_k too large", func(q *schemas.Query) { q.TopK = schemas.MaxTopK + 1 }, "top_k 1001"},
		{"bad rerank", func(q *schemas.Query) { q.Rerank = "dsl" }, `rerank "dsl"`},
		{"start_from after start_to", func(q *schemas.Query) { q.Filters.StartFrom, q.Filters.StartTo = f(61), f(60) }, "start_from is after"},
		{"text and image", func(q *schemas.Query) { q.Image = "iVBORw0KGgo=" }, "give one of text, image and like"},
		{"image and like", func(q *schemas.Query) { q.Text, q.Image, q.Like = "", "x", &schemas.ClipRef{VideoID: "v"} }, "give one of"},
		{"image too large", func(q *schemas.Query) { q.Text, q.Image = "", strings.Repeat("A", schemas.MaxImageLen+4) }, "more than 983040"},
		{"like without video", func(q *schemas.Query) { q.Text, q.Like = "", &schemas.ClipRef{ClipIndex: 1} }, "like.video_id is required"},
		{"like negative clip", func(q *schemas.Query) { q.Text, q.Like = "", &schemas.ClipRef{VideoID: "v", ClipIndex: -1} }, "like.clip_index -1"},
		{"wall_from after wall_to", func(q *schemas.Query) { q.Filters.WallFrom, q.Filters.WallTo = wall(61), wall(60) }, "wall_from is after"},
		{"empty metadata key", func(q *schemas.Query) { q.Filters.Metadata = map[string]string{"": "x"} }, "metadata keys"},
		{"too many metadata keys", func(q *schemas.Query) {
			q.Filters.Metadata = map[string]string{}
			for i := range schemas.MaxMetadataLen + 1 {
				q.Filters.Metadata[strconv.Itoa(i)] = "x"
			}
		}, "more than 64 entries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := validQuery()
			c.edit(&q)
			got, err := schemas.DecodeQuery(mustEncode(t, &q))
			if c.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if !reflect.DeepEqual(got, q) {
					t.Fatalf("decoded %+v, want %+v", got, q)
				}
				return
			}
			if !errors.Is(err, schemas.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
	t.Run("invalid UTF-8 text", func(t *testing.T) {
		// JSON decoding cannot produce invalid UTF-8; Validate guards values
		// built in code.
		q := validQuery()
		q.Text = "caf\xe9"
		if err := q.Validate(); !errors.Is(err, schemas.ErrInvalid) {
			t.Fatalf("Validate = %v, want ErrInvalid", err)
		}
	})
}

func TestDecodeResultFields(t *testing.T) {
	for _, c := range []struct {
		name string
		id   string
		want string
	}{
		{"empty query_id", "", "query_id is required"},
		{"long query_id", strings.Repeat("r", schemas.MaxIDLen+1), "query_id longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := validResult()
			r.QueryID = c.id
			_, err := schemas.DecodeResult(mustEncode(t, &r))
			if !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
	t.Run("unknown hit field", func(t *testing.T) {
		r := validResult()
		msg := edit(t, mustEncode(t, &r), func(m map[string]any) {
			m["hits"].([]any)[0].(map[string]any)["vector"] = []float64{1, 2}
		})
		if _, err := schemas.DecodeResult(msg); !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), "vector") {
			t.Fatalf("error %v, want ErrInvalid naming the field", err)
		}
	})
}
