package qdranttest_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
)

func client(t *testing.T, srv *qdranttest.Server) *qc.Client {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	c, err := qc.NewClient(&qc.Config{Host: host, Port: p, PoolSize: 1, SkipCompatibilityCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func create(t *testing.T, c *qc.Client, name string) {
	t.Helper()
	err := c.CreateCollection(ctx(t), &qc.CreateCollection{
		CollectionName: name,
		VectorsConfig:  qc.NewVectorsConfig(&qc.VectorParams{Size: 3, Distance: qc.Distance_Cosine}),
		HnswConfig:     &qc.HnswConfigDiff{M: qc.PtrOf(uint64(8))},
		Metadata:       map[string]*qc.Value{"vidx_model": qc.NewValueString("m"), "vidx_pooling": qc.NewValueString("meanP")},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func point(video string) *qc.PointStruct {
	return &qc.PointStruct{
		Id:      qc.NewIDUUID(uuid.NewString()),
		Vectors: qc.NewVectorsDense([]float32{1, 2, 3}),
		Payload: map[string]*qc.Value{
			"video_id": qc.NewValueString(video), "start_s": qc.NewValueDouble(1.5),
			"ingested_at": qc.NewValueString("2025-01-02T03:04:05Z"),
		},
	}
}

func code(err error) codes.Code { return status.Code(err) }

// The server answers like Qdrant where it models Qdrant, and Unimplemented
// where it does not.
func TestAnswers(t *testing.T) {
	srv := qdranttest.New(t, qdranttest.Options{})
	c := client(t, srv)
	create(t, c, "clips")

	if err := c.CreateCollection(ctx(t), &qc.CreateCollection{CollectionName: "clips",
		VectorsConfig: qc.NewVectorsConfig(&qc.VectorParams{Size: 3, Distance: qc.Distance_Cosine})}); code(err) != codes.AlreadyExists {
		t.Errorf("creating an existing collection: %v, want AlreadyExists", err)
	}
	if _, err := c.GetCollectionInfo(ctx(t), "missing"); code(err) != codes.NotFound {
		t.Errorf("missing collection: %v, want NotFound", err)
	}
	wait := true
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Wait: &wait, Points: []*qc.PointStruct{point("a"), point("b")}}); err != nil {
		t.Fatal(err)
	}
	// Qdrant takes any payload; keys vidx does not know are accepted.
	extra := point("c")
	extra.Payload["colour"] = qc.NewValueString("red")
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Wait: &wait, Points: []*qc.PointStruct{extra}}); err != nil {
		t.Errorf("payload with an unknown key: %v, want it accepted", err)
	}
	bad := point("d")
	bad.Payload["start_s"] = qc.NewValueString("soon")
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Points: []*qc.PointStruct{bad}}); code(err) != codes.InvalidArgument {
		t.Errorf("payload with a known key of the wrong type: %v, want InvalidArgument", err)
	}
	wide := point("c")
	wide.Vectors = qc.NewVectorsDense([]float32{1, 2, 3, 4})
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Points: []*qc.PointStruct{wide}}); code(err) != codes.InvalidArgument {
		t.Errorf("wrong dimension: %v, want InvalidArgument", err)
	}
	num := point("c")
	num.Id = qc.NewIDNum(7)
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Points: []*qc.PointStruct{num}}); code(err) != codes.Unimplemented {
		t.Errorf("numeric id: %v, want Unimplemented", err)
	}
	should := &qc.Filter{Should: []*qc.Condition{qc.NewMatchKeyword("video_id", "a")}}
	if _, err := c.Count(ctx(t), &qc.CountPoints{CollectionName: "clips", Filter: should}); code(err) != codes.Unimplemented {
		t.Errorf("should filter: %v, want Unimplemented", err)
	}
	matchAny := &qc.Filter{Must: []*qc.Condition{qc.NewMatchKeywords("video_id", "a", "zzz")}}
	if n, err := c.Count(ctx(t), &qc.CountPoints{CollectionName: "clips", Filter: matchAny}); err != nil || n != 1 {
		t.Errorf("match any: %d, %v; want 1", n, err)
	}
	inclusive := &qc.Filter{Must: []*qc.Condition{qc.NewRange("start_s", &qc.Range{Gte: qc.PtrOf(1.5), Lte: qc.PtrOf(1.5)})}}
	if n, err := c.Count(ctx(t), &qc.CountPoints{CollectionName: "clips", Filter: inclusive}); err != nil || n != 3 {
		t.Errorf("inclusive range: %d, %v; want 3", n, err)
	}
	res, err := c.Query(ctx(t), &qc.QueryPoints{CollectionName: "clips", Query: qc.NewQueryDense([]float32{1, 2, 3}), WithPayload: qc.NewWithPayload(true)})
	if err != nil || len(res) != 3 || res[0].GetScore() < 0.9999 || res[0].GetPayload()["start_s"].GetDoubleValue() != 1.5 {
		t.Errorf("query: %v, %v", res, err)
	}
	if err := c.DeleteCollection(ctx(t), "clips"); code(err) != codes.Unimplemented {
		t.Errorf("dropping a collection: %v, want Unimplemented", err)
	}
}

