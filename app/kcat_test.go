package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/internal/testenv"
	"github.com/vidx/vidx/pipeline/kafka/kafkatest"
	"github.com/vidx/vidx/schemas"
)

// kcat runs Debian's kcat (librdkafka), a Kafka client that shares no code
// with vidx's, against the app's brokers.
func kcat(ctx context.Context, t *testing.T, brokers []string, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", append([]string{"-b", strings.Join(brokers, ","), "-q"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// TestKcatInterop drives vidx with a second, independent Kafka client: kcat
// publishes a video job, a bad job and a query, and reads the query's
// result and the bad job's dead letter (headers included) back.
func TestKcatInterop(t *testing.T) {
	f := requireTools(t)
	testenv.Tools(t, "make setup-test installs Debian's kcat", "kcat")
	eachBroker(t, func(t *testing.T, b *kafkatest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		a := startAppOn(t, ctx, f, b, nil)
		brokers, topics := a.Kafka().Brokers, a.Config.Topics

		// Key and value split at the first '|'; one message per line.
		jobs := fmt.Sprintf("red|%s\nbad|{\"schema_version\": 1, \"video_id\": \"bad\"\n", job("red", f.videos["red"]))
		kcat(ctx, t, brokers, jobs, "-P", "-t", topics.Videos, "-K", "|")
		waitCount(t, ctx, a.Store(), a.Config.Store.Collection, 1)

		q, err := schemas.Encode(&schemas.Query{QueryID: "kcat-1", Text: "a red video", TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		kcat(ctx, t, brokers, "kcat-1|"+string(q)+"\n", "-P", "-t", topics.Queries, "-K", "|")

		// -c 1 waits for the one result; -f keeps key and value apart.
		line := kcat(ctx, t, brokers, "", "-C", "-t", topics.Results, "-o", "beginning", "-c", "1", "-f", "%k\t%s\n")
		key, value, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok || key != "kcat-1" {
			t.Fatalf("result %q: want key kcat-1", line)
		}
		var r schemas.Result
		if err := json.Unmarshal([]byte(value), &r); err != nil {
			t.Fatalf("result %q: %v", value, err)
		}
		if r.QueryID != "kcat-1" || len(r.Hits) == 0 || r.Hits[0].VideoID != "red" {
			t.Errorf("result %+v: want query kcat-1 with red first", r)
		}

		dl := kcat(ctx, t, brokers, "", "-C", "-t", topics.DeadLetters, "-o", "beginning", "-c", "1", "-f", "%k\t%h\n")
		key, headers, _ := strings.Cut(strings.TrimSpace(dl), "\t")
		if key != "bad" {
			t.Errorf("dead letter %q: want key bad", dl)
		}
		for _, want := range []string{schemas.HeaderStage + "=sample", schemas.HeaderErrorClass + "=poison", schemas.HeaderOriginTopic + "=" + topics.Videos} {
			if !strings.Contains(headers, want) {
				t.Errorf("dead letter headers %q lack %q", headers, want)
			}
		}
	})
}
