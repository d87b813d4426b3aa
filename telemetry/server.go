package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Probes answer the health endpoints.
type Probes struct {
	// Live reports whether the process makes progress (or has nothing to
	// do). A failing liveness probe gets the pod restarted, so it must not
	// depend on the broker or the store being up.
	Live func() error
	// Ready reports whether the process can serve: model loaded, broker and
	// store reachable.
	Ready func(ctx context.Context) error
}

// Handler serves /metrics, /healthz and /readyz.
func (t *Telemetry) Handler(p Probes) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.MetricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		answer(w, call(p.Live))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var err error
		if p.Ready != nil {
			err = p.Ready(ctx)
		}
		answer(w, err)
	})
	return mux
}

func call(f func() error) error {
	if f == nil {
		return nil
	}
	return f()
}

func answer(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Serve listens on addr (kept apart from anything public) until ctx ends.
func (t *Telemetry) Serve(ctx context.Context, addr string, p Probes, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("telemetry: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: t.Handler(p), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving metrics and health", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}
