"""The non-ONNX half of a bundle: tokenizer files and vidx-model.yaml (the
format encoders/bundle reads)."""

import gzip
import json
import math
import os
import shutil

from . import onnx_export as names

MANIFEST = "vidx-model.yaml"
BPE_GZ = "bpe_simple_vocab_16e6.txt.gz"
# CLIP's tokenizer keeps this many lines of the merges file after the header
# (simple_tokenizer.py: merges[1:49152-256-2+1]).
BPE_MERGES = 49152 - 256 - 2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class TokenizerFiles:
    """One of the three tokenizer forms vidx reads, with its largest id."""

    def __init__(self, form, files, max_id):
        self.form = form  # "bpe", "vocab" or "tokenizer_json"
        self.files = files  # manifest key -> source path
        self.max_id = max_id


def find_tokenizer(directory, prefer_hf=False):
    """Picks the tokenizer files in directory. OpenAI's gzipped merges list
    comes first for OpenAI/CLIP4Clip checkpoints and vocab.json+merges.txt
    for Hugging Face ones, matching how each was distributed."""
    if not directory or not os.path.isdir(directory):
        raise FileNotFoundError(f"tokenizer directory {directory!r} does not exist")
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    found = []
    if os.path.isfile(path(BPE_GZ)):
        found.append(lambda: TokenizerFiles("bpe", {"bpe": path(BPE_GZ)}, _bpe_max_id(path(BPE_GZ))))
    if os.path.isfile(path("vocab.json")) and os.path.isfile(path("merges.txt")):
        found.append(lambda: TokenizerFiles("vocab", {"vocab": path("vocab.json"), "merges": path("merges.txt")},
                                            _vocab_max_id(path("vocab.json"))))
    if os.path.isfile(path("tokenizer.json")):
        found.append(lambda: TokenizerFiles("tokenizer_json", {"tokenizer_json": path("tokenizer.json")},
                                            _tokenizer_json_max_id(path("tokenizer.json"))))
    if not found:
        raise FileNotFoundError(f"{directory}: no tokenizer files ({BPE_GZ}, vocab.json + merges.txt, or tokenizer.json)")
    if prefer_hf:
        found = found[1:] + found[:1]
    return found[0]()


def _bpe_max_id(path):
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a gzipped BPE merges list: {e}") from None
    merges = min(len(lines) - 1, BPE_MERGES)
    # 256 byte symbols, the same with </w>, one per merge, then the two
    # special tokens.
    return 512 + merges + 1


def _vocab_max_id(path):
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{path}: want a non-empty JSON object of token -> id")
    return max(vocab.values())


def _tokenizer_json_max_id(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    ids = list((doc.get("model") or {}).get("vocab", {}).values()) + [t["id"] for t in doc.get("added_tokens", [])]
    if not ids:
        raise ValueError(f"{path}: model.vocab is empty")
    return max(ids)


def copy_tokenizer(tok, out_dir):
    """Copies the files and returns the manifest's text.tokenizer mapping."""
    spec = {}
    for key, src in tok.files.items():
        name = os.path.basename(src)
        dest = os.path.join(out_dir, name)
        if os.path.abspath(src) != os.path.abspath(dest):
            shutil.copyfile(src, dest)
        spec[key] = name
    return spec


def _q(s):
    # JSON strings are valid YAML double-quoted scalars.
    return json.dumps(s)


def _floats(xs):
    return "[" + ", ".join(repr(float(x)) for x in xs) + "]"


def write_manifest(out_dir, *, name, embed_dim, logit_scale, image_size, context_length, tokenizer,
                   mean=None, std=None, temporal_max_frames=None, source="", dynamic_length=False):
    mean = mean or CLIP_MEAN
    std = std or CLIP_STD
    if not math.isfinite(logit_scale) or logit_scale < 0:
        raise ValueError(f"logit_scale {logit_scale} is not a finite non-negative number")
    lines = [
        f"# Exported by scripts/export_bundle.py{': ' + source if source else ''}",
        f"name: {_q(name)}",
        f"embedding_dim: {embed_dim}",
        f"logit_scale: {logit_scale!r}",
        "image:",
        "  onnx: image.onnx",
        f"  input: {names.IMAGE_INPUT}",
        f"  output: {names.IMAGE_OUTPUT}",
        f"  size: {image_size}",
        f"  mean: {_floats(mean)}",
        f"  std: {_floats(std)}",
        "text:",
        "  onnx: text.onnx",
        f"  input_ids: {names.TEXT_INPUT}",
        "  # No attention_mask: the model pools at the end-of-text token (argmax",
        "  # over ids) behind a causal mask, so padding never reaches the output.",
        f"  output: {names.TEXT_OUTPUT}",
        f"  context_length: {context_length}",
    ]
    if dynamic_length:
        lines += [
            "  # The sequence axis is dynamic: vidx feeds ids only up to the",
            "  # batch's last end-of-text token, which the causal mask makes exact.",
            "  dynamic_length: true",
        ]
    lines += [
        "  pad_id: 0",
        "  tokenizer: {" + ", ".join(f"{k}: {_q(v)}" for k, v in tokenizer.items()) + "}",
    ]
    if temporal_max_frames:
        lines += [
            "temporal:",
            "  onnx: temporal.onnx",
            f"  frames: {names.TEMPORAL_FRAMES}",
            f"  mask: {names.TEMPORAL_MASK}",
            f"  output: {names.TEMPORAL_OUTPUT}",
            f"  max_frames: {temporal_max_frames}",
        ]
    path = os.path.join(out_dir, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
