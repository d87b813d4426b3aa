"""CLIP4Clip's seqTransf head as one module: frame embeddings in, one pooled,
L2-normalised video embedding out.

Parameter names are CLIP4Clip's (frame_position_embeddings.weight,
transformerClip.resblocks.N.*), so the head's slice of a CLIP4Clip or CLIP2TV
state dict loads with strict=True.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .model import Transformer, count_blocks, perturb_

# CLIP4Clip masks padded frames with this additive bias rather than -inf, so
# a row with no valid frame stays finite inside the softmax.
MASK_BIAS = -1000000.0


@dataclass
class TemporalConfig:
    width: int
    layers: int
    heads: int
    max_positions: int

    @classmethod
    def from_state_dict(cls, sd):
        if "frame_position_embeddings.weight" not in sd:
            raise ValueError("frame_position_embeddings.weight is missing")
        positions, width = sd["frame_position_embeddings.weight"].shape
        layers = count_blocks(sd, "transformerClip.resblocks.")
        if layers == 0:
            raise ValueError("no transformerClip.resblocks.N weights")
        block_width = sd["transformerClip.resblocks.0.ln_1.weight"].shape[0]
        if block_width != width:
            raise ValueError(f"transformerClip width {block_width} differs from frame_position_embeddings width {width}")
        # CLIP4Clip: transformer_heads = transformer_width // 64.
        return cls(width=width, layers=layers, heads=max(1, width // 64), max_positions=positions)


class SeqTransf(nn.Module):
    """The exported head. Padded frames are masked as keys, their outputs are
    left out of the mean, and their contents (whatever the caller left in
    them) never reach a valid frame's output."""

    def __init__(self, cfg: TemporalConfig):
        super().__init__()
        self.cfg = cfg
        self.frame_position_embeddings = nn.Embedding(cfg.max_positions, cfg.width)
        self.transformerClip = Transformer(cfg.width, cfg.layers, cfg.heads)

    def forward(self, frame_embeds, frame_mask):
        b, t, d = frame_embeds.shape
        x = frame_embeds + self.frame_position_embeddings.weight[:t].unsqueeze(0)
        bias = (1.0 - frame_mask.unsqueeze(1)) * MASK_BIAS  # [B, 1, T]: masks keys
        # MultiheadAttention takes a 3-D mask as [B*heads, T, T], batch-major;
        # expand+reshape is CLIP4Clip's repeat_interleave without an op that
        # older ONNX opsets lack.
        heads = self.cfg.heads
        bias = bias.unsqueeze(1).expand(b, heads, t, t).reshape(b * heads, t, t)
        x = x.permute(1, 0, 2)  # NLD -> LND
        for block in self.transformerClip.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=bias)[0]
            x = x + block.mlp(block.ln_2(x))
        x = x.permute(1, 0, 2)
        x = x + frame_embeds
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        m = frame_mask.unsqueeze(-1)
        # CLIP4Clip divides by the valid count with 0 replaced by 1; the
        # clamp keeps an all-padding row at zero instead of NaN.
        x = (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def build_temporal(sd):
    """Builds the eval-mode head from its CLIP4Clip state dict slice (keys
    without the checkpoint's outer prefix)."""
    cfg = TemporalConfig.from_state_dict(sd)
    head = SeqTransf(cfg)
    missing, unexpected = head.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"seqTransf weights do not match a {cfg.layers}-layer head of width {cfg.width}: "
                         f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    return head.eval()


def random_temporal(cfg: TemporalConfig, seed=0):
    """A random head with OpenAI-style initialisation (CLIP4Clip's own 0.02
    init makes attention nearly uniform, which would hide masking errors)."""
    torch.manual_seed(seed)
    head = SeqTransf(cfg)
    width, layers = cfg.width, cfg.layers
    with torch.no_grad():
        nn.init.normal_(head.frame_position_embeddings.weight, std=0.5)
        for block in head.transformerClip.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=2 * width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=(width ** -0.5) * ((2 * layers) ** -0.5))
    perturb_(head)
    return head.eval()
