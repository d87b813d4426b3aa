#!/usr/bin/env python3
"""Quantizes ONNX models to int8 with ONNX Runtime's own dynamic quantizer.

    python3 scripts/quantize.py [--op-types MatMul,Gemm] IN.onnx OUT.onnx [IN OUT ...]
    python3 scripts/quantize.py --setup     # only prepare the virtual environment

`vidx models quantize SRC DST` runs this for a bundle's image and text
models. Weights become 8-bit integers (one scale per tensor), activations are
quantized per batch at run time (uint8), so no calibration data is needed.
Weights default to uint8: ONNX Runtime documents that its uint8 x int8 CPU
kernels can saturate on x86 without VNNI (AVX2), and there int8 weights
brought the frame embeddings of a ViT-B/32-sized tower down to cosine 0.989
against float32, where uint8 weights keep 0.9998 (BENCHMARKS.md).

onnxruntime and onnx come from PyPI, pinned below, in a virtual environment
of their own ($VIDX_QUANTIZE_VENV, default ~/.cache/vidx/py-quantize); the
script creates it on first use and re-runs itself there. The runtime's
version matches the ONNX Runtime library vidx loads, so the quantized
operators it writes are ones that library runs.
"""
import argparse
import os
import subprocess
import sys

sys.dont_write_bytecode = True

REQUIREMENTS = ["onnxruntime==1.24.1", "onnx==1.23.2"]


def venv_dir():
    if os.environ.get("VIDX_QUANTIZE_VENV"):
        return os.environ["VIDX_QUANTIZE_VENV"]
    cache = os.environ.get("VIDX_CACHE_DIR")
    if not cache:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache = os.path.join(base, "vidx")
    return os.path.join(cache, "py-quantize")


def have_quantizer():
    try:
        import onnxruntime.quantization  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def ensure_venv(log):
    """Returns the venv's python, creating the venv and installing the pinned
    packages when they are missing."""
    d = venv_dir()
    py = os.path.join(d, "bin", "python")
    check = [py, "-c", "import onnxruntime.quantization, onnx"]
    if os.path.exists(py) and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    log(f"installing {' '.join(REQUIREMENTS)} into {d} (pip)")
    subprocess.run([sys.executable, "-m", "venv", d], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    subprocess.run(check, check=True)
    return py


def main(argv):
    p = argparse.ArgumentParser(prog="quantize.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", action="store_true", help="create the virtual environment and exit")
    p.add_argument("--op-types", default="MatMul,Gemm",
                   help="operators to quantize; MatMul and Gemm carry nearly all of a CLIP tower's FLOPs, "
                        "while ConvInteger (the patch embedding) is slower than float Conv on CPU")
    p.add_argument("--per-channel", action="store_true", help="one scale per output channel of each weight")
    p.add_argument("--weight-type", choices=["uint8", "int8"], default="uint8",
                   help="weight type; int8 can saturate in ONNX Runtime's u8s8 kernels on AVX2 CPUs (see above)")
    p.add_argument("models", nargs="*", metavar="IN OUT", help="pairs of input and output model paths")
    args = p.parse_args(argv)

    def log(msg):
        print(f"quantize: {msg}", file=sys.stderr)

    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(venv_dir())
    if args.setup or not have_quantizer():
        if in_venv:
            log("onnxruntime.quantization is not importable in its own virtual environment")
            return 1
        py = ensure_venv(log)
        if args.setup:
            print(py)
            return 0
        os.execv(py, [py, os.path.abspath(__file__), *argv])

    if len(args.models) == 0 or len(args.models) % 2:
        p.error("want pairs of IN OUT model paths")

    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = [o for o in args.op_types.split(",") if o]
    wtype = QuantType.QUInt8 if args.weight_type == "uint8" else QuantType.QInt8
    for src, dst in zip(args.models[0::2], args.models[1::2]):
        log(f"{src} -> {dst} ({args.weight_type} weights, {','.join(ops)})")
        quantize_dynamic(src, dst, weight_type=wtype, op_types_to_quantize=ops, per_channel=args.per_channel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
