package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/stages/sample"
)

// fakeSearch ranks the videos whose id contains a word of the text first.
type fakeSearch struct {
	mu      sync.Mutex
	queries []schemas.Query
	err     error
	block   bool
	// answer, when set, is the query stage's error for every query.
	answer *schemas.ResultError
}

func (f *fakeSearch) Search(ctx context.Context, q schemas.Query) (schemas.Result, error) {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	err, block, answer := f.err, f.block, f.answer
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return schemas.Result{}, ctx.Err()
	}
	if err != nil {
		return schemas.Result{}, err
	}
	r := schemas.Result{QueryID: q.QueryID, Text: q.Text, Rerank: "symmetric", Model: "fake"}
	if answer != nil {
		r.Error = answer
		return r, nil
	}
	for i, id := range []string{"red", "blue"} {
		if !strings.Contains(q.Text, id) && i == 0 {
			continue
		}
		r.Hits = append(r.Hits, schemas.Hit{Rank: len(r.Hits) + 1, VideoID: id, ClipIndex: 2, StartS: 4, EndS: 6, Score: 0.9 - float64(i)/10, Cosine: 0.3})
	}
	return r, nil
}

type fakeJobs struct {
	mu      sync.Mutex
	jobs    []schemas.VideoJob
	deletes []string
	err     error
}

func (f *fakeJobs) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.deletes = append(f.deletes, id)
	return nil
}

func (f *fakeJobs) Publish(_ context.Context, j schemas.VideoJob) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.jobs = append(f.jobs, j)
	return nil
}

type fakeVideos map[string]httpapi.Video

func (f fakeVideos) Video(_ context.Context, id string) (httpapi.Video, error) {
	v, ok := f[id]
	if !ok {
		return v, fmt.Errorf("%q: %w", id, httpapi.ErrNotFound)
	}
	return v, nil
}

func (f fakeVideos) URI(id string) (string, bool) {
	v, ok := f[id]
	return v.URI, ok
}

type fakeThumbs map[string][]byte

func (f fakeThumbs) Thumbnail(_ context.Context, id string, idx int) ([]byte, error) {
	if id == "loading" {
		return nil, httpapi.ErrNotReady
	}
	b, ok := f[sample.ThumbnailKey(id, idx)]
	if !ok {
		return nil, httpapi.ErrNotFound
	}
	return b, nil
}

type env struct {
	api    *httpapi.API
	search *fakeSearch
	jobs   *fakeJobs
	router routers.Router
	ready  *error
}

var jpegBytes = []byte("\xff\xd8\xff\xe0 a thumbnail \xff\xd9")

// mediaBody starts like an MP4 file (an ftyp box).
const mediaBody = "\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom0123456789abcdefghij"

