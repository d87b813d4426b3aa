"""Regenerates reference.jsonl: the ids SimpleTokenizer.encode returns for a
set of tricky and random texts. SimpleTokenizer below is OpenAI CLIP's
simple_tokenizer.py (MIT licence) with ftfy.fix_text narrowed to the fixes
the Go package reproduces (vidx_fix: character width, curly quotes, NFC),
written out so that this script needs no ftfy. ftfy_ids.py runs the same
tokenizer with the real ftfy.

Usage: python3 gen_reference.py bpe_simple_vocab_16e6.txt.gz > reference.jsonl
Needs the `regex` module. Random characters are drawn only from code points
assigned in Python's unicodedata, so Unicode-version drift stays out.
"""
import gzip
import html
import html.entities
import json
import random
import sys
import unicodedata
from functools import lru_cache

import regex as re

@lru_cache()
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~")+1))+list(range(ord("¡"), ord("¬")+1))+list(range(ord("®"), ord("ÿ")+1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b); cs.append(2**8+n); n += 1
    cs = [chr(n) for n in cs]
    return dict(zip(bs, cs))

def get_pairs(word):
    pairs = set()
    prev_char = word[0]
    for char in word[1:]:
        pairs.add((prev_char, char)); prev_char = char
    return pairs

def vidx_fix(text):
    """ftfy.fix_text's fix_character_width, uncurl_quotes and NFC, in ftfy's
    order; the same as ftfy.fix_text with VIDX_FTFY_CONFIG (ftfy_ids.py)."""
    out = []
    for c in text:
        o = ord(c)
        if o == 0x3000:
            c = ' '
        elif 0xff01 <= o <= 0xffef:
            c = unicodedata.normalize('NFKC', c)
        if c == '\u02bc' or '\u2018' <= c <= '\u201b':
            c = "'"
        elif '\u201c' <= c <= '\u201f':
            c = '"'
        out.append(c)
    return unicodedata.normalize('NFC', ''.join(out))

def basic_clean(text, fix=vidx_fix):
    text = fix(text)
    text = html.unescape(html.unescape(text))
    return text.strip()

def whitespace_clean(text):
    text = re.sub(r'\s+', ' ', text)
    text = text.strip()
    return text

class SimpleTokenizer(object):
    def __init__(self, bpe_path, fix=vidx_fix):
        self.fix = fix
        self.byte_encoder = bytes_to_unicode()
        merges = gzip.open(bpe_path).read().decode("utf-8").split('\n')
        merges = merges[1:49152-256-2+1]
        merges = [tuple(merge.split()) for merge in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v+'</w>' for v in vocab]
        for merge in merges:
            vocab.append(''.join(merge))
        vocab.extend(['<|startoftext|>', '<|endoftext|>'])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {'<|startoftext|>': '<|startoftext|>', '<|endoftext|>': '<|endoftext|>'}
        self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + ( token[-1] + '</w>',)
        pairs = get_pairs(word)
        if not pairs:
            return token+'</w>'
        while True:
            bigram = min(pairs, key = lambda pair: self.bpe_ranks.get(pair, float('inf')))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word)-1 and word[i+1] == second:
                    new_word.append(first+second); i += 2
                else:
                    new_word.append(word[i]); i += 1
            new_word = tuple(new_word)
            word = new_word
            if len(word) == 1:
                break
            else:
                pairs = get_pairs(word)
        word = ' '.join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        bpe_tokens = []
        text = whitespace_clean(basic_clean(text, self.fix)).lower()
        for token in re.findall(self.pat, text):
            token = ''.join(self.byte_encoder[b] for b in token.encode('utf-8'))
            bpe_tokens.extend(self.encoder[bpe_token] for bpe_token in self.bpe(token).split(' '))
        return bpe_tokens

