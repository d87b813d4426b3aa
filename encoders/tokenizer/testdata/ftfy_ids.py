"""Prints, for each JSON string read from stdin (one per line), the ids of
OpenAI CLIP's SimpleTokenizer.encode (gen_reference.py's copy) with basic_clean
running the real ftfy.fix_text twice over: once with ftfy's default
configuration, as clip.tokenize does ("full"), and once with VIDX_FTFY_CONFIG,
the fixes the Go package reproduces ("vidx").

Usage: python3 ftfy_ids.py bpe_simple_vocab_16e6.txt.gz < texts.jsonl
Needs ftfy and regex (scripts/setup.sh --test installs both).
"""
import json
import os
import sys

import ftfy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_reference import SimpleTokenizer  # noqa: E402

# ftfy.fix_text minus the fixes vidx leaves out: what remains is
# fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates and
# NFC normalisation.
VIDX_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    fix_encoding=False,
    fix_c1_controls=False,
    fix_latin_ligatures=False,
    remove_terminal_escapes=False,
    remove_control_chars=False,
    explain=False,
)


def main():
    bpe = sys.argv[1]
    full = SimpleTokenizer(bpe, fix=ftfy.fix_text)
    vidx = SimpleTokenizer(bpe, fix=lambda t: ftfy.fix_text(t, VIDX_FTFY_CONFIG))
    for line in sys.stdin:
        if not line.strip():
            continue
        text = json.loads(line)
        print(json.dumps({"full": full.encode(text), "vidx": vidx.encode(text)}))


if __name__ == '__main__':
    main()
