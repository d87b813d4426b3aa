package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
)

// TestPipelineWithQdrant runs every stage on the embedded broker with the
// Qdrant store against the in-process test server: clips are indexed
// through gRPC, a micro-batch of queries is answered with one batch search,
// and an index batch that meets an unavailable Qdrant is retried, not lost
// or dead-lettered.
func TestPipelineWithQdrant(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := qdranttest.New(t, qdranttest.Options{})

	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = filepath.Join(f.models, "color")
	cfg.Store.URL = srv.URL()
	// Short in-store retries hand the outage to the stage runtime quickly.
	cfg.Store.Qdrant.RetryFor = 300 * time.Millisecond
	a, _ := runApp(t, ctx, cfg, app.AllStages)
	if _, ok := a.Store().(*qdrant.Store); !ok {
		t.Fatalf("store is %T, want the Qdrant store", a.Store())
	}

	for _, c := range colours {
		publish(t, ctx, a, c, job(c, f.videos[c]))
	}
	waitCount(t, ctx, a.Store(), cfg.Store.Collection, len(colours))

	// Queries produced together reach the query stage as one micro-batch.
	tap := kafka.NewTap(a.Kafka(), cfg.Topics.Results, true)
	defer tap.Close()
	var outs []pipeline.Output
	for i, c := range colours {
		v, err := schemas.Encode(&schemas.Query{SchemaVersion: schemas.Version, QueryID: fmt.Sprint("q", i), Text: "a " + c + " video", TopK: 4})
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, pipeline.Output{Topic: cfg.Topics.Queries, Key: []byte("batch"), Value: v})
	}
	if err := kafka.Produce(ctx, a.Kafka(), outs...); err != nil {
		t.Fatal(err)
	}
	answered := map[string]schemas.Result{}
	for len(answered) < len(colours) {
		m, err := tap.Next(ctx)
		if err != nil {
			t.Fatalf("results: %d of %d: %v", len(answered), len(colours), err)
		}
		r, err := schemas.DecodeResult(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		answered[r.QueryID] = r
	}
	for i, c := range colours {
		r := answered[fmt.Sprint("q", i)]
		if len(r.Hits) == 0 || r.Hits[0].VideoID != c {
			t.Errorf("query %q ranked %+v", r.Text, r.Hits)
		}
		if r.Candidates != len(colours) {
			t.Errorf("query %q saw %d candidates, want %d", r.Text, r.Candidates, len(colours))
		}
	}
	if srv.Calls("Points/QueryBatch") == 0 {
		t.Errorf("the micro-batch was searched with %d single queries and no batch search", srv.Calls("Points/Query"))
	}

	// Qdrant unavailable: the index stage keeps retrying its batch and
	// indexes it once Qdrant answers again.
	srv.Inject(qdranttest.Fault{Method: "Points/Upsert", Code: codes.Unavailable, Message: "qdrant is restarting"})
	before := srv.Calls("Points/Upsert")
	publish(t, ctx, a, "again", job("red-again", f.videos["red"]))
	for srv.Calls("Points/Upsert") < before+4 {
		select {
		case <-ctx.Done():
			t.Fatalf("the index stage stopped trying: %d upserts", srv.Calls("Points/Upsert")-before)
		case <-time.After(50 * time.Millisecond):
		}
	}
	srv.ClearFaults()
	waitCount(t, ctx, a.Store(), cfg.Store.Collection, len(colours)+1)

	dead := kafka.NewTap(a.Kafka(), cfg.Topics.DeadLetters, true)
	defer dead.Close()
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if m, err := dead.Next(dctx); err == nil {
		t.Errorf("a message was dead-lettered: %s", m.Headers)
	}
}