NAMES = list(html.entities.html5.keys())
ATOMS = ["a","dog","Dogs","The","running","café","naïve","東京","日本語","🙂","👍🏽","😀😀","🇺🇸","İstanbul","ΟΔΟΣ","ΣΑΣ","Σ","ς","ΑΣ.","Σa","'s","'S","'ſ","'t","'re","'Ve","'M","'LL","'d","'x","''s","don't","I'm","<|startoftext|>","<|endoftext|>","<|EndOfText|>","<|ſtartoftext|>","<|start","|>",
 "123","4.5","1,000","٣","½","Ⅻ","²","x²","\u0345","a\u0345b","\u0301","e\u0301","\x1c","\x1f","\x0b","\x85","\xa0","\u2003","\u3000","\u200b","\t","\n","\r\n","  ","\u2028",
 "&amp;","&amp","&amp;amp;","&ampx;","&lt;3","&gt","&nbsp;","&NotEqualTilde;","&CounterClockwiseContourIntegral;","&frac12","&frac12x","&#39;","&#x27;","&#X41","&#65","&#0;","&#1;","&#13;","&#128;","&#x9f;","&#xd800;","&#1114112;","&#99999999999999999;","&#xFFFE;","&#x;","&#;","&#","&","&&","&#9","&#x41","&foo;","&amp-x","&AMP;","&Amp;","&aMp","&copy","&copy;2024","&#x1F600;","&eacute;","&Eacute","&notit;","&notin;",
 "!","?!","...","--","(a)","[b]","{c}","@home","#tag","$5","%","^","*","_","=","+","~","`","\"quote\"","'","\\","/","|","<",">",
 "hello","World","HELLO","cAmElCaSe","ABCabc","straße","ǅ","ﬁ","Ǆ","ΐ","K","Å","Ω","ẞ","ŉ","ǰ",
 "Cafe\u0301","CAFE\u0301","nai\u0308ve","A\u030angstro\u0308m","n\u0303","\u1e9b\u0323","q\u0307\u0323","e\u0301\u0301","\u0301abc",
 "a\u0300\u0316","\u0627\u0653","\u1100\u1161\u11a8","\u3099","\u304b\u3099","\u212b","\u2126","\u0344",
 "&eacute;","e&#x301;","&#101;&#769;","Caf&#xE9;","&Aring;ngstr&ouml;m","&#xFF21;","&amp;eacute;","&#x2019;s","&ldquo;hi&rdquo;",
 "ＡＢＣ","ｄｏｇ","Ｈｅｌｌｏ，　ｗｏｒｌｄ！","１２３","ｶﾀｶﾅ","ﾀﾞﾝｽ","ﾟ","￥","￦","｟","￨","\uffe3","\uff5f",
 "don’t","I’m","‘quoted’","“a dog”","„low“","ʼn","‛x‟",
 "привет","Привет","مرحبا","שלום","नमस्ते","ภาษาไทย","한국어","ｆｕｌｌｗｉｄｔｈ","Ｆ","①","⑩","Ⓐ","ⓐ","∑","∞","→","€","£","¥","©","®","™","°","±","×","÷","µ","¿","¡","«»","“”","‘’","…","•","—","–",
]


def rchar():
    while True:
        c = chr(random.choice([random.randint(0x20, 0x7e), random.randint(0xa0, 0x2fff),
                               random.randint(0x3000, 0xd7ff), random.randint(0xe000, 0x10ffff),
                               random.randint(0, 0x1f), random.randint(0x1f300, 0x1faff)]))
        if unicodedata.category(c) != 'Cn':
            return c


def rnd():
    parts = []
    for _ in range(random.randint(0, 12)):
        r = random.random()
        if r < 0.55:
            parts.append(random.choice(ATOMS))
        elif r < 0.65:
            parts.append('&' + random.choice(NAMES))
        elif r < 0.75:
            parts.append(''.join(rchar() for _ in range(random.randint(1, 4))))
        else:
            parts.append(''.join(random.choice('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')
                                 for _ in range(random.randint(1, 12))))
    sep = random.choice([' ', '', ' ', '  ', '\t', random.choice(['\u3000', '\x0b', '\x1c', ' \n '])])
    return sep.join(parts) if random.random() < 0.9 else sep + sep.join(parts) + sep


if __name__ == '__main__':
    tok = SimpleTokenizer(sys.argv[1])
    random.seed(7)
    cases = ["", " ", "a " * 100, "\U0001f642" * 50, "&amp;" * 40] + ATOMS
    cases += [rnd() for _ in range(400)]
    seen = set()
    for text in cases:
        if text not in seen:
            seen.add(text)
            print(json.dumps({"text": text, "ids": tok.encode(text)}, ensure_ascii=True))
