// Package httpapi is vidx's HTTP API and search page: a plain http.Handler
// over small interfaces (a searcher, a job publisher, a video status
// reader, a thumbnail reader, a local media opener), so it knows nothing of
// Kafka or the store. The app package wires it to the query stage.
package httpapi

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
)

// Video states reported by GET /v1/videos/{id}.
const (
	StatusQueued  = "queued"
	StatusIndexed = "indexed"
	StatusFailed  = "failed"
	// StatusDeleting: a delete was published and clips remain in the
	// index; StatusDeleted: none remain.
	StatusDeleting = "deleting"
	StatusDeleted  = "deleted"
)

// ErrNotFound is returned by Videos and Thumbnails for what they do not know.
var ErrNotFound = errors.New("not found")

// ErrNotReady is returned for what may exist but is not loaded yet (a
// thumbnail while the thumbnails topic is still being read): 503, retry.
var ErrNotReady = errors.New("not ready yet")

// Searcher answers a text query through the query stage's path: text
// encoder, candidate search and dual-softmax re-ranking against the bank.
type Searcher interface {
	Search(ctx context.Context, q schemas.Query) (schemas.Result, error)
}

// Jobs publishes video jobs for the sample stage.
type Jobs interface {
	Publish(ctx context.Context, job schemas.VideoJob) error
}

// Video is what is known of one video.
type Video struct {
	ID     string
	Status string // StatusQueued, StatusIndexed, StatusFailed, StatusDeleting or StatusDeleted
	Clips  int
	// Error is the dead letter's reason of a failed video.
	Error string
	// URI is the job's source.
	URI string
}

// Deletes publishes delete commands: a tombstone keyed by the video id on
// the jobs topic, which the index stage acts on.
type Deletes interface {
	Delete(ctx context.Context, videoID string) error
}

// Videos reports video states.
type Videos interface {
	// Video returns the video's state, or an error wrapping ErrNotFound.
	Video(ctx context.Context, id string) (Video, error)
	// URI returns the source of a video seen on the jobs topic, without
	// asking the store: search results use it to link each hit's media.
	URI(id string) (string, bool)
}

// Thumbnails returns a clip's thumbnail JPEG, or an error wrapping
// ErrNotFound.
type Thumbnails interface {
	Thumbnail(ctx context.Context, videoID string, clipIndex int) ([]byte, error)
}

// MediaFiles opens a local video file when the source policy allows it
// (*sourceguard.Guard).
type MediaFiles interface {
	OpenLocal(uri string) (*os.File, error)
}

// Deps are what the API serves from. A nil dependency makes its endpoints
// answer 503.
type Deps struct {
	Search     Searcher
	Jobs       Jobs
	Deletes    Deletes
	Videos     Videos
	Thumbnails Thumbnails
	Media      MediaFiles
	// Ready fails while the service cannot answer (broker or store down,
	// state not yet read); /v1 endpoints then answer 503.
	Ready func(context.Context) error
	Log   *slog.Logger
}

//go:embed openapi.json
var openAPIDoc []byte

//go:embed web
var webFS embed.FS

// OpenAPI returns the embedded OpenAPI 3 document.
func OpenAPI() []byte { return openAPIDoc }

// API is the HTTP handler.
type API struct {
	cfg Config
	d   Deps
	mux *http.ServeMux
	log *slog.Logger

	readyMu    sync.Mutex
	readyAt    time.Time
	readyErr   error
	readyEvery time.Duration
}

// New builds the API.
func New(cfg Config, d Deps) (*API, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	a := &API{cfg: cfg, d: d, mux: http.NewServeMux(), log: d.Log, readyEvery: time.Second}
	web, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, err
	}
	a.mux.HandleFunc("POST /v1/search", a.guard(a.search))
	a.mux.HandleFunc("POST /v1/videos", a.guard(a.postVideo))
	a.mux.HandleFunc("GET /v1/videos/{id}", a.guard(a.getVideo))
	a.mux.HandleFunc("DELETE /v1/videos/{id}", a.guard(a.deleteVideo))
	a.mux.HandleFunc("GET /v1/videos/{id}/media", a.guard(a.media))
	a.mux.HandleFunc("GET /v1/thumbnails/{video_id}/{clip_index}", a.guard(a.thumbnail))
	a.mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPIDoc)
	})
	a.mux.Handle("GET /{$}", page(web, "index.html"))
	a.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(web)))
	a.mux.HandleFunc("/", a.notFound)
	return a, nil
}

