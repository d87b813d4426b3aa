"""Command line: export a CLIP checkpoint into a vidx model bundle.

    /usr/bin/python3 scripts/export_bundle.py --format openai|hf|clip4clip \\
        --checkpoint PATH --out DIR [--tokenizer DIR] [--name NAME]

See docs/export.md.
"""

import argparse
import hashlib
import logging
import math
import os
import re
import sys
import time

import torch

from . import checkpoints, manifest, onnx_export, reference
from .model import CLIPConfig, build_model, random_model
from .temporal import TemporalConfig, build_temporal, random_temporal

log = logging.getLogger("export")

DEFAULT_CONTEXT = {"openai": 77, "hf": 77, "clip4clip": 32}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="export_bundle.py",
        description="Export an OpenAI, Hugging Face or CLIP4Clip/CLIP2TV checkpoint into a vidx model bundle "
                    "(image.onnx, text.onnx, temporal.onnx for seqTransf heads, tokenizer files, vidx-model.yaml).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--format", required=True, choices=["openai", "hf", "clip4clip"],
                   help="checkpoint layout: openai (TorchScript archive or state dict with OpenAI names), "
                        "hf (Hugging Face CLIPModel directory or weights file), "
                        "clip4clip (CLIP4Clip/CLIP2TV training checkpoint: clip.* plus the seqTransf head)")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file (a directory for hf); with --random-init, where the random checkpoint is written")
    p.add_argument("--out", help="bundle directory to write (created if missing)")
    p.add_argument("--tokenizer",
                   help="directory with bpe_simple_vocab_16e6.txt.gz, vocab.json + merges.txt, or tokenizer.json "
                        "(default for hf: the checkpoint directory)")
    p.add_argument("--name", help="bundle name, stored with every indexed vector; "
                                  "default: the checkpoint's file name plus 8 hex digits of its SHA-256")
    p.add_argument("--context-length", type=int,
                   help="text tokens per query; default 77, or 32 for clip4clip (CLIP4Clip's max_words), "
                        "so that long queries are truncated as in training")
    p.add_argument("--max-frames", type=int, default=12, help="temporal.max_frames: frames per clip the head sees")
    p.add_argument("--no-temporal", action="store_true",
                   help="export only the CLIP towers of a clip4clip checkpoint (meanP pooling)")
    p.add_argument("--opset", type=int, default=onnx_export.DEFAULT_OPSET, help="ONNX opset, 14..17")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="let torch.load unpickle arbitrary objects (only for checkpoints from a trusted source)")
    p.add_argument("--reference", metavar="REQUEST.json",
                   help="also write torch's outputs for the inputs named in this JSON request (see reference.py)")
    p.add_argument("--fixed-text-length", action="store_true",
                   help="export the text tower with a fixed context_length sequence axis, as bundles before "
                        "text.dynamic_length did (default: dynamic, so queries run only up to their end token)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")

    r = p.add_argument_group("random initialisation (tests: build a small random checkpoint first)")
    r.add_argument("--random-init", action="store_true",
                   help="write a randomly initialised checkpoint in --format to --checkpoint, then export it")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--width", type=int, default=64, help="vision and text transformer width")
    r.add_argument("--layers", type=int, default=2, help="vision and text transformer layers")
    r.add_argument("--heads", type=int, default=0, help="attention heads (0: width/64)")
    r.add_argument("--text-width", type=int, default=0,
                   help="text transformer width (0: --width; CLIP ViT-B/32 has 768 vision, 512 text); "
                        "its heads are text-width/64 unless it equals --width")
    r.add_argument("--text-layers", type=int, default=0, help="text transformer layers (0: --layers)")
    r.add_argument("--patch-size", type=int, default=32)
    r.add_argument("--image-size", type=int, default=224)
    r.add_argument("--embed-dim", type=int, default=64)
    r.add_argument("--vocab-size", type=int, default=49408)
    r.add_argument("--temporal-layers", type=int, default=4, help="seqTransf layers (clip4clip)")
    r.add_argument("--temporal-positions", type=int, default=128,
                   help="frame_position_embeddings rows (CLIP4Clip: max_position_embeddings 128)")
    r.add_argument("--hidden-act", default="quick_gelu", help="MLP activation written to an hf config.json")
    r.add_argument("--save-as", choices=["state_dict", "torchscript", "safetensors"], default="state_dict",
                   help="storage of the random checkpoint: torchscript (openai, like OpenAI's archives) "
                        "or safetensors (hf)")
    args = p.parse_args(argv)
    if not args.out and not args.reference:
        p.error("nothing to do: give --out and/or --reference")
    if args.save_as == "torchscript" and args.format != "openai":
        p.error("--save-as torchscript applies to --format openai")
    if args.hidden_act != "quick_gelu" and args.format != "hf":
        p.error("--hidden-act applies to --format hf (OpenAI-layout checkpoints are always quick_gelu)")
    if args.save_as == "safetensors" and args.format != "hf":
        p.error("--save-as safetensors applies to --format hf")
    return args


