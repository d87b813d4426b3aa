#!/usr/bin/env python3
"""CLIP's image preprocessing up to the crop, as the reference for vidx's.

Reads raw RGB24 frames (what `ffmpeg -f rawvideo -pix_fmt rgb24` writes: W x H
x 3 bytes each, back to back), applies OpenAI CLIP's
Resize(size, interpolation=BICUBIC) + CenterCrop(size) to each with Pillow,
and writes the size x size RGB24 crops back to back. vidx's
encoders/preprocess.ResizeCrop is compared with this output by
encoders/preprocess/parity_test.go.

The transform is torchvision's, written out with Pillow alone (torchvision
adds only the size and offset arithmetic reproduced below), so the script
needs no torch:

    ffmpeg -i clip.mp4 -vf fps=1 -f rawvideo -pix_fmt rgb24 frames.rgb
    /usr/bin/python3 scripts/preprocess_parity.py --width 1920 --height 1080 frames.rgb crops.rgb

IN and OUT may be "-" for stdin and stdout. Debian's python3-pil provides
Pillow (apt-get install python3-pil).
"""
import argparse
import sys

import PIL
from PIL import Image


def clip_transform(img, size):
    """torchvision Resize(size, BICUBIC) then CenterCrop(size), as in CLIP's
    _transform; the ToTensor/Normalize steps that follow are not compared."""
    w, h = img.size
    # torchvision _compute_resized_output_size: the short side becomes size,
    # the long side int(size * long / short), truncated.
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    if (nw, nh) != (w, h):  # torchvision returns the image untouched then
        img = img.resize((nw, nh), Image.BICUBIC)
    # torchvision center_crop: Python's round, i.e. round half to even.
    top = int(round((nh - size) / 2.0))
    left = int(round((nw - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, required=True, help="frame width in pixels")
    p.add_argument("--height", type=int, required=True, help="frame height in pixels")
    p.add_argument("--size", type=int, default=224, help="crop side (default 224)")
    p.add_argument("input", help='raw RGB24 frames, or "-" for stdin')
    p.add_argument("output", help='file for the RGB24 crops, or "-" for stdout')
    args = p.parse_args()
    if args.width <= 0 or args.height <= 0 or args.size <= 0:
        p.error("--width, --height and --size must be positive")

    frame_bytes = args.width * args.height * 3
    src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    dst = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    n = 0
    with src, dst:
        while True:
            data = src.read(frame_bytes)
            if not data:
                break
            if len(data) != frame_bytes:
                sys.exit("preprocess_parity: %s ends with a partial frame (%d of %d bytes)"
                         % (args.input, len(data), frame_bytes))
            img = Image.frombytes("RGB", (args.width, args.height), data)
            dst.write(clip_transform(img, args.size).tobytes())
            n += 1
    print("preprocess_parity: Pillow %s: %d frame(s) %dx%d -> %dx%d"
          % (PIL.__version__, n, args.width, args.height, args.size, args.size), file=sys.stderr)


if __name__ == "__main__":
    main()