func newEnv(t *testing.T, cfg httpapi.Config) *env {
	t.Helper()
	root, outside := t.TempDir(), t.TempDir()
	inside := filepath.Join(root, "red.mp4")
	if err := os.WriteFile(inside, []byte(mediaBody), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"vidx.yaml": "qdrant: {api_key: k}\n", "notes.mp4": "not a video\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret.mp4")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	guard, err := sourceguard.NewGuard(sourceguard.SourcePolicy{FileRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{search: &fakeSearch{}, jobs: &fakeJobs{}, ready: new(error)}
	e.api, err = httpapi.New(cfg, httpapi.Deps{
		Search: e.search, Jobs: e.jobs, Deletes: e.jobs, Media: guard,
		Videos: fakeVideos{
			"red":      {ID: "red", Status: httpapi.StatusIndexed, Clips: 3, URI: inside},
			"blue":     {ID: "blue", Status: httpapi.StatusIndexed, Clips: 1, URI: "https://videos.example.com/blue.mp4"},
			"secret":   {ID: "secret", Status: httpapi.StatusIndexed, Clips: 1, URI: "file://" + secret},
			"pending":  {ID: "pending", Status: httpapi.StatusQueued, URI: inside},
			"broken":   {ID: "broken", Status: httpapi.StatusFailed, Error: "video file does not exist", URI: "/nope.mp4"},
			"a/b c":    {ID: "a/b c", Status: httpapi.StatusQueued, URI: inside},
			"withpass": {ID: "withpass", Status: httpapi.StatusIndexed, Clips: 1, URI: "https://u:p@videos.example.com/x.mp4"},
			// Jobs that repoint an indexed video at other files in the roots.
			"config": {ID: "config", Status: httpapi.StatusIndexed, Clips: 1, URI: filepath.Join(root, "vidx.yaml")},
			"notes":  {ID: "notes", Status: httpapi.StatusIndexed, Clips: 1, URI: filepath.Join(root, "notes.mp4")},
		},
		Thumbnails: fakeThumbs{sample.ThumbnailKey("red", 2): jpegBytes},
		Ready:      func(context.Context) error { return *e.ready },
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	if e.router, err = gorillamux.NewRouter(doc); err != nil {
		t.Fatal(err)
	}
	return e
}

func init() {
	openapi3filter.RegisterBodyDecoder("image/jpeg", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("video/mp4", openapi3filter.FileBodyDecoder)
}

// verdict is what the OpenAPI document should say of a request.
type verdict int

const (
	docRefuses verdict = iota
	docAccepts
	// docEither: the validator's JSON decoder is laxer than the server's
	// (it ignores trailing data).
	docEither
)

type call struct {
	method, path, body string
	header             map[string]string
}

// do serves req and checks it and the response against the OpenAPI
// document. docAccepts says whether the document should accept the request
// (a malformed one must be refused by both).
func (e *env) do(t *testing.T, c call, want verdict) *httptest.ResponseRecorder {
	t.Helper()
	newReq := func() *http.Request {
		r := httptest.NewRequest(c.method, "http://vidx.test"+c.path, strings.NewReader(c.body))
		if c.body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		return r
	}
	req := newReq()
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)

	probe := newReq()
	route, params, err := e.router.FindRoute(probe)
	if err != nil {
		if want == docAccepts {
			t.Fatalf("%s %s: not in the OpenAPI document: %v", c.method, c.path, err)
		}
		return w
	}
	in := &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	if want == docAccepts && reqErr != nil {
		t.Errorf("%s %s: the document refuses the request: %v", c.method, c.path, reqErr)
	}
	if want == docRefuses && reqErr == nil && w.Code < 500 && w.Code != http.StatusUnauthorized {
		t.Errorf("%s %s: the document accepts a request the server refused with %d", c.method, c.path, w.Code)
	}
	in.Request.Body = io.NopCloser(strings.NewReader(c.body))
	resp := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: w.Code, Header: w.Header(),
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	resp.SetBodyBytes(w.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), resp); err != nil {
		t.Errorf("%s %s: response %d does not match the document: %v\n%s", c.method, c.path, w.Code, err, w.Body.String())
	}
	return w
}

// pick is docAccepts for paths in the document; the page's are not.
func pick(inDoc bool) verdict {
	if inDoc {
		return docAccepts
	}
	return docEither
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body httpapi.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body.String(), err)
	}
	if body.Error.Message == "" {
		t.Errorf("error %q has no message", body.Error.Code)
	}
	return body.Error.Code
}

// healthy checks a good search still works after whatever came before.
func (e *env) healthy(t *testing.T) {
	t.Helper()
	w := e.do(t, call{method: "POST", path: "/v1/search", body: `{"text": "red"}`}, docAccepts)
	if w.Code != http.StatusOK {
		t.Fatalf("a good search after the case got %d: %s", w.Code, w.Body.String())
	}
}

func TestBadRequests(t *testing.T) {
	// Search takes up to about 1 MiB (room for an image query); other
	// bodies http.max_body_bytes (64 KiB).
	big := `{"image": "` + strings.Repeat("A", 1100<<10) + `"}`
	bigJob := `{"video_id": "v", "uri": "` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name   string
		call   call
		status int
		code   string
		doc    verdict
	}{
		{"unknown field", call{method: "POST", path: "/v1/search", body: `{"text": "red", "topk": 3}`}, 400, "unknown_field", docRefuses},
		{"nested unknown field", call{method: "POST", path: "/v1/search", body: `{"text": "red", "filters": {"video": "x"}}`}, 400, "unknown_field", docRefuses},
		{"wrong type", call{method: "POST", path: "/v1/search", body: `{"text": "red", "top_k": "5"}`}, 400, "invalid_field", docRefuses},
		{"text not a string", call{method: "POST", path: "/v1/search", body: `{"text": 7}`}, 400, "invalid_field", docRefuses},
		{"top_k zero", call{method: "POST", path: "/v1/search", body: `{"text": "red", "top_k": 0}`}, 400, "out_of_range", docRefuses},
		{"top_k too large", call{method: "POST", path: "/v1/search", body: `{"text": "red", "top_k": 1001}`}, 400, "out_of_range", docRefuses},
		{"empty text", call{method: "POST", path: "/v1/search", body: `{"text": ""}`}, 400, "invalid_request", docRefuses},
		{"bad rerank", call{method: "POST", path: "/v1/search", body: `{"text": "red", "rerank": "max"}`}, 400, "invalid_request", docRefuses},
		{"not JSON", call{method: "POST", path: "/v1/search", body: `{"text": `}, 400, "invalid_json", docRefuses},
		{"array body", call{method: "POST", path: "/v1/search", body: `["red"]`}, 400, "invalid_json", docRefuses},
		{"trailing data", call{method: "POST", path: "/v1/search", body: `{"text": "red"} {"text": "blue"}`}, 400, "invalid_json", docEither},
		{"empty body", call{method: "POST", path: "/v1/search", header: map[string]string{"Content-Type": "application/json"}}, 400, "invalid_json", docRefuses},
		{"body too large", call{method: "POST", path: "/v1/search", body: big}, 413, "body_too_large", docRefuses},
		{"job body too large", call{method: "POST", path: "/v1/videos", body: bigJob}, 413, "body_too_large", docRefuses},
		{"text and image", call{method: "POST", path: "/v1/search", body: `{"text": "red", "image": "iVBORw0KGgo="}`}, 400, "invalid_request", docAccepts},
		{"wrong content type", call{method: "POST", path: "/v1/search", body: `{"text": "red"}`, header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported_media_type", docRefuses},
		{"job without uri", call{method: "POST", path: "/v1/videos", body: `{"video_id": "x"}`}, 400, "invalid_request", docRefuses},
		{"job with unknown field", call{method: "POST", path: "/v1/videos", body: `{"video_id": "x", "uri": "/v/x.mp4", "path": "/etc"}`}, 400, "unknown_field", docRefuses},
		{"job metadata not strings", call{method: "POST", path: "/v1/videos", body: `{"video_id": "x", "uri": "/v/x.mp4", "metadata": {"a": 1}}`}, 400, "invalid_field", docRefuses},
		{"unknown video", call{method: "GET", path: "/v1/videos/nobody"}, 404, "not_found", docAccepts},
		{"clip index not a number", call{method: "GET", path: "/v1/thumbnails/red/x"}, 400, "invalid_request", docRefuses},
		{"negative clip index", call{method: "GET", path: "/v1/thumbnails/red/-1"}, 400, "invalid_request", docRefuses},
		{"missing thumbnail", call{method: "GET", path: "/v1/thumbnails/red/7"}, 404, "not_found", docAccepts},
		{"thumbnails still loading", call{method: "GET", path: "/v1/thumbnails/loading/0"}, 503, "not_ready", docAccepts},
		{"media outside the file roots", call{method: "GET", path: "/v1/videos/secret/media"}, 403, "forbidden", docAccepts},
		{"media that is a config file", call{method: "GET", path: "/v1/videos/config/media"}, 403, "forbidden", docAccepts},
		{"media that is text named .mp4", call{method: "GET", path: "/v1/videos/notes/media"}, 403, "forbidden", docAccepts},
		{"media of a queued video", call{method: "GET", path: "/v1/videos/pending/media"}, 404, "not_found", docAccepts},
		{"media of a remote video", call{method: "GET", path: "/v1/videos/blue/media"}, 404, "not_found", docAccepts},
		{"video id too long", call{method: "GET", path: "/v1/videos/" + strings.Repeat("v", 300)}, 400, "invalid_request", docRefuses},
		{"unknown endpoint", call{method: "GET", path: "/v1/nothing"}, 404, "not_found", docRefuses},
		{"wrong method", call{method: "GET", path: "/v1/search"}, 405, "method_not_allowed", docRefuses},
	}
	e := newEnv(t, httpapi.Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(t, tc.call, tc.doc)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body.String())
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			if code := errorCode(t, w); code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			e.healthy(t)
		})
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	w := e.do(t, call{method: "POST", path: "/v1/search", body: `{"text": "red car", "top_k": 5, "rerank": "camoe", "min_score": 0.25, "filters": {"video_ids": ["red", "blue"], "start_from": 1, "metadata": {"camera": "north"}, "wall_from": "2026-01-02T03:04:05Z"}}`}, docAccepts)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	var got httpapi.SearchResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Hits) != 2 || got.Hits[0].VideoID != "red" || got.Hits[0].Rank != 1 || got.Hits[1].Rank != 2 {
		t.Fatalf("hits %+v, want red then blue", got.Hits)
	}
	want := []struct{ thumb, media string }{
		{"/v1/thumbnails/red/2", "/v1/videos/red/media"},
		{"/v1/thumbnails/blue/2", "https://videos.example.com/blue.mp4"},
	}
	for i, h := range got.Hits {
		if h.Thumbnail != want[i].thumb || h.MediaURL != want[i].media {
			t.Errorf("hit %d links %q and %q, want %q and %q", i, h.Thumbnail, h.MediaURL, want[i].thumb, want[i].media)
		}
	}
	e.search.mu.Lock()
	q := e.search.queries[0]
	e.search.mu.Unlock()
	if q.Text != "red car" || q.TopK != 5 || q.Rerank != "camoe" || q.Filters == nil || len(q.Filters.VideoIDs) != 2 ||
		q.Filters.StartFrom == nil || *q.Filters.StartFrom != 1 || q.QueryID != got.QueryID || q.QueryID == "" ||
		q.MinScore == nil || *q.MinScore != 0.25 || q.Filters.Metadata["camera"] != "north" || q.Filters.WallFrom == nil ||
		!q.Filters.WallFrom.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("the searcher got %+v, want the request's fields and the answer's query id %q", q, got.QueryID)
	}
}

