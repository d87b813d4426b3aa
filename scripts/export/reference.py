"""Reference outputs computed in torch, for comparing an exported bundle
against the implementation its checkpoint was trained with.

The Hugging Face and CLIP4Clip references are written independently of the
exported modules: hf_forward follows transformers' CLIPModel on the
checkpoint's own tensor names (separate q/k/v, scaled queries), and
Clip4ClipSeqTransf is CLIP4Clip's seqTransf code path (tuple-passing blocks,
repeat_interleave'd 3-D mask, _mean_pooling_for_similarity_visual). A
renaming or packing mistake in the export therefore shows up as a
difference instead of being reproduced on both sides.
"""

from collections import OrderedDict
import json
import os

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .model import activation


# --- Hugging Face CLIPModel ---------------------------------------------------

def hf_forward(sd, config, pixel_values=None, input_ids=None):
    text_cfg = config.get("text_config") or config.get("text_config_dict") or {}
    vision_cfg = config.get("vision_config") or config.get("vision_config_dict") or {}
    out = {}
    if pixel_values is not None:
        out["image_embeds"] = _hf_vision(sd, vision_cfg, pixel_values)
    if input_ids is not None:
        out["text_embeds"] = _hf_text(sd, text_cfg, input_ids)
    return out


def _hf_encoder(sd, prefix, cfg, x, mask):
    width = x.shape[-1]
    heads = cfg.get("num_attention_heads", max(1, width // 64))
    head_dim = width // heads
    eps = cfg.get("layer_norm_eps", 1e-5)
    act = activation(cfg.get("hidden_act", "quick_gelu"))
    n_layers = len({k[len(prefix):].split(".", 1)[0] for k in sd if k.startswith(prefix)})
    b, length, _ = x.shape

    def lin(name, h):
        return F.linear(h, sd[name + ".weight"].float(), sd[name + ".bias"].float())

    def ln(name, h):
        return F.layer_norm(h, (width,), sd[name + ".weight"].float(), sd[name + ".bias"].float(), eps)

    for i in range(n_layers):
        p = f"{prefix}{i}."
        residual = x
        h = ln(p + "layer_norm1", x)
        q = lin(p + "self_attn.q_proj", h) * head_dim ** -0.5
        k = lin(p + "self_attn.k_proj", h)
        v = lin(p + "self_attn.v_proj", h)
        q, k, v = (t.view(b, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        attn = scores.softmax(dim=-1) @ v
        attn = attn.transpose(1, 2).reshape(b, length, width)
        x = residual + lin(p + "self_attn.out_proj", attn)
        residual = x
        h = ln(p + "layer_norm2", x)
        x = residual + lin(p + "mlp.fc2", act(lin(p + "mlp.fc1", h)))
    return x, eps


def _hf_vision(sd, cfg, pixel_values):
    pre = "vision_model."
    patch = sd[pre + "embeddings.patch_embedding.weight"].float()
    x = F.conv2d(pixel_values, patch, stride=patch.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = sd[pre + "embeddings.class_embedding"].float().expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd[pre + "embeddings.position_embedding.weight"].float()
    width = x.shape[-1]
    eps = cfg.get("layer_norm_eps", 1e-5)
    x = F.layer_norm(x, (width,), sd[pre + "pre_layrnorm.weight"].float(), sd[pre + "pre_layrnorm.bias"].float(), eps)
    x, eps = _hf_encoder(sd, pre + "encoder.layers.", cfg, x, None)
    pooled = F.layer_norm(x[:, 0], (width,), sd[pre + "post_layernorm.weight"].float(),
                          sd[pre + "post_layernorm.bias"].float(), eps)
    return pooled @ sd["visual_projection.weight"].float().t()


def _hf_text(sd, cfg, input_ids):
    pre = "text_model."
    length = input_ids.shape[1]
    x = sd[pre + "embeddings.token_embedding.weight"].float()[input_ids]
    x = x + sd[pre + "embeddings.position_embedding.weight"].float()[:length]
    causal = torch.full((length, length), torch.finfo(torch.float32).min).triu(1)
    x, eps = _hf_encoder(sd, pre + "encoder.layers.", cfg, x, causal)
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), sd[pre + "final_layer_norm.weight"].float(),
                     sd[pre + "final_layer_norm.bias"].float(), eps)
    eos = cfg.get("eos_token_id", 2)
    if eos == 2:  # transformers' legacy rule: the largest id ends the text
        idx = input_ids.argmax(dim=-1)
    else:
        idx = (input_ids == eos).int().argmax(dim=-1)
    pooled = x[torch.arange(x.shape[0]), idx]
    return pooled @ sd["text_projection.weight"].float().t()


# --- CLIP4Clip seqTransf --------------------------------------------------------

class _LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.type(torch.float32)).type(x.dtype)


class _QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """modules/module_cross.py ResidualAttentionBlock."""

    def __init__(self, d_model, n_head):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = _LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", _QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = _LayerNorm(d_model)
        self.n_head = n_head

    def attention(self, x, attn_mask):
        attn_mask_ = attn_mask.repeat_interleave(self.n_head, dim=0)
        return self.attn(x, x, x, need_weights=False, attn_mask=attn_mask_)[0]

    def forward(self, para_tuple):
        x, attn_mask = para_tuple
        x = x + self.attention(self.ln_1(x), attn_mask)
        x = x + self.mlp(self.ln_2(x))
        return (x, attn_mask)


class _TransformerClip(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])

    def forward(self, x, attn_mask):
        return self.resblocks((x, attn_mask))[0]


class Clip4ClipSeqTransf(nn.Module):
    def __init__(self, sd):
        super().__init__()
        positions, width = sd["frame_position_embeddings.weight"].shape
        layers = len({k.split(".")[2] for k in sd if k.startswith("transformerClip.resblocks.")})
        self.frame_position_embeddings = nn.Embedding(positions, width)
        self.transformerClip = _TransformerClip(width, layers, width // 64 or 1)
        self.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        self.eval()

    def forward(self, visual_output, video_mask):
        # CLIP4CLIP._loose_similarity, sim_header == "seqTransf", eval mode.
        visual_output_original = visual_output
        seq_length = visual_output.size(1)
        position_ids = torch.arange(seq_length, dtype=torch.long, device=visual_output.device)
        position_ids = position_ids.unsqueeze(0).expand(visual_output.size(0), -1)
        frame_position_embeddings = self.frame_position_embeddings(position_ids)
        visual_output = visual_output + frame_position_embeddings

        extended_video_mask = (1.0 - video_mask.unsqueeze(1)) * -1000000.0
        extended_video_mask = extended_video_mask.expand(-1, video_mask.size(1), -1)
        visual_output = visual_output.permute(1, 0, 2)
        visual_output = self.transformerClip(visual_output, extended_video_mask)
        visual_output = visual_output.permute(1, 0, 2)
        visual_output = visual_output + visual_output_original

        visual_output = visual_output / visual_output.norm(dim=-1, keepdim=True)
        # _mean_pooling_for_similarity_visual
        video_mask_un = video_mask.to(dtype=torch.float).unsqueeze(-1)
        visual_output = visual_output * video_mask_un
        video_mask_un_sum = torch.sum(video_mask_un, dim=1, dtype=torch.float)
        video_mask_un_sum[video_mask_un_sum == 0.] = 1.
        video_out = torch.sum(visual_output, dim=1) / video_mask_un_sum
        return video_out / video_out.norm(dim=-1, keepdim=True)


# --- request files -----------------------------------------------------------------

def _tensor_file(base, spec, what):
    """A raw little-endian float32 file with the given shape."""
    path = os.path.join(base, spec["file"])
    shape = [int(d) for d in spec["shape"]]
    data = np.fromfile(path, dtype="<f4")
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {what} has {data.size} float32 values, shape {shape} needs {int(np.prod(shape))}")
    return torch.from_numpy(data.astype(np.float32).reshape(shape))


def run_request(path, model, ckpt, temporal):
    """Reads a JSON request, runs the reference for each input it names and
    writes the outputs as JSON to the request's "output" (default: the
    request path with .out.json).

    Request fields (all optional): images {file, shape [N,3,S,S]} (raw
    float32, already normalised), input_ids [[int]], frames {file, shape
    [B,T,D]} and frame_mask [[0/1]].
    """
    with open(path) as f:
        req = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    pixel_values = _tensor_file(base, req["images"], "images") if "images" in req else None
    input_ids = torch.tensor(req["input_ids"], dtype=torch.long) if "input_ids" in req else None
    out = {"logit_scale": float(model.logit_scale.exp().clamp(max=100))}
    with torch.no_grad():
        if ckpt.hf_config is not None:
            out.update(hf_forward(ckpt.raw_sd, ckpt.hf_config, pixel_values, input_ids))
        else:
            if pixel_values is not None:
                out["image_embeds"] = model.encode_image(pixel_values)
            if input_ids is not None:
                out["text_embeds"] = model.encode_text(input_ids)
        if "frames" in req:
            if temporal is None:
                raise ValueError(f"{path}: asks for video_embeds but the checkpoint has no seqTransf head")
            frames = _tensor_file(base, req["frames"], "frames")
            mask = torch.tensor(req["frame_mask"], dtype=torch.float32)
            out["video_embeds"] = Clip4ClipSeqTransf(ckpt.temporal_sd)(frames, mask)
    result = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    dest = os.path.join(base, req.get("output", os.path.basename(path) + ".out.json"))
    with open(dest, "w") as f:
        json.dump(result, f)
    return dest