func TestFaultsAndRestart(t *testing.T) {
	srv := qdranttest.New(t, qdranttest.Options{APIKey: "k"})
	host, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	c, err := qc.NewClient(&qc.Config{Host: host, Port: p, APIKey: "k", PoolSize: 1, SkipCompatibilityCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	create(t, c, "clips")
	if _, err := client(t, srv).ListCollections(ctx(t)); code(err) != codes.Unauthenticated {
		t.Errorf("no api key: %v, want Unauthenticated", err)
	}

	srv.Inject(qdranttest.Fault{Method: "Collections/Get", Code: codes.Unavailable, Times: 2})
	for i := range 3 {
		_, err := c.GetCollectionInfo(ctx(t), "clips")
		if want := i == 2; (err == nil) != want {
			t.Errorf("call %d after a 2-call fault: %v", i, err)
		}
	}
	if n := srv.Calls("Collections/Get"); n != 3 {
		t.Errorf("counted %d calls, want 3", n)
	}

	wait := true
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Wait: &wait, Points: []*qc.PointStruct{point("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateFieldIndex(ctx(t), &qc.CreateFieldIndexCollection{CollectionName: "clips", FieldName: "video_id", FieldType: qc.PtrOf(qc.FieldType_FieldTypeKeyword)}); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Errorf("restarted on %s, was %s", srv.Addr(), addr)
	}
	var info *qc.CollectionInfo
	for range 50 { // the client reconnects with backoff
		if info, err = c.GetCollectionInfo(ctx(t), "clips"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if info.GetPointsCount() != 1 || info.GetConfig().GetHnswConfig().GetM() != 8 ||
		info.GetConfig().GetMetadata()["vidx_model"].GetStringValue() != "m" ||
		info.GetPayloadSchema()["video_id"].GetDataType() != qc.PayloadSchemaType_Keyword {
		t.Errorf("after restart: %v", info)
	}
}

// TestIndexedCollectionsAreApproximate checks the server behaves as an
// indexed Qdrant collection does: approximate search and filtered counts
// unless exact is asked for, yellow while optimising after a write.
func TestIndexedCollectionsAreApproximate(t *testing.T) {
	srv := qdranttest.New(t, qdranttest.Options{IndexingThresholdKB: -1})
	c := client(t, srv)
	create(t, c, "clips")
	wait := true
	var pts []*qc.PointStruct
	for i := range 64 {
		p := point("v" + strconv.Itoa(i%4))
		// Ids ending in each hex digit, so that the one in sixteen an
		// approximate search misses is certainly among them.
		p.Id = qc.NewIDUUID(fmt.Sprintf("00000000-0000-4000-8000-%012x", i))
		p.Vectors = qc.NewVectorsDense([]float32{1, float32(i), 2})
		pts = append(pts, p)
	}
	if _, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Wait: &wait, Points: pts}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		exact bool
		check func(n int) bool
	}{
		{"approximate", false, func(n int) bool { return n < 64 }},
		{"exact", true, func(n int) bool { return n == 64 }},
	}
	for _, tc := range tests {
		q := &qc.QueryPoints{CollectionName: "clips", Query: qc.NewQueryDense([]float32{1, 1, 1}), Limit: qc.PtrOf(uint64(64))}
		if tc.exact {
			q.Params = &qc.SearchParams{Exact: qc.PtrOf(true)}
		}
		res, err := c.Query(ctx(t), q)
		if err != nil || !tc.check(len(res)) {
			t.Errorf("%s search: %d hits, %v", tc.name, len(res), err)
		}
	}
	one := &qc.Filter{Must: []*qc.Condition{qc.NewMatchKeyword("video_id", "v1")}}
	if n, err := c.Count(ctx(t), &qc.CountPoints{CollectionName: "clips", Filter: one}); err != nil || n != 64 {
		t.Errorf("estimated count: %d, %v; want the upper bound 64", n, err)
	}
	if n, err := c.Count(ctx(t), &qc.CountPoints{CollectionName: "clips", Filter: one, Exact: qc.PtrOf(true)}); err != nil || n != 16 {
		t.Errorf("exact count: %d, %v; want 16", n, err)
	}
	for i, want := range []qc.CollectionStatus{qc.CollectionStatus_Yellow, qc.CollectionStatus_Green} {
		info, err := c.GetCollectionInfo(ctx(t), "clips")
		if err != nil || info.GetStatus() != want || info.GetIndexedVectorsCount() != 64 {
			t.Errorf("info %d: %v with %d indexed, %v; want %v with 64", i, info.GetStatus(), info.GetIndexedVectorsCount(), err, want)
		}
	}
}

// TestStrictModeAnswers checks the strict-mode limits answer with Qdrant's
// codes and messages.
func TestStrictModeAnswers(t *testing.T) {
	srv := qdranttest.New(t, qdranttest.Options{Strict: qdranttest.Strict{UpsertMaxBatchsize: 2, MaxPointsCount: 3}})
	c := client(t, srv)
	create(t, c, "clips")
	up := func(n int) error {
		var pts []*qc.PointStruct
		for range n {
			pts = append(pts, point("v"))
		}
		_, err := c.Upsert(ctx(t), &qc.UpsertPoints{CollectionName: "clips", Points: pts})
		return err
	}
	tests := []struct {
		n    int
		code codes.Code
		msg  string
	}{
		{3, codes.InvalidArgument, `Bad request: Limit exceeded 3 > 2 for "upsert limit". Help: Reduce the "upsert limit" parameter to or below 2.`},
		{2, codes.OK, ""},
		{2, codes.OK, ""},
		{1, codes.InvalidArgument, "Bad request: Max points count limit of 3 reached!"},
	}
	for i, tc := range tests {
		err := up(tc.n)
		if code(err) != tc.code || (tc.msg != "" && !strings.HasSuffix(err.Error(), "desc = "+tc.msg)) {
			t.Errorf("upsert %d of %d points: %v, want %v %q", i, tc.n, err, tc.code, tc.msg)
		}
	}
}
