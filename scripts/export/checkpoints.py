"""Reading (and, for tests, writing) CLIP checkpoints in three layouts:

- openai: OpenAI's state dict names, as a TorchScript archive (what OpenAI
  distributes) or a plain torch.save'd state dict;
- hf: a Hugging Face CLIPModel directory (config.json plus pytorch_model.bin
  or model.safetensors, possibly sharded);
- clip4clip: a CLIP4Clip or CLIP2TV training checkpoint: the CLIP weights
  under "clip." plus the seqTransf head.

Every loader returns a Checkpoint whose clip_sd is in OpenAI's layout.
"""

from dataclasses import dataclass, field
import json
import os
import pickle
import struct

import numpy as np
import torch


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not hold what its format
    promises. The message names the file."""


@dataclass
class Checkpoint:
    path: str
    clip_sd: dict
    temporal_sd: dict = None
    # Architecture facts a state dict cannot carry (Hugging Face's
    # config.json): passed to CLIPConfig as overrides.
    overrides: dict = field(default_factory=dict)
    # Preprocessing from preprocessor_config.json, when the checkpoint has one.
    mean: list = None
    std: list = None
    # Where tokenizer files may sit next to the weights (Hugging Face repos).
    tokenizer_dir: str = None
    # The checkpoint as stored, for references that must not go through
    # the layout conversion under test.
    raw_sd: dict = None
    hf_config: dict = None
    notes: list = field(default_factory=list)


# --- generic reading -------------------------------------------------------

def torch_load(path, trust=False):
    """torch.load restricted to tensors and containers unless trust is set,
    since a pickle can run arbitrary code."""
    try:
        if trust:
            return torch.load(path, map_location="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except pickle.UnpicklingError as e:
        if not trust and "weights only" in str(e).lower():
            raise CheckpointError(
                f"{path}: the checkpoint pickles objects other than tensors; if you trust its origin, "
                f"pass --trust-checkpoint to load it with full pickle ({str(e).splitlines()[-1]})") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {e}") from None
    except Exception as e:  # torch raises anything from EOFError to IndexError on foreign bytes
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {type(e).__name__}: {e}") from None


def unwrap(obj, path):
    """The state dict inside common training-checkpoint wrappers, with a
    DataParallel "module." prefix removed."""
    if isinstance(obj, torch.nn.Module):  # a TorchScript archive or a pickled model
        obj = obj.state_dict()
    for key in ("state_dict", "model", "module", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: holds {type(obj).__name__}, want a state dict of tensors")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    if not sd:
        raise CheckpointError(f"{path}: no tensors in the state dict")
    return sd


SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path):
    """Reads a .safetensors file (8-byte little-endian header length, JSON
    header, raw little-endian tensors) without the safetensors package."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: {e}") from e
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise CheckpointError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise CheckpointError(f"{path}: header is not JSON: {e}") from e
    body = memoryview(data)[8 + n:]
    sd = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype, shape = info["dtype"], info["shape"]
        raw = body[begin:end]
        if dtype == "BF16":
            # bfloat16 is the top half of a float32.
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dtype in SAFETENSORS_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(SAFETENSORS_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise CheckpointError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        expect = int(np.prod(shape)) if shape else 1
        if arr.size != expect:
            raise CheckpointError(f"{path}: tensor {name}: {arr.size} values for shape {shape}")
        sd[name] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(shape))
    return sd


def write_safetensors(path, sd):
    header, chunks, offset = {}, [], 0
    for name, t in sd.items():
        arr = t.detach().cpu().contiguous().numpy()
        code = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}[arr.dtype]
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


# --- OpenAI -----------------------------------------------------------------

