// Package qdranttest runs an in-process Qdrant gRPC server for tests and
// benchmarks. It implements the part of Qdrant's Qdrant, Collections and
// Points services that vidx uses, from the go-client's generated service
// definitions, on a real TCP listener on 127.0.0.1, and keeps points in the
// embedded store (sinks/embedded). Everything else answers Unimplemented.
//
// It behaves like Qdrant where vidx depends on it: UUID point ids, keyword
// "match any", integer match and inclusive range filters, cosine scores,
// status codes and messages (InvalidArgument for bad input, AlreadyExists
// for an existing collection, NotFound for a missing one, Unauthenticated
// for a wrong api-key header, strict-mode limits as InvalidArgument "Bad
// request: ..."), collection metadata and payloads with keys vidx does not
// know. It rejects requests it does not model rather than guessing, so a
// store that starts sending something new fails its tests instead of
// passing them.
//
// Like Qdrant it is approximate where Qdrant is: once a collection's vectors
// exceed Options.IndexingThresholdKB the collection counts as indexed, its
// status turns yellow after writes while it "optimises", searches without
// exact=true miss some points (as an HNSW graph may) and counts without
// exact=true are estimates.
//
// Faults can be injected per method (Unavailable, ResourceExhausted with a
// retry-after trailer, slow calls that honour the request's timeout field,
// ...), and the server can be stopped and restarted on the same address and
// data to exercise reconnects and restarts.
package qdranttest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vidx/vidx/sinks/embedded"
)

// DefaultVersion is the Qdrant version HealthCheck reports unless
// Options.Version says otherwise.
const DefaultVersion = "1.17.1"

// Options configures a Server.
type Options struct {
	// Dir holds the server's data: points in Dir/store (the embedded store)
	// and collection settings in Dir/collections. Required.
	Dir string
	// Addr is the listen address; default 127.0.0.1:0 (any free port).
	Addr string
	// APIKey, when set, must arrive in the api-key header of every call but
	// HealthCheck, as with Qdrant's service.api_key.
	APIKey string
	// TLS serves TLS with this configuration.
	TLS *tls.Config
	// Version is what HealthCheck reports; default DefaultVersion.
	Version string
	// Sync makes the embedded store fsync every write. Off by default:
	// tests and benchmarks measure the protocol path, not the disk.
	Sync bool
	// RecordRequests keeps a copy of every request for Requests.
	RecordRequests bool
	// IndexingThresholdKB is the size of a collection's vectors in KiB
	// above which it counts as indexed (approximate search and counts,
	// yellow while optimising). Zero means Qdrant's default, 10000; a
	// negative value indexes every collection.
	IndexingThresholdKB int
	// Strict enforces strict-mode limits on every collection.
	Strict Strict
	Logger *slog.Logger
}

// DefaultIndexingThresholdKB is Qdrant's default optimizers
// indexing_threshold.
const DefaultIndexingThresholdKB = 10000

// Strict holds strict-mode limits, answered with Qdrant's messages. Zero
// means no limit.
type Strict struct {
	// MaxPointsCount refuses upserts once a collection holds this many
	// points.
	MaxPointsCount int
	// UpsertMaxBatchsize refuses upserts of more points.
	UpsertMaxBatchsize int
}

// Fault makes calls fail.
type Fault struct {
	// Method is the service and method, e.g. "Points/Upsert"; empty matches
	// every call.
	Method  string
	Code    codes.Code
	Message string
	// RetryAfter, when not empty, is sent as the retry-after trailer, in
	// seconds as Qdrant does.
	RetryAfter string
	// Trailer holds more trailer metadata, such as Qdrant's
	// qdrant-insufficient-storage marker.
	Trailer map[string]string
	// Delay slows matching calls down. A request whose timeout field is
	// shorter is answered with DeadlineExceeded once it passes, as Qdrant
	// answers, and (a write being in the WAL by then) still applied. With
	// Code OK the call then proceeds normally.
	Delay time.Duration
	// Times is how many matching calls fail; 0 means until ClearFaults.
	Times int
}

// Server is a running test server. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	addr     string
	lis      net.Listener
	grpc     *grpc.Server
	store    *embedded.Store
	colls    map[string]*collection
	faults   []*Fault
	calls    map[string]int
	requests map[string][]proto.Message
	inflight map[string]int
	peak     map[string]int
	opID     uint64
	served   chan struct{}
}

// Start starts a server on opts.Addr.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("qdranttest: Options.Dir is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.IndexingThresholdKB == 0 {
		opts.IndexingThresholdKB = DefaultIndexingThresholdKB
	}
	s := &Server{opts: opts, log: log, addr: opts.Addr, calls: map[string]int{}, requests: map[string][]proto.Message{},
		inflight: map[string]int{}, peak: map[string]int{}}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// New starts a server in a temporary directory (unless opts.Dir is set) and
