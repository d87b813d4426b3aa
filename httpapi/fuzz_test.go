package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vidx/vidx/httpapi"
)

// FuzzRequestBodies sends arbitrary bodies to the JSON endpoints: each gets
// a success or a JSON 4xx error, never a 5xx or a non-JSON answer, and the
// API keeps answering.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"text": "red"}`, `{"text": "red", "top_k": 3, "rerank": "none", "filters": {"video_ids": ["a"], "start_from": 1, "start_to": 0}}`,
		`{"video_id": "x", "uri": "/v/x.mp4", "segment": {"mode": "window", "window_s": -1}}`, `{"text": "\u0000"}`,
		`{"text": 1e400}`, `[]`, `null`, `{"text": "a"}{`, `{"filters": {"start_from": "x"}}`, strings.Repeat(`[`, 10000),
		`{"metadata": {"k": "v"}, "video_id": "x", "uri": "file:///etc/passwd"}`, "\xff\xfe",
	} {
		f.Add(seed)
	}
	api, err := httpapi.New(httpapi.Config{}, httpapi.Deps{Search: &fakeSearch{}, Jobs: &fakeJobs{}, Videos: fakeVideos{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v1/search", "/v1/videos"} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			api.ServeHTTP(w, req)
			switch {
			case w.Code == http.StatusOK || w.Code == http.StatusAccepted:
				continue
			case w.Code < 400 || w.Code >= 500:
				t.Fatalf("%s %q: status %d: %s", path, body, w.Code, w.Body.String())
			}
			var e httpapi.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %q: error body %q is not the JSON error shape", path, body, w.Body.String())
			}
		}
	})
}