func TestSearchFailures(t *testing.T) {
	cases := []struct {
		name   string
		set    func(*fakeSearch)
		status int
		code   string
	}{
		{"searcher fails", func(f *fakeSearch) { f.err = errors.New("store down") }, 503, "unavailable"},
		{"searcher takes too long", func(f *fakeSearch) { f.block = true }, 504, "timeout"},
		{"query stage refuses the query", func(f *fakeSearch) {
			f.answer = &schemas.ResultError{Code: schemas.ErrCodeInvalidQuery, Message: "metadata key \"x\" has no payload index"}
		}, 400, "invalid_query"},
		{"query stage gave up", func(f *fakeSearch) {
			f.answer = &schemas.ResultError{Code: schemas.ErrCodeUnavailable, Message: "store down"}
		}, 503, "unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Config{SearchTimeout: 50 * time.Millisecond})
			tc.set(e.search)
			w := e.do(t, call{method: "POST", path: "/v1/search", body: `{"text": "red"}`}, docAccepts)
			if w.Code != tc.status || errorCode(t, w) != tc.code {
				t.Fatalf("got %d %s, want %d %s", w.Code, w.Body.String(), tc.status, tc.code)
			}
		})
	}
}

func TestDeleteVideo(t *testing.T) {
	cases := []struct {
		name    string
		path    string
		fail    error
		status  int
		code    string
		deleted string
		doc     verdict
	}{
		{"published", "/v1/videos/red", nil, 202, "", "red", docAccepts},
		{"escaped id", "/v1/videos/a%2Fb%20c", nil, 202, "", "a/b c", docAccepts},
		{"never seen: deleting is idempotent", "/v1/videos/nobody", nil, 202, "", "nobody", docAccepts},
		{"broker down", "/v1/videos/red", errors.New("no brokers"), 503, "unavailable", "", docAccepts},
		{"id too long", "/v1/videos/" + strings.Repeat("x", schemas.MaxIDLen+1), nil, 400, "invalid_request", "", docRefuses},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Config{})
			e.jobs.err = tc.fail
			w := e.do(t, call{method: "DELETE", path: tc.path}, tc.doc)
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body.String(), tc.status)
			}
			if tc.code != "" {
				if c := errorCode(t, w); c != tc.code {
					t.Errorf("code %s, want %s", c, tc.code)
				}
			} else {
				var got httpapi.VideoResponse
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.VideoID != tc.deleted || got.Status != httpapi.StatusDeleting {
					t.Errorf("body %s (%v), want video %q deleting", w.Body.String(), err, tc.deleted)
				}
			}
			e.jobs.mu.Lock()
			defer e.jobs.mu.Unlock()
			if want := []string{tc.deleted}; tc.deleted != "" && !slices.Equal(e.jobs.deletes, want) || tc.deleted == "" && len(e.jobs.deletes) != 0 {
				t.Errorf("deletes published %v, want %q", e.jobs.deletes, tc.deleted)
			}
		})
	}
}

