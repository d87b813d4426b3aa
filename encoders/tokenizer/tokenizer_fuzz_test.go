package tokenizer

import (
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzTokenize feeds arbitrary text (invalid UTF-8, HTML entities, control
// characters, the special tokens) to the CLIP tokenizer and checks the
// output contract the text encoder relies on: exactly contextLength ids,
// SOT first, a final EOT, every id inside the vocabulary, padding after EOT.
func FuzzTokenize(f *testing.F) {
	dir := f.TempDir()
	vocab, merges := TrainBPE([]string{"a red car", "waves on a beach", "the cat sat", "émigré café", "日本語 テキスト"})
	if err := WriteFiles(dir, vocab, merges); err != nil {
		f.Fatal(err)
	}
	tok, err := Load(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"a red car", "", "<|startoftext|><|endoftext|>", "&amp;&#x1F600;&#99999999;&", "\xff\xfe\x00",
		"ΣΑΣ ǅ İ", "don't WE'LL", "a  \t\n b", string(make([]byte, 300))} {
		f.Add(s, 77)
	}
	f.Add("x", 1)
	f.Add("x", 0)
	f.Fuzz(func(t *testing.T, text string, ctxLen int) {
		if ctxLen < 0 || ctxLen > 512 {
			ctxLen = 77
		}
		ids := tok.Tokenize(text, ctxLen, 0)
		if len(ids) != ctxLen {
			t.Fatalf("%d ids, want %d", len(ids), ctxLen)
		}
		if ctxLen == 0 {
			return
		}
		// Truncation keeps EOT in the last slot, as clip.tokenize does, so a
		// one-slot context holds only EOT.
		if ctxLen > 1 && ids[0] != int64(tok.SOT()) {
			t.Fatalf("first id %d, want SOT %d", ids[0], tok.SOT())
		}
		last := -1
		for i, id := range ids {
			if id < 0 || id >= int64(tok.VocabSize()) {
				t.Fatalf("id %d at %d outside the vocabulary of %d", id, i, tok.VocabSize())
			}
			if id == int64(tok.EOT()) {
				last = i
			}
		}
		// The text may spell <|endoftext|> itself (CLIP maps it to EOT), so
		// only the last EOT ends the sequence.
		if last < 0 {
			t.Fatalf("no EOT in %v", ids)
		}
		for i := last + 1; i < len(ids); i++ {
			if ids[i] != 0 {
				t.Fatalf("id %d after the final EOT at %d is not padding", ids[i], i)
			}
		}
		if utf8.ValidString(text) {
			for _, id := range tok.Encode(text) {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("Encode produced id %d outside the vocabulary", id)
				}
			}
		}
	})
}
