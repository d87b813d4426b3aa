"""CLIP's image and text towers in plain torch, with OpenAI's parameter names.

The module tree mirrors OpenAI's clip/model.py (ViT visual tower only), so
an OpenAI state dict loads with load_state_dict(strict=True) and a missing or
misnamed weight is an error rather than a silently random tensor. Two things
are configurable that OpenAI hard-codes, because Hugging Face exports vary
them: the MLP activation (per tower) and the LayerNorm epsilon.
"""

from collections import OrderedDict
from dataclasses import dataclass
import math

import torch
from torch import nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI trained CLIP with."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class TanhGELU(nn.Module):
    """The tanh approximation of GELU (Hugging Face's gelu_new /
    gelu_pytorch_tanh), written out so it exports on every opset."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class ErfGELU(nn.Module):
    def forward(self, x):
        return F.gelu(x)


ACTIVATIONS = {
    "quick_gelu": QuickGELU,
    "gelu": ErfGELU,
    "gelu_new": TanhGELU,
    "gelu_pytorch_tanh": TanhGELU,
}


def activation(name):
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}") from None


class ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block, sequence-first ([L, N, D]) like OpenAI's."""

    def __init__(self, d_model, n_head, act="quick_gelu", eps=1e-5, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model, eps=eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", activation(act)),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = nn.LayerNorm(d_model, eps=eps)
        # A plain attribute, not a buffer, as in OpenAI's code: a buffer
        # would add a key that OpenAI state dicts do not have.
        self.attn_mask = attn_mask

    def attention(self, x):
        mask = self.attn_mask
        if mask is not None:
            # Sized to the input (x is [L, N, D]): the text tower may run on
            # fewer than context_length tokens, and a causal mask cut to the
            # first L rows and columns is the causal mask of length L.
            n = x.shape[0]
            mask = mask[:n, :n].to(dtype=x.dtype, device=x.device)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, act="quick_gelu", eps=1e-5, attn_mask=None):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(*[
            ResidualAttentionBlock(width, heads, act, eps, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim, act="quick_gelu", eps=1e-5):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=eps)
        self.transformer = Transformer(width, layers, heads, act, eps)
        self.ln_post = nn.LayerNorm(width, eps=eps)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)  # [N, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid**2, width]
        # expand rather than OpenAI's zeros+add: same values, and the batch
        # size stays symbolic in the exported graph.
        cls = self.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x)
        x = x.permute(1, 0, 2)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj


