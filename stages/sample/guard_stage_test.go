package sample

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/media/mediatest"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sourceguard"
)

func startTestBroker(t *testing.T) kafka.Config {
	t.Helper()
	b, err := embedded.StartBroker(embedded.BrokerConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return kafka.Config{Brokers: b.Addrs(), Partitions: 2}
}

// runTestStage runs a stage until the test ends.
func runTestStage(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stage: %v", err)
		}
	})
}

// TestJobsRefusedAreDeadLettered sends video jobs that try to make vidx
// read local files or internal addresses, directly or through playlists
// and redirects, and checks each is dead-lettered with the reason while
// legitimate jobs are sampled.
func TestJobsRefusedAreDeadLettered(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	t.Parallel()
	dir := t.TempDir()
	root := filepath.Join(dir, "videos")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	good := mediatest.MakeVideo(t, root, "good.mp4", "testsrc=size=96x64:rate=10:duration=2")
	outside := mediatest.MakeVideo(t, dir, "private.mp4", "testsrc=size=96x64:rate=10:duration=2")
	fix := mediatest.HLSSegments(t)

	var playlistFetches atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/good.mp4", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, good) })
	mux.HandleFunc("/poisoned.m3u8", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
	})
	mux.HandleFunc("/redirect.mp4", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	// Only ffmpeg is redirected: the check before it starts sees a video.
	mux.HandleFunc("/sly-redirect.mp4", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.UserAgent(), "Lavf") {
			http.Redirect(w, r, "http://metadata.test/latest/meta-data/", http.StatusFound)
			return
		}
		http.ServeFile(w, r, good)
	})
	// The playlist turns bad after the first fetch.
	mux.HandleFunc("/switch.m3u8", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		if playlistFetches.Add(1) > 1 {
			fmt.Fprint(w, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
			return
		}
		fmt.Fprintf(w, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n/seg/%s\n#EXT-X-ENDLIST\n", fix.Segments[0])
	})
	mux.Handle("/fixture/", http.StripPrefix("/fixture/", http.FileServer(http.Dir(fix.Dir))))
	mux.HandleFunc("/seg/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(fix.Dir, filepath.Base(r.URL.Path)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// HTTPS goes through the proxy as a tunnel (CONNECT), its content out
	// of sight: the checks before ffmpeg starts read the playlist.
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()

	g := mediatest.LoopbackGuard(t, sourceguard.SourcePolicy{FileRoots: []string{root}, IOTimeout: 5 * time.Second,
		Resolver: mediatest.Resolver{"metadata.test": {"169.254.169.254"}}})
	handler, err := NewStage(StageConfig{Options: media.Options{Guard: g, Logger: testLog(t)}, OutputTopic: "clips"})
	if err != nil {
		t.Fatal(err)
	}
	kc := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, kc, "videos", "clips", "dead-letters"); err != nil {
		t.Fatal(err)
	}
	st, err := kafka.NewStage(kafka.StageConfig{Name: "sample", Topics: []string{"videos"}}, kc, handler, testLog(t), kafka.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	runTestStage(t, st.Run)

	bad := []struct{ id, uri, reason string }{
		{"passwd", "file:///etc/passwd", "outside the allowed file roots"},
		{"outside-root", outside, "outside the allowed file roots"},
		{"traversal", filepath.Join(root, "..", "private.mp4"), "outside the allowed file roots"},
		{"metadata", "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"metadata-by-name", "http://metadata.test/latest/meta-data/", "resolves to no allowed address"},
		{"file-segments", srv.URL + "/poisoned.m3u8", `scheme "file"`},
		{"redirect", srv.URL + "/redirect.mp4", "link-local"},
		{"redirect-for-ffmpeg", srv.URL + "/sly-redirect.mp4", "resolves to no allowed address"},
		{"playlist-turns-bad", srv.URL + "/switch.m3u8", `scheme "file"`},
		{"live-source", "rtsp://127.0.0.1:1/live", "live source"},
		{"https-file-segments", tlsSrv.URL + "/poisoned.m3u8", `scheme "file"`},
	}
	goodJobs := map[string]string{"local": good, "http": srv.URL + "/good.mp4", "https": tlsSrv.URL + "/good.mp4",
		"hls-vod": srv.URL + "/fixture/vod.m3u8"}
	var outs []pipeline.Output
	for _, b := range bad {
		v, _ := schemas.Encode(&schemas.VideoJob{VideoID: b.id, URI: b.uri})
		outs = append(outs, pipeline.Output{Topic: "videos", Key: []byte(b.id), Value: v})
	}
	for id, uri := range goodJobs {
		v, _ := schemas.Encode(&schemas.VideoJob{VideoID: id, URI: uri})
		outs = append(outs, pipeline.Output{Topic: "videos", Key: []byte(id), Value: v})
	}
	if err := kafka.Produce(ctx, kc, outs...); err != nil {
		t.Fatal(err)
	}

	dead := kafka.NewTap(kc, "dead-letters", true)
	defer dead.Close()
	got := map[string]schemas.DeadLetter{}
	for len(got) < len(bad) {
		m, err := dead.Next(ctx)
		if err != nil {
			t.Fatalf("dead letters: %d of %d: %v (have %v)", len(got), len(bad), err, keys(got))
		}
		dl, err := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
		if err != nil {
			t.Fatal(err)
		}
		got[string(m.Key)] = dl
	}
	for _, b := range bad {
		dl, ok := got[b.id]
		if !ok {
			t.Errorf("%s: not dead-lettered", b.id)
			continue
		}
		if dl.Class != "poison" || !strings.Contains(dl.Reason, b.reason) {
			t.Errorf("%s: %s dead letter %q, want poison mentioning %q", b.id, dl.Class, dl.Reason, b.reason)
		}
		t.Logf("%s -> %s", b.id, dl.Reason)
	}
	clips := kafka.NewTap(kc, "clips", true)
	defer clips.Close()
	seen := map[string]bool{}
	for len(seen) < len(goodJobs) {
		m, err := clips.Next(ctx)
		if err != nil {
			t.Fatalf("clips of the good jobs: %v (have %v)", err, seen)
		}
		seen[string(m.Key)] = true
	}
	for id := range seen {
		if _, ok := goodJobs[id]; !ok {
			t.Errorf("refused job %s produced a clip", id)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
