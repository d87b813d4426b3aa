"""torch.onnx.export of the three bundle models, with vidx's tensor names
and a dynamic batch axis."""

import warnings

import onnx
import torch
from torch import nn

DEFAULT_OPSET = 17
OPSETS = range(14, 18)  # torch 1.13 exports up to 17; ONNX Runtime reads all

IMAGE_INPUT, IMAGE_OUTPUT = "pixel_values", "image_embeds"
TEXT_INPUT, TEXT_OUTPUT = "input_ids", "text_embeds"
TEMPORAL_FRAMES, TEMPORAL_MASK, TEMPORAL_OUTPUT = "frame_embeds", "frame_mask", "video_embeds"


class _Image(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values):
        return self.clip.encode_image(pixel_values)


class _Text(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids):
        return self.clip.encode_text(input_ids)


def _export(module, args, path, inputs, outputs, axes, opset):
    if opset not in OPSETS:
        raise ValueError(f"opset {opset} is outside {OPSETS.start}..{OPSETS.stop - 1}")
    with warnings.catch_warnings():
        # Tracer warnings about shape arithmetic are expected: every shape
        # that must stay symbolic is read with .shape and stays symbolic.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")
        with torch.no_grad():
            torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != inputs or got_out != outputs:
        raise RuntimeError(f"{path}: exported inputs {got_in} / outputs {got_out}, want {inputs} / {outputs}")
    return path


def export_image(clip, path, opset=DEFAULT_OPSET):
    s = clip.cfg.image_resolution
    # Batch 2 while tracing, so no size-1 dimension can be folded into a
    # constant; the axis is declared dynamic anyway.
    dummy = torch.randn(2, 3, s, s)
    return _export(_Image(clip).eval(), (dummy,), path, [IMAGE_INPUT], [IMAGE_OUTPUT],
                   {IMAGE_INPUT: {0: "batch"}, IMAGE_OUTPUT: {0: "batch"}}, opset)


def export_text(clip, path, opset=DEFAULT_OPSET, dynamic_length=True):
    """With dynamic_length the sequence axis is symbolic (1..context_length):
    the positional embedding and the causal mask are cut to the input's
    length inside the graph, so a caller may feed only the tokens up to the
    batch's last end-of-text. The causal mask keeps every position blind to
    later ones, so the features at end-of-text do not change."""
    cfg = clip.cfg
    n = cfg.context_length
    if dynamic_length and n > 4:
        # Traced below context_length, so that no slice of the positional
        # embedding or the mask can be folded into a full-length constant.
        n -= 1
    dummy = torch.zeros(2, n, dtype=torch.long)
    dummy[:, 0] = cfg.vocab_size - 2
    dummy[0, 1:4] = torch.tensor([5, 6, cfg.vocab_size - 1])
    dummy[1, 1] = cfg.vocab_size - 1
    axes = {TEXT_INPUT: {0: "batch"}, TEXT_OUTPUT: {0: "batch"}}
    if dynamic_length:
        axes[TEXT_INPUT][1] = "sequence"
    return _export(_Text(clip).eval(), (dummy,), path, [TEXT_INPUT], [TEXT_OUTPUT], axes, opset)


def export_temporal(head, path, max_frames, opset=DEFAULT_OPSET):
    """Batch and frame count are both dynamic: callers may pad to max_frames
    or send only as many frames as the longest clip of the batch."""
    if not 1 <= max_frames <= head.cfg.max_positions:
        raise ValueError(f"max_frames {max_frames} must be in 1..{head.cfg.max_positions} "
                         "(the head's frame_position_embeddings rows)")
    frames = torch.randn(2, max_frames, head.cfg.width)
    mask = torch.ones(2, max_frames)
    mask[1, max_frames // 2:] = 0
    return _export(head, (frames, mask), path, [TEMPORAL_FRAMES, TEMPORAL_MASK], [TEMPORAL_OUTPUT],
                   {TEMPORAL_FRAMES: {0: "batch", 1: "frames"}, TEMPORAL_MASK: {0: "batch", 1: "frames"},
                    TEMPORAL_OUTPUT: {0: "batch"}}, opset)