// Server returns an http.Server for the API with its time limits.
func (a *API) Server() *http.Server {
	return &http.Server{
		Addr:              a.cfg.Addr,
		Handler:           a,
		ReadHeaderTimeout: a.cfg.ReadHeaderTimeout,
		ReadTimeout:       a.cfg.ReadTimeout,
		WriteTimeout:      a.cfg.WriteTimeout,
		IdleTimeout:       a.cfg.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	defer func() {
		// A handler bug answers 500 and leaves the server running.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("http handler panicked", "path", r.URL.Path, "panic", v)
			writeError(w, http.StatusInternalServerError, "internal", "internal error")
		}
	}()
	a.mux.ServeHTTP(w, r)
}

// notFound answers paths no route serves, and 405 where the path exists
// for another method.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed here (allowed: %s)", r.Method, strings.Join(allow, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
}

// guard applies authentication and readiness to a /v1 endpoint.
func (a *API) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vidx"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		if err := a.ready(r.Context()); err != nil {
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, "not_ready", "not ready: "+err.Error())
			return
		}
		next(w, r)
	}
}

// authCookie carries the token for the page's <img> and <video> requests,
// which cannot send an Authorization header.
const authCookie = "vidx_token"

func (a *API) authorized(r *http.Request) bool {
	if a.cfg.AuthToken == "" {
		return true
	}
	got := ""
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = strings.TrimSpace(v)
	} else if c, err := r.Cookie(authCookie); err == nil {
		got, _ = url.QueryUnescape(c.Value)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.AuthToken)) == 1
}

