"""Exports CLIP checkpoints (OpenAI, Hugging Face, CLIP4Clip/CLIP2TV) into
vidx model bundles: image.onnx, text.onnx, an optional temporal.onnx
(seqTransf), the tokenizer files and vidx-model.yaml.

Needs torch, onnx and numpy only (Debian: python3-torch python3-onnx
python3-numpy); the CLIP architecture is implemented here in plain torch.
Entry point: scripts/export_bundle.py, or `python3 -m export` from scripts/.
"""
