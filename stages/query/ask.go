package query

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
)

// Ask is the client side of the query stage: it publishes q on
// queriesTopic and waits for its result on resultsTopic. A query without an
// id gets a random one.
func Ask(ctx context.Context, kc kafka.Config, queriesTopic, resultsTopic string, q schemas.Query) (schemas.Result, error) {
	if q.QueryID == "" {
		var id [8]byte
		_, _ = rand.Read(id[:])
		q.QueryID = hex.EncodeToString(id[:])
	}
	q.SchemaVersion = schemas.Version
	if err := q.Validate(); err != nil {
		return schemas.Result{}, err
	}
	value, err := schemas.Encode(&q)
	if err != nil {
		return schemas.Result{}, err
	}
	var res schemas.Result
	_, err = kafka.Request(ctx, kc, pipeline.Output{Topic: queriesTopic, Key: []byte(q.QueryID), Value: value},
		resultsTopic, func(m pipeline.Message) bool {
			r, err := schemas.DecodeResult(m.Value)
			if err != nil || r.QueryID != q.QueryID {
				return false
			}
			res = r
			return true
		})
	if err != nil {
		return schemas.Result{}, fmt.Errorf("query %q: %w", q.Text, err)
	}
	return res, nil
}