func TestVideos(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	cases := []struct {
		path string
		want httpapi.VideoResponse
	}{
		{"/v1/videos/red", httpapi.VideoResponse{VideoID: "red", Status: "indexed", Clips: 3, MediaURL: "/v1/videos/red/media"}},
		{"/v1/videos/blue", httpapi.VideoResponse{VideoID: "blue", Status: "indexed", Clips: 1, MediaURL: "https://videos.example.com/blue.mp4"}},
		{"/v1/videos/withpass", httpapi.VideoResponse{VideoID: "withpass", Status: "indexed", Clips: 1}},
		{"/v1/videos/pending", httpapi.VideoResponse{VideoID: "pending", Status: "queued"}},
		{"/v1/videos/broken", httpapi.VideoResponse{VideoID: "broken", Status: "failed", Error: "video file does not exist"}},
		{"/v1/videos/a%2Fb%20c", httpapi.VideoResponse{VideoID: "a/b c", Status: "queued"}},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			w := e.do(t, call{method: "GET", path: tc.path}, docAccepts)
			var got httpapi.VideoResponse
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != 200 {
				t.Fatalf("status %d %s (%v)", w.Code, w.Body.String(), err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPostVideo(t *testing.T) {
	cases := []struct {
		name    string
		fail    error
		status  int
		publish bool
	}{
		{"published", nil, 202, true},
		{"broker down", errors.New("no brokers"), 503, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Config{})
			e.jobs.err = tc.fail
			w := e.do(t, call{method: "POST", path: "/v1/videos",
				body: `{"video_id": "clip 1", "uri": "https://v.example.com/1.mp4", "segment": {"mode": "window", "window_s": 10}, "metadata": {"lang": "en"}}`}, docAccepts)
			if w.Code != tc.status {
				t.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
			if !tc.publish {
				return
			}
			if loc := w.Header().Get("Location"); loc != "/v1/videos/clip%201" {
				t.Errorf("Location %q", loc)
			}
			if len(e.jobs.jobs) != 1 {
				t.Fatalf("published %d jobs, want 1", len(e.jobs.jobs))
			}
			j := e.jobs.jobs[0]
			if j.VideoID != "clip 1" || j.URI != "https://v.example.com/1.mp4" || j.Segment == nil || j.Segment.WindowS != 10 ||
				j.Metadata["lang"] != "en" || j.SchemaVersion != schemas.Version {
				t.Errorf("published %+v", j)
			}
		})
	}
}

func TestThumbnailAndMedia(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	w := e.do(t, call{method: "GET", path: "/v1/thumbnails/red/2"}, docAccepts)
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/jpeg" || !bytes.Equal(w.Body.Bytes(), jpegBytes) {
		t.Fatalf("thumbnail: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body.Bytes())
	}
	cases := []struct {
		rng    string
		status int
		body   string
	}{
		{"", 200, mediaBody},
		{"bytes=2-5", 206, mediaBody[2:6]},
		{"bytes=30-", 206, mediaBody[30:]},
	}
	for _, tc := range cases {
		t.Run("range "+tc.rng, func(t *testing.T) {
			c := call{method: "GET", path: "/v1/videos/red/media"}
			if tc.rng != "" {
				c.header = map[string]string{"Range": tc.rng}
			}
			w := e.do(t, c, docAccepts)
			if w.Code != tc.status || w.Body.String() != tc.body {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Body.String(), tc.status, tc.body)
			}
			if w.Header().Get("Accept-Ranges") != "bytes" || w.Header().Get("Content-Type") != "video/mp4" {
				t.Errorf("headers %v", w.Header())
			}
		})
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, httpapi.Config{AuthToken: "s3cret"})
	cases := []struct {
		name   string
		call   call
		status int
	}{
		{"no token", call{method: "POST", path: "/v1/search", body: `{"text": "red"}`}, 401},
		{"wrong token", call{method: "POST", path: "/v1/search", body: `{"text": "red"}`, header: map[string]string{"Authorization": "Bearer nope"}}, 401},
		{"bearer token", call{method: "POST", path: "/v1/search", body: `{"text": "red"}`, header: map[string]string{"Authorization": "Bearer s3cret"}}, 200},
		{"cookie", call{method: "GET", path: "/v1/thumbnails/red/2", header: map[string]string{"Cookie": "vidx_token=s3cret"}}, 200},
		{"thumbnail without token", call{method: "GET", path: "/v1/thumbnails/red/2"}, 401},
		{"media without token", call{method: "GET", path: "/v1/videos/red/media"}, 401},
		{"openapi without token", call{method: "GET", path: "/v1/openapi.json"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(t, tc.call, docAccepts)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body.String())
			}
			if tc.status == 401 && (errorCode(t, w) != "unauthorized" || w.Header().Get("WWW-Authenticate") == "") {
				t.Errorf("401 without its code or challenge: %v %s", w.Header(), w.Body.String())
			}
		})
	}
}