def make_random(args):
    """Builds and saves the random checkpoint --random-init asks for."""
    heads = args.heads or max(1, args.width // 64)
    if args.format != "hf" and heads != max(1, args.width // 64):
        # OpenAI-layout checkpoints do not record head counts; loaders use
        # width // 64 as OpenAI's build_model does.
        raise SystemExit(f"--heads {heads}: {args.format} checkpoints always use width/64 heads")
    text_width = args.text_width or args.width
    text_heads = heads if text_width == args.width else max(1, text_width // 64)
    cfg = CLIPConfig(
        embed_dim=args.embed_dim, image_resolution=args.image_size, vision_layers=args.layers,
        vision_width=args.width, vision_patch_size=args.patch_size, context_length=77,
        vocab_size=args.vocab_size, transformer_width=text_width, transformer_heads=text_heads,
        transformer_layers=args.text_layers or args.layers, vision_heads=heads, vision_act=args.hidden_act, text_act=args.hidden_act)
    model = random_model(cfg, args.seed)
    temporal = None
    if args.format == "clip4clip" and args.temporal_layers > 0:
        temporal = random_temporal(TemporalConfig(width=args.embed_dim, layers=args.temporal_layers,
                                                  heads=max(1, args.embed_dim // 64),
                                                  max_positions=args.temporal_positions), args.seed + 1)
    path = checkpoints.save_random(args.format, args.checkpoint, model, temporal, hidden_act=args.hidden_act,
                                   torchscript=args.save_as == "torchscript",
                                   safetensors=args.save_as == "safetensors")
    log.info("wrote a random %s checkpoint to %s", args.format, path)


def default_name(path):
    """<file name>-<8 hex of SHA-256>: two fine-tunes saved under the same
    file name (pytorch_model.bin.4) must not share a name, because the name
    keys the vectors they index."""
    target = path
    if os.path.isdir(path):
        target = next((os.path.join(path, f) for f in checkpoints.HF_WEIGHT_FILES + checkpoints.HF_INDEX_FILES
                       if os.path.isfile(os.path.join(path, f))), None)
    stem = os.path.basename(os.path.normpath(path))
    stem = re.sub(r"(\.safetensors|\.bin|\.pt|\.pth)(\.\d+)?$", "", stem) or "clip"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    h = hashlib.sha256()
    with open(target, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{stem}-{h.hexdigest()[:8]}"


def export(args, ckpt, model, temporal):
    out = args.out
    os.makedirs(out, exist_ok=True)
    cfg = model.cfg
    tok_dir = args.tokenizer or ckpt.tokenizer_dir
    if not tok_dir:
        raise SystemExit("--tokenizer DIR is required (the directory with the CLIP tokenizer files)")
    tok = manifest.find_tokenizer(tok_dir, prefer_hf=args.format == "hf")
    if tok.max_id >= cfg.vocab_size:
        raise SystemExit(f"tokenizer in {tok_dir} has ids up to {tok.max_id}, but the checkpoint's token_embedding "
                         f"has only {cfg.vocab_size} rows: wrong tokenizer for this model")

    # The manifest goes last: until it exists the directory is not a bundle,
    # so an interrupted export cannot be loaded half-written.
    stale = os.path.join(out, manifest.MANIFEST)
    if os.path.exists(stale):
        os.remove(stale)
    t0 = time.monotonic()
    onnx_export.export_image(model, os.path.join(out, "image.onnx"), args.opset)
    onnx_export.export_text(model, os.path.join(out, "text.onnx"), args.opset,
                            dynamic_length=not args.fixed_text_length)
    max_frames = None
    if temporal is not None:
        max_frames = min(args.max_frames, temporal.cfg.max_positions)
        onnx_export.export_temporal(temporal, os.path.join(out, "temporal.onnx"), max_frames, args.opset)
    elif os.path.exists(os.path.join(out, "temporal.onnx")):
        os.remove(os.path.join(out, "temporal.onnx"))
    log.info("exported ONNX (opset %d) in %.1fs", args.opset, time.monotonic() - t0)

    spec = manifest.copy_tokenizer(tok, out)
    logit_scale = math.exp(min(float(ckpt.clip_sd["logit_scale"]), math.log(100)))
    name = args.name or default_name(args.checkpoint)
    path = manifest.write_manifest(
        out, name=name, embed_dim=cfg.embed_dim, logit_scale=logit_scale, image_size=cfg.image_resolution,
        context_length=cfg.context_length, tokenizer=spec, mean=ckpt.mean, std=ckpt.std,
        temporal_max_frames=max_frames, dynamic_length=not args.fixed_text_length, source=f"{args.format} checkpoint {os.path.basename(os.path.normpath(args.checkpoint))}")
    log.info("bundle %s: %s (embedding_dim %d, image %d, context %d, %s)", name, path, cfg.embed_dim,
             cfg.image_resolution, cfg.context_length,
             f"seqTransf {temporal.cfg.layers} layers, max_frames {max_frames}" if temporal is not None else "no temporal model")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="export: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.random_init:
            make_random(args)
        ckpt = checkpoints.load(args.format, args.checkpoint, args.trust_checkpoint, temporal=not args.no_temporal)
        for note in ckpt.notes:
            log.info("%s", note)
        context = args.context_length or DEFAULT_CONTEXT[args.format]
        model = build_model(ckpt.clip_sd, context_length=context, **ckpt.overrides)
        c = model.cfg
        log.info("CLIP ViT: image %d, patch %d, vision %dx%d (%d heads, %s), text %dx%d (%d heads, %s), "
                 "vocab %d, context %d, embedding_dim %d", c.image_resolution, c.vision_patch_size, c.vision_layers,
                 c.vision_width, c.vision_heads, c.vision_act, c.transformer_layers, c.transformer_width,
                 c.transformer_heads, c.text_act, c.vocab_size, c.context_length, c.embed_dim)
        temporal = build_temporal(ckpt.temporal_sd) if ckpt.temporal_sd else None
        if temporal is not None and temporal.cfg.width != c.embed_dim:
            raise ValueError(f"seqTransf width {temporal.cfg.width} differs from embedding_dim {c.embed_dim}")
        if args.out:
            export(args, ckpt, model, temporal)
        if args.reference:
            dest = reference.run_request(args.reference, model, ckpt, temporal)
            log.info("reference outputs: %s", dest)
    except (checkpoints.CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"export: {args.checkpoint}: tensor {e.args[0]} is missing from the checkpoint", file=sys.stderr)
        return 1
    return 0
