package webtest

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/httpapi"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/query"
)

// TestAPIOverPipeline runs the API against the real stages: a search over
// HTTP ranks and scores exactly as the same query on the queries topic
// (same bank, same dual softmax), a job outside the file roots reads as
// failed with its dead letter's reason, media is served with ranges, and
// bad requests leave it answering.
func TestAPIOverPipeline(t *testing.T) {
	requirePipeline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := startIndexed(t, ctx)

	for _, text := range []string{"blue", "green", "red", "yellow"} {
		t.Run("search "+text, func(t *testing.T) {
			resp, err := postJSON(ctx, p.base+"/v1/search", map[string]any{"text": text, "top_k": 7})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got httpapi.SearchResponse
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d: %v", resp.StatusCode, err)
			}
			// The same text on the queries topic meets the same bank: this
			// text is left out of it either way.
			want, err := query.Ask(ctx, p.app.Kafka(), p.app.Config.Topics.Queries, p.app.Config.Topics.Results,
				schemas.Query{Text: text, TopK: 7})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Hits) != len(want.Hits) || len(got.Hits) != 7 || got.Rerank != want.Rerank || got.Model != want.Model {
				t.Fatalf("HTTP gave %d hits (%s, %s), the queries topic %d (%s, %s)", len(got.Hits), got.Rerank, got.Model, len(want.Hits), want.Rerank, want.Model)
			}
			for i, h := range got.Hits {
				w := want.Hits[i]
				if h.VideoID != w.VideoID || h.ClipIndex != w.ClipIndex || h.StartS != w.StartS ||
					math.Abs(h.Score-w.Score) > 1e-9 || math.Abs(h.Cosine-w.Cosine) > 1e-9 {
					t.Errorf("rank %d: HTTP %s/%d score %.6f cosine %.6f, queries topic %s/%d score %.6f cosine %.6f",
						i+1, h.VideoID, h.ClipIndex, h.Score, h.Cosine, w.VideoID, w.ClipIndex, w.Score, w.Cosine)
				}
			}
			if text == "blue" && (got.Hits[0].VideoID != "traffic" || got.Hits[0].StartS != 4) {
				t.Errorf("blue: first hit %+v, want traffic from 4 s", got.Hits[0])
			}
		})
	}

	t.Run("job outside the file roots fails", func(t *testing.T) {
		outside := filepath.Join(t.TempDir(), "elsewhere.mp4")
		data, err := os.ReadFile(filepath.Join(p.videos, "meadow.mp4"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(outside, data, 0o644); err != nil {
			t.Fatal(err)
		}
		resp, err := postJSON(ctx, p.base+"/v1/videos", map[string]any{"video_id": "elsewhere", "uri": outside})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
		var v httpapi.VideoResponse
		waitFor(t, ctx, "elsewhere failed", func() (bool, string) {
			code, err := getJSON(ctx, p.base+"/v1/videos/elsewhere", &v)
			return code == 200 && v.Status == httpapi.StatusFailed, strings.Join([]string{v.Status, v.Error}, " ") + " " + errString(err)
		})
		if !strings.Contains(v.Error, "outside the allowed file roots") || v.Clips != 0 {
			t.Errorf("failed video %+v, want the refusal as its error", v)
		}
	})

	t.Run("media with a range", func(t *testing.T) {
		file, err := os.ReadFile(filepath.Join(p.videos, "traffic.mp4"))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v1/videos/traffic/media", nil)
		req.Header.Set("Range", "bytes=100-199")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusPartialContent || string(body) != string(file[100:200]) || resp.Header.Get("Content-Type") != "video/mp4" {
			t.Errorf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	})

	t.Run("bad requests leave it answering", func(t *testing.T) {
		for _, body := range []any{map[string]any{"text": 1}, map[string]any{"text": "red", "top_k": 5000}, map[string]any{"txt": "red"}} {
			resp, err := postJSON(ctx, p.base+"/v1/search", body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%v: %d, want 400", body, resp.StatusCode)
			}
		}
		resp, err := postJSON(ctx, p.base+"/v1/search", map[string]any{"text": "red"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("a good search after bad ones: %d", resp.StatusCode)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