def load_openai(path, trust=False):
    """OpenAI's TorchScript archive (clip.load's first choice) or a state dict."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        sd = torch.jit.load(path, map_location="cpu").state_dict()
        note = "TorchScript archive"
    except RuntimeError:
        sd = unwrap(torch_load(path, trust), path)
        note = "state dict"
    sd = dict(sd)
    check_openai(sd, path)
    return Checkpoint(path=path, clip_sd=sd, raw_sd=sd, notes=[f"read {path} as an OpenAI {note}"])


def check_openai(sd, path):
    if "visual.proj" not in sd or "text_projection" not in sd:
        hint = ""
        if any(k.startswith("clip.") for k in sd):
            hint = " (keys start with clip.: use --format clip4clip)"
        elif any(k.startswith("vision_model.") for k in sd):
            hint = " (Hugging Face names: use --format hf)"
        raise CheckpointError(f"{path}: not an OpenAI CLIP state dict: visual.proj or text_projection is missing{hint}")


# --- Hugging Face -------------------------------------------------------------

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def load_hf(path, trust=False):
    """A CLIPModel directory, or one of its weight files (config.json is then
    looked for beside it)."""
    if os.path.isdir(path):
        directory = path
        weights = next((os.path.join(path, f) for f in HF_INDEX_FILES + HF_WEIGHT_FILES
                        if os.path.isfile(os.path.join(path, f))), None)
        if weights is None:
            raise CheckpointError(f"{path}: no {' or '.join(HF_WEIGHT_FILES)} (or sharded index) in the directory")
    elif os.path.isfile(path):
        directory, weights = os.path.dirname(path) or ".", path
    else:
        raise CheckpointError(f"{path}: no such file or directory")

    raw = read_hf_weights(weights, trust)
    config_path = os.path.join(directory, "config.json")
    config = {}
    notes = [f"read {weights} as a Hugging Face CLIPModel"]
    if os.path.isfile(config_path):
        try:
            with open(config_path) as f:
                config = json.load(f)
        except ValueError as e:
            raise CheckpointError(f"{config_path}: not JSON: {e}") from e
    else:
        notes.append(f"no config.json beside {weights}: assuming quick_gelu, layer_norm_eps 1e-5, heads = width/64")
    try:
        sd = hf_to_openai(raw)
    except KeyError as e:
        hint = ""
        if "visual.proj" in raw:
            hint = " (OpenAI names: use --format openai)"
        elif any(k.startswith("clip.") for k in raw):
            hint = " (keys start with clip.: use --format clip4clip)"
        raise CheckpointError(f"{weights}: not a Hugging Face CLIPModel state dict: "
                              f"{e.args[0]} is missing{hint}") from None
    ck = Checkpoint(path=path, clip_sd=sd, raw_sd=raw, hf_config=config, tokenizer_dir=directory, notes=notes)
    ck.overrides = hf_overrides(config, config_path)
    pre = os.path.join(directory, "preprocessor_config.json")
    if os.path.isfile(pre):
        with open(pre) as f:
            pc = json.load(f)
        ck.mean, ck.std = pc.get("image_mean"), pc.get("image_std")
    return ck


def read_hf_weights(path, trust):
    if path.endswith(".index.json"):
        with open(path) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        sd = {}
        for shard in shards:
            sd.update(read_hf_weights(os.path.join(os.path.dirname(path), shard), trust))
        return sd
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    return unwrap(torch_load(path, trust), path)


def hf_sub_config(config, name):
    return config.get(name) or config.get(name + "_dict") or {}


def hf_overrides(config, path):
    text, vision = hf_sub_config(config, "text_config"), hf_sub_config(config, "vision_config")
    out = {}
    # transformers' CLIPTextConfig/CLIPVisionConfig default to quick_gelu.
    out["text_act"] = text.get("hidden_act", "quick_gelu")
    out["vision_act"] = vision.get("hidden_act", "quick_gelu")
    eps = {text.get("layer_norm_eps", 1e-5), vision.get("layer_norm_eps", 1e-5)}
    if len(eps) > 1:
        raise CheckpointError(f"{path}: text and vision layer_norm_eps differ ({sorted(eps)}); not supported")
    out["layer_norm_eps"] = eps.pop()
    if "num_attention_heads" in text:
        out["transformer_heads"] = text["num_attention_heads"]
    if "num_attention_heads" in vision:
        out["vision_heads"] = vision["num_attention_heads"]
    return out


# (Hugging Face block suffix, OpenAI block suffix); q/k/v are handled apart.
HF_BLOCK = [
    ("self_attn.out_proj.weight", "attn.out_proj.weight"),
    ("self_attn.out_proj.bias", "attn.out_proj.bias"),
    ("layer_norm1.weight", "ln_1.weight"),
    ("layer_norm1.bias", "ln_1.bias"),
    ("layer_norm2.weight", "ln_2.weight"),
    ("layer_norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.c_fc.weight"),
    ("mlp.fc1.bias", "mlp.c_fc.bias"),
    ("mlp.fc2.weight", "mlp.c_proj.weight"),
    ("mlp.fc2.bias", "mlp.c_proj.bias"),
]

HF_PLAIN = [
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm.weight", "ln_final.weight"),
    ("text_model.final_layer_norm.bias", "ln_final.bias"),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
    ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),  # sic: Hugging Face's spelling
    ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
    ("vision_model.post_layernorm.weight", "visual.ln_post.weight"),
    ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
    ("logit_scale", "logit_scale"),
]

HF_TOWERS = [("text_model.encoder.layers.", "transformer.resblocks."),
             ("vision_model.encoder.layers.", "visual.transformer.resblocks.")]


def hf_to_openai(hf):
    """Renames a Hugging Face CLIPModel state dict to OpenAI's layout. Raises
    KeyError naming the first missing tensor."""
    sd = {}
    for h, o in HF_PLAIN:
        sd[o] = hf[h]
    # Hugging Face projections are bias-free Linear layers: weight [D, W];
    # OpenAI multiplies x @ proj with proj [W, D].
    sd["text_projection"] = hf["text_projection.weight"].t().contiguous()
    sd["visual.proj"] = hf["visual_projection.weight"].t().contiguous()
    for hp, op in HF_TOWERS:
        n = len({k[len(hp):].split(".", 1)[0] for k in hf if k.startswith(hp)})
        for i in range(n):
            h, o = f"{hp}{i}.", f"{op}{i}."
            for hs, os_ in HF_BLOCK:
                sd[o + os_] = hf[h + hs]
            # MultiheadAttention packs q, k, v row-wise in that order.
            sd[o + "attn.in_proj_weight"] = torch.cat([hf[h + f"self_attn.{p}_proj.weight"] for p in "qkv"])
            sd[o + "attn.in_proj_bias"] = torch.cat([hf[h + f"self_attn.{p}_proj.bias"] for p in "qkv"])
    return sd


def openai_to_hf(sd):
    """The inverse of hf_to_openai, plus the position_ids buffers that older
    transformers versions save; used to write Hugging Face test checkpoints."""
    hf = {}
    for h, o in HF_PLAIN:
        hf[h] = sd[o]
    hf["text_projection.weight"] = sd["text_projection"].t().contiguous()
    hf["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    for hp, op in HF_TOWERS:
        n = len({k[len(op):].split(".", 1)[0] for k in sd if k.startswith(op)})
        for i in range(n):
            h, o = f"{hp}{i}.", f"{op}{i}."
            for hs, os_ in HF_BLOCK:
                hf[h + hs] = sd[o + os_]
            for part, name in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
                q, k, v = sd[o + "attn." + name].chunk(3)
                for p, t in zip("qkv", (q, k, v)):
                    hf[h + f"self_attn.{p}_proj.{part}"] = t.contiguous()
    hf["text_model.embeddings.position_ids"] = torch.arange(sd["positional_embedding"].shape[0]).unsqueeze(0)
    hf["vision_model.embeddings.position_ids"] = torch.arange(sd["visual.positional_embedding"].shape[0]).unsqueeze(0)
    return hf


def hf_config(cfg, hidden_act="quick_gelu"):
    """A config.json for a CLIPModel of the given architecture."""
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "hidden_size": cfg.transformer_width,
            "intermediate_size": 4 * cfg.transformer_width,
            "num_attention_heads": cfg.transformer_heads,
            "num_hidden_layers": cfg.transformer_layers,
            "max_position_embeddings": cfg.context_length,
            "vocab_size": cfg.vocab_size,
            "hidden_act": hidden_act,
            "layer_norm_eps": cfg.layer_norm_eps,
            "projection_dim": cfg.embed_dim,
            # As in openai/clip-vit-base-patch32's config.json: eos_token_id
            # 2 selects transformers' legacy pooling at argmax(input_ids),
            # which holds for any vocabulary whose end token has the
            # largest id, including the small ones tests train.
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        "vision_config": {
            "hidden_size": cfg.vision_width,
            "intermediate_size": 4 * cfg.vision_width,
            "num_attention_heads": cfg.vision_heads,
            "num_hidden_layers": cfg.vision_layers,
            "image_size": cfg.image_resolution,
            "patch_size": cfg.vision_patch_size,
            "hidden_act": hidden_act,
            "layer_norm_eps": cfg.layer_norm_eps,
            "projection_dim": cfg.embed_dim,
        },
    }


# --- CLIP4Clip / CLIP2TV --------------------------------------------------------

TEMPORAL_PREFIXES = ("frame_position_embeddings.", "transformerClip.")


def load_clip4clip(path, trust=False, temporal=True):
    """CLIP4Clip (and CLIP2TV) checkpoints: "clip." holds an OpenAI-layout
    CLIP; frame_position_embeddings and transformerClip the seqTransf head."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    sd = unwrap(torch_load(path, trust), path)
    clip = {k[len("clip."):]: v for k, v in sd.items() if k.startswith("clip.")}
    if not clip:
        raise CheckpointError(f"{path}: no clip.* weights; not a CLIP4Clip/CLIP2TV checkpoint")
    check_openai(clip, path + " (clip.*)")
    if "visual.conv2.weight" in clip:
        raise CheckpointError(f"{path}: trained with linear_patch 3d (clip.visual.conv2); "
                              "vidx encodes frames one by one and supports the 2d patch embedding only")
    if any(k.startswith("cross.") for k in sd):
        raise CheckpointError(f"{path}: a tightTransf checkpoint (cross.*) scores text and video jointly "
                              "and has no per-video embedding to export")
    ck = Checkpoint(path=path, clip_sd=clip, raw_sd=sd, notes=[f"read {path} as a CLIP4Clip/CLIP2TV checkpoint"])
    head = {k: v for k, v in sd.items() if k.startswith(TEMPORAL_PREFIXES)}
    if any(k.startswith("lstm_visual.") for k in sd) and temporal:
        raise CheckpointError(f"{path}: a seqLSTM checkpoint; only seqTransf heads are exported "
                              "(pass --no-temporal to export its CLIP weights for meanP pooling)")
    if head and temporal:
        ck.temporal_sd = head
        ck.notes.append(f"seqTransf head: {len(head)} tensors")
    elif head:
        ck.notes.append("seqTransf head present but not exported (--no-temporal): pooling is meanP")
    else:
        ck.notes.append("no seqTransf head (a meanP checkpoint): the bundle has no temporal model")
    return ck


