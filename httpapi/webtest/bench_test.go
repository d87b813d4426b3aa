package webtest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/query"
)

// BenchmarkSearch compares one search over HTTP (the query handler in the
// API's process) with the same query published to the queries topic and
// read back from results, on the colour bundle with seven clips indexed.
func BenchmarkSearch(b *testing.B) {
	requirePipeline(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startIndexed(b, ctx)
	b.Run("http", func(b *testing.B) {
		for b.Loop() {
			resp, err := http.Post(p.base+"/v1/search", "application/json", strings.NewReader(`{"text": "blue", "top_k": 5}`))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.Run("queries-topic", func(b *testing.B) {
		for b.Loop() {
			if _, err := query.Ask(ctx, p.app.Kafka(), p.app.Config.Topics.Queries, p.app.Config.Topics.Results,
				schemas.Query{Text: "blue", TopK: 5}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