// closes it when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("start qdrant test server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close qdrant test server: %v", err)
		}
	})
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grpc != nil {
		return errors.New("qdranttest: server already running")
	}
	store, err := embedded.Open(filepath.Join(s.opts.Dir, "store"), embedded.Options{NoSync: !s.opts.Sync, Logger: s.log})
	if err != nil {
		return fmt.Errorf("qdranttest: %w", err)
	}
	colls, err := loadCollections(filepath.Join(s.opts.Dir, "collections"))
	if err != nil {
		store.Close()
		return fmt.Errorf("qdranttest: %w", err)
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		store.Close()
		return fmt.Errorf("qdranttest: listen: %w", err)
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.intercept),
		grpc.MaxRecvMsgSize(64 << 20),
		// Stop must not close the store under a running handler.
		grpc.WaitForHandlers(true),
		// Qdrant's clients ping every 10 s without streams; gRPC's default
		// policy would answer that with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.opts.TLS)))
	}
	g := grpc.NewServer(opts...)
	qc.RegisterQdrantServer(g, qdrantService{s: s})
	qc.RegisterCollectionsServer(g, collectionsService{s: s})
	qc.RegisterPointsServer(g, pointsService{s: s})
	s.addr, s.lis, s.grpc, s.store, s.colls = lis.Addr().String(), lis, g, store, colls
	served := make(chan struct{})
	s.served = served
	go func() {
		defer close(served)
		if err := g.Serve(lis); err != nil {
			s.log.Warn("qdranttest: serve", "err", err)
		}
	}()
	return nil
}

// Addr returns the listen address, host:port. It stays the same across
// Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns the store URL of the server, qdrant://127.0.0.1:PORT.
func (s *Server) URL() string { return "qdrant://" + s.Addr() }

// Stop takes the server down as a crash would: open connections are cut
// and calls fail with Unavailable until Restart. Data is kept.
func (s *Server) Stop() error {
	s.mu.Lock()
	g, store, served := s.grpc, s.store, s.served
	s.grpc, s.store = nil, nil
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	g.Stop()
	<-served
	return store.Close()
}

// Restart stops the server if it runs and starts it again on the same
// address and data.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start()
}

// Close stops the server for good.
func (s *Server) Close() error { return s.Stop() }

// Inject adds a fault; faults are checked in the order they were added.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Calls returns how many calls of method ("Points/Upsert") arrived,
// including those that failed.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Requests returns copies of the requests of method received so far, when
// Options.RecordRequests is set.
func (s *Server) Requests(method string) []proto.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]proto.Message(nil), s.requests[method]...)
}

// ResetCalls forgets counted calls, recorded requests and peaks.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.requests = map[string][]proto.Message{}
	s.peak = map[string]int{}
}

// PeakInFlight returns the most calls of method that were being served at
// the same time.
func (s *Server) PeakInFlight(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[method]
}

// timeoutOf reads the timeout field (seconds) of requests that have one.
func timeoutOf(req any) (time.Duration, bool) {
	r, ok := req.(interface{ GetTimeout() uint64 })
	if !ok || r.GetTimeout() == 0 {
		return 0, false
	}
	return time.Duration(r.GetTimeout()) * time.Second, true
}

func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := strings.TrimPrefix(info.FullMethod, "/qdrant.")
	s.mu.Lock()
	s.calls[method]++
	s.inflight[method]++
	s.peak[method] = max(s.peak[method], s.inflight[method])
	defer func() {
		s.mu.Lock()
		s.inflight[method]--
		s.mu.Unlock()
	}()
	if s.opts.RecordRequests {
		if m, ok := req.(proto.Message); ok {
			s.requests[method] = append(s.requests[method], proto.Clone(m))
		}
	}
	var fault *Fault
	for i, f := range s.faults {
		if f.Method != "" && f.Method != method {
			continue
		}
		fault = f
		if f.Times > 0 {
			if f.Times--; f.Times == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		break
	}
	s.mu.Unlock()

	if s.opts.APIKey != "" && method != "Qdrant/HealthCheck" {
		md, _ := metadata.FromIncomingContext(ctx)
		if keys := md.Get("api-key"); len(keys) != 1 || keys[0] != s.opts.APIKey {
			return nil, status.Error(codes.Unauthenticated, "Invalid api-key")
		}
	}
	if fault != nil && fault.Delay > 0 {
		if limit, ok := timeoutOf(req); ok && limit < fault.Delay {
			time.Sleep(limit)
			if _, err := handler(ctx, req); err != nil {
				return nil, err
			}
			return nil, status.Errorf(codes.DeadlineExceeded, "Timeout: Operation '%s' timed out after %s", method, limit)
		}
		time.Sleep(fault.Delay)
		if fault.Code == codes.OK {
			return handler(ctx, req)
		}
	}
	if fault != nil {
		if fault.RetryAfter != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", fault.RetryAfter))
		}
		for k, v := range fault.Trailer {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(k, v))
		}
		msg := fault.Message
		if msg == "" {
			msg = "injected fault"
		}
		return nil, status.Error(fault.Code, msg)
	}
	return handler(ctx, req)
}

// state returns the live store and collections, or Unavailable while the
// server is stopping.
func (s *Server) state() (*embedded.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		return nil, status.Error(codes.Unavailable, "server is shutting down")
	}
	return s.store, nil
}

func (s *Server) nextOp() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opID++
	return s.opID
}

type qdrantService struct {
	qc.UnimplementedQdrantServer
	s *Server
}

func (q qdrantService) HealthCheck(context.Context, *qc.HealthCheckRequest) (*qc.HealthCheckReply, error) {
	return &qc.HealthCheckReply{Title: "qdrant - vidx test server", Version: q.s.opts.Version}, nil
}
