package tokenizer

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// cleanText reproduces the text normalisation of clip.tokenize, in its
// order: basic_clean (ftfy.fix_text, then html.unescape twice, then strip),
// whitespace_clean, then Python str.lower(). Of ftfy.fix_text it performs
// the deterministic fixes that change ordinary captions and typed queries
// (fixFtfy); docs/eval.md lists the ones it leaves out.
func cleanText(text string) string {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	text = fixFtfy(text)
	text = unescapeHTML(unescapeHTML(text))
	text = collapseSpace(text)
	return lowerPy(text)
}

// fixFtfy is the part of ftfy.fix_text (6.x, default configuration) that
// vidx reproduces, in ftfy's order: fix_character_width (full- and
// half-width forms to their standard width, U+3000 to a space),
// uncurl_quotes, then NFC normalisation. The NFC step is what makes a
// decomposed "e" + U+0301 tokenize as the precomposed "é" CLIP sees. ftfy's
// other fixes (mojibake repair, its own HTML unescaping, C1 controls,
// ligatures, control and terminal-escape removal) are heuristics or rare
// in captions and are left out; fix_line_breaks is subsumed by
// whitespace_clean.
func fixFtfy(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// Nothing to fix, and ASCII is already NFC: the common case.
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == 0x3000:
			b.WriteByte(' ')
		case r >= 0xff01 && r <= 0xffef:
			// ftfy's width map is NFKC of each character of this block.
			b.WriteString(norm.NFKC.String(string(r)))
		case r == 0x2bc || (r >= 0x2018 && r <= 0x201b):
			b.WriteByte('\'')
		case r >= 0x201c && r <= 0x201f:
			b.WriteByte('"')
		default:
			b.WriteRune(r)
		}
	}
	return norm.NFC.String(b.String())
}

// isPySpace reports whether Python's str.isspace (used by str.strip) is true
// for r. Besides Unicode White_Space it includes U+001C..U+001F.
func isPySpace(r rune) bool {
	return isWhiteSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// isWhiteSpace is the regex module's \s: the Unicode White_Space property.
func isWhiteSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || ('\t' <= r && r <= '\r')
	}
	return unicode.Is(unicode.White_Space, r)
}

// collapseSpace is basic_clean's strip() followed by whitespace_clean,
// i.e. re.sub(r'\s+', ' ', text).strip(). CLIP imports the regex module as
// re, so \s is White_Space while strip() uses str.isspace; U+001C..U+001F
// are therefore removed at the ends but kept inside the text.
func collapseSpace(s string) string {
	if isCollapsed(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	pending := false
	for _, r := range s {
		if isWhiteSpace(r) {
			pending = true
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		b.WriteRune(r)
	}
	return strings.TrimFunc(b.String(), isPySpace)
}

// isCollapsed reports whether collapseSpace would return s unchanged, the
// common case for captions and queries.
func isCollapsed(s string) bool {
	if s == "" {
		return true
	}
	prevSpace := false
	for i, r := range s {
		if isWhiteSpace(r) {
			if r != ' ' || prevSpace || i == 0 {
				return false
			}
			prevSpace = true
			continue
		}
		prevSpace = false
	}
	if prevSpace {
		return false
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return !isPySpace(first) && !isPySpace(last)
}

// lowerPy mirrors Python's str.lower(), which applies the full lowercase
// mapping: U+0130 becomes "i\u0307" and a capital sigma at the end of a word
// becomes the final form U+03C2. Go's strings.ToLower does neither.
func lowerPy(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return s
		}
		b := []byte(s)
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + ('a' - 'A')
			}
		}
		return string(b)
	}

	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i, r := range rs {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3a3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3c2)
			} else {
				b.WriteRune(0x3c3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma implements the Final_Sigma condition the way CPython does:
// preceded by a cased letter and not followed by one, skipping
// case-ignorable characters in both directions.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && isCaseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !isCased(rs[j])
}

func isCased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// isCaseIgnorable approximates the Unicode Case_Ignorable property: the
// Mn, Me, Cf, Lm and Sk categories plus the Word_Break MidLetter, MidNumLet
// and Single_Quote characters.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xb7, 0x387, 0x55f, 0x5f4, 0x2018, 0x2019, 0x2024,
		0x2027, 0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// unescapeHTML mirrors Python's html.unescape. Named references are resolved
// by html.UnescapeString, which uses the same HTML5 table (bar two entries)
// and the same longest-legacy-prefix rule; numeric references are decoded here because
// Python drops invalid code points (e.g. "&#1;" becomes "") and accepts
// "&#9" at the very end of the input, where Go differs.
func unescapeHTML(s string) string {
	i := strings.IndexByte(s, '&')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i:]
		n, repl := charRef(s)
		if n == 0 {
			b.WriteByte('&')
			s = s[1:]
		} else {
			b.WriteString(repl)
			s = s[n:]
		}
		i = strings.IndexByte(s, '&')
	}
	b.WriteString(s)
	return b.String()
}

