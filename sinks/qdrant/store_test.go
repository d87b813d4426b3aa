package qdrant_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sinks/qdrant/qdranttest"
	"github.com/vidx/vidx/sinks/storetest"
	"github.com/vidx/vidx/stages/index"
)

var quiet = slog.New(slog.DiscardHandler)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, srv *qdranttest.Server, cfg qdrant.Config, log *slog.Logger) *qdrant.Store {
	t.Helper()
	if log == nil {
		log = quiet
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 5 * time.Second
	}
	s, err := qdrant.Open(testCtx(t), srv.URL(), cfg, log)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient talks to the server without vidx, to set up collections vidx
// did not create.
func rawClient(t *testing.T, srv *qdranttest.Server) *qc.Client {
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

func spec(name string) sinks.CollectionSpec { return storetest.Spec(name) }

func points(n int) []sinks.Point {
	return storetest.Points(mrand.New(mrand.NewPCG(1, uint64(n))), n, spec("").Dim, 5)
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    qdrant.Endpoint
		wantErr string
	}{
		{"qdrant://localhost:6334", qdrant.Endpoint{Host: "localhost", Port: 6334}, ""},
		{"qdrant://qdrant.internal", qdrant.Endpoint{Host: "qdrant.internal", Port: 6334}, ""},
		{"qdrant://10.0.0.7:7000/", qdrant.Endpoint{Host: "10.0.0.7", Port: 7000}, ""},
		{"qdrant://[::1]:6334", qdrant.Endpoint{Host: "::1", Port: 6334}, ""},
		{"http://localhost:6333", qdrant.Endpoint{}, "scheme"},
		{"qdrant://:6334", qdrant.Endpoint{}, "host is missing"},
		{"qdrant://localhost:0", qdrant.Endpoint{}, "out of range"},
		{"qdrant://localhost:http", qdrant.Endpoint{}, ""},
		{"qdrant://user:secret@localhost:6334", qdrant.Endpoint{}, "credentials"},
		{"qdrant://localhost:6334/collections", qdrant.Endpoint{}, "nothing after the port"},
		{"qdrant://localhost:6334?tls=1", qdrant.Endpoint{}, "nothing after the port"},
	}
	for _, tc := range tests {
		got, err := qdrant.ParseURL(tc.in)
		if tc.want == (qdrant.Endpoint{}) {
			if err == nil {
				t.Errorf("ParseURL(%q) = %+v, want an error", tc.in, got)
			} else if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseURL(%q) error %q does not mention %q", tc.in, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseURL(%q) error leaks the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := qdrant.ParseURL(got.URL()); err != nil || back != got {
			t.Errorf("ParseURL(%q.URL()) = %+v, %v", tc.in, back, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := qdrant.Default().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if got := (qdrant.Config{}).WithDefaults(); !reflect.DeepEqual(got, qdrant.Default()) {
		t.Errorf("zero config with defaults = %+v, want %+v", got, qdrant.Default())
	}
	bad := []struct {
		field  string
		change func(*qdrant.Config)
	}{
		{"pool_size", func(c *qdrant.Config) { c.PoolSize = 0 }},
		{"metadata_indexes[0]", func(c *qdrant.Config) { c.MetadataIndexes = []string{"a.b"} }},
		{"metadata_indexes[1]", func(c *qdrant.Config) { c.MetadataIndexes = []string{"lang", "lang"} }},
		{"metadata_indexes[0]", func(c *qdrant.Config) { c.MetadataIndexes = []string{""} }},
		{"timeout", func(c *qdrant.Config) { c.Timeout = -time.Second }},
		{"retry_for", func(c *qdrant.Config) { c.RetryFor = -time.Second }},
		{"hnsw_m", func(c *qdrant.Config) { c.HNSWM = -1 }},
		{"hnsw_ef_construct", func(c *qdrant.Config) { c.HNSWEfConstruct = 2 }},
		{"quantization", func(c *qdrant.Config) { c.Quantization = "int4" }},
		{"shards", func(c *qdrant.Config) { c.Shards = -1 }},
		{"replication_factor", func(c *qdrant.Config) { c.ReplicationFactor = 65 }},
		{"upsert_batch", func(c *qdrant.Config) { c.UpsertBatch = 5000 }},
		{"ca_file", func(c *qdrant.Config) { c.CAFile = "ca.pem" }},
	}
	for _, b := range bad {
		c := qdrant.Default()
		b.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "store.qdrant."+b.field) {
			t.Errorf("%s: Validate() = %v, want an error naming store.qdrant.%s", b.field, err, b.field)
		}
	}
	c := qdrant.Default()
	c.APIKey = "k-7f3a9"
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", struct{ Q qdrant.Config }{c})} {
		if strings.Contains(s, c.APIKey) {
			t.Errorf("printed config leaks the API key: %s", s)
		}
	}
}

func TestBootstrapCreatesTheConfiguredCollection(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{RecordRequests: true})
	cfg := qdrant.Config{HNSWM: 32, HNSWEfConstruct: 256, OnDisk: true, Quantization: qdrant.QuantizationInt8, Shards: 3, ReplicationFactor: 2}
	s := open(t, srv, cfg, nil)
	sp := spec("clips")
	if err := s.EnsureCollection(ctx, sp); err != nil {
		t.Fatal(err)
	}

	creates := srv.Requests("Collections/Create")
	if len(creates) != 1 {
		t.Fatalf("%d create requests, want 1", len(creates))
	}
	cr := creates[0].(*qc.CreateCollection)
	vp := cr.GetVectorsConfig().GetParams()
	sq := cr.GetQuantizationConfig().GetScalar()
	switch {
	case vp.GetSize() != uint64(sp.Dim) || vp.GetDistance() != qc.Distance_Cosine || !vp.GetOnDisk():
		t.Errorf("vector params %v, want size %d, cosine, on disk", vp, sp.Dim)
	case cr.GetHnswConfig().GetM() != 32 || cr.GetHnswConfig().GetEfConstruct() != 256:
		t.Errorf("hnsw %v, want m=32 ef_construct=256", cr.GetHnswConfig())
	case cr.GetShardNumber() != 3 || cr.GetReplicationFactor() != 2:
		t.Errorf("shards %d replication %d, want 3 and 2", cr.GetShardNumber(), cr.GetReplicationFactor())
	case sq == nil || sq.GetType() != qc.QuantizationType_Int8 || !sq.GetAlwaysRam():
		t.Errorf("quantization %v, want scalar int8 kept in RAM", cr.GetQuantizationConfig())
	case cr.GetMetadata()["vidx_model"].GetStringValue() != sp.Model ||
		cr.GetMetadata()["vidx_pooling"].GetStringValue() != sp.Pooling ||
		cr.GetMetadata()["vidx_dim"].GetIntegerValue() != int64(sp.Dim):
		t.Errorf("metadata %v, want model %s, pooling %s, dim %d", cr.GetMetadata(), sp.Model, sp.Pooling, sp.Dim)
	}
	if cr.Timeout == nil || cr.GetTimeout() >= uint64(qdrant.Default().Timeout/time.Second) {
		t.Errorf("create timeout %v, want one shorter than the call's %s", cr.Timeout, qdrant.Default().Timeout)
	}
	for _, r := range srv.Requests("Points/CreateFieldIndex") {
		if !r.(*qc.CreateFieldIndexCollection).GetWait() {
			t.Errorf("payload index created without wait: %v", r)
		}
	}

	info, err := s.Info(ctx, "clips")
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes := map[string]string{"video_id": "keyword", "source": "keyword", "start_s": "float", "ingested_at": "datetime", "generation": "integer", "wall_start": "datetime"}
	if fmt.Sprint(info.PayloadIndexes) != fmt.Sprint(wantIndexes) {
		t.Errorf("payload indexes %v, want %v", info.PayloadIndexes, wantIndexes)
	}
	if info.Spec != sp || info.HNSWM != 32 || info.HNSWEfConstruct != 256 || !info.OnDisk ||
		info.Quantization != "int8" || info.Shards != 3 || info.ReplicationFactor != 2 || info.Status != "green" {
		t.Errorf("info %+v does not reflect the configuration", info)
	}

	// Ensuring again creates nothing.
	srv.ResetCalls()
	if err := s.EnsureCollection(ctx, sp); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("Collections/Create") + srv.Calls("Points/CreateFieldIndex"); n != 0 {
		t.Errorf("second EnsureCollection made %d create calls", n)
	}
}

func TestRefusesCollectionsItCannotUse(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	raw := rawClient(t, srv)
	sp := spec("x")
	meta := map[string]*qc.Value{
		"vidx_model": qc.NewValueString(sp.Model), "vidx_pooling": qc.NewValueString(sp.Pooling), "vidx_dim": qc.NewValueInt(int64(sp.Dim)),
	}
	// writeErr is what writing and searching without EnsureCollection give;
	// nil where the store cannot tell (the caller's model is only known to
	// EnsureCollection, which every stage calls first).
	foreign := []struct {
		name, want string
		writeErr   error
		req        *qc.CreateCollection
	}{
		{"dot", `uses distance "dot"`, sinks.ErrIncompatible, &qc.CreateCollection{
			VectorsConfig: qc.NewVectorsConfig(&qc.VectorParams{Size: uint64(sp.Dim), Distance: qc.Distance_Dot}), Metadata: meta}},
		{"wider", "dimension 32", sinks.ErrInvalid, &qc.CreateCollection{
			VectorsConfig: qc.NewVectorsConfig(&qc.VectorParams{Size: 32, Distance: qc.Distance_Cosine}), Metadata: meta}},
		{"no_metadata", "no vidx metadata", sinks.ErrIncompatible, &qc.CreateCollection{
			VectorsConfig: qc.NewVectorsConfig(&qc.VectorParams{Size: uint64(sp.Dim), Distance: qc.Distance_Cosine})}},
		{"other_model", `model "clip-vit-l14"`, nil, &qc.CreateCollection{
			VectorsConfig: qc.NewVectorsConfig(&qc.VectorParams{Size: uint64(sp.Dim), Distance: qc.Distance_Cosine}),
			Metadata:      map[string]*qc.Value{"vidx_model": qc.NewValueString("clip-vit-l14"), "vidx_pooling": qc.NewValueString(sp.Pooling)}}},
	}
	for _, f := range foreign {
		f.req.CollectionName = f.name
		if err := raw.CreateCollection(ctx, f.req); err != nil {
			t.Fatalf("create %s: %v", f.name, err)
		}
	}
	s := open(t, srv, qdrant.Config{}, nil)
	srv.ResetCalls()
	for _, f := range foreign {
		err := s.EnsureCollection(ctx, spec(f.name))
		if !errors.Is(err, sinks.ErrIncompatible) || !strings.Contains(err.Error(), f.want) {
			t.Errorf("%s: EnsureCollection = %v, want ErrIncompatible mentioning %q", f.name, err, f.want)
		}
		if f.writeErr == nil {
			continue
		}
		if err := s.Upsert(ctx, f.name, points(1)); !errors.Is(err, f.writeErr) {
			t.Errorf("%s: Upsert = %v, want %v", f.name, err, f.writeErr)
		}
		if _, err := s.Search(ctx, f.name, sinks.SearchRequest{Vector: points(1)[0].Vector, TopK: 1}); !errors.Is(err, f.writeErr) {
			t.Errorf("%s: Search = %v, want %v", f.name, err, f.writeErr)
		}
	}
	for _, m := range []string{"Collections/Create", "Collections/Delete", "Collections/Update", "Points/Upsert"} {
		if n := srv.Calls(m); n != 0 {
			t.Errorf("refusing foreign collections made %d %s calls", n, m)
		}
	}
	// Collection reports what is there; app's compatibility check refuses it.
	got, err := s.Collection(ctx, "other_model")
	if err != nil || got.Model != "clip-vit-l14" || got.Compatible(spec("other_model")) == nil {
		t.Errorf("Collection(other_model) = %+v, %v", got, err)
	}
}

func TestAddsMissingPayloadIndexes(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	sp := spec("older")
	err := rawClient(t, srv).CreateCollection(ctx, &qc.CreateCollection{
		CollectionName: sp.Name,
		VectorsConfig:  qc.NewVectorsConfig(&qc.VectorParams{Size: uint64(sp.Dim), Distance: qc.Distance_Cosine}),
		Metadata:       map[string]*qc.Value{"vidx_model": qc.NewValueString(sp.Model), "vidx_pooling": qc.NewValueString(sp.Pooling)},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, srv, qdrant.Config{MetadataIndexes: []string{"camera"}}, nil)
	srv.ResetCalls()
	if err := s.EnsureCollection(ctx, sp); err != nil {
		t.Fatal(err)
	}
	// Six built-in fields and one metadata key.
	if n := srv.Calls("Points/CreateFieldIndex"); n != 7 {
		t.Errorf("%d payload indexes created, want 7", n)
	}
	info, err := s.Info(ctx, sp.Name)
	if err != nil {
		t.Fatal(err)
	}
	if info.PayloadIndexes["metadata.camera"] != "keyword" {
		t.Errorf("payload indexes %v, want metadata.camera as keyword", info.PayloadIndexes)
	}
	if n := srv.Calls("Collections/Create"); n != 0 {
		t.Errorf("existing collection was created again (%d calls)", n)
	}
}

// TestMetadataFilterNeedsIndex checks a filter on a metadata key without a
// payload index is refused with a clear, non-retryable error, while an
// indexed key filters.
func TestMetadataFilterNeedsIndex(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	s := open(t, srv, qdrant.Config{MetadataIndexes: []string{"lang"}}, nil)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	pts := points(30)
	if err := s.Upsert(ctx, "clips", pts); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		filter  sinks.Filter
		wantErr string
	}{
		{"indexed key", sinks.Filter{Metadata: map[string]string{"lang": "de"}}, ""},
		{"key without index", sinks.Filter{Metadata: map[string]string{"camera": "north"}}, `metadata key "camera" has no payload index`},
		{"indexed and unindexed", sinks.Filter{Metadata: map[string]string{"lang": "de", "seq": "1"}}, `metadata key "seq"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, searchErr := s.Search(ctx, "clips", sinks.SearchRequest{Vector: pts[0].Vector, TopK: 5, Filter: c.filter})
			_, batchErr := s.SearchBatch(ctx, "clips", []sinks.SearchRequest{{Vector: pts[0].Vector, TopK: 5}, {Vector: pts[0].Vector, TopK: 5, Filter: c.filter}})
			n, countErr := s.Count(ctx, "clips", c.filter)
			for _, err := range []error{searchErr, batchErr, countErr} {
				if c.wantErr == "" {
					if err != nil {
						t.Errorf("refused: %v", err)
					}
					continue
				}
				if !errors.Is(err, sinks.ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("error %v, want ErrInvalid mentioning %q", err, c.wantErr)
				}
			}
			if c.wantErr == "" {
				want := 0
				for _, p := range pts {
					if c.filter.Match(p.Payload) {
						want++
					}
				}
				if n != want || want == 0 {
					t.Errorf("count %d, want %d (> 0)", n, want)
				}
			}
		})
	}
}

func TestUpsertSendsBatchesWithWait(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{RecordRequests: true})
	s := open(t, srv, qdrant.Config{UpsertBatch: 64}, nil)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	pts := points(150)
	// Ids in another UUID spelling reach Qdrant in canonical form.
	pts[0].ID = "urn:uuid:" + strings.ToUpper(pts[0].ID)
	if err := s.Upsert(ctx, "clips", pts); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	seen := map[string]bool{}
	for _, r := range srv.Requests("Points/Upsert") {
		u := r.(*qc.UpsertPoints)
		if !u.GetWait() {
			t.Errorf("upsert without wait=true")
		}
		// The server gives up before the call does, so a slow upsert is
		// never still running there while it is sent again.
		if u.Timeout == nil || u.GetTimeout() < 1 || u.GetTimeout() >= uint64(qdrant.Default().Timeout/time.Second) {
			t.Errorf("upsert timeout %v, want 1 s or more and below the call's %s", u.Timeout, qdrant.Default().Timeout)
		}
		sizes = append(sizes, len(u.GetPoints()))
		for _, p := range u.GetPoints() {
			seen[p.GetId().GetUuid()] = true
		}
	}
	if !slices.Equal(sizes, []int{64, 64, 22}) {
		t.Errorf("batch sizes %v, want [64 64 22]", sizes)
	}
	for i, p := range pts {
		id := p.ID
		if i == 0 {
			id = uuid.MustParse(id).String()
		}
		if !seen[id] {
			t.Errorf("point %d (%s) not sent under its id", i, id)
		}
	}
	if n, err := s.Count(ctx, "clips", sinks.Filter{}); err != nil || n != 150 {
		t.Errorf("Count = %d, %v; want 150", n, err)
	}
	if err := s.Upsert(ctx, "clips", []sinks.Point{{ID: "clip-7", Vector: pts[1].Vector}}); !errors.Is(err, sinks.ErrInvalid) {
		t.Errorf("non-UUID id: %v, want ErrInvalid", err)
	}
	bad := pts[1]
	bad.Payload.VideoID = "bad\xffutf8"
	if err := s.Upsert(ctx, "clips", []sinks.Point{bad}); !errors.Is(err, sinks.ErrInvalid) {
		t.Errorf("invalid UTF-8 payload: %v, want ErrInvalid", err)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		fault     qdranttest.Fault
		retryFor  time.Duration
		calls     int           // upsert calls the server sees
		minWait   time.Duration // at least this long because of retry-after
		wantError error
	}{
		{"unavailable twice", qdranttest.Fault{Code: codes.Unavailable, Times: 2}, 5 * time.Second, 3, 0, nil},
		{"rate limited with retry-after", qdranttest.Fault{Code: codes.ResourceExhausted, RetryAfter: "1", Times: 1}, 5 * time.Second, 2, time.Second, nil},
		{"unavailable with fractional retry-after", qdranttest.Fault{Code: codes.Unavailable, RetryAfter: "0.4", Times: 1}, 5 * time.Second, 2, 400 * time.Millisecond, nil},
		// Without retry-after Qdrant means "never": the request alone is
		// over the limiter's budget. Halves of the batch pass.
		{"rate limited without hint splits the batch", qdranttest.Fault{Code: codes.ResourceExhausted, Message: "Rate limiting exceeded: Write rate limit exceeded, request larger than rate limiter capacity, please try to split your request", Times: 1}, 5 * time.Second, 3, 0, nil},
		{"rate limited without hint, for good", qdranttest.Fault{Code: codes.ResourceExhausted, Message: "Rate limiting exceeded: Write rate limit exceeded, request larger than rate limiter capacity, please try to split your request"}, 5 * time.Second, 3, 0, sinks.ErrRejected},
		{"insufficient storage", qdranttest.Fault{Code: codes.ResourceExhausted, Message: "Insufficient storage: node quota reached", Trailer: map[string]string{"qdrant-insufficient-storage": "1"}}, 5 * time.Second, 1, 0, sinks.ErrCapacity},
		{"strict mode points limit", qdranttest.Fault{Code: codes.InvalidArgument, Message: "Bad request: Max points count limit of 1000 reached!"}, 5 * time.Second, 1, 0, sinks.ErrCapacity},
		{"strict mode storage limit", qdranttest.Fault{Code: codes.InvalidArgument, Message: "Bad request: Max vector storage size limit of 64MB reached!"}, 5 * time.Second, 1, 0, sinks.ErrCapacity},
		{"disk full (1.17)", qdranttest.Fault{Code: codes.Internal, Message: "Service internal error: No space left on device: WAL buffer size exceeds available disk space"}, 5 * time.Second, 1, 0, sinks.ErrCapacity},
		{"server-side timeout", qdranttest.Fault{Code: codes.DeadlineExceeded, Message: "Timeout: Operation 'upsert' timed out after 8s", Times: 1}, 5 * time.Second, 2, 0, nil},
		{"attempt timeout", qdranttest.Fault{Code: codes.DeadlineExceeded, Times: 1}, 5 * time.Second, 2, 0, nil},
		{"down for longer than retry_for", qdranttest.Fault{Code: codes.Unavailable}, 400 * time.Millisecond, -1, 0, qdrant.ErrUnavailable},
		{"retry-after beyond retry_for", qdranttest.Fault{Code: codes.ResourceExhausted, RetryAfter: "30"}, 2 * time.Second, 1, 0, qdrant.ErrUnavailable},
		{"invalid argument is not retried", qdranttest.Fault{Code: codes.InvalidArgument, Message: "Wrong input"}, 5 * time.Second, 1, 0, sinks.ErrInvalid},
		{"internal error is not retried", qdranttest.Fault{Code: codes.Internal}, 5 * time.Second, 1, 0, errors.New("other")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := qdranttest.New(t, qdranttest.Options{})
			s := open(t, srv, qdrant.Config{RetryFor: tc.retryFor}, nil)
			if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
				t.Fatal(err)
			}
			tc.fault.Method = "Points/Upsert"
			srv.Inject(tc.fault)
			start := time.Now()
			err := s.Upsert(ctx, "clips", points(3))
			took := time.Since(start)
			switch {
			case tc.wantError == nil && err != nil:
				t.Fatalf("Upsert: %v", err)
			case tc.wantError != nil && err == nil:
				t.Fatalf("Upsert succeeded, want %v", tc.wantError)
			case tc.wantError != nil && tc.wantError.Error() != "other" && !errors.Is(err, tc.wantError):
				t.Fatalf("Upsert: %v, want %v", err, tc.wantError)
			case tc.wantError != nil && tc.wantError.Error() == "other" && (errors.Is(err, sinks.ErrInvalid) || errors.Is(err, qdrant.ErrUnavailable)):
				t.Fatalf("Upsert: %v, want an unclassified error", err)
			}
			if tc.calls >= 0 && srv.Calls("Points/Upsert") != tc.calls {
				t.Errorf("server saw %d upserts, want %d", srv.Calls("Points/Upsert"), tc.calls)
			}
			if tc.calls < 0 && srv.Calls("Points/Upsert") < 2 {
				t.Errorf("server saw %d upserts, want retries", srv.Calls("Points/Upsert"))
			}
			if took < tc.minWait {
				t.Errorf("took %s, the server asked to wait %s", took, tc.minWait)
			}
			if took > tc.retryFor+tc.minWait+2*time.Second {
				t.Errorf("took %s, retry_for is %s", took, tc.retryFor)
			}
			if tc.wantError == nil {
				if n, err := s.Count(ctx, "clips", sinks.Filter{}); err != nil || n != 3 {
					t.Errorf("after retries Count = %d, %v; want 3", n, err)
				}
			}
		})
	}
}

// TestIndexStageWaitsOutAnOutage runs the index stage against a server that
// goes down: the batch must come back retryable (so the runtime keeps its
// offsets) and go through once the server is back.
func TestIndexStageWaitsOutAnOutage(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	s := open(t, srv, qdrant.Config{RetryFor: 300 * time.Millisecond}, nil)
	sp := spec("clips")
	h, err := index.New(ctx, sp, s)
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]pipeline.Message, 5)
	for i := range batch {
		vec := points(5)[i].Vector
		value, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{
			Header: schemas.ClipHeader{VideoID: fmt.Sprintf("v%d", i), Source: "cam", StartS: 0, EndS: 4,
				FrameTimes: []float64{0, 1, 2, 3}, Dim: sp.Dim, Model: sp.Model, Pooling: sp.Pooling},
			Vectors: [][]float32{vec},
		})
		if err != nil {
			t.Fatal(err)
		}
		batch[i] = pipeline.Message{Topic: "clip-embeddings", Value: value}
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, r := range h.Handle(ctx, batch) {
		if !pipeline.IsRetryable(r.Err) || !errors.Is(r.Err, qdrant.ErrUnavailable) {
			t.Errorf("message %d while qdrant is down: %v, want retryable ErrUnavailable", i, r.Err)
		}
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// The runtime retries a retryable batch with backoff; the connection
	// comes back within gRPC's reconnect backoff.
	for attempt := 1; ; attempt++ {
		var failed error
		for i, r := range h.Handle(ctx, batch) {
			if r.Err != nil && !pipeline.IsRetryable(r.Err) {
				t.Fatalf("message %d after qdrant is back: %v is not retryable", i, r.Err)
			}
			failed = cmp.Or(failed, r.Err)
		}
		if failed == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("still failing after qdrant is back: %v", failed)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n, err := s.Count(ctx, sp.Name, sinks.Filter{}); err != nil || n != len(batch) {
		t.Errorf("Count = %d, %v; want %d", n, err, len(batch))
	}
}

func TestSearchBatchMatchesSearch(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	s := open(t, srv, qdrant.Config{}, nil)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	pts := points(120)
	if err := s.Upsert(ctx, "clips", pts); err != nil {
		t.Fatal(err)
	}
	from := 4.0
	reqs := []sinks.SearchRequest{
		{Vector: pts[3].Vector, TopK: 5},
		{Vector: pts[9].Vector, TopK: 100, WithVectors: true},
		{Vector: pts[11].Vector, TopK: 7, Filter: sinks.Filter{Sources: []string{"cam-b"}, StartFrom: &from}},
		{Vector: pts[20].Vector, TopK: 3, Filter: sinks.Filter{VideoIDs: []string{"nope"}}},
	}
	// Enough large requests to be split over several calls.
	for i := range 12 {
		reqs = append(reqs, sinks.SearchRequest{Vector: pts[30+i].Vector, TopK: 10000, WithVectors: true})
	}
	srv.ResetCalls()
	got, err := s.SearchBatch(ctx, "clips", reqs)
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("Points/QueryBatch"); n < 2 || n > 3 {
		t.Errorf("%d QueryBatch calls for %d requests, want the large ones split over 2 or 3", n, len(reqs))
	}
	if n := srv.Calls("Points/Query"); n != 0 {
		t.Errorf("SearchBatch made %d single queries", n)
	}
	if len(got) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(got), len(reqs))
	}
	for i, r := range reqs {
		want, err := s.Search(ctx, "clips", r)
		if err != nil {
			t.Fatal(err)
		}
		if len(got[i]) != len(want) {
			t.Fatalf("request %d: %d hits in batch, %d alone", i, len(got[i]), len(want))
		}
		for j := range want {
			if got[i][j].ID != want[j].ID || got[i][j].Score != want[j].Score || !slices.Equal(got[i][j].Vector, want[j].Vector) {
				t.Fatalf("request %d hit %d: batch %s %.6f, alone %s %.6f", i, j, got[i][j].ID, got[i][j].Score, want[j].ID, want[j].Score)
			}
		}
	}
	if _, err := s.SearchBatch(ctx, "clips", []sinks.SearchRequest{reqs[0], {Vector: pts[0].Vector, TopK: 0}}); !errors.Is(err, sinks.ErrInvalid) {
		t.Errorf("batch with an invalid request: %v, want ErrInvalid", err)
	}
	if _, err := s.SearchBatch(ctx, "missing", reqs[:1]); !errors.Is(err, sinks.ErrNotFound) {
		t.Errorf("batch on a missing collection: %v, want ErrNotFound", err)
	}
}

// syncBuffer collects log output from concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAPIKey(t *testing.T) {
	ctx := testCtx(t)
	const key = "vidx-test-key-8c1e0f"
	srv := qdranttest.New(t, qdranttest.Options{APIKey: key})
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	s := open(t, srv, qdrant.Config{APIKey: key}, log)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatalf("with the right key: %v", err)
	}
	if err := s.Upsert(ctx, "clips", points(4)); err != nil {
		t.Fatalf("with the right key: %v", err)
	}

	wrong := open(t, srv, qdrant.Config{APIKey: key + "x"}, log)
	srv.ResetCalls()
	_, err := wrong.Count(ctx, "clips", sinks.Filter{})
	if !errors.Is(err, qdrant.ErrAuth) || errors.Is(err, sinks.ErrInvalid) {
		t.Fatalf("wrong key: %v, want ErrAuth", err)
	}
	if n := srv.Calls("Points/Count"); n != 1 {
		t.Errorf("a rejected key was retried: %d calls", n)
	}
	none := open(t, srv, qdrant.Config{}, log)
	if _, err := none.Count(ctx, "clips", sinks.Filter{}); !errors.Is(err, qdrant.ErrAuth) {
		t.Errorf("no key: %v, want ErrAuth", err)
	}
	for _, text := range []string{logs.String(), err.Error()} {
		if strings.Contains(text, key) {
			t.Errorf("the API key leaked: %s", text)
		}
	}
	if !strings.Contains(logs.String(), "without TLS") {
		t.Errorf("no warning about sending the key in clear text:\n%s", logs.String())
	}
}

// selfSigned returns a server certificate for 127.0.0.1 and the PEM file of
// the CA that signed it (itself).
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vidx test qdrant"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func TestTLS(t *testing.T) {
	ctx := testCtx(t)
	cert, caFile := selfSigned(t)
	srv := qdranttest.New(t, qdranttest.Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, APIKey: "k"})
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := open(t, srv, qdrant.Config{TLS: true, CAFile: caFile, APIKey: "k"}, log)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "clips", points(3)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "without TLS") {
		t.Errorf("warned about clear text over TLS:\n%s", logs.String())
	}
	// The system pool does not trust the test CA.
	_, err := qdrant.Open(ctx, srv.URL(), qdrant.Config{TLS: true, RetryFor: 200 * time.Millisecond}, quiet)
	if err == nil {
		t.Error("connected over TLS to a server no trusted CA vouches for")
	}
	// Nor does a plain-text client get through.
	if _, err := qdrant.Open(ctx, srv.URL(), qdrant.Config{RetryFor: 200 * time.Millisecond}, quiet); err == nil {
		t.Error("a plain-text client talked to a TLS server")
	}
}

func TestRefusesOldServers(t *testing.T) {
	tests := []struct {
		version string
		ok      bool
	}{
		{"1.15.3", false},
		{"1.14.1", false},
		{"0.11.0", false},
		{"1.15.4", true},
		{"1.16.0", true},
		{"1.17.1", true},
		{"v1.18.0-dev", true},
		{"2.0", true},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			srv := qdranttest.New(t, qdranttest.Options{Version: tc.version})
			s, err := qdrant.Open(testCtx(t), srv.URL(), qdrant.Config{}, quiet)
			if tc.ok {
				if err != nil {
					t.Fatalf("server %s: %v", tc.version, err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.version) || !strings.Contains(err.Error(), qdrant.MinServerVersion) {
				t.Errorf("server %s: Open = %v, want an error naming both versions", tc.version, err)
			}
		})
	}
}

// TestClusterDefaultsForShards checks that unset shards and replication are
// left out of the create request, for the cluster to choose.
func TestClusterDefaultsForShards(t *testing.T) {
	tests := []struct {
		name           string
		cfg            qdrant.Config
		shards, copies *uint32
	}{
		{"unset", qdrant.Config{}, nil, nil},
		{"shards only", qdrant.Config{Shards: 6}, qc.PtrOf(uint32(6)), nil},
		{"both", qdrant.Config{Shards: 2, ReplicationFactor: 3}, qc.PtrOf(uint32(2)), qc.PtrOf(uint32(3))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := qdranttest.New(t, qdranttest.Options{RecordRequests: true})
			s := open(t, srv, tc.cfg, nil)
			if err := s.EnsureCollection(testCtx(t), spec("clips")); err != nil {
				t.Fatal(err)
			}
			cr := srv.Requests("Collections/Create")[0].(*qc.CreateCollection)
			same := func(a, b *uint32) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
			if !same(cr.ShardNumber, tc.shards) {
				t.Errorf("shard_number %v, want %v", cr.ShardNumber, tc.shards)
			}
			if !same(cr.ReplicationFactor, tc.copies) {
				t.Errorf("replication_factor %v, want %v", cr.ReplicationFactor, tc.copies)
			}
		})
	}
}

// TestStrictModeLimits runs the store and the index stage against a server
// with strict-mode limits: a batch over upsert_max_batchsize is split, a
// full collection is a retryable capacity error counted as such and never
// dead-letters the clips.
func TestStrictModeLimits(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{RecordRequests: true, Strict: qdranttest.Strict{UpsertMaxBatchsize: 20, MaxPointsCount: 100}})
	s := open(t, srv, qdrant.Config{UpsertBatch: 64}, nil)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	pts := points(45)
	if err := s.Upsert(ctx, "clips", pts); err != nil {
		t.Fatalf("Upsert over the batch limit: %v", err)
	}
	var sizes []int
	for _, r := range srv.Requests("Points/Upsert") {
		sizes = append(sizes, len(r.(*qc.UpsertPoints).GetPoints()))
	}
	if !slices.Equal(sizes, []int{45, 20, 20, 5}) {
		t.Errorf("upsert sizes %v, want the refused 45 then the server's limit of 20", sizes)
	}
	// Later calls use the server's size at once.
	srv.ResetCalls()
	all := storetest.Points(mrand.New(mrand.NewPCG(5, 5)), 100, spec("").Dim, 5)
	if err := s.Upsert(ctx, "clips", all[45:75]); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("Points/Upsert"); n != 2 {
		t.Errorf("%d upsert calls for 30 points, want 2 of at most 20", n)
	}
	if err := s.Upsert(ctx, "clips", all[75:]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, "clips", sinks.Filter{}); err != nil || n != 100 {
		t.Fatalf("Count = %d, %v; want 100", n, err)
	}
	more := storetest.Points(mrand.New(mrand.NewPCG(7, 7)), 3, spec("").Dim, 1)
	for i := range more {
		more[i].Payload.VideoID = "late"
		more[i].ID = sinks.PointID("late", float64(i), float64(i+1), spec("").Model)
	}
	err := s.Upsert(ctx, "clips", more)
	if !errors.Is(err, sinks.ErrCapacity) || errors.Is(err, sinks.ErrInvalid) || !strings.Contains(err.Error(), "Max points count limit of 100 reached") {
		t.Fatalf("Upsert into a full collection: %v, want ErrCapacity with Qdrant's message", err)
	}

	h, err := index.New(ctx, spec("clips"), s, index.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	value, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{
		Header: schemas.ClipHeader{VideoID: "late", StartS: 0, EndS: 1, FrameTimes: []float64{0},
			Dim: spec("").Dim, Model: spec("").Model, Pooling: spec("").Pooling},
		Vectors: [][]float32{more[0].Vector},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := h.Handle(ctx, []pipeline.Message{{Value: value}})
	if !pipeline.IsRetryable(res[0].Err) || !errors.Is(res[0].Err, sinks.ErrCapacity) {
		t.Errorf("index stage on a full collection: %v, want a retryable capacity error", res[0].Err)
	}
}

// TestSlowWritesDoNotPileUp sends upserts to a server slower than the
// call's timeout: the server's own timeout answers first, so a retry starts
// only after the previous attempt ended there and attempts never overlap.
func TestSlowWritesDoNotPileUp(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	s := open(t, srv, qdrant.Config{Timeout: 2 * time.Second, RetryFor: 3 * time.Second}, nil)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	srv.Inject(qdranttest.Fault{Method: "Points/Upsert", Delay: 2500 * time.Millisecond, Times: 2})
	if err := s.Upsert(ctx, "clips", points(3)); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if n := srv.Calls("Points/Upsert"); n != 3 {
		t.Errorf("server saw %d upserts, want 2 timed out and 1 through", n)
	}
	if n := srv.PeakInFlight("Points/Upsert"); n != 1 {
		t.Errorf("%d upserts ran on the server at once, want 1", n)
	}
	if n, err := s.Count(ctx, "clips", sinks.Filter{}); err != nil || n != 3 {
		t.Errorf("Count = %d, %v; want 3", n, err)
	}
}

// TestCreateRace creates the collection from two stores at once, as two
// index replicas starting together do: one gets AlreadyExists, and both
// end up using the collection.
func TestCreateRace(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	a, b := open(t, srv, qdrant.Config{}, nil), open(t, srv, qdrant.Config{}, nil)
	// The first create is slowed down so that the second one arrives while
	// the collection is missing to both.
	srv.Inject(qdranttest.Fault{Method: "Collections/Create", Delay: 300 * time.Millisecond, Times: 1})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*qdrant.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.EnsureCollection(ctx, spec("clips"))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	if n := srv.Calls("Collections/Create"); n != 2 {
		t.Errorf("%d create calls, want 2 (one answered AlreadyExists)", n)
	}
}

// TestStatusWhileIndexing reads a collection past the indexing threshold:
// yellow while it optimises after a write, then green with its vectors
// indexed.
func TestStatusWhileIndexing(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{IndexingThresholdKB: -1})
	s := open(t, srv, qdrant.Config{}, nil)
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, "clips", points(10)); err != nil {
		t.Fatal(err)
	}
	first, err := s.Info(ctx, "clips")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Info(ctx, "clips")
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != "yellow" || second.Status != "green" || second.IndexedVectors != 10 {
		t.Errorf("status %s then %s with %d indexed vectors, want yellow then green with 10", first.Status, second.Status, second.IndexedVectors)
	}
}

func TestOpenWaitsForTheServer(t *testing.T) {
	srv := qdranttest.New(t, qdranttest.Options{})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(500 * time.Millisecond)
		if err := srv.Restart(); err != nil {
			t.Error(err)
		}
	}()
	s, err := qdrant.Open(testCtx(t), srv.URL(), qdrant.Config{RetryFor: 10 * time.Second}, quiet)
	if err != nil {
		t.Fatalf("Open while the server starts: %v", err)
	}
	s.Close()
}

func TestClosedStore(t *testing.T) {
	ctx := testCtx(t)
	srv := qdranttest.New(t, qdranttest.Options{})
	s, err := qdrant.Open(ctx, srv.URL(), qdrant.Config{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx, spec("clips")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	srv.ResetCalls()
	if err := s.Upsert(ctx, "clips", points(2)); !errors.Is(err, qdrant.ErrClosed) {
		t.Errorf("Upsert after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Count(ctx, "clips", sinks.Filter{}); !errors.Is(err, qdrant.ErrClosed) {
		t.Errorf("Count after Close: %v, want ErrClosed", err)
	}
	if n := srv.Calls("Points/Upsert") + srv.Calls("Points/Count"); n != 0 {
		t.Errorf("a closed store made %d calls", n)
	}
}
