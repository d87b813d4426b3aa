package query

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

// pickyStore refuses, as Qdrant does, a filter on a metadata key it has no
// index for.
type pickyStore struct{ batchStore }

func (p *pickyStore) refuses(req sinks.SearchRequest) error {
	if _, ok := req.Filter.Metadata["unindexed"]; ok {
		return fmt.Errorf("%w: metadata key %q has no payload index", sinks.ErrInvalid, "unindexed")
	}
	return nil
}

func (p *pickyStore) Search(ctx context.Context, c string, req sinks.SearchRequest) ([]sinks.Hit, error) {
	if err := p.refuses(req); err != nil {
		return nil, err
	}
	return p.batchStore.Search(ctx, c, req)
}

func (p *pickyStore) SearchBatch(ctx context.Context, c string, reqs []sinks.SearchRequest) ([][]sinks.Hit, error) {
	for _, r := range reqs {
		if err := p.refuses(r); err != nil {
			return nil, err
		}
	}
	return p.batchStore.SearchBatch(ctx, c, reqs)
}

// TestErrorsReachTheAsker runs a batch through the stage's dead-letter
// middleware with Reply: each query that cannot be answered is
// dead-lettered and its asker gets a Result with the error, keyed by the
// query id; the good query of the same batch is answered as usual.
func TestErrorsReachTheAsker(t *testing.T) {
	ctx := context.Background()
	data, enc, _ := batchFixture()
	h, err := New(ctx, Config{Model: "m", Settings: Settings{Rerank: RerankNone}}, enc, &pickyStore{batchStore{sliceStore: data}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(key, value string) pipeline.Message {
		return pipeline.Message{Topic: "queries", Key: []byte(key), Value: []byte(value)}
	}
	batch := []pipeline.Message{
		msg("ok", `{"schema_version":1,"query_id":"ok","text":"x"}`),
		msg("empty", `{"schema_version":1,"query_id":"empty","text":"  "}`),
		msg("k-bad-json", `{"schema_version":1,"query_id":`),
		msg("filter", `{"schema_version":1,"query_id":"filter","text":"y","filters":{"metadata":{"unindexed":"1"}}}`),
		msg("", `not json`),
	}
	tests := []struct {
		key       string // the result's key; "" for no result
		code      string
		errSubstr string
		dead      bool
	}{
		{"ok", "", "", false},
		{"empty", schemas.ErrCodeInvalidQuery, "text is required", true},
		{"k-bad-json", schemas.ErrCodeInvalidQuery, "query", true},
		{"filter", schemas.ErrCodeInvalidQuery, "no payload index", true},
		{"", "", "", true},
	}
	res := pipeline.DeadLetterReplying("query", "dead-letters", h.log, nil, h.Reply)(h).Handle(ctx, batch)
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var dead bool
			var results []schemas.Result
			for _, o := range res[i].Outputs {
				switch o.Topic {
				case "dead-letters":
					dead = true
				case "results":
					r, err := schemas.DecodeResult(o.Value)
					if err != nil {
						t.Fatalf("result does not decode: %v", err)
					}
					if string(o.Key) != r.QueryID {
						t.Errorf("result keyed %q, query id %q", o.Key, r.QueryID)
					}
					results = append(results, r)
				default:
					t.Errorf("output on topic %q", o.Topic)
				}
			}
			if dead != tt.dead {
				t.Errorf("dead-lettered %t, want %t", dead, tt.dead)
			}
			if tt.key == "" {
				if len(results) != 0 {
					t.Errorf("a message with no query id got results %+v", results)
				}
				return
			}
			if len(results) != 1 || results[0].QueryID != tt.key {
				t.Fatalf("results %+v, want one for %q", results, tt.key)
			}
			r := results[0]
			if tt.code == "" {
				if r.Error != nil || len(r.Hits) == 0 {
					t.Errorf("good query: error %+v, %d hits", r.Error, len(r.Hits))
				}
				return
			}
			if r.Error == nil || r.Error.Code != tt.code || !strings.Contains(r.Error.Message, tt.errSubstr) || len(r.Hits) != 0 {
				t.Errorf("error %+v with %d hits, want code %s mentioning %q", r.Error, len(r.Hits), tt.code, tt.errSubstr)
			}
		})
	}
}

// A query the stage gave up on after retries (store down) is answered as
// unavailable: asking again later may work.
func TestReplyAfterGivingUp(t *testing.T) {
	h, err := New(context.Background(), Config{Model: "m"}, mapEncoder{}, sliceStore{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("qdrant unavailable")
	out := h.Reply(pipeline.Message{Key: []byte("q1"), Value: []byte(`{"schema_version":1,"query_id":"q1","text":"dogs","rerank":"camoe"}`)},
		cause, pipeline.ClassRetryable)
	if len(out) != 1 {
		t.Fatalf("%d outputs, want 1", len(out))
	}
	r, err := schemas.DecodeResult(out[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if r.QueryID != "q1" || r.Text != "dogs" || r.Rerank != RerankCAMoE || r.Error == nil ||
		r.Error.Code != schemas.ErrCodeUnavailable || r.Error.Message != cause.Error() || r.Hits == nil {
		t.Errorf("reply %+v (error %+v)", r, r.Error)
	}
}

// TestMinScore drops hits below min_score, on the score of the rerank mode
// the query asked for.
func TestMinScore(t *testing.T) {
	ctx := context.Background()
	data, enc, _ := batchFixture()
	h, err := New(ctx, Config{Settings: Settings{BankSize: 4}}, enc, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	for _, mode := range []string{RerankNone, RerankCAMoE, RerankSymmetric} {
		t.Run(mode, func(t *testing.T) {
			all, err := h.Answer(ctx, []schemas.Query{{QueryID: "a", Text: "x", Rerank: mode}})
			if err != nil {
				t.Fatal(err)
			}
			if len(all[0].Hits) < 3 {
				t.Fatalf("fixture gives %d hits, want at least 3", len(all[0].Hits))
			}
			// A threshold between the second and third scores keeps two.
			cut := (all[0].Hits[1].Score + all[0].Hits[2].Score) / 2
			got, err := h.Answer(ctx, []schemas.Query{{QueryID: "b", Text: "x", Rerank: mode, MinScore: f(cut)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got[0].Hits) != 2 {
				t.Fatalf("min_score %.6f kept %d hits, want 2", cut, len(got[0].Hits))
			}
			for i, hit := range got[0].Hits {
				if hit.Score < cut || hit.VideoID != all[0].Hits[i].VideoID {
					t.Errorf("hit %d: %s score %.6f (cut %.6f)", i, hit.VideoID, hit.Score, cut)
				}
			}
			none, err := h.Answer(ctx, []schemas.Query{{QueryID: "c", Text: "x", Rerank: mode, MinScore: f(all[0].Hits[0].Score + 1)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(none[0].Hits) != 0 || none[0].Error != nil {
				t.Errorf("min_score above every score: %d hits, error %+v", len(none[0].Hits), none[0].Error)
			}
		})
	}
}