// charRef decodes the reference at the start of s (s[0] == '&'), returning
// how many bytes it spans (0 when there is none) and its replacement.
func charRef(s string) (int, string) {
	if len(s) < 2 {
		return 0, ""
	}
	if s[1] == '#' {
		j := 2
		hex := j < len(s) && (s[j] == 'x' || s[j] == 'X')
		if hex {
			j++
		}
		start := j
		var num uint32
		for ; j < len(s); j++ {
			d, ok := digitVal(s[j], hex)
			if !ok {
				break
			}
			if num <= 0x10ffff { // saturate: anything larger is invalid anyway
				if hex {
					num = num*16 + d
				} else {
					num = num*10 + d
				}
			}
		}
		if j == start {
			return 0, ""
		}
		if j < len(s) && s[j] == ';' {
			j++
		}
		return j, numericRef(num)
	}

	// Python matches up to 32 characters outside "\t\n\f <&#;" plus an
	// optional ';'.
	j := 1
	for n := 0; j < len(s) && n < 32; n++ {
		c := s[j]
		if c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';' {
			break
		}
		_, size := utf8.DecodeRuneInString(s[j:])
		j += size
	}
	if j == 1 {
		return 0, ""
	}
	if j < len(s) && s[j] == ';' {
		j++
	}
	// Go's table lacks these two HTML5 entities.
	switch s[:j] {
	case "&nLt;":
		return j, "\u226a\u20d2"
	case "&nGt;":
		return j, "\u226b\u20d2"
	}
	return j, html.UnescapeString(s[:j])
}

func digitVal(c byte, hex bool) (uint32, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint32(c - '0'), true
	case hex && 'a' <= c && c <= 'f':
		return uint32(c-'a') + 10, true
	case hex && 'A' <= c && c <= 'F':
		return uint32(c-'A') + 10, true
	}
	return 0, false
}

// windows1252 maps the C1 range the way browsers (and Python) decode
// numeric references into it.
var windows1252 = [32]rune{
	0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
	0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
}

func numericRef(num uint32) string {
	switch {
	case num == 0:
		return "\uFFFD"
	case num == 0x0d:
		return "\r"
	case num >= 0x80 && num <= 0x9f:
		return string(windows1252[num-0x80])
	case num >= 0xd800 && num <= 0xdfff, num > 0x10ffff:
		return "\uFFFD"
	case num >= 0x1 && num <= 0x8, num == 0xb, num >= 0xe && num <= 0x1f,
		num == 0x7f, num >= 0xfdd0 && num <= 0xfdef, num&0xfffe == 0xfffe:
		return ""
	}
	return string(rune(num))
}

// Pre-tokenizer character classes. CLIP compiles its split pattern with
// re.IGNORECASE; in the Python regex module that leaves [\p{L}] and [\p{N}]
// as they are but widens the negated class [^\s\p{L}\p{N}] to exclude
// anything case-equivalent to a letter or number. A character like U+0345
// (which folds to a Greek iota but is a combining mark) therefore matches no
// alternative and is skipped like whitespace (classSkip). Go's regexp folds
// both, which is one reason this is hand-written.
const (
	classSkip = iota
	classLetter
	classNumber
	classOther
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := range t {
		switch {
		case c == ' ', '\t' <= c && c <= '\r':
			t[c] = classSkip
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			t[c] = classLetter
		case '0' <= c && c <= '9':
			t[c] = classNumber
		default:
			t[c] = classOther
		}
	}
	return t
}()

func runeClass(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	if unicode.IsLetter(r) {
		return classLetter
	}
	if unicode.IsNumber(r) {
		return classNumber
	}
	if unicode.Is(unicode.White_Space, r) {
		return classSkip
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if unicode.IsLetter(f) || unicode.IsNumber(f) {
			return classSkip
		}
	}
	return classOther
}

const (
	sotToken = "<|startoftext|>"
	eotToken = "<|endoftext|>"
)

// splitPieces calls fn for each match of CLIP's pattern
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// (case-insensitive, Python regex module semantics) in order.
func splitPieces(s string, fn func(piece string)) {
	i := 0
	for i < len(s) {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if r == '<' {
			if n := matchFold(s[i:], sotToken); n > 0 {
				fn(s[i : i+n])
				i += n
				continue
			}
			if n := matchFold(s[i:], eotToken); n > 0 {
				fn(s[i : i+n])
				i += n
				continue
			}
		}
		if r == '\'' {
			if n := contraction(s[i+1:]); n > 0 {
				fn(s[i : i+1+n])
				i += 1 + n
				continue
			}
		}
		cls := runeClass(r)
		switch cls {
		case classSkip:
			i += size
			continue
		case classNumber:
			fn(s[i : i+size])
			i += size
			continue
		}
		j := i + size
		for j < len(s) {
			r2, size2 := rune(s[j]), 1
			if r2 >= utf8.RuneSelf {
				r2, size2 = utf8.DecodeRuneInString(s[j:])
			}
			c2 := runeClass(r2)
			if c2 != cls {
				break
			}
			j += size2
		}
		fn(s[i:j])
		i = j
	}
}

// contraction returns the length of the contraction suffix ('s, 't, 're,
// 've, 'm, 'll, 'd) at the start of s, without the apostrophe, or 0.
func contraction(s string) int {
	for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
		if n := matchFold(s, c); n > 0 {
			return n
		}
	}
	return 0
}

// matchFold reports the byte length of the prefix of s that equals lit
// under simple case folding, or 0. lit is ASCII.
func matchFold(s, lit string) int {
	j := 0
	for k := 0; k < len(lit); k++ {
		if j >= len(s) {
			return 0
		}
		r, size := rune(s[j]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[j:])
		}
		if !equalFold(r, rune(lit[k])) {
			return 0
		}
		j += size
	}
	return j
}

func equalFold(r, want rune) bool {
	if r == want {
		return true
	}
	for f := unicode.SimpleFold(want); f != want; f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
}