func TestNotReady(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	*e.ready = errors.New("broker unreachable")
	w := e.do(t, call{method: "POST", path: "/v1/search", body: `{"text": "red"}`}, docAccepts)
	if w.Code != 503 || errorCode(t, w) != "not_ready" || !strings.Contains(w.Body.String(), "broker unreachable") {
		t.Fatalf("got %d %s, want 503 not_ready", w.Code, w.Body.String())
	}
	// The page and the document stay up, so a browser can say why.
	for _, p := range []string{"/", "/v1/openapi.json"} {
		if w := e.do(t, call{method: "GET", path: p}, pick(p != "/")); w.Code != 200 {
			t.Errorf("%s: %d while not ready", p, w.Code)
		}
	}
}

func TestPage(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	cases := []struct {
		path, contentType string
		contains          []string
	}{
		{"/", "text/html; charset=utf-8", []string{`name="q"`, `<video id="player"`, `/static/app.js`}},
		{"/static/app.js", "text/javascript; charset=utf-8", []string{"/v1/search", "data"}},
		{"/static/style.css", "text/css; charset=utf-8", []string{"@media"}},
		{"/v1/openapi.json", "application/json", []string{`"openapi": "3.0.3"`}},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			w := e.do(t, call{method: "GET", path: tc.path}, pick(tc.path == "/v1/openapi.json"))
			if w.Code != 200 || w.Header().Get("Content-Type") != tc.contentType {
				t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
			}
			for _, s := range tc.contains {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("missing %q", s)
				}
			}
		})
	}
}