@dataclass
class CLIPConfig:
    """Architecture of a ViT CLIP. from_state_dict infers it the way OpenAI's
    build_model does; Hugging Face's config.json supplies what a state dict
    cannot say (activation, epsilon, head counts)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    vision_heads: int = 0  # 0: vision_width // 64, as OpenAI
    vision_act: str = "quick_gelu"
    text_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.vision_heads == 0:
            self.vision_heads = max(1, self.vision_width // 64)
        for name, width, heads in (("vision", self.vision_width, self.vision_heads),
                                   ("text", self.transformer_width, self.transformer_heads)):
            if heads <= 0 or width % heads:
                raise ValueError(f"{name} width {width} is not divisible by {heads} heads")
        if self.image_resolution % self.vision_patch_size:
            raise ValueError(f"image size {self.image_resolution} is not a multiple of patch size {self.vision_patch_size}")

    @classmethod
    def from_state_dict(cls, sd, **overrides):
        """Reads the architecture off an OpenAI-layout state dict."""
        if "visual.proj" not in sd:
            if any(k.startswith("visual.layer1.") for k in sd):
                raise ValueError("this is a ResNet CLIP (visual.layer1.*); only ViT image towers are supported")
            raise ValueError("not an OpenAI CLIP state dict: visual.proj is missing")
        vision_width = sd["visual.conv1.weight"].shape[0]
        vision_layers = count_blocks(sd, "visual.transformer.resblocks.")
        vision_patch_size = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        if grid * grid + 1 != sd["visual.positional_embedding"].shape[0]:
            raise ValueError(f"visual.positional_embedding has {sd['visual.positional_embedding'].shape[0]} rows, "
                             "want grid*grid+1")
        transformer_width = sd["ln_final.weight"].shape[0]
        cfg = dict(
            embed_dim=sd["text_projection"].shape[1],
            image_resolution=vision_patch_size * grid,
            vision_layers=vision_layers,
            vision_width=vision_width,
            vision_patch_size=vision_patch_size,
            context_length=sd["positional_embedding"].shape[0],
            vocab_size=sd["token_embedding.weight"].shape[0],
            transformer_width=transformer_width,
            transformer_heads=max(1, transformer_width // 64),
            transformer_layers=count_blocks(sd, "transformer.resblocks."),
        )
        cfg.update({k: v for k, v in overrides.items() if v})
        if sd["visual.proj"].shape[1] != cfg["embed_dim"]:
            raise ValueError(f"visual.proj projects to {sd['visual.proj'].shape[1]} but text_projection to "
                             f"{cfg['embed_dim']}; the towers must share one embedding space")
        return cls(**cfg)


def count_blocks(sd, prefix):
    """Number of transformer blocks under prefix (prefix + "N." keys)."""
    ids = {int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)}
    if ids != set(range(len(ids))):
        raise ValueError(f"{prefix}N blocks are not numbered 0..{len(ids) - 1}: {sorted(ids)}")
    return len(ids)


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.context_length = cfg.context_length
        self.visual = VisionTransformer(
            input_resolution=cfg.image_resolution,
            patch_size=cfg.vision_patch_size,
            width=cfg.vision_width,
            layers=cfg.vision_layers,
            heads=cfg.vision_heads,
            output_dim=cfg.embed_dim,
            act=cfg.vision_act,
            eps=cfg.layer_norm_eps,
        )
        self.transformer = Transformer(
            width=cfg.transformer_width,
            layers=cfg.transformer_layers,
            heads=cfg.transformer_heads,
            act=cfg.text_act,
            eps=cfg.layer_norm_eps,
            attn_mask=self.build_attention_mask(cfg.context_length),
        )
        self.vocab_size = cfg.vocab_size
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.transformer_width))
        self.ln_final = nn.LayerNorm(cfg.transformer_width, eps=cfg.layer_norm_eps)
        self.text_projection = nn.Parameter(torch.empty(cfg.transformer_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self):
        # OpenAI's initialisation, so a random model behaves like an
        # untrained CLIP rather than producing degenerate activations.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width = self.transformer.width
        proj_std = (width ** -0.5) * ((2 * self.transformer.layers) ** -0.5)
        attn_std = width ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @staticmethod
    def build_attention_mask(n):
        # Additive causal mask: -inf strictly above the diagonal.
        mask = torch.empty(n, n)
        mask.fill_(float("-inf"))
        mask.triu_(1)
        return mask

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text)  # [N, L, width]
        x = x + self.positional_embedding[: x.shape[1]]
        x = x.permute(1, 0, 2)
        x = self.transformer(x)
        x = x.permute(1, 0, 2)
        x = self.ln_final(x)
        # The features at the end-of-text token, which has the largest id
        # (argmax, as OpenAI). gather keeps the batch dimension symbolic
        # where OpenAI's x[arange(N), argmax] would fix it when traced.
        eot = text.argmax(dim=-1)
        x = x.gather(1, eot.reshape(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)
        return x @ self.text_projection

    def forward(self, image, text):
        return self.encode_image(image), self.encode_text(text)


# Keys that OpenAI's TorchScript archives carry as tensors but that are not
# parameters; build_model drops them too.
NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size")


def build_model(sd, context_length=None, **overrides):
    """Builds an eval-mode float32 CLIP from an OpenAI-layout state dict.

    context_length shortens the text tower (CLIP4Clip trains with 32 tokens):
    the positional embedding is cut to that many rows and the causal mask
    sized to match, which leaves every output for texts that fit unchanged.
    """
    sd = {k: v for k, v in sd.items() if k not in NON_PARAMETER_KEYS}
    cfg = CLIPConfig.from_state_dict(sd, **overrides)
    if context_length:
        if context_length > cfg.context_length:
            raise ValueError(f"context length {context_length} is longer than the checkpoint's "
                             f"positional_embedding ({cfg.context_length} rows)")
        sd = dict(sd)
        sd["positional_embedding"] = sd["positional_embedding"][:context_length]
        cfg.context_length = context_length
    model = CLIP(cfg)
    # Half-precision checkpoints (OpenAI's archives) are exported in float32:
    # ONNX Runtime's CPU kernels are float32, and vidx feeds float32 pixels.
    sd = {k: v.float() for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError("state dict does not match the CLIP architecture inferred from it: "
                         f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    return model.eval()


def random_model(cfg: CLIPConfig, seed=0):
    """A randomly initialised CLIP whose LayerNorm weights and all biases are
    perturbed away from their 1/0 defaults, so that a weight mapped to the
    wrong place changes the outputs."""
    torch.manual_seed(seed)
    model = CLIP(cfg)
    perturb_(model)
    return model.eval()


def perturb_(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if isinstance(p, torch.Tensor) and name.endswith("bias"):
                p.normal_(0, 0.02)
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
