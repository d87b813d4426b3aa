package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/httpapi/kafkasrc"
	"github.com/vidx/vidx/sourceguard"
)

// webServer serves the HTTP API and the search page next to the query
// stage, from the stage's own handler, store and broker connection.
type webServer struct {
	ln      net.Listener
	srv     *http.Server
	tracker *kafkasrc.Tracker
}

// startWeb listens on http.addr, so a port in use fails New rather than Run.
func (a *App) startWeb() error {
	cfg, t := a.Config, a.Config.Topics
	tracker, err := kafkasrc.New(kafkasrc.Config{
		Kafka: cfg.Kafka, VideosTopic: t.Videos, DeadLetterTopic: t.DeadLetters, ThumbnailTopic: t.Thumbnails,
		ClipTopics: []string{t.Clips, t.FrameEmbeddings, t.ClipEmbeddings},
		Store:      a.store, Collection: cfg.Store.Collection, CacheBytes: cfg.HTTP.WithDefaults().ThumbnailCacheBytes, Log: a.log,
	})
	if err != nil {
		return err
	}
	// Media is served under the same source policy the sample stage reads
	// files with; with no file roots, no file is served.
	guard, err := sourceguard.NewGuard(cfg.Stages.Sample.Sources)
	if err != nil {
		return err
	}
	api, err := httpapi.New(cfg.HTTP, httpapi.Deps{
		Search: httpapi.SearchWith(a.Query), Jobs: tracker, Deletes: tracker, Videos: tracker, Thumbnails: tracker, Media: guard,
		Ready: a.Ready,
		Log:   a.log.With("component", "http"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr: %w", err)
	}
	a.web = &webServer{ln: ln, srv: api.Server(), tracker: tracker}
	a.closers = append(a.closers, func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	a.log.Info("search page and API listening", "url", "http://"+ln.Addr().String()+"/")
	return nil
}

// HTTPAddr returns the address the HTTP API listens on, or "" when it is
// not served here.
func (a *App) HTTPAddr() string {
	if a.web == nil {
		return ""
	}
	return a.web.ln.Addr().String()
}

func (w *webServer) run(ctx context.Context, log *slog.Logger) {
	tracked := make(chan struct{})
	go func() {
		defer close(tracked)
		if err := w.tracker.Run(ctx); err != nil {
			log.Error("http state reader stopped", "err", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.srv.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.srv.Shutdown(sctx); err != nil {
		_ = w.srv.Close()
	}
	<-done
	<-tracked
}