// TestSlowBodyCutOff sends a body slower than the read timeout allows: the
// server ends the request, and keeps answering others.
func TestSlowBodyCutOff(t *testing.T) {
	e := newEnv(t, httpapi.Config{ReadTimeout: 300 * time.Millisecond})
	srv := e.api.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"text\": \"")
	// The bound only keeps a broken server from hanging the test.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	switch {
	case err == nil:
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "invalid_json") {
			t.Errorf("slow body answered %d %s, want 400", resp.StatusCode, body)
		}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// closed without an answer: cut off too
	default:
		t.Fatalf("the server did not cut the slow body off: %v", err)
	}
	r, err := http.Post("http://"+ln.Addr().String()+"/v1/search", "application/json", strings.NewReader(`{"text": "red"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("after a slow client, a search got %d", r.StatusCode)
	}
}

// TestSearchByExample passes image and like queries to the searcher as they
// came, an image over http.max_body_bytes included.
func TestSearchByExample(t *testing.T) {
	image := strings.Repeat("A", 200<<10) // over the 64 KiB default body limit
	cases := []struct {
		name  string
		body  string
		check func(q schemas.Query) bool
	}{
		{"image", `{"image": "` + image + `", "top_k": 3}`, func(q schemas.Query) bool { return q.Image == image && q.Text == "" && q.Like == nil }},
		{"like", `{"like": {"video_id": "red", "clip_index": 2}}`, func(q schemas.Query) bool {
			return q.Like != nil && q.Like.VideoID == "red" && q.Like.ClipIndex == 2 && q.Image == "" && q.Text == ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Config{})
			w := e.do(t, call{method: "POST", path: "/v1/search", body: tc.body}, docAccepts)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %.300s", w.Code, w.Body.String())
			}
			e.search.mu.Lock()
			defer e.search.mu.Unlock()
			if len(e.search.queries) != 1 || !tc.check(e.search.queries[0]) {
				t.Errorf("the searcher got %.200v", e.search.queries)
			}
		})
	}
}