def load(fmt, path, trust=False, temporal=True):
    if fmt == "openai":
        return load_openai(path, trust)
    if fmt == "hf":
        return load_hf(path, trust)
    if fmt == "clip4clip":
        return load_clip4clip(path, trust, temporal)
    raise CheckpointError(f"unknown format {fmt!r}")


# --- writing random checkpoints --------------------------------------------------

def save_random(fmt, path, model, temporal=None, hidden_act="quick_gelu", torchscript=False, safetensors=False):
    """Writes model (and the seqTransf head for clip4clip) the way the real
    checkpoints of fmt are stored, so that the loaders are exercised on the
    same layout they meet in practice. Returns the path to pass to load."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    if fmt == "openai":
        if torchscript:
            cfg = model.cfg
            image = torch.zeros(1, 3, cfg.image_resolution, cfg.image_resolution)
            text = torch.zeros(1, cfg.context_length, dtype=torch.long)
            text[0, :3] = torch.tensor([cfg.vocab_size - 2, 1, cfg.vocab_size - 1])
            with torch.no_grad():
                traced = torch.jit.trace(model, (image, text), check_trace=False)
            traced.save(path)
        else:
            torch.save(sd, path)
        return path
    if fmt == "hf":
        os.makedirs(path, exist_ok=True)
        hf = openai_to_hf(sd)
        if safetensors:
            write_safetensors(os.path.join(path, "model.safetensors"), hf)
        else:
            torch.save(hf, os.path.join(path, "pytorch_model.bin"))
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(hf_config(model.cfg, hidden_act), f, indent=2)
        return path
    if fmt == "clip4clip":
        full = {"clip." + k: v for k, v in sd.items()}
        if temporal is not None:
            full.update({k: v.detach().clone() for k, v in temporal.state_dict().items()})
        torch.save(full, path)
        return path
    raise ValueError(f"unknown format {fmt!r}")