// ready checks readiness at most once per readyEvery: a probe reaches the
// broker and the store, too slow for every request.
func (a *API) ready(ctx context.Context) error {
	if a.d.Ready == nil {
		return nil
	}
	a.readyMu.Lock()
	defer a.readyMu.Unlock()
	if time.Since(a.readyAt) < a.readyEvery {
		return a.readyErr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a.readyErr, a.readyAt = a.d.Ready(ctx), time.Now()
	return a.readyErr
}

// ErrorBody is every error response: {"error": {"code", "message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is an error's machine-readable code and its message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// requestError is a client error found while reading a request.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

// decodeBody reads one JSON object into v: unknown fields, wrong types,
// trailing data and bodies over the limit are refused.
func (a *API) decodeBody(w http.ResponseWriter, r *http.Request, v any) *requestError {
	return a.decodeBodyUpTo(w, r, v, a.cfg.MaxBodyBytes)
}

// searchBodyBytes is the body limit of POST /v1/search: room for an image
// query whatever http.max_body_bytes says.
const searchBodyBytes = schemas.MaxImageLen + 64<<10

func (a *API) decodeBodyUpTo(w http.ResponseWriter, r *http.Request, v any, limit int64) *requestError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", msg: "the body must be application/json"}
		}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		var extra json.RawMessage
		if dec.Decode(&extra) != io.EOF {
			return badRequest("invalid_json", "the body must hold exactly one JSON object")
		}
		return nil
	}
	var (
		tooLarge *http.MaxBytesError
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return &requestError{status: http.StatusRequestEntityTooLarge, code: "body_too_large", msg: fmt.Sprintf("the body is over %d bytes", tooLarge.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("invalid_json", "the body is empty")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid_json", "the body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return badRequest("invalid_json", "the body must be a JSON object")
		}
		return badRequest("invalid_field", "field %s must be %s, not %s", field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown_field", "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	// A connection cut or timed out mid-body ends here too.
	return badRequest("invalid_json", "reading the body: %v", err)
}

// SearchRequest is the body of POST /v1/search.
type SearchRequest struct {
	// Exactly one of Text, Image (base64 JPEG or PNG) and Like.
	Text    string           `json:"text,omitempty"`
	Image   string           `json:"image,omitempty"`
	Like    *schemas.ClipRef `json:"like,omitempty"`
	TopK    *int             `json:"top_k,omitempty"`
	Rerank  string           `json:"rerank,omitempty"`
	Filters *schemas.Filters `json:"filters,omitempty"`
	// MinScore drops hits scored below it by the rerank mode in use.
	MinScore *float64 `json:"min_score,omitempty"`
}

// SearchResponse is the answer of POST /v1/search.
type SearchResponse struct {
	QueryID string  `json:"query_id"`
	Text    string  `json:"text"`
	Rerank  string  `json:"rerank"`
	Model   string  `json:"model"`
	Hits    []Hit   `json:"hits"`
	TookMS  float64 `json:"took_ms"`
}

// Hit is one ranked clip: the result's hit (its fields inline in the
// JSON) plus the links the page needs.
type Hit struct {
	schemas.Hit
	// Thumbnail is the path of the clip's thumbnail.
	Thumbnail string `json:"thumbnail"`
	// MediaURL is where a player finds the video: this API's media
	// endpoint for a local file, the source itself for http(s) sources.
	MediaURL string `json:"media_url,omitempty"`
}

func (a *API) search(w http.ResponseWriter, r *http.Request) {
	if a.d.Search == nil {
		writeError(w, http.StatusServiceUnavailable, "not_available", "search is not available in this process")
		return
	}
	var req SearchRequest
	if e := a.decodeBodyUpTo(w, r, &req, max(a.cfg.MaxBodyBytes, searchBodyBytes)); e != nil {
		writeError(w, e.status, e.code, e.msg)
		return
	}
	q := schemas.Query{SchemaVersion: schemas.Version, QueryID: newID(), Text: req.Text, Image: req.Image, Like: req.Like,
		Rerank: req.Rerank, Filters: req.Filters, MinScore: req.MinScore}
	if req.TopK != nil {
		if *req.TopK < 1 || *req.TopK > schemas.MaxTopK {
			writeError(w, http.StatusBadRequest, "out_of_range", fmt.Sprintf("top_k %d out of range [1, %d]", *req.TopK, schemas.MaxTopK))
			return
		}
		q.TopK = *req.TopK
	}
	if err := q.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "invalid query: "))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.SearchTimeout)
	defer cancel()
	start := time.Now()
	res, err := a.d.Search.Search(ctx, q)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			writeError(w, http.StatusGatewayTimeout, "timeout", "the search took longer than "+a.cfg.SearchTimeout.String())
			return
		}
		a.log.Warn("search failed", "query_id", q.QueryID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "search failed: "+err.Error())
		return
	}
	if e := res.Error; e != nil {
		// The query stage's own verdict on a query it cannot answer.
		status := http.StatusServiceUnavailable
		if e.Code == schemas.ErrCodeInvalidQuery {
			status = http.StatusBadRequest
		}
		writeError(w, status, e.Code, e.Message)
		return
	}
	out := SearchResponse{QueryID: q.QueryID, Text: res.Text, Rerank: res.Rerank, Model: res.Model, Hits: make([]Hit, 0, len(res.Hits)),
		TookMS: float64(time.Since(start).Microseconds()) / 1000}
	for _, h := range res.Hits {
		hit := Hit{Hit: h, Thumbnail: ThumbnailPath(h.VideoID, h.ClipIndex)}
		if a.d.Videos != nil {
			if uri, ok := a.d.Videos.URI(h.VideoID); ok {
				hit.MediaURL = mediaURL(h.VideoID, uri)
			}
		}
		out.Hits = append(out.Hits, hit)
	}
	writeJSON(w, http.StatusOK, out)
}

// ThumbnailPath is the API path of a clip's thumbnail.
func ThumbnailPath(videoID string, clipIndex int) string {
	return "/v1/thumbnails/" + url.PathEscape(videoID) + "/" + strconv.Itoa(clipIndex)
}

// isLocal reports whether a job URI names a local file.
func isLocal(uri string) bool {
	if !strings.Contains(uri, "://") {
		return true
	}
	u, err := url.Parse(uri)
	return err == nil && strings.EqualFold(u.Scheme, "file")
}

