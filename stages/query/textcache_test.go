package query

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
)

// countingEncoder records the texts each text-tower run gets.
type countingEncoder struct {
	mapEncoder
	runs [][]string
}

func (c *countingEncoder) EncodeTexts(ctx context.Context, texts []string) ([][]float32, error) {
	c.runs = append(c.runs, append([]string(nil), texts...))
	return c.mapEncoder.EncodeTexts(ctx, texts)
}

// TestTextCache checks a text asked again skips the text tower and gets
// the same answer, a batch runs each missing text once, the least
// recently used text is evicted at capacity, and a negative size keeps
// none.
func TestTextCache(t *testing.T) {
	ctx := context.Background()
	store := sliceStore{
		{ID: "a", Vector: []float32{1, 0, 0}, Payload: sinks.Payload{VideoID: "A"}},
		{ID: "b", Vector: []float32{0, 1, 0}, Payload: sinks.Payload{VideoID: "B"}},
	}
	vecs := mapEncoder{"q": unit(0.6, 0.5), "t": unit(0.9, 0.1), "u": unit(0.1, 0.9), "w": unit(0.3, 0.3)}
	ask := func(h *Handler, texts ...string) []schemas.Result {
		t.Helper()
		var qs []schemas.Query
		for i, text := range texts {
			qs = append(qs, schemas.Query{QueryID: string(rune('a' + i)), Text: text})
		}
		res, err := h.Answer(ctx, qs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range res {
			res[i].AnsweredAt, res[i].TookMS = time.Time{}, 0
		}
		return res
	}
	newHandler := func(size int) (*Handler, *countingEncoder) {
		enc := &countingEncoder{mapEncoder: vecs}
		h, err := New(ctx, Config{Model: "m", Settings: Settings{TextCache: size, BankSize: 1}}, enc, store, nil)
		if err != nil {
			t.Fatal(err)
		}
		return h, enc
	}

	h, enc := newHandler(0) // the default size
	first := ask(h, "q")
	// Another text takes the one-row bank, so the second "q" is ranked
	// against the same text axis as the first.
	h.bank.Add("x", vecs["t"])
	h2, _ := newHandler(-1)
	h2.bank.Add("x", vecs["t"])
	if again, fresh := ask(h, "q"), ask(h2, "q"); !reflect.DeepEqual(again, fresh) {
		t.Fatalf("cached answer %+v differs from a fresh one %+v", again, fresh)
	}
	if want := [][]string{{"q"}}; !reflect.DeepEqual(enc.runs, want) {
		t.Fatalf("text-tower runs %q, want %q", enc.runs, want)
	}
	if len(first[0].Hits) == 0 {
		t.Fatal("no hits")
	}

	enc.runs = nil
	ask(h, "t", "q", "t")
	if want := [][]string{{"t"}}; !reflect.DeepEqual(enc.runs, want) {
		t.Fatalf("batch with a cached and a repeated text: runs %q, want %q", enc.runs, want)
	}

	h, enc = newHandler(2)
	for _, text := range []string{"q", "t", "u", "t", "q"} {
		ask(h, text)
	}
	if want := [][]string{{"q"}, {"t"}, {"u"}, {"q"}}; !reflect.DeepEqual(enc.runs, want) {
		t.Fatalf("cache of 2: runs %q, want %q (q evicted by u)", enc.runs, want)
	}

	h, enc = newHandler(-1)
	ask(h, "q")
	ask(h, "q")
	if len(enc.runs) != 2 {
		t.Fatalf("no cache: %d text-tower runs for 2 queries", len(enc.runs))
	}
}
