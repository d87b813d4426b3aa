#!/usr/bin/python3
"""Exports a CLIP checkpoint into a vidx model bundle; see docs/export.md.

    /usr/bin/python3 scripts/export_bundle.py --format openai|hf|clip4clip \
        --checkpoint PATH --out DIR --tokenizer DIR [--name NAME]
"""
import os
import sys

# Keep the source tree free of __pycache__ directories.
sys.dont_write_bytecode = True
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