// mediaURL links a video for the page's player: local files through the
// media endpoint, http(s) sources directly (never one with credentials in
// it), nothing for stream protocols a browser cannot play.
func mediaURL(videoID, uri string) string {
	if isLocal(uri) {
		return "/v1/videos/" + url.PathEscape(videoID) + "/media"
	}
	u, err := url.Parse(uri)
	if err != nil || u.User != nil {
		return ""
	}
	if s := strings.ToLower(u.Scheme); s == "http" || s == "https" {
		return u.String()
	}
	return ""
}

// VideoRequest is the body of POST /v1/videos.
type VideoRequest struct {
	VideoID  string            `json:"video_id"`
	URI      string            `json:"uri"`
	Source   string            `json:"source,omitempty"`
	Segment  *schemas.Segment  `json:"segment,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// VideoResponse describes a video (GET /v1/videos/{id}, and POST's 202).
type VideoResponse struct {
	VideoID  string `json:"video_id"`
	Status   string `json:"status"`
	Clips    int    `json:"clips"`
	Error    string `json:"error,omitempty"`
	MediaURL string `json:"media_url,omitempty"`
}

func (a *API) postVideo(w http.ResponseWriter, r *http.Request) {
	if a.d.Jobs == nil {
		writeError(w, http.StatusServiceUnavailable, "not_available", "publishing jobs is not available in this process")
		return
	}
	var req VideoRequest
	if e := a.decodeBody(w, r, &req); e != nil {
		writeError(w, e.status, e.code, e.msg)
		return
	}
	job := schemas.VideoJob{SchemaVersion: schemas.Version, VideoID: req.VideoID, URI: req.URI, Source: req.Source,
		Segment: req.Segment, Metadata: req.Metadata}
	if err := job.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "invalid video job: "))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.SearchTimeout)
	defer cancel()
	if err := a.d.Jobs.Publish(ctx, job); err != nil {
		a.log.Warn("publishing a video job failed", "video_id", job.VideoID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the job could not be published: "+err.Error())
		return
	}
	w.Header().Set("Location", "/v1/videos/"+url.PathEscape(job.VideoID))
	writeJSON(w, http.StatusAccepted, VideoResponse{VideoID: job.VideoID, Status: StatusQueued})
}

// deleteVideo publishes a delete command. It answers 202 at once: every
// index replica's store agrees once the index stage has read the command,
// which GET /v1/videos/{id} shows as status deleted. Deleting a video that
// was never seen is accepted too (a delete is idempotent).
func (a *API) deleteVideo(w http.ResponseWriter, r *http.Request) {
	if a.d.Deletes == nil {
		writeError(w, http.StatusServiceUnavailable, "not_available", "deleting videos is not available in this process")
		return
	}
	id := r.PathValue("id")
	if err := (&schemas.VideoJob{VideoID: id, URI: "-"}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid video id")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.SearchTimeout)
	defer cancel()
	if err := a.d.Deletes.Delete(ctx, id); err != nil {
		a.log.Warn("publishing a delete failed", "video_id", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the delete could not be published: "+err.Error())
		return
	}
	w.Header().Set("Location", "/v1/videos/"+url.PathEscape(id))
	writeJSON(w, http.StatusAccepted, VideoResponse{VideoID: id, Status: StatusDeleting})
}

func (a *API) video(w http.ResponseWriter, r *http.Request) (Video, bool) {
	if a.d.Videos == nil {
		writeError(w, http.StatusServiceUnavailable, "not_available", "video status is not available in this process")
		return Video{}, false
	}
	id := r.PathValue("id")
	if err := (&schemas.VideoJob{VideoID: id, URI: "-"}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid video id")
		return Video{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.SearchTimeout)
	defer cancel()
	v, err := a.d.Videos.Video(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("video %q is not known", id))
		return Video{}, false
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "unavailable", "video status: "+err.Error())
		return Video{}, false
	}
	return v, true
}

func (a *API) getVideo(w http.ResponseWriter, r *http.Request) {
	v, ok := a.video(w, r)
	if !ok {
		return
	}
	resp := VideoResponse{VideoID: v.ID, Status: v.Status, Clips: v.Clips, Error: v.Error}
	if v.Status == StatusIndexed && v.URI != "" {
		resp.MediaURL = mediaURL(v.ID, v.URI)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) thumbnail(w http.ResponseWriter, r *http.Request) {
	if a.d.Thumbnails == nil {
		writeError(w, http.StatusServiceUnavailable, "not_available", "thumbnails are not available in this process")
		return
	}
	id := r.PathValue("video_id")
	idx, err := strconv.Atoi(r.PathValue("clip_index"))
	if err != nil || idx < 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "clip_index must be a non-negative integer")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.SearchTimeout)
	defer cancel()
	img, err := a.d.Thumbnails.Thumbnail(ctx, id, idx)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no thumbnail for clip %d of video %q", idx, id))
		return
	case errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "not_ready", "thumbnails are still loading")
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "unavailable", "thumbnail: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, max-age=300")
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}

func (a *API) media(w http.ResponseWriter, r *http.Request) {
	v, ok := a.video(w, r)
	if !ok {
		return
	}
	switch {
	case v.Status != StatusIndexed:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("video %q is %s, not indexed", v.ID, v.Status))
		return
	case !isLocal(v.URI):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("video %q is not a local file; open its source directly", v.ID))
		return
	case a.d.Media == nil:
		writeError(w, http.StatusNotFound, "not_found", "local media is not served by this process")
		return
	}
	f, err := a.d.Media.OpenLocal(v.URI)
	if err != nil {
		var refused *sourceguard.RefusedError
		if errors.As(err, &refused) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("video %q is not served: %s", v.ID, refused.Reason))
			return
		}
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("video %q cannot be opened", v.ID))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "stat video file")
		return
	}
	// A job may name any file under the roots, and the latest job's source
	// is what is served: only video files are, so a job naming a config
	// file or the store's log under the same roots leaks nothing.
	ctype, ok := videoType(f)
	if !ok {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("the source of video %q is not a video file", v.ID))
		return
	}
	w.Header().Set("Content-Type", ctype)
	// A player streams the whole video over one response: the write limit
	// is for JSON answers, not for this.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Cache-Control", "private, max-age=300")
	http.ServeContent(w, r, filepath.Base(f.Name()), st.ModTime(), f)
}

// videoTypes are the containers the media endpoint serves, by extension.
var videoTypes = map[string]string{
	".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
	".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo", ".ts": "video/mp2t",
	".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".3gp": "video/3gpp",
}

// videoType says whether f is a video file and its content type: a video
// extension whose content does not sniff as text, or content that sniffs
// as video.
func videoType(f *os.File) (string, bool) {
	var head [512]byte
	n, _ := f.ReadAt(head[:], 0)
	sniffed := http.DetectContentType(head[:n])
	if t, ok := videoTypes[strings.ToLower(filepath.Ext(f.Name()))]; ok && !strings.HasPrefix(sniffed, "text/") {
		return t, true
	}
	if strings.HasPrefix(sniffed, "video/") {
		return sniffed, true
	}
	return "", false
}

// page serves one embedded HTML file with a content security policy that
// allows only the page's own scripts and styles.
func page(web fs.FS, name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := fs.ReadFile(web, name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal", "page missing")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self' http: https:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(data)
	})
}

// QueryAnswerer answers a batch of queries together (*query.Handler).
type QueryAnswerer interface {
	Answer(ctx context.Context, queries []schemas.Query) ([]schemas.Result, error)
}

// SearchWith searches with the query stage's own handler: the same text
// encoder, candidate search, query bank and dual softmax as a query on the
// queries topic, without the round trip through Kafka.
func SearchWith(h QueryAnswerer) Searcher { return answerer{h} }

type answerer struct{ h QueryAnswerer }

func (a answerer) Search(ctx context.Context, q schemas.Query) (schemas.Result, error) {
	rs, err := a.h.Answer(ctx, []schemas.Query{q})
	if err != nil {
		return schemas.Result{}, err
	}
	if len(rs) != 1 {
		return schemas.Result{}, fmt.Errorf("query stage answered %d results for one query", len(rs))
	}
	return rs[0], nil
}
